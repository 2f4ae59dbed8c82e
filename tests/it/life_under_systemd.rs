//! Life under systemd: SIGHUP reloads functions, triggers and sensors
//! without losing an event or running one twice; a bad or restart-only
//! change keeps the running config; readiness, reload, stop and watchdog
//! notifications reach the `NOTIFY_SOCKET`; SIGTERM lets in-flight
//! invocations finish and SIGINT stops cleanly too; ledge starts without
//! its broker and heals when the broker comes and goes.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::broker::{Mosquitto, TestClient};
use crate::common::gateway::{Gateway, Module};
use crate::common::process::{signal, Ledge};

const WAIT: Duration = Duration::from_secs(20);

/// Gateway `reload` on a fresh mosquitto, and its config text before any
/// function: the reloads rewrite the config, so these tests write it.
fn reload_gateway() -> (Gateway, String) {
    let gateway = Gateway::new("reload")
        .with_mosquitto()
        .broker("keep_alive = \"5s\"");
    let header = gateway.text();
    (gateway, header)
}

/// `echo` from `<name>/in` to `<name>/out`.
fn echo(name: &str, extra: &str) -> String {
    common::function_toml(
        name,
        &common::example("echo"),
        &format!(
            "env = {{ ECHO_TOPIC = \"{name}/out\" }}\nallow_publish = [\"{name}/out\"]\n{extra}"
        ),
    ) + &common::mqtt_trigger(&format!("{name}/in"), name)
}

/// `echo` with a durable trigger: events pass through its spool stream.
fn durable_echo(name: &str, extra: &str) -> String {
    echo(name, extra) + "durable = true\n"
}

fn reload(ledge: &mut Ledge, config: &Path, text: &str) -> String {
    std::fs::write(config, text).expect("rewrite config");
    signal(ledge.pid(), "HUP");
    loop {
        let line = ledge.wait_for_line("reload", WAIT);
        if line.contains("reloaded:") || line.contains("reload failed") {
            return line;
        }
    }
}

#[test]
fn sighup_under_load_loses_no_event_and_runs_none_twice() {
    reloads_under_load(echo);
}

#[test]
fn sighup_under_load_with_a_durable_trigger_runs_each_event_once() {
    reloads_under_load(durable_echo);
}

