//! The real binary, driven over MQTT: readings in, alerts out, through the
//! embedded broker and through Debian's mosquitto; misbehaving functions
//! fail alone; broker outages heal; shutdown is clean.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

/// Config text for a broker section.
fn embedded(port: u16) -> String {
    format!("[device]\nid = \"e2e\"\ndata_dir = \"data\"\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{port}\"\n")
}

fn external(port: u16) -> String {
    format!("[device]\nid = \"e2e\"\ndata_dir = \"data\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n")
}

fn threshold_alert(queue: usize) -> String {
    let module = common::example("threshold-alert");
    let f = common::function_toml(
        "threshold-alert",
        &module,
        &format!(
            "queue_size = {queue}\nenv = {{ THRESHOLD = \"30\" }}\nallow_publish = [\"alerts/#\"]"
        ),
    );
    f + &common::mqtt_trigger("sensors/+/reading", "threshold-alert")
}

fn echo() -> String {
    let module = common::example("echo");
    common::function_toml(
        "echo",
        &module,
        "env = { ECHO_TOPIC = \"echo/out\" }\nallow_publish = [\"echo/out\"]",
    ) + &common::mqtt_trigger("echo/in", "echo")
}

/// Publishes `n` readings (half over the threshold) and checks that exactly
/// the ones over it come back as alerts with the right content.
fn n_readings_give_exactly_the_alerts(port: u16, ledge: &Ledge) {
    let client = TestClient::connect(port, "e2e-client", &["alerts/#"]);
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
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = common::write_config(dir.path(), &(embedded(port) + &threshold_alert(10_000)));
    let ledge = Ledge::start(&config);
    n_readings_give_exactly_the_alerts(port, &ledge);
}

#[test]
fn readings_through_mosquitto_give_exactly_the_expected_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = common::write_config(
        dir.path(),
        &(external(mosquitto.port) + &threshold_alert(10_000)),
    );
    let ledge = Ledge::start(&config);
    n_readings_give_exactly_the_alerts(mosquitto.port, &ledge);
}

/// Round trips one echo message and returns its latency.
fn echo_round_trip(client: &TestClient, payload: &str) -> Duration {
    let sent = Instant::now();
    client.publish("echo/in", payload);
    let reply = client.next(WAIT).expect("echo reply");
    assert_eq!(reply.topic, "echo/out");
    assert_eq!(reply.text(), payload);
    reply.received - sent
}

#[test]
fn a_runaway_function_times_out_while_another_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let spin = common::fixture(dir.path(), "loop");
    let text = embedded(port)
        + &common::function_toml("spin", &spin, "timeout = \"100ms\"\nqueue_size = 100")
        + &common::mqtt_trigger("spin", "spin")
        + &echo();
    let mut ledge = Ledge::start(&common::write_config(dir.path(), &text));
    let client = TestClient::connect(port, "e2e-client", &["echo/out"]);
    let baseline: Vec<Duration> = (0..10)
        .map(|i| echo_round_trip(&client, &format!("b{i}")))
        .collect();
    // 20 runaway invocations queue up: 2 s of timeouts for the spin worker.
    for _ in 0..20 {
        client.publish("spin", "x");
    }
    ledge.wait_for_line("spin", WAIT);
    let during: Vec<Duration> = (0..30)
        .map(|i| echo_round_trip(&client, &format!("d{i}")))
        .collect();
    ledge.wait_for_line("failed (timeout) after", WAIT);
    let worst = *during.iter().max().unwrap();
    // Not a speed target: a starved echo would wait behind ~2 s of runaway
    // invocations; a served one answers in milliseconds.
    assert!(
        worst < Duration::from_millis(500),
        "echo took {worst:?} while spin ran (baseline worst {:?})",
        baseline.iter().max().unwrap()
    );
}

#[test]
fn memory_bombs_traps_and_forbidden_publishes_fail_only_their_own_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = embedded(port)
        + &common::function_toml(
            "bomb",
            &common::fixture(dir.path(), "bomb"),
            "memory = \"1MiB\"",
        )
        + &common::mqtt_trigger("bad/bomb", "bomb")
        + &common::function_toml("trap", &common::fixture(dir.path(), "trap"), "")
        + &common::mqtt_trigger("bad/trap", "trap")
        + &common::function_toml(
            "snoop",
            &common::fixture(dir.path(), "forbidden_publish"),
            "allow_publish = [\"alerts/#\"]",
        )
        + &common::mqtt_trigger("bad/snoop", "snoop")
        + &echo();
    let mut ledge = Ledge::start(&common::write_config(dir.path(), &text));
    let watcher = TestClient::connect(port, "e2e-watch", &["secret/#", "alerts/#"]);
    let client = TestClient::connect(port, "e2e-client", &["echo/out"]);
    for topic in ["bad/bomb", "bad/trap", "bad/snoop", "bad/bomb", "bad/trap"] {
        client.publish(topic, "x");
        echo_round_trip(&client, topic);
    }
    ledge.wait_for_line("failed (memory_limit)", WAIT);
    ledge.wait_for_line("failed (trap)", WAIT);
    let seen = watcher.drain(Duration::from_millis(500));
    let topics: Vec<&str> = seen.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec!["alerts/ok"],
        "only the allowed publish goes out"
    );
    let log = ledge.log_text();
    assert!(
        log.contains("publish to `secret/x` denied: not in allow_publish"),
        "{log}"
    );
    assert!(
        log.contains("memory limit of 1048576 bytes exceeded"),
        "{log}"
    );
}

