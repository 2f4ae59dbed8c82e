//! A function that feeds itself (publishes to its own trigger) cannot take
//! the gateway from the others: ledge stops the chain after a fixed number
//! of hops, as Lambda does, on the embedded broker and through mosquitto,
//! and `ledge check` warns about it where the topics show it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::Ledge;

const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, broker: &str) -> std::path::PathBuf {
    let text = format!(
        "[device]\nid = \"gw-storm\"\ndata_dir = \"data\"\n[broker]\n{broker}\n{}{}{}{}",
        common::function_toml(
            "storm",
            &common::fixture(dir, "self_feed"),
            "allow_publish = [\"storm/#\"]"
        ),
        common::mqtt_trigger("storm/in", "storm"),
        common::function_toml(
            "good",
            &common::example("echo"),
            "env = { ECHO_TOPIC = \"good/out\" }\nallow_publish = [\"good/out\"]"
        ),
        common::mqtt_trigger("good/in", "good"),
    );
    common::write_config(dir, &text)
}

fn metrics(config: &Path) -> serde_json::Value {
    let output =
        common::process::ledge(&["metrics", "--json", "--config", config.to_str().unwrap()]);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn a_self_feeding_function_is_stopped_and_another_keeps_serving(external: bool) {
    let dir = tempfile::tempdir().unwrap();
    let local = external.then(|| Mosquitto::start(dir.path()));
    let (broker, port) = match &local {
        Some(m) => (format!("url = \"mqtt://127.0.0.1:{}\"", m.port), m.port),
        None => {
            let port = common::free_port();
            (format!("listen = \"127.0.0.1:{port}\""), port)
        }
    };
    let config = config(dir.path(), &broker);

    let check = common::process::ledge(&["check", "--config", config.to_str().unwrap()]);
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("function `storm` may trigger itself")
            && stderr.contains("ledge.toml:10:1:"),
        "{stderr}"
    );

    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(port, "client", &["good/out"]);
    for chain in 0..50 {
        client.publish("storm/in", format!("chain {chain}"));
    }
    for i in 0..75 {
        client.publish("good/in", format!("{i}"));
    }
    assert_eq!(client.collect(75, WAIT).len(), 75, "{}", ledge.log_text());
    // Every chain ends: 50 starts, 16 more runs each at most, then stopped.
    let deadline = Instant::now() + WAIT;
    loop {
        let storm = &metrics(&config)["storm"];
        if storm["loops_stopped"] == 50 {
            assert_eq!(storm["invocations"], 50 * 17, "{storm}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the loops were not stopped: {storm}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it stays quiet: no run after the last stop.
    let before = metrics(&config)["storm"]["invocations"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metrics(&config)["storm"]["invocations"], before);
    ledge.wait_for_log("a recursive loop", WAIT);
    assert!(ledge.terminate().success());
}

#[test]
fn a_self_feeding_function_is_stopped_on_the_embedded_broker() {
    a_self_feeding_function_is_stopped_and_another_keeps_serving(false);
}

#[test]
fn a_self_feeding_function_is_stopped_through_mosquitto() {
    a_self_feeding_function_is_stopped_and_another_keeps_serving(true);
}
