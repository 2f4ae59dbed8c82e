//! Synchronous invocations over the local broker: a request envelope on
//! `ledge/<device>/invoke/<function>` gets one response on its `reply_to`,
//! with status, response or error, duration and request id; beyond
//! capacity the answer is an immediate `throttled`; `ledge invoke --remote`
//! is the same round trip from the command line.

use std::time::Duration;

use crate::common::broker::TestClient;
use crate::common::gateway::{Gateway, Module};
use crate::common::process;

const WAIT: Duration = Duration::from_secs(20);

/// Gateway `gw7` with `echo`, `fails` (always) and `slow` (300 ms a call,
/// one at a time, one more queued), on the embedded broker or a fresh
/// mosquitto.
fn gateway(embedded: bool) -> Gateway {
    let gateway = Gateway::new("gw7");
    let gateway = if embedded {
        gateway
    } else {
        gateway.with_mosquitto()
    };
    gateway
        .function("echo", Module::Example("echo"), "")
        .function(
            "fails",
            Module::Fixture("always_fails"),
            "allow_publish = [\"fails/#\"]",
        )
        .function(
            "slow",
            Module::Fixture("slow_echo"),
            "max_concurrency = 1\nqueue_size = 1\nallow_publish = [\"done\"]",
        )
}

fn request(client: &TestClient, function: &str, envelope: serde_json::Value) {
    client.publish(
        &format!("ledge/gw7/invoke/{function}"),
        envelope.to_string(),
    );
}

#[test]
fn a_request_gets_exactly_one_response_with_status_and_request_id() {
    let gateway = gateway(true);
    let ledge = gateway.start();
    let client = gateway.client("sync-client", &["replies/#"]);

    request(
        &client,
        "echo",
        serde_json::json!({"reply_to": "replies/a", "correlation_id": "c-1", "payload": {"value": 31.5}}),
    );
    let reply = client.next(WAIT).expect("reply").json();
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["correlation_id"], "c-1");
    assert_eq!(reply["function"], "echo");
    assert_eq!(reply["response"], "{\"value\":31.5}");
    assert_eq!(reply["request_id"].as_str().unwrap().len(), 16);
    assert!(reply["duration_ms"].as_f64().unwrap() >= 0.0);

    // A failing function: the error, once, and no retries for a sync call.
    request(
        &client,
        "fails",
        serde_json::json!({"reply_to": "replies/b", "correlation_id": 2, "payload": "x"}),
    );
    let reply = client.next(WAIT).expect("reply").json();
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["error_kind"], "handler_error");
    assert!(reply["error"].as_str().unwrap().contains("sensor offline"));
    assert_eq!(reply["correlation_id"], "2");

    request(
        &client,
        "nope",
        serde_json::json!({"reply_to": "replies/c", "payload": ""}),
    );
    let reply = client.next(WAIT).expect("reply").json();
    assert_eq!(reply["status"], "not_found", "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("echo"), "{reply}");
    assert!(
        client.drain(Duration::from_millis(1500)).is_empty(),
        "a reply came twice, or a retry ran"
    );

    let doc = gateway.status();
    assert_eq!(doc["functions"]["fails"]["invocations"], 1, "{doc}");
    assert_eq!(doc["functions"]["fails"]["retries"], 0, "{doc}");
    drop(ledge);
}

#[test]
fn requests_beyond_capacity_are_throttled_at_once() {
    let gateway = gateway(false);
    let mut ledge = gateway.start();
    // With an external broker, requests come in on the MQTT 5 invoke link.
    ledge.wait_for_log(
        "trigger filters (triggers, forwards and synchronous invokes)",
        WAIT,
    );
    let client = gateway.client("throttle-client", &["replies/#"]);
    // `slow` runs one call at a time (300 ms) and queues one more: the first
    // request runs; of the five sent while it does, one waits and four are
    // refused at once.
    for i in 0..6 {
        if i == 1 {
            std::thread::sleep(Duration::from_millis(100));
        }
        request(
            &client,
            "slow",
            serde_json::json!({"reply_to": format!("replies/{i}"), "correlation_id": i, "payload": "p"}),
        );
    }
    let replies: Vec<serde_json::Value> =
        client.collect(6, WAIT).iter().map(|m| m.json()).collect();
    assert_eq!(replies.len(), 6);
    let throttled: Vec<_> = replies
        .iter()
        .filter(|r| r["status"] == "throttled")
        .collect();
    let ok: Vec<_> = replies.iter().filter(|r| r["status"] == "ok").collect();
    assert_eq!((ok.len(), throttled.len()), (2, 4), "{replies:?}");
    // The refusals come before either call finishes.
    let first_four: Vec<&str> = replies[..4]
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(first_four.iter().all(|s| *s == "throttled"), "{replies:?}");
    let doc = gateway.status();
    assert_eq!(doc["functions"]["slow"]["throttled"], 4, "{doc}");
}

#[test]
fn ledge_invoke_remote_round_trips_through_the_running_ledge() {
    let gateway = gateway(true);
    let _ledge = gateway.start();
    let config = gateway.config();
    let config = config.to_str().unwrap();

    let output = process::ledge(&[
        "invoke", "echo", "--remote", "--config", config, "--event", "hello",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("status    ok") && stdout.contains("response  hello"),
        "{stdout}"
    );

    let output = process::ledge(&["invoke", "fails", "--remote", "--json", "--config", config]);
    assert_eq!(output.status.code(), Some(1));
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["status"], "error");

    let output = process::ledge(&["invoke", "ghost", "--remote", "--config", config]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_mqtt5_request_is_answered_on_its_response_topic_with_its_correlation_data() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions};

    let gateway = gateway(false);
    let mut ledge = gateway.start();
    ledge.wait_for_log(
        "trigger filters (triggers, forwards and synchronous invokes)",
        WAIT,
    );

    let (client, mut connection) = Client::new(
        MqttOptions::new("v5-requester", "127.0.0.1", gateway.port),
        16,
    );
    client.subscribe("v5/replies", QoS::AtLeastOnce).unwrap();
    let mut sent = false;
    let deadline = std::time::Instant::now() + WAIT;
    let reply = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no MQTT 5 reply; log:\n{}",
            ledge.log_text()
        );
        match connection.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !sent => {
                sent = true;
                let properties = PublishProperties {
                    response_topic: Some("v5/replies".into()),
                    correlation_data: Some(bytes::Bytes::from_static(b"\x00corr-9")),
                    ..Default::default()
                };
                client
                    .publish_with_properties(
                        "ledge/gw7/invoke/echo",
                        QoS::AtLeastOnce,
                        false,
                        "raw payload",
                        properties,
                    )
                    .unwrap();
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => break p,
            _ => {}
        }
    };
    let properties = reply.properties.expect("reply properties");
    assert_eq!(
        properties.correlation_data.as_deref(),
        Some(&b"\x00corr-9"[..])
    );
    let doc: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(doc["status"], "ok", "{doc}");
    // No envelope: the request's payload is the event as is.
    assert_eq!(doc["response"], "raw payload");

    // An MQTT 3.1.1 client on the same broker still uses the envelope.
    let v3 = gateway.client("v3-requester", &["v3/replies"]);
    request(
        &v3,
        "echo",
        serde_json::json!({"reply_to": "v3/replies", "correlation_id": "x", "payload": "env"}),
    );
    let doc = v3.next(WAIT).expect("envelope reply").json();
    assert_eq!(
        (doc["status"].as_str(), doc["response"].as_str()),
        (Some("ok"), Some("env"))
    );
}