#[test]
fn a_module_that_fails_to_load_disables_only_its_function() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = embedded(port)
        + &common::function_toml("ghost", Path::new("missing.wasm"), "")
        + &common::mqtt_trigger("ghost", "ghost")
        + &echo();
    let ledge = Ledge::start(&common::write_config(dir.path(), &text));
    let client = TestClient::connect(port, "e2e-client", &["echo/out"]);
    client.publish("ghost", "x");
    echo_round_trip(&client, "still here");
    let log = ledge.log_text();
    assert!(
        log.contains("ledge.toml:9:10: function `ghost`: module")
            && log.contains("missing.wasm does not exist; function `ghost` is disabled"),
        "{log}"
    );
    assert!(
        log.contains("3 of 4 functions enabled") || log.contains("1 of 2 functions enabled"),
        "{log}"
    );
}

#[test]
fn oversized_payloads_are_rejected_and_non_json_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = embedded(port).replace("[broker]\n", "[broker]\nmax_payload = \"1KiB\"\n") + &echo();
    let mut ledge = Ledge::start(&common::write_config(dir.path(), &text));
    let client = TestClient::connect(port, "e2e-client", &["echo/out"]);
    client.publish("echo/in", vec![b'x'; 2048]);
    ledge.wait_for_line(
        "rejected: 2048 bytes is over max_payload (1024 bytes)",
        WAIT,
    );
    let binary = vec![0u8, 0xff, 0xfe, b'{', 0x80];
    client.publish("echo/in", binary.clone());
    let reply = client.next(WAIT).expect("echo of binary payload");
    assert_eq!(reply.payload, binary, "bytes pass through untouched");
    assert!(
        client.drain(Duration::from_millis(300)).is_empty(),
        "the oversized one never ran"
    );
}

#[test]
fn ledge_starts_without_its_broker_and_recovers_when_the_broker_comes_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = common::write_config(dir.path(), &(external(port) + &echo()));
    // Start with no broker at all: ledge must keep running and retrying.
    let mut ledge = LedgeNoWait::start(&config);
    ledge.0.wait_for_line("retrying with backoff", WAIT);
    let mosquitto = Mosquitto::start_on(dir.path(), port);
    ledge
        .0
        .wait_for_line("subscribed to 2 trigger filters", WAIT); // its trigger and synchronous invokes
    let client = TestClient::connect(port, "e2e-client", &["echo/out"]);
    echo_round_trip(&client, "first");
    drop(client);
    // The broker dies and comes back on the same port.
    let port = mosquitto.kill();
    ledge.0.wait_for_line("retrying with backoff", WAIT);
    let _mosquitto = Mosquitto::start_on(dir.path(), port);
    ledge
        .0
        .wait_for_line("subscribed to 2 trigger filters", WAIT); // its trigger and synchronous invokes
    let client = TestClient::connect(port, "e2e-client-2", &["echo/out"]);
    echo_round_trip(&client, "second");
    assert_eq!(ledge.0.terminate().code(), Some(0));
}

/// `Ledge::start` waits for the subscription; this starts without waiting.
struct LedgeNoWait(Ledge);

impl LedgeNoWait {
    fn start(config: &Path) -> Self {
        Self(Ledge::spawn(config, &[]))
    }
}

#[test]
fn sigterm_lets_in_flight_invocations_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let spin = common::fixture(dir.path(), "loop");
    let text = embedded(port)
        + &common::function_toml("spin", &spin, "timeout = \"700ms\"")
        + &common::mqtt_trigger("spin", "spin");
    let mut ledge = Ledge::start(&common::write_config(dir.path(), &text));
    let client = TestClient::connect(port, "e2e-client", &[]);
    client.publish("spin", "x");
    std::thread::sleep(Duration::from_millis(200));
    let status = ledge.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", ledge.log_text());
    let log = ledge.log_text();
    let timed_out = log
        .find("failed (timeout) after")
        .expect("in-flight call finished");
    let stopped = log.find("ledge::node: stopped").expect("clean stop");
    assert!(timed_out < stopped, "{log}");
    assert!(
        log.contains("spin: 1 invocations, 1 errors (1 timeouts)"),
        "{log}"
    );
}

#[test]
fn sigint_stops_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut ledge = Ledge::start(&common::write_config(
        dir.path(),
        &(embedded(port) + &echo()),
    ));
    common::process::signal(ledge.pid(), "INT");
    assert_eq!(ledge.wait(WAIT).code(), Some(0));
    assert!(ledge.log_text().contains("SIGINT received"));
}

#[test]
fn a_taken_broker_port_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = common::write_config(dir.path(), &(embedded(port) + &echo()));
    let output = common::process::ledge(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("another MQTT broker"),
        "{stderr}"
    );
}
