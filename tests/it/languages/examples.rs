//! The shipped example modules are current (rebuilt from source, byte for
//! byte) and behave as documented when run warm by the real runtime.

use std::process::Command;
use std::sync::Arc;

use crate::common;

use ledge::config;
use ledge::event::{Event, EventSource};
use ledge::runtime::{Instance, Invocation, Runtime};
use ledge::sinks::capture::CaptureSink;

#[test]
fn the_hand_written_counter_module_matches_its_wat_source() {
    let source = common::repo().join("functions/wat/counter.wat");
    let built = wat::parse_file(&source).unwrap();
    let dist = common::repo().join("functions/dist/counter.wasm");
    if std::env::var_os("LEDGE_BLESS").is_some() {
        std::fs::write(&dist, &built).unwrap();
    }
    let shipped = std::fs::read(&dist).unwrap();
    assert!(
        built == shipped,
        "functions/dist/counter.wasm is stale: rerun this test with LEDGE_BLESS=1, then functions/build.sh to refresh SHA256SUMS"
    );
}

#[test]
fn the_rust_example_modules_rebuild_byte_for_byte() {
    let status = Command::new(common::repo().join("functions/build.sh"))
        .arg("--check")
        .status()
        .expect("run functions/build.sh --check");
    assert!(
        status.success(),
        "functions/dist is stale: run functions/build.sh and commit dist/"
    );
}

fn instance(name: &str, extra: &str) -> (tempfile::TempDir, Instance, Arc<CaptureSink>) {
    let dir = tempfile::tempdir().unwrap();
    let text = common::function_toml(name, &common::example(name), extra);
    let plan = config::load(&common::write_config(dir.path(), &text)).unwrap();
    let function = Runtime::new(plan.broker.max_payload)
        .unwrap()
        .load(plan.functions[0].clone())
        .unwrap();
    let sink = Arc::new(CaptureSink::default());
    let instance = Instance::new(&function, sink.clone(), true, true).unwrap();
    (dir, instance, sink)
}

fn call(instance: &mut Instance, source: EventSource, subject: &str, payload: &str) -> String {
    let invocation = Invocation {
        request_id: ledge::dispatch::request_id::next(),
        event: Arc::new(Event::new(source, subject, payload.as_bytes().to_vec())),
        attempt: 1,
    };
    let outcome = instance.invoke(&invocation);
    String::from_utf8(outcome.result.expect("invocation succeeds")).unwrap()
}

#[test]
fn a_warm_instance_keeps_state_between_invocations() {
    let (_dir, mut counter, _) = instance("counter", "");
    let replies: Vec<String> = (0..3)
        .map(|_| call(&mut counter, EventSource::Schedule, "every 10s", "{}"))
        .collect();
    assert_eq!(replies, vec!["1", "2", "3"]);
}

#[test]
fn moving_average_publishes_once_per_window_per_sensor() {
    let (_dir, mut average, sink) = instance(
        "moving-average",
        "env = { WINDOW = \"3\" }\nallow_publish = [\"averages/#\"]",
    );
    for value in [10.0, 20.0, 30.0, 100.0] {
        call(
            &mut average,
            EventSource::Sensor,
            "t1",
            &format!("{{\"sensor\":\"t1\",\"value\":{value}}}"),
        );
    }
    call(
        &mut average,
        EventSource::Sensor,
        "t2",
        r#"{"sensor":"t2","value":5}"#,
    );
    let published = sink.take();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].topic, "averages/t1");
    let body: serde_json::Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(body["average"], 20.0);
    assert_eq!(body["count"], 3);
}

#[test]
fn threshold_alert_names_the_sensor_from_a_sensor_event() {
    let (_dir, mut alert, sink) = instance(
        "threshold-alert",
        "env = { THRESHOLD = \"25\" }\nallow_publish = [\"alerts/#\"]",
    );
    let payload = ledge::sources::sensor::reading_json("greenhouse", 26.5, Some("C"), 1);
    let reply = call(&mut alert, EventSource::Sensor, "greenhouse", &payload);
    assert_eq!(
        reply,
        r#"{"alert":true,"sensor":"greenhouse","value":26.5}"#
    );
    assert_eq!(sink.take()[0].topic, "alerts/greenhouse");
}
