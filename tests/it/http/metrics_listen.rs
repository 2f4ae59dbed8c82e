//! `[metrics] listen` keeps working now that the HTTP server serves
//! `/metrics`: alone it starts a server with only `/metrics` and
//! `/healthz` (no routes, no Lambda API); beside `[http]` on another
//! address it is a second such server; beyond loopback without
//! credentials `ledge check` refuses it.

use super::{curl, route};
use crate::common::gateway::{Gateway, Module};
use crate::common::process::ledge as run_ledge;

#[test]
fn metrics_listen_alone_serves_only_metrics_and_healthz() {
    let port = crate::common::free_port();
    let gateway = Gateway::new("metrics-only")
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .function("echo", Module::Fixture("respond_echo"), "");
    let mut ledge = gateway.start();
    ledge.wait_for_log(
        "Prometheus metrics on http://",
        std::time::Duration::from_secs(10),
    );
    let base = format!("http://127.0.0.1:{port}");
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
    let http = crate::common::free_port();
    let metrics = crate::common::free_port();
    let gateway = Gateway::new("metrics-beside")
        .append(&format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ))
        .function("echo", Module::Fixture("respond_echo"), "")
        .append(&route("GET", "/ping", "echo", ""));
    let mut ledge = gateway.start();
    ledge.wait_for_log(
        "Prometheus metrics on http://",
        std::time::Duration::from_secs(10),
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{http}/ping")]).status,
        200
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{metrics}/ping")]).status,
        404
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]).status,
        200
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{http}/metrics")]).status,
        200
    );
    drop(ledge);

    let text = gateway.text().replace(
        &format!("127.0.0.1:{metrics}"),
        &format!("0.0.0.0:{metrics}"),
    );
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
