//! Logs an operator can read: each invocation's line carries Lambda's
//! REPORT facts; `ledge logs` shows recent lines and follows them, filtered
//! by function, level and request id; `[log] format = "json"` makes every
//! line a journald-style JSON object.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{cli, WAIT};
use crate::common::gateway::{Gateway, Module};
use crate::common::process;

fn log_lines(config: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    cli(config, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn ledge_logs_shows_recent_lines_and_follows_filtered_by_function_level_and_request_id() {
    let gateway = Gateway::new("gw-l")
        .function("talk", Module::Fixture("log_payload"), "")
        .mqtt_trigger("talk/in", "talk")
        .function(
            "fails",
            Module::Fixture("always_fails"),
            "retries = 0\non_failure = \"drop\"\nallow_publish = [\"fails/#\"]",
        )
        .mqtt_trigger("fails/in", "fails");
    let config = gateway.write();
    let mut ledge = gateway.start();
    let client = gateway.client("producer", &[]);
    client.publish("talk/in", "hello from talk");
    client.publish("fails/in", "x");
    ledge.wait_for_log("hello from talk", WAIT);
    ledge.wait_for_log("failed (", WAIT);
    // Each invocation's line carries Lambda's REPORT facts.
    let report = ledge.wait_for_log("REPORT Duration:", WAIT);
    assert!(
        report.contains("Fuel Used:")
            && report.contains("Memory Size: 16384 KiB")
            && report.contains("Max Memory Used:"),
        "{report}"
    );

    let recent = log_lines(&config, &[]);
    assert!(
        recent.iter().any(|l| l["MESSAGE"] == "hello from talk"
            && l["FUNCTION"] == "talk"
            && l["LEVEL"] == "INFO"),
        "{recent:?}"
    );
    let talk = log_lines(&config, &["--function", "talk"]);
    assert!(
        !talk.is_empty() && talk.iter().all(|l| l["FUNCTION"] == "talk"),
        "{talk:?}"
    );
    let warnings = log_lines(&config, &["--level", "warn"]);
    assert!(
        warnings.iter().any(|l| l["FUNCTION"] == "fails")
            && warnings
                .iter()
                .all(|l| l["LEVEL"] == "WARN" || l["LEVEL"] == "ERROR"),
        "{warnings:?}"
    );
    let request_id = talk
        .iter()
        .find(|l| l["MESSAGE"] == "hello from talk")
        .and_then(|l| l["REQUEST_ID"].as_str())
        .expect("the function's line has its request id")
        .to_owned();
    let one = log_lines(&config, &["--request-id", &request_id]);
    assert!(!one.is_empty(), "no lines for {request_id}");
    assert!(
        one.iter().all(|l| l["REQUEST_ID"] == request_id.as_str()),
        "{one:?}"
    );
    // The human form names the function and request too.
    let human = cli(&config, &["logs", "--function", "talk"]);
    assert!(
        human
            .lines()
            .any(|l| l.contains("hello from talk") && l.contains(&request_id)),
        "{human}"
    );

    // -f: what arrives after it started, filtered.
    let mut follow = Command::new(process::ledge_bin())
        .args([
            "logs",
            "-f",
            "--function",
            "talk",
            "--lines",
            "0",
            "--config",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The follower is attached once ledge has logged its arrival.
    ledge.wait_for_log("following the log", WAIT);
    client.publish("fails/in", "not for talk");
    client.publish("talk/in", "live line");
    let line = received
        .recv_timeout(WAIT)
        .expect("ledge logs -f printed the new line");
    assert!(line.contains("live line"), "{line}");
    assert!(!line.contains("not for talk"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn json_log_lines_carry_journald_style_fields() {
    let gateway = Gateway::new("gw-j")
        .append("[log]\nformat = \"json\"")
        .function("talk", Module::Fixture("log_payload"), "")
        .mqtt_trigger("talk/in", "talk");
    let mut ledge = gateway.start();
    let client = gateway.client("producer", &[]);
    client.publish("talk/in", "in json");
    let line = ledge.wait_for_log("in json", WAIT);
    let doc: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(doc["MESSAGE"], "in json", "{doc}");
    assert_eq!(doc["FUNCTION"], "talk", "{doc}");
    assert_eq!(doc["LEVEL"], "INFO", "{doc}");
    assert_eq!(doc["PRIORITY"], "6", "{doc}");
    assert_eq!(doc["REQUEST_ID"].as_str().map(str::len), Some(16), "{doc}");
    // Every line is JSON, ledge's own included.
    for line in ledge.log_text().lines() {
        let doc: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            doc["TARGET"].is_string() && doc["TIMESTAMP"].is_string(),
            "{doc}"
        );
    }
    assert_eq!(ledge.terminate().code(), Some(0));
}
