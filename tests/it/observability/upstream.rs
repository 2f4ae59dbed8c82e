//! What the upstream sees of a gateway: the retained online status, then
//! offline on a clean stop or by its will after kill -9; outage warnings
//! and the drained backlog in the log; what functions forward and log and
//! ledge's own metrics, through the spool; and `ledge status` reports it.

use std::time::{Duration, Instant};

use super::WAIT;
use crate::common;
use crate::common::broker::{Mosquitto, TestClient};
use crate::common::gateway::{Gateway, Module};
use crate::common::process;

/// Collects `<prefix>/status` messages with a fresh client until one has
/// `state`; a fresh client sees the retained one first.
fn status_message(port: u16, id: &str, state: &str) -> serde_json::Value {
    let client = TestClient::connect(port, id, &["ledge/gw-s/status"]);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if m.json()["state"] == state {
                return m.json();
            }
        }
    }
    panic!("no retained `{state}` status on ledge/gw-s/status");
}

#[test]
fn upstream_sees_online_then_offline_on_a_clean_stop_and_by_will_after_kill_9() {
    let gateway = Gateway::new("gw-s")
        .with_upstream()
        .upstream("keep_alive = \"5s\"");
    let upstream = gateway.upstream.as_ref().expect("the upstream");
    let mut ledge = gateway.start();
    ledge.wait_for_log("connected to upstream", WAIT);
    let online = status_message(upstream.port, "watch-1", "online");
    assert_eq!(online["device"], "gw-s", "{online}");
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"), "{online}");
    // When the gateway booted, and when this ledge started.
    let boot = online["boot_ms"].as_u64().expect("boot_ms");
    let started = online["started_ms"].as_u64().expect("started_ms");
    assert!(boot > 1_600_000_000_000 && started >= boot, "{online}");
    assert_eq!(ledge.terminate().code(), Some(0));
    let offline = status_message(upstream.port, "watch-2", "offline");
    assert_eq!(offline["reason"], "stopped", "{offline}");
    assert_eq!(offline["started_ms"], started, "{offline}");

    let mut ledge = gateway.start();
    ledge.wait_for_log("connected to upstream", WAIT);
    let online = status_message(upstream.port, "watch-3", "online");
    assert!(online["started_ms"].as_u64() > Some(started), "{online}");
    process::signal(ledge.pid(), "KILL");
    let _ = ledge.wait(WAIT);
    let offline = status_message(upstream.port, "watch-4", "offline");
    assert_eq!(offline["reason"], "connection lost", "{offline}");
    assert_eq!(offline["started_ms"], online["started_ms"], "{offline}");
}

#[test]
fn an_outage_is_warned_about_and_the_drained_backlog_is_logged() {
    let upstream_port = common::free_port();
    let gateway = Gateway::new("gw-o")
        .upstream_at(upstream_port)
        .upstream("outage_warning = \"1s\"")
        .append("[[forward]]\ntopic = \"data/#\"");
    let mut ledge = gateway.start();
    let client = gateway.client("producer", &[]);
    for i in 0..20 {
        client.publish("data/x", format!("{i}"));
    }
    let warning = ledge.wait_for_log("upstream unreachable for", WAIT);
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("waiting in the spool"), "{warning}");
    let _upstream = Mosquitto::start_on(gateway.dir(), upstream_port);
    let drained = ledge.wait_for_line("upstream backlog drained", WAIT);
    assert!(drained.contains("INFO"), "{drained}");
    assert!(drained.contains("20 records"), "{drained}");
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn forwards_logs_and_metrics_reach_upstream_and_status_reports_them() {
    let gateway = Gateway::new("gw-tel")
        .with_upstream()
        .append("[metrics]\ninterval = \"1s\"")
        .function(
            "fwd",
            Module::Fixture("forwarder"),
            "allow_forward = [\"readings\"]",
        )
        .mqtt_trigger("in/reading", "fwd");
    let backend = gateway.upstream_client("backend", &["ledge/#"]);
    let ledge = gateway.start();
    let producer = gateway.client("producer", &["never"]);
    producer.publish("in/reading", "{\"value\":21.5}");

    let mut forwarded = None;
    let mut log_line = None;
    let mut metrics = None;
    let deadline = std::time::Instant::now() + WAIT;
    while (forwarded.is_none() || log_line.is_none() || metrics.is_none())
        && std::time::Instant::now() < deadline
    {
        let Some(message) = backend.next(Duration::from_millis(500)) else {
            continue;
        };
        match message.topic.as_str() {
            "ledge/gw-tel/events/readings" => forwarded = Some(message.text()),
            "ledge/gw-tel/logs" => {
                let doc = message.json();
                if let Some(line) = doc["logs"]
                    .as_array()
                    .and_then(|l| l.iter().find(|l| l["source"] == "fn:fwd"))
                {
                    log_line = Some(line.clone());
                }
            }
            "ledge/gw-tel/metrics" => {
                let doc = message.json();
                let snapshot = &doc["metrics"][0]["snapshot"];
                if snapshot["functions"]["fwd"]["invocations"].as_u64() >= Some(1) {
                    metrics = Some(snapshot.clone());
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        forwarded.as_deref(),
        Some("{\"value\":21.5}"),
        "log:\n{}",
        ledge.log_text()
    );
    let line = log_line.expect("the function's log line went upstream");
    assert_eq!(line["message"], "forwarded a reading");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["request_id"].as_str().map(str::len), Some(16));
    let snapshot = metrics.expect("a metrics snapshot went upstream");
    assert_eq!(snapshot["device"], "gw-tel");
    assert!(snapshot["spool"]["appended"].as_u64().unwrap() >= 1);
    assert!(ledge
        .log_text()
        .contains("forward to `secret` denied: not in allow_forward"));

    let status = gateway.status();
    assert_eq!(status["local_broker"]["connected"], true);
    assert_eq!(status["uplink"]["connected"], true);
    assert_eq!(status["functions"]["fwd"]["invocations"], 1);
    assert_eq!(status["functions"]["fwd"]["errors"], 0);
    let text = gateway.cli(&["status"]);
    let human = String::from_utf8_lossy(&text.stdout);
    assert!(
        human.contains("uplink     connected") && human.contains("fwd"),
        "{human}"
    );
}
