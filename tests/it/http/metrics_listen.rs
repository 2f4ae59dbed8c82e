//! `[metrics] listen` keeps working now that the HTTP server serves
//! `/metrics`: alone it starts a server with only `/metrics` and
//! `/healthz` (no routes, no Lambda API); beside `[http]` on another
//! address it is a second such server; beyond loopback without
//! credentials `ledge check` refuses it.

use std::time::Duration;

use super::{curl, port_in, route};
use crate::common::gateway::{Gateway, Module};
use crate::common::process::ledge as run_ledge;

#[test]
fn metrics_listen_alone_serves_only_metrics_and_healthz() {
    let gateway = Gateway::new("metrics-only")
        .append("[metrics]\nlisten = \"127.0.0.1:0\"\n")
        .function("echo", Module::Fixture("respond_echo"), "");
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("Prometheus metrics on http://", Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{}", port_in(&line));
    let answer = curl(&[&format!("{base}/metrics")]);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert!(
        answer
            .body
            .contains("ledge_invocations_total{device=\"metrics-only\",function=\"echo\"}"),
        "{}",
        answer.body
    );
    assert_eq!(
        curl(&[&format!("{base}/healthz")]).json()["status"],
        "ready"
    );
    let answer = curl(&[
        "-X",
        "POST",
        "-d",
        "{}",
        &format!("{base}/2015-03-31/functions/echo/invocations"),
    ]);
    assert_eq!(answer.status, 404, "no Lambda API on the metrics server");
}

#[test]
fn metrics_listen_beside_http_is_a_second_server_and_beyond_loopback_needs_credentials() {
    // Port 0 on two loopback addresses: two servers, ports from the log.
    let gateway = Gateway::new("metrics-beside")
        .append("[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.2:0\"\n")
        .function("echo", Module::Fixture("respond_echo"), "")
        .append(&route("GET", "/ping", "echo", ""));
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("Prometheus metrics on http://", Duration::from_secs(10));
    let metrics = line
        .split("://127.0.0.2:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let line = ledge.wait_for_log("HTTP routes, Lambda's API", Duration::from_secs(10));
    let http = port_in(&line);
    let status = |url: String| curl(&[&url]).status;
    assert_eq!(status(format!("http://127.0.0.1:{http}/ping")), 200);
    assert_eq!(status(format!("http://127.0.0.2:{metrics}/ping")), 404);
    assert_eq!(status(format!("http://127.0.0.2:{metrics}/metrics")), 200);
    assert_eq!(status(format!("http://127.0.0.1:{http}/metrics")), 200);
    drop(ledge);

    let text = gateway
        .text()
        .replace("\"127.0.0.2:0\"", "\"0.0.0.0:9464\"");
    let config = crate::common::write_config(gateway.dir(), &text);
    let output = run_ledge(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let line = text.lines().position(|l| l.contains("0.0.0.0")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("ledge.toml:{line}:")) && stderr.contains("[metrics] listen"),
        "{stderr}"
    );
}
