//! `ledge invoke` as a test bench: a module with no config, env from the
//! command line, events shaped as each source sends them, and a file of
//! events through one warm instance.

use std::path::Path;

use crate::common;

use crate::common::process::ledge;
use serde_json::Value;

fn module(name: &str) -> String {
    common::example(name).to_string_lossy().into_owned()
}

/// Runs `ledge invoke <args> --json`; the exit code and one JSON report per
/// invocation.
fn invoke_json(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let mut all = vec!["invoke", "--json"];
    all.extend_from_slice(args);
    let output = ledge(&all);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let reports = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON report ({e}): {line}\nstderr: {stderr}"))
        })
        .collect();
    (output.status.code(), reports, stderr)
}

fn response(report: &Value) -> Value {
    let text = report["response"]
        .as_str()
        .unwrap_or_else(|| panic!("no response: {report}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
}

#[test]
fn a_module_runs_without_a_config_and_env_comes_from_the_command_line() {
    let echo = module("echo");
    let (code, reports, stderr) = invoke_json(&[
        "--module",
        &echo,
        "--event",
        "ping",
        "--env",
        "ECHO_TOPIC=echoes/here",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = &reports[0];
    assert_eq!(report["function"], "echo", "named after the file");
    assert_eq!(report["response"], "ping");
    assert_eq!(report["publishes"][0]["topic"], "echoes/here", "{report}");
    assert_eq!(report["publishes"][0]["payload"], "ping");
}

#[test]
fn env_on_the_command_line_wins_over_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::function_toml(
        "alert",
        &common::example("threshold-alert"),
        "env = { THRESHOLD = \"100\" }\nallow_publish = [\"alerts/#\"]",
    );
    let config = common::write_config(dir.path(), &text);
    let config = config.to_str().unwrap();
    let args = ["alert", "--config", config, "--event", "50"];
    let (code, reports, stderr) = invoke_json(&args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(response(&reports[0])["alert"], false);
    let mut lowered = args.to_vec();
    lowered.extend(["--env", "THRESHOLD=40"]);
    let (_, reports, _) = invoke_json(&lowered);
    assert_eq!(response(&reports[0])["alert"], true, "{}", reports[0]);
}

#[test]
fn a_sensor_value_becomes_the_reading_a_sensor_sends() {
    let (code, reports, stderr) = invoke_json(&[
        "--module",
        &module("echo"),
        "--source",
        "sensor",
        "--subject",
        "greenhouse",
        "--event",
        "26.5",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = &reports[0];
    assert_eq!(
        (report["source"].as_str(), report["subject"].as_str()),
        (Some("sensor"), Some("greenhouse"))
    );
    let reading = response(report);
    assert_eq!(reading["sensor"], "greenhouse");
    assert_eq!(reading["value"], 26.5);
    assert_eq!(reading["quality"], "ok");
    assert!(
        reading["ts"]
            .as_u64()
            .is_some_and(|ts| ts > 1_700_000_000_000),
        "{reading}"
    );

    // threshold-alert reads it as it would on the gateway.
    let (_, reports, _) = invoke_json(&[
        "--module",
        &module("threshold-alert"),
        "--source",
        "sensor",
        "--subject",
        "greenhouse",
        "--event",
        "31",
    ]);
    assert_eq!(
        reports[0]["publishes"][0]["topic"], "alerts/greenhouse",
        "{}",
        reports[0]
    );
}

#[test]
fn a_schedule_tick_without_a_payload_is_the_tick_json() {
    let (code, reports, stderr) = invoke_json(&[
        "--module",
        &module("echo"),
        "--source",
        "schedule",
        "--subject",
        "every 30s",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(reports[0]["subject"], "every 30s");
    let tick = response(&reports[0]);
    assert_eq!(tick["every"], "30s");
    let at = tick["scheduled_at"].as_u64().expect("scheduled_at in ms");
    let iso = tick["scheduled_at_iso"].as_str().unwrap();
    assert!(iso.ends_with('Z') && iso.len() == 24, "{iso}");
    assert!(
        iso.ends_with(&format!(".{:03}Z", at % 1000)),
        "{iso} vs {at}"
    );
}

#[test]
fn an_mqtt_event_needs_its_topic_and_a_bad_reading_is_named() {
    let echo = module("echo");
    let output = ledge(&[
        "invoke", "--module", &echo, "--source", "mqtt", "--event", "x",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--source mqtt needs the message's topic"),
        "{stderr}"
    );

    let (code, reports, _) = invoke_json(&[
        "--module",
        &echo,
        "--source",
        "mqtt",
        "--topic",
        "sensors/t1",
        "--event",
        "x",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (
            reports[0]["source"].as_str(),
            reports[0]["subject"].as_str()
        ),
        (Some("mqtt"), Some("sensors/t1"))
    );

    let output = ledge(&[
        "invoke", "--module", &echo, "--source", "sensor", "--event", "warm",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`warm` is not a reading"), "{stderr}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn events_from_a_file_run_through_one_warm_instance() {
    let dir = tempfile::tempdir().unwrap();
    let events = write(dir.path(), "readings.jsonl", "10\n20\n\n30\n100\n");
    let (code, reports, stderr) = invoke_json(&[
        "--module",
        &module("moving-average"),
        "--source",
        "sensor",
        "--subject",
        "t1",
        "--env",
        "WINDOW=3",
        "--events",
        &events,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let averages: Vec<f64> = reports
        .iter()
        .map(|r| response(r)["average"].as_f64().unwrap())
        .collect();
    // The running average of each window of 3; the fourth starts a new one.
    assert_eq!(averages, [10.0, 15.0, 20.0, 100.0]);
    let published: Vec<&Value> = reports
        .iter()
        .flat_map(|r| r["publishes"].as_array().unwrap())
        .collect();
    assert_eq!(published.len(), 1, "one publish per full window");
    assert_eq!(published[0]["topic"], "averages/t1");
}

#[test]
fn events_keep_state_and_a_bad_line_is_named_by_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let events = write(dir.path(), "mixed.jsonl", "{}\n{}\n{}\n");
    // counter.wasm counts its warm invocations.
    let (code, reports, stderr) =
        invoke_json(&["--module", &module("counter"), "--events", &events]);
    assert_eq!(code, Some(0), "{stderr}");
    let counts: Vec<&str> = reports
        .iter()
        .map(|r| r["response"].as_str().unwrap())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);

    let bad = write(dir.path(), "bad.jsonl", "1\nnot a number\n");
    let output = ledge(&[
        "invoke",
        "--module",
        &module("echo"),
        "--source",
        "sensor",
        "--events",
        &bad,
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.jsonl:2: --source sensor: `not a number`"),
        "{stderr}"
    );
}

#[test]
fn a_crash_in_an_events_file_replaces_the_instance_and_the_rest_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "trap_named");
    let events = write(dir.path(), "events.jsonl", "o\nu\no\n");
    let (code, reports, stderr) =
        invoke_json(&["--module", module.to_str().unwrap(), "--events", &events]);
    assert_eq!(code, Some(1), "one invocation failed: {stderr}");
    let statuses: Vec<&str> = reports
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "error", "ok"]);
    assert_eq!(reports[1]["error_kind"], "trap");
    assert!(stderr.contains("(in function `parse`)"), "{stderr}");
}
