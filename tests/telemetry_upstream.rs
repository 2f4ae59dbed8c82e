//! What functions forward, what they log, and ledge's metrics reach
//! upstream through the spool; `ledge status` reports a running ledge.

mod common;

use std::time::Duration;

use common::broker::{Mosquitto, TestClient};
use common::process::Ledge;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn forwards_logs_and_metrics_reach_upstream_and_status_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start(dir.path());
    let backend = TestClient::connect(upstream.port, "backend", &["ledge/#"]);
    let local = common::free_port();
    let module = common::fixture(dir.path(), "forwarder");
    let text = format!(
        "[device]\nid = \"gw-tel\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{}\"\n[metrics]\ninterval = \"1s\"\n{}{}",
        upstream.port,
        common::function_toml("fwd", &module, "allow_forward = [\"readings\"]"),
        common::mqtt_trigger("in/reading", "fwd"),
    );
    let config = common::write_config(dir.path(), &text);
    let ledge = Ledge::start(&config);
    let producer = TestClient::connect(local, "producer", &["never"]);
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

    let output =
        common::process::ledge(&["status", "--config", config.to_str().unwrap(), "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["local_broker"]["connected"], true);
    assert_eq!(status["uplink"]["connected"], true);
    assert_eq!(status["functions"]["fwd"]["invocations"], 1);
    assert_eq!(status["functions"]["fwd"]["errors"], 0);
    let text = common::process::ledge(&["status", "--config", config.to_str().unwrap()]);
    let human = String::from_utf8_lossy(&text.stdout);
    assert!(
        human.contains("uplink     connected") && human.contains("fwd"),
        "{human}"
    );
}

#[test]
fn status_says_clearly_when_no_ledge_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "[device]\nid = \"idle\"\ndata_dir = \"data\"\n");
    let output = common::process::ledge(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach ledge at") && stderr.contains("ledge.sock"),
        "{stderr}"
    );
}
