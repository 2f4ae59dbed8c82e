//! Lambda's asynchronous-invocation contract: a failed event is retried
//! with backoff, exactly as often as configured; after the last attempt it
//! goes to the failure destination (a dead-letter record synced upstream, a
//! local topic, or dropped and counted); `max_event_age` stops retries.

use std::time::Duration;

use crate::common::broker::collect_v5;
use crate::common::gateway::{Gateway, Module};

const WAIT: Duration = Duration::from_secs(20);

/// Gateway `gw1` on a fresh mosquitto, running fixture `fixture` as
/// function `name` on `topic`.
fn gateway(name: &str, fixture: &'static str, topic: &str, extra: &str) -> Gateway {
    Gateway::new("gw1")
        .with_mosquitto()
        .broker("keep_alive = \"5s\"")
        .function(name, Module::Fixture(fixture), extra)
        .mqtt_trigger(topic, name)
}

#[test]
fn an_event_that_fails_twice_runs_exactly_three_times_and_succeeds_once() {
    let gateway = gateway(
        "flaky",
        "flaky",
        "flaky/in",
        "retry_backoff = \"50ms\"\nallow_publish = [\"flaky/#\"]",
    );
    let mut ledge = gateway.start();
    let client = gateway.client("retry-client", &["flaky/ok", "flaky/attempts"]);
    let events = 5;
    for i in 0..events {
        client.publish("flaky/in", format!("event-{i}"));
    }
    let got = client.collect(events * 4, WAIT);
    let _ = client.drain(Duration::from_millis(500));
    let attempts: Vec<String> = got
        .iter()
        .filter(|m| m.topic == "flaky/attempts")
        .map(|m| m.text())
        .collect();
    let ok: Vec<String> = got
        .iter()
        .filter(|m| m.topic == "flaky/ok")
        .map(|m| m.text())
        .collect();
    assert_eq!(
        attempts.len(),
        events * 3,
        "{attempts:?}\n{}",
        ledge.log_text()
    );
    for n in ["1", "2", "3"] {
        assert_eq!(
            attempts.iter().filter(|a| *a == n).count(),
            events,
            "{attempts:?}"
        );
    }
    let mut ok_sorted = ok.clone();
    ok_sorted.sort();
    let expected: Vec<String> = (0..events).map(|i| format!("event-{i}")).collect();
    assert_eq!(ok_sorted, expected);

    let doc = gateway.status();
    let flaky = &doc["functions"]["flaky"];
    assert_eq!(flaky["invocations"], (events * 3) as u64, "{doc}");
    assert_eq!(flaky["errors"], (events * 2) as u64, "{doc}");
    assert_eq!(flaky["retries"], (events * 2) as u64, "{doc}");
    assert_eq!(flaky["dead_letters"], 0, "{doc}");
    ledge.wait_for_log("attempt 2 of 3 failed; retry in 100ms", WAIT);
    assert!(ledge.terminate().success());
}

#[test]
fn an_event_that_always_fails_lands_in_the_dead_letter_queue_upstream() {
    let gateway = gateway(
        "fails",
        "always_fails",
        "fails/in",
        "retry_backoff = \"50ms\"\nallow_publish = [\"fails/#\"]",
    );
    // Its mosquitto is its upstream too.
    let gateway = gateway.upstream_on_local();
    let mut ledge = gateway.start();
    let client = gateway.client("dlq-client", &["fails/attempts"]);
    client.publish("fails/in", "{\"value\":31.5}");
    client.publish("fails/in", vec![0xff, 0x00, 0x01]);

    let letters = collect_v5(gateway.port, "ledge/gw1/dlq/#", 2, WAIT);
    assert_eq!(letters.len(), 2, "log:\n{}", ledge.log_text());
    let mut payloads = Vec::new();
    for letter in &letters {
        assert_eq!(letter.0, "ledge/gw1/dlq/fails");
        let doc: serde_json::Value = serde_json::from_slice(&letter.1).unwrap();
        assert_eq!(doc["function"], "fails");
        assert_eq!(doc["version"], "$LATEST");
        assert_eq!(doc["attempts"], 3);
        assert_eq!(doc["error_kind"], "handler_error");
        assert!(
            doc["error"].as_str().unwrap().contains("sensor offline"),
            "{doc}"
        );
        assert_eq!(doc["device"], "gw1");
        assert_eq!(doc["event"]["source"], "mqtt");
        assert_eq!(doc["event"]["subject"], "fails/in");
        assert_eq!(doc["request_id"].as_str().unwrap().len(), 16);
        payloads.push(
            doc["event"]["payload"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    format!("hex:{}", doc["event"]["payload_hex"].as_str().unwrap())
                }),
        );
    }
    payloads.sort();
    assert_eq!(
        payloads,
        vec!["hex:ff0001".to_owned(), "{\"value\":31.5}".to_owned()]
    );
    // Three attempts per event, no more.
    let attempts = client.drain(Duration::from_millis(800));
    assert_eq!(
        attempts.len(),
        6,
        "{:?}",
        attempts.iter().map(|m| m.text()).collect::<Vec<_>>()
    );

    let doc = gateway.status();
    assert_eq!(doc["functions"]["fails"]["dead_letters"], 2, "{doc}");
    assert_eq!(doc["functions"]["fails"]["dead_letter_errors"], 0, "{doc}");
    ledge.wait_for_log("failed 3 attempts; dead-letter record", WAIT);
    assert!(ledge.terminate().success());
}

