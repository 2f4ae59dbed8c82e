//! A function that feeds itself (publishes to its own trigger) cannot take
//! the gateway from the others: ledge stops the chain after a fixed number
//! of hops, as Lambda does, on the embedded broker and through mosquitto,
//! and `ledge check` warns about it where the topics show it.

use std::time::{Duration, Instant};

use crate::common::gateway::{Gateway, Module};

const WAIT: Duration = Duration::from_secs(30);

/// `storm` feeds itself through `storm/in`; `good` echoes `good/in`.
fn storm(gateway: Gateway) -> Gateway {
    gateway
        .function(
            "storm",
            Module::Fixture("self_feed"),
            "allow_publish = [\"storm/#\"]",
        )
        .mqtt_trigger("storm/in", "storm")
        .echo("good", "good/in", "good/out")
}

fn a_self_feeding_function_is_stopped_and_another_keeps_serving(external: bool) {
    let gateway = Gateway::new("gw-storm");
    let gateway = storm(if external {
        gateway.with_mosquitto()
    } else {
        gateway
    });
    gateway.write();

    let check = gateway.cli(&["check"]);
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("function `storm` may trigger itself")
            && stderr.contains("ledge.toml:10:1:"),
        "{stderr}"
    );

    let mut ledge = gateway.start();
    let client = gateway.client("client", &["good/out"]);
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
        let storm = &gateway.metrics()["storm"];
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
    let before = gateway.metrics()["storm"]["invocations"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.metrics()["storm"]["invocations"], before);
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

/// `ledge check` names the function, its trigger and the publish filter
/// that could feed it, says where ledge stops the loop, and still exits 0;
/// a function that publishes elsewhere gets no such warning.
#[test]
fn check_warns_about_a_self_feeding_function_only_where_the_topics_meet() {
    let looping = storm(Gateway::new("gw-check-loop"));
    looping.write();
    let check = looping.cli(&["check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("may trigger itself"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    for part in ["`storm`", "`storm/#`", "`storm/in`", "after 16 hops"] {
        assert!(warning.contains(part), "{part}: {warning}");
    }

    let apart = Gateway::new("gw-check-apart")
        .function(
            "storm",
            Module::Fixture("self_feed"),
            "allow_publish = [\"storm/out/#\", \"alerts/+\"]",
        )
        .mqtt_trigger("storm/in", "storm")
        .mqtt_trigger("storm/in/+", "storm");
    apart.write();
    let check = apart.cli(&["check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(!stderr.contains("may trigger"), "{stderr}");
}
