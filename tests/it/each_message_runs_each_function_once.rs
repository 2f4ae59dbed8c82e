//! Each message runs each function once, however many of its filters match,
//! on the embedded broker and through Debian's mosquitto: readings in give
//! exactly the alerts out, and overlapping filters neither drop nor repeat a
//! run or a forward.

use std::time::{Duration, Instant};

use crate::common::broker::TestClient;
use crate::common::gateway::{Gateway, Module};
use crate::common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

/// The example threshold-alert on `sensors/+/reading`, alerting above 30.
fn threshold_alert(gateway: Gateway, queue: usize) -> Gateway {
    gateway
        .function(
            "threshold-alert",
            Module::Example("threshold-alert"),
            &format!(
                "queue_size = {queue}\nenv = {{ THRESHOLD = \"30\" }}\nallow_publish = [\"alerts/#\"]"
            ),
        )
        .mqtt_trigger("sensors/+/reading", "threshold-alert")
}

/// Publishes `n` readings (half over the threshold) and checks that exactly
/// the ones over it come back as alerts with the right content.
fn n_readings_give_exactly_the_alerts(client: &TestClient, ledge: &Ledge) {
    let n = 400;
    for i in 0..n {
        let value = if i % 2 == 0 {
            31.0 + i as f64 / 1000.0
        } else {
            20.0
        };
        let sensor = format!("s{}", i % 4);
        client.publish(
            &format!("sensors/{sensor}/reading"),
            format!("{{\"value\":{value}}}"),
        );
    }
    let alerts = client.collect(n / 2, WAIT);
    assert_eq!(alerts.len(), n / 2, "log:\n{}", ledge.log_text());
    let mut values: Vec<f64> = alerts
        .iter()
        .map(|m| {
            let json = m.json();
            let sensor = json["sensor"].as_str().unwrap().to_owned();
            assert_eq!(m.topic, format!("alerts/{sensor}"));
            assert_eq!(json["threshold"], 30.0);
            assert_eq!(json["request_id"].as_str().unwrap().len(), 16);
            json["value"].as_f64().unwrap()
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (0..n)
        .step_by(2)
        .map(|i| 31.0 + i as f64 / 1000.0)
        .collect();
    assert_eq!(values, expected);
    assert!(
        client.drain(Duration::from_millis(500)).is_empty(),
        "extra alerts"
    );
}

#[test]
fn readings_through_the_embedded_broker_give_exactly_the_expected_alerts() {
    let gateway = threshold_alert(Gateway::new("e2e"), 10_000);
    let ledge = gateway.start();
    let client = gateway.client("e2e-client", &["alerts/#"]);
    n_readings_give_exactly_the_alerts(&client, &ledge);
}

#[test]
fn readings_through_mosquitto_give_exactly_the_expected_alerts() {
    let gateway = Gateway::new("e2e")
        .with_mosquitto()
        .broker("keep_alive = \"5s\"");
    let gateway = threshold_alert(gateway, 10_000);
    let ledge = gateway.start();
    let client = gateway.client("e2e-client", &["alerts/#"]);
    n_readings_give_exactly_the_alerts(&client, &ledge);
}

/// `one` on `a/+` and `a/#`, `other` on `a/b`, `a/#` forwarded upstream;
/// the local broker is mosquitto (`external`) or the embedded one.
fn each_message_runs_once(external: bool) {
    let gateway = Gateway::new("gw-dup").with_upstream();
    let gateway = if external {
        gateway.with_mosquitto()
    } else {
        gateway
    };
    let gateway = gateway
        .upstream("keep_alive = \"5s\"")
        .append("[[forward]]\ntopic = \"a/#\"")
        .function("one", Module::Example("echo"), "")
        .mqtt_trigger("a/+", "one")
        .mqtt_trigger("a/#", "one")
        .function("other", Module::Example("echo"), "")
        .mqtt_trigger("a/b", "other");
    let backend = gateway.upstream_client("backend", &["ledge/gw-dup/events/#"]);
    let mut ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    for i in 0..20 {
        producer.publish("a/b", format!("{i}"));
    }
    let forwarded = backend.collect(20, WAIT);
    assert_eq!(forwarded.len(), 20, "{}", ledge.log_text());
    assert!(
        backend.drain(Duration::from_millis(500)).is_empty(),
        "a message was forwarded twice"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let m = gateway.metrics();
        let (one, other) = (
            m["one"]["invocations"].clone(),
            m["other"]["invocations"].clone(),
        );
        if one == 20 && other == 20 {
            break;
        }
        assert!(
            one.as_u64() <= Some(20) && other.as_u64() <= Some(20),
            "ran more than once: {m}"
        );
        assert!(Instant::now() < deadline, "not all ran: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ledge.terminate().success());
}

#[test]
fn each_message_runs_each_function_once_however_many_filters_match_on_the_embedded_broker() {
    each_message_runs_once(false);
}

#[test]
fn each_message_runs_each_function_once_however_many_filters_match_through_mosquitto() {
    each_message_runs_once(true);
}