#[test]
fn max_event_age_stops_retries_and_a_topic_destination_gets_the_dead_letter() {
    let gateway = gateway(
        "fails",
        "always_fails",
        "fails/in",
        "retry_backoff = \"300ms\"\nmax_event_age = \"100ms\"\non_failure = \"topic:failures/fails\"\nallow_publish = [\"fails/#\"]",
    );
    let ledge = gateway.start();
    let client = gateway.client("age-client", &["fails/attempts", "failures/#"]);
    client.publish("fails/in", "old news");
    let got = client.collect(2, WAIT);
    let _ = client.drain(Duration::from_millis(800));
    let attempts: Vec<_> = got.iter().filter(|m| m.topic == "fails/attempts").collect();
    assert_eq!(attempts.len(), 1, "retried despite max_event_age");
    let letter = got
        .iter()
        .find(|m| m.topic == "failures/fails")
        .unwrap_or_else(|| panic!("no dead letter; log:\n{}", ledge.log_text()));
    let doc = letter.json();
    assert_eq!(doc["attempts"], 1);
    assert_eq!(doc["event"]["payload"], "old news");
    assert!(
        ledge.log_text().contains("not retried: the event is"),
        "{}",
        ledge.log_text()
    );
}

#[test]
fn without_retries_a_failure_is_final_and_without_upstream_the_dead_letter_is_logged() {
    let gateway = gateway(
        "fails",
        "always_fails",
        "fails/in",
        "retries = 0\nallow_publish = [\"fails/#\"]",
    );
    let mut ledge = gateway.start();
    let client = gateway.client("noretry-client", &["fails/attempts"]);
    client.publish("fails/in", "once");
    let line = ledge.wait_for_line("failure destination refused it", WAIT);
    assert!(
        line.contains("no [upstream]") && line.contains("\"payload\":\"once\""),
        "{line}"
    );
    assert_eq!(client.drain(Duration::from_millis(500)).len(), 1);
    let doc = gateway.status();
    assert_eq!(doc["functions"]["fails"]["dead_letter_errors"], 1, "{doc}");
}

#[test]
fn a_permanent_failure_is_not_retried_and_says_why() {
    let gateway = gateway(
        "perm",
        "permanent",
        "perm/in",
        "retries = 2\nretry_backoff = \"20ms\"\non_failure = \"drop\"\nallow_publish = [\"perm/#\"]",
    );
    let mut ledge = gateway.start();
    let client = gateway.client("perm-client", &["perm/attempts"]);
    client.publish("perm/in", "garbage");
    ledge.wait_for_log(
        "not retried: the function reported a permanent failure",
        WAIT,
    );
    // One attempt only, however long we wait for the retries it would get.
    assert_eq!(client.drain(Duration::from_millis(800)).len(), 1);
    let doc = gateway.status();
    let perm = &doc["functions"]["perm"];
    assert_eq!(
        (perm["invocations"].clone(), perm["retries"].clone()),
        (1.into(), 0.into()),
        "{doc}"
    );
    assert_eq!(perm["dead_letters"], 1, "{doc}");
}