fn reloads_under_load(echo: fn(&str, &str) -> String) {
    let (gateway, header) = reload_gateway();
    let base = header.clone() + &echo("main", "queue_size = 4096");
    let config = common::write_config(gateway.dir(), &base);
    let mut ledge = Ledge::start(&config);
    let client = gateway.client("reload-load", &["main/out"]);

    let n = 3000;
    let publisher = {
        let client = client.client.clone();
        std::thread::spawn(move || {
            // About 1,000 messages a second, so the reloads land mid-stream.
            for i in 0..n {
                client
                    .publish("main/in", rumqttc::QoS::AtLeastOnce, false, format!("{i}"))
                    .expect("publish");
                if i % 10 == 9 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    // Five reloads while the messages flow: another function comes and
    // goes, and the echo function's own settings change.
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        let text = if round % 2 == 0 {
            header.clone()
                + &echo("main", "queue_size = 2048\nmax_concurrency = 2")
                + &echo("side", "")
        } else {
            base.clone()
        };
        let line = reload(&mut ledge, &config, &text);
        assert!(line.contains("reloaded:"), "{line}\n{}", ledge.log_text());
    }
    publisher.join().unwrap();

    let got = client.collect(n, WAIT);
    let extra = client.drain(Duration::from_millis(500));
    let payloads: Vec<String> = got.iter().chain(&extra).map(|m| m.text()).collect();
    let distinct: BTreeSet<u32> = payloads.iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(
        distinct.len(),
        n,
        "lost events across reloads; log:\n{}",
        ledge.log_text()
    );
    assert_eq!(payloads.len(), n, "some events ran twice");
    assert!(ledge.terminate().success());
}

#[test]
fn reload_adds_changes_and_removes_functions_and_triggers() {
    let (gateway, header) = reload_gateway();
    let config = common::write_config(gateway.dir(), &(header.clone() + &echo("main", "")));
    let mut ledge = Ledge::start(&config);
    let client = gateway.client("reload-shape", &["main/out", "side/out"]);

    client.publish("side/in", "before");
    client.publish("main/in", "one");
    let got = client.collect(1, WAIT);
    assert_eq!(got[0].topic, "main/out");
    assert!(
        client.drain(Duration::from_millis(300)).is_empty(),
        "side ran before it existed"
    );

    let line = reload(
        &mut ledge,
        &config,
        &(header.clone() + &echo("main", "") + &echo("side", "")),
    );
    assert!(line.contains("2 of 2 functions enabled"), "{line}");
    // The new trigger's subscription is in place once the broker has it.
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline {
        client.publish("side/in", "after");
        seen = client.collect(1, Duration::from_millis(300));
    }
    assert_eq!(seen.first().map(|m| m.topic.as_str()), Some("side/out"));
    let _ = client.drain(Duration::from_millis(300));

    // `main` goes away: its trigger is unsubscribed, nothing answers.
    let line = reload(&mut ledge, &config, &(header.clone() + &echo("side", "")));
    assert!(line.contains("1 of 1 functions enabled"), "{line}");
    ledge.wait_for_log("unsubscribed from `main/in`", WAIT);
    client.publish("main/in", "gone");
    client.publish("side/in", "still");
    let got = client.collect(1, WAIT);
    assert_eq!(got[0].topic, "side/out");
    assert!(client.drain(Duration::from_millis(500)).is_empty());

    // Metrics of a function that stays carry on across the reload.
    let status =
        common::process::ledge(&["status", "--config", config.to_str().unwrap(), "--json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    let doc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        doc["functions"]["side"]["invocations"].as_u64().unwrap() >= 2,
        "{doc}"
    );
    // The one removed keeps its counts until restart, marked unloaded.
    assert_eq!(doc["functions"]["main"]["loaded"], false, "{doc}");
    assert_eq!(doc["functions"]["main"]["invocations"], 1, "{doc}");
    assert_eq!(doc["functions"]["side"]["loaded"], true, "{doc}");
    assert!(ledge.terminate().success());
}

#[test]
fn a_bad_or_restart_only_change_keeps_the_running_config() {
    let (gateway, header) = reload_gateway();
    let good = header.clone() + &echo("main", "");
    let config = common::write_config(gateway.dir(), &good);
    let mut ledge = Ledge::start(&config);
    let client = gateway.client("reload-bad", &["main/out"]);

    // A typo: the error names file:line:col, and the old config keeps going.
    let line = reload(
        &mut ledge,
        &config,
        &(good.clone() + "[[trigger]]\nsource = \"mqtt\"\ntopic = \"x\"\nfunction = \"nope\"\n"),
    );
    assert!(line.contains("reload failed"), "{line}");
    let expected_location = format!("{}:", config.display());
    let log = ledge.log_text();
    assert!(
        log.contains(&expected_location) && log.contains("nope"),
        "{log}"
    );
    client.publish("main/in", "still served");
    assert_eq!(client.collect(1, WAIT)[0].text(), "still served");

    // A module that does not exist is a config error too.
    let line = reload(
        &mut ledge,
        &config,
        &(header.clone()
            + &echo("main", "")
            + "[[function]]\nname = \"ghost\"\nmodule = \"missing.wasm\"\n"),
    );
    assert!(line.contains("reload failed"), "{line}");

    // The device id takes a restart: refused, named, nothing applied.
    let line = reload(
        &mut ledge,
        &config,
        &(good.replace("id = \"reload\"", "id = \"other\"") + &echo("side", "")),
    );
    assert!(line.contains("[device] changed"), "{line}");
    client.publish("main/in", "after refusal");
    assert_eq!(client.collect(1, WAIT)[0].text(), "after refusal");
    assert!(ledge.terminate().success());
}

/// Reads notifications until one contains `needle`; returns all read.
fn notifications_until(socket: &UnixDatagram, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let done = text.contains(needle);
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
    panic!("no notification containing {needle:?}; got {seen:?}");
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let gateway = Gateway::new("sd").append(&echo("main", ""));
    let socket_path = gateway.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = gateway.write();
    let started = Instant::now();
    let mut ledge = Ledge::spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let seen = notifications_until(&socket, "READY=1");
    assert!(seen.last().unwrap().contains("STATUS=serving"), "{seen:?}");
    assert!(started.elapsed() < WAIT);
    // The keep-alive comes every WATCHDOG_USEC / 2 = 100 ms.
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pings < 5 && Instant::now() < deadline {
        let seen = notifications_until(&socket, "WATCHDOG=1");
        pings += seen.iter().filter(|s| s.contains("WATCHDOG=1")).count();
    }
    assert!(pings >= 5, "{pings} watchdog pings in 5 s");

    signal(ledge.pid(), "HUP");
    let seen = notifications_until(&socket, "RELOADING=1");
    assert!(seen.last().unwrap().contains("MONOTONIC_USEC="), "{seen:?}");
    notifications_until(&socket, "READY=1");

    signal(ledge.pid(), "TERM");
    notifications_until(&socket, "STOPPING=1");
    assert!(ledge.wait(WAIT).success());
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
fn ledge_starts_without_its_broker_and_recovers_when_the_broker_comes_and_goes() {
    let port = common::free_port();
    let gateway = Gateway::new("e2e")
        .broker_at(port)
        .broker("keep_alive = \"5s\"")
        .echo("echo", "echo/in", "echo/out");
    // Start with no broker at all: ledge must keep running and retrying
    // (`Ledge::spawn` does not wait for a subscription).
    let mut ledge = Ledge::spawn(&gateway.write(), &[]);
    ledge.wait_for_line("retrying with backoff", WAIT);
    let mosquitto = Mosquitto::start_on(gateway.dir(), port);
    ledge.wait_for_line("subscribed to 2 trigger filters", WAIT); // its trigger and synchronous invokes
    let client = gateway.client("e2e-client", &["echo/out"]);
    echo_round_trip(&client, "first");
    drop(client);
    // The broker dies and comes back on the same port.
    let port = mosquitto.kill();
    ledge.wait_for_line("retrying with backoff", WAIT);
    let _mosquitto = Mosquitto::start_on(gateway.dir(), port);
    ledge.wait_for_line("subscribed to 2 trigger filters", WAIT); // its trigger and synchronous invokes
    let client = gateway.client("e2e-client-2", &["echo/out"]);
    echo_round_trip(&client, "second");
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn sigterm_lets_in_flight_invocations_finish_then_exits_zero() {
    let gateway = Gateway::new("e2e")
        .function("spin", Module::Fixture("loop"), "timeout = \"700ms\"")
        .mqtt_trigger("spin", "spin");
    let mut ledge = gateway.start();
    let client = gateway.client("e2e-client", &[]);
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
    let gateway = Gateway::new("e2e").echo("echo", "echo/in", "echo/out");
    let mut ledge = gateway.start();
    signal(ledge.pid(), "INT");
    assert_eq!(ledge.wait(WAIT).code(), Some(0));
    assert!(ledge.log_text().contains("SIGINT received"));
}
