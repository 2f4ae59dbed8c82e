//! Poll-based batches: a batched trigger stores events in the function's
//! stream and delivers them as `{"records": [...]}` of up to `batch_size`,
//! or fewer after `batch_window`; the stream is checkpointed after each
//! batch's final outcome, so a restart neither loses nor repeats a batch;
//! a failing batch is retried whole, then goes to the failure destination.

use std::time::Duration;

use crate::common::broker::Message;
use crate::common::gateway::{Gateway, Module};

const WAIT: Duration = Duration::from_secs(20);

/// Gateway `b1` on a fresh mosquitto: `batcher` (module `module`) gets
/// `in/+` in batches of up to 10, or fewer after 300 ms.
fn gateway(module: Module, extra: &str) -> Gateway {
    Gateway::new("b1")
        .with_mosquitto()
        .function(
            "batcher",
            module,
            &format!("env = {{ ECHO_TOPIC = \"echo/out\" }}\nallow_publish = [\"echo/out\", \"fails/#\"]\n{extra}"),
        )
        .mqtt_trigger("in/+", "batcher")
        .append("batch_size = 10\nbatch_window = \"300ms\"")
}

fn records(message: &Message) -> Vec<serde_json::Value> {
    message.json()["records"].as_array().unwrap().clone()
}

#[test]
fn events_arrive_in_bounded_batches_in_order_and_a_restart_repeats_none() {
    let gateway = gateway(Module::Example("echo"), "");
    let mut ledge = gateway.start();
    let client = gateway.client("batch-client", &["echo/out"]);
    for i in 0..25 {
        client.publish(&format!("in/{}", i % 3), format!("r{i}"));
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while seen.len() < 25 {
        let message = client
            .next(WAIT)
            .unwrap_or_else(|| panic!("{seen:?}\n{}", ledge.log_text()));
        let batch = records(&message);
        sizes.push(batch.len());
        for record in batch {
            assert_eq!(record["source"], "mqtt");
            assert!(record["subject"].as_str().unwrap().starts_with("in/"));
            seen.push(record["payload"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
    assert_eq!(
        seen, expected,
        "order or count wrong; batch sizes {sizes:?}"
    );
    assert!(sizes.iter().all(|s| *s >= 1 && *s <= 10), "{sizes:?}");
    assert!(
        sizes.len() >= 3,
        "25 events in batches of at most 10: {sizes:?}"
    );
    // The window: one lone event still comes, alone, after ~300 ms.
    client.publish("in/x", "lone");
    let lone = client.next(WAIT).expect("lone batch");
    assert_eq!(records(&lone).len(), 1);
    assert!(ledge.terminate().success());

    // Restart: everything was checkpointed, nothing is delivered again.
    let _ledge = gateway.start();
    assert!(
        client.drain(Duration::from_millis(1500)).is_empty(),
        "a batch was delivered twice"
    );
}

#[test]
fn a_failing_batch_is_retried_whole_then_dead_lettered() {
    let gateway = gateway(
        Module::Fixture("always_fails"),
        "retry_backoff = \"50ms\"\non_failure = \"topic:fails/dlq\"",
    );
    let ledge = gateway.start();
    let client = gateway.client("batch-fail", &["fails/#"]);
    for i in 0..4 {
        client.publish("in/a", format!("f{i}"));
    }
    let got = client.collect(4, WAIT);
    let attempts: Vec<String> = got
        .iter()
        .filter(|m| m.topic == "fails/attempts")
        .map(|m| m.text())
        .collect();
    assert_eq!(attempts, vec!["1", "2", "3"], "{}", ledge.log_text());
    let letter = got
        .iter()
        .find(|m| m.topic == "fails/dlq")
        .expect("dead letter")
        .json();
    assert_eq!(letter["attempts"], 3);
    let batch: serde_json::Value =
        serde_json::from_str(letter["event"]["payload"].as_str().unwrap()).unwrap();
    let payloads: Vec<&str> = batch["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, vec!["f0", "f1", "f2", "f3"]);
    assert!(client.drain(Duration::from_millis(800)).is_empty());
}
