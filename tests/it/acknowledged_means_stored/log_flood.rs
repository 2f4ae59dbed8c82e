//! A guest's log flood never displaces accepted events: logs and metrics
//! go to their own spool stream with its own share of `max_bytes`, so when
//! it is full only logs and metrics are dropped, and the uplink drains the
//! events first. Real mosquitto upstream, the real binary, a hostile wasm
//! guest, a spool far smaller than the flood.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::broker::{DurableSubscriber, Mosquitto};
use crate::common::gateway::{Gateway, Module};
use crate::common::{self, process};

const WAIT: Duration = Duration::from_secs(90);

/// The newest seq in a spool stream, read with `ledge spool stat`.
fn newest_seq(config: &Path, stream: &str) -> u64 {
    let output = process::ledge(&[
        "spool",
        "stat",
        "--config",
        config.to_str().unwrap(),
        "--stream",
        stream,
    ]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("seqs      "))
        .and_then(|range| range.split("..=").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_log_flood_never_evicts_acknowledged_forwards() {
    let gateway = Gateway::new("gw-flood");
    let upstream_port = common::free_port();
    let upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let backend = DurableSubscriber::connect(upstream_port, "backend", "ledge/gw-flood/#");
    upstream.stop();

    let gateway = gateway
        .upstream_at(upstream_port)
        .upstream("keep_alive = \"5s\"")
        .append("[spool]\nsegment_size = \"64KiB\"\nmax_bytes = \"512KiB\"\n[[forward]]\ntopic = \"data/#\"")
        .function(
            "flood",
            Module::Fixture("deny_flood"),
            "allow_publish = [\"flood/done\"]\ntimeout = \"60s\"",
        )
        .mqtt_trigger("flood/go", "flood");
    let ledge = gateway.start();
    let config = gateway.config();
    let producer = gateway.client("producer", &["flood/done"]);

    // 2,000 forwards, stored (durable) while upstream is down.
    let n = 2000u64;
    for id in 0..n {
        producer.publish("data/x", format!("id:{id}"));
    }
    let deadline = Instant::now() + WAIT;
    while newest_seq(&config, "uplink") < n {
        assert!(
            Instant::now() < deadline,
            "the forwards were never stored (at {})",
            newest_seq(&config, "uplink")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Eight invocations of 100,000 refused publishes each. The per-function
    // log caps let a few hundred lines a second through, over the seconds
    // this takes still a few times the telemetry stream's 64 KiB share.
    for round in 1..=8 {
        producer.publish("flood/go", "");
        assert!(
            producer.next(WAIT).is_some_and(|m| m.topic == "flood/done"),
            "flood {round} did not finish; log tail:\n{}",
            ledge
                .log_text()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let _upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let events = "ledge/gw-flood/events/data/x";
    let mut ids = BTreeSet::new();
    let got = backend.collect_until(WAIT, |m| {
        if m.topic == events {
            let text = m.text();
            let id = text
                .strip_prefix("id:")
                .and_then(|id| id.parse::<u64>().ok());
            ids.insert(id.unwrap_or_else(|| panic!("corrupt payload {text:?}")));
        }
        ids.len() as u64 >= n
    });
    assert_eq!(
        ids.len() as u64,
        n,
        "{} of {n} acknowledged forwards reached upstream",
        ids.len()
    );
    assert_eq!(ids, (0..n).collect::<BTreeSet<_>>());
    // The events went first: no log batch overtook them (the retained
    // online status comes with the connection, before any record).
    let online = "ledge/gw-flood/status";
    assert!(
        got.iter().all(|m| m.topic == events || m.topic == online),
        "telemetry went before the events: {:?}",
        got.iter()
            .find(|m| m.topic != events && m.topic != online)
            .map(|m| &m.topic)
    );
    // Then the logs that survived the flood follow.
    let logs = backend.collect_until(WAIT, |m| m.topic == "ledge/gw-flood/logs");
    assert!(
        logs.last()
            .is_some_and(|m| m.topic == "ledge/gw-flood/logs"),
        "no log batch after the events"
    );

    // The flood really overflowed the telemetry stream (even after the
    // per-function log caps cut 200,000 refusals down to a few hundred
    // lines), and cost only logs.
    let doc = gateway.status();
    let telemetry = &doc["telemetry_spool"];
    let lost =
        telemetry["dropped"].as_u64().unwrap_or(0) + telemetry["rejected"].as_u64().unwrap_or(0);
    assert!(
        lost > 0,
        "the telemetry stream never overflowed: {telemetry}"
    );
    assert_eq!(doc["spool"]["dropped"], 0, "{}", doc["spool"]);
    assert_eq!(doc["spool"]["rejected"], 0, "{}", doc["spool"]);
}
