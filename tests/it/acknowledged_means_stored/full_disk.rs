//! A full disk: the spool's file system runs out of space (a real 1 MiB
//! tmpfs mounted by the test). ledge keeps running, the on_full policy
//! applies, nothing is corrupted, and it recovers by itself once upstream
//! drains the spool. Under `drop_oldest` every event ledge received is
//! delivered or counted as dropped; under `reject` nothing acknowledged is
//! lost at all: a forward the spool refuses holds its acknowledgement back
//! (the publisher keeps the message) and is stored once there is room.
//!
//! Mounting needs root (CI and tests/run.sh run as root). Without it this
//! test fails and says so rather than pretending: a directory size limit
//! cannot be faked without a real file system that returns ENOSPC.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::broker::{DurableSubscriber, Mosquitto};
use crate::common::disk::SmallDisk;
use crate::common::gateway::Gateway;

const WAIT: Duration = Duration::from_secs(60);

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["spool"][name].as_u64().unwrap_or(0)
}

fn fill_the_disk_then_drain(on_full: &str) {
    let gateway = Gateway::new("gw-full");
    let upstream_port = common::free_port();
    let small = gateway.dir().join("small");
    let gateway = gateway
        .data_dir(&small)
        .upstream_at(upstream_port)
        .upstream("logs = \"off\"")
        .append(&format!(
            "[spool]\nsegment_size = \"64KiB\"\nmax_bytes = \"64MiB\"\non_full = \"{on_full}\"\nfsync = \"batch\"\n\
             [[forward]]\ntopic = \"data/#\""
        ));
    // Unmounted before the gateway's folder goes.
    let _disk = SmallDisk::mount(&small, "1m");
    let upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let backend = DurableSubscriber::connect(upstream_port, "backend", "ledge/+/events/#");
    upstream.stop();

    let mut ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    let n: u64 = 1800; // ~1.9 MiB of records into a 1 MiB file system
                       // Under reject the producer is held back once its in-flight window is
                       // full of unacknowledged messages: it publishes on its own thread.
    let publishing = {
        let client = producer.client.clone();
        std::thread::spawn(move || {
            for id in 0..n {
                client
                    .publish(
                        "data/full",
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        format!("{id:06}:{}", "x".repeat(1000)),
                    )
                    .expect("publish");
                if id % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    ledge.wait_for_line("No space left on device", WAIT);
    // Wait until ledge has taken all it can: every message stored or
    // refused (drop_oldest), or the rest held back (reject).
    let deadline = Instant::now() + WAIT;
    let mut last = (0, Instant::now());
    loop {
        let s = gateway.status();
        let taken = counter(&s, "appended")
            + if on_full == "reject" {
                0
            } else {
                counter(&s, "rejected")
            };
        if taken != last.0 {
            last = (taken, Instant::now());
        }
        if taken >= n || last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = gateway.status();
    assert_eq!(s["spool"]["disk_full"], true, "{s}");
    assert!(
        s["spool"]["failed"].is_null(),
        "a full disk must not fail the spool: {s}"
    );

    // Upstream returns: the spool drains, space comes back, ledge resumes.
    let _upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let mut delivered = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let s = gateway.status();
        let taken = counter(&s, "appended") + counter(&s, "rejected");
        let settled = (taken >= n || on_full == "reject" && counter(&s, "appended") >= n)
            && s["uplink"]["lag_records"] == 0
            && !s["spool"]["disk_full"].as_bool().unwrap_or(true);
        let before = delivered.len();
        for m in backend.collect_until(Duration::from_millis(300), |_| false) {
            let id: u64 = m.text()[..6].parse().expect("intact payload");
            delivered.insert(id);
        }
        if settled && delivered.len() == before {
            break;
        }
    }
    publishing.join().expect("publisher");
    let s = gateway.status();
    let (dropped, rejected) = (counter(&s, "dropped"), counter(&s, "rejected"));
    assert!(dropped + rejected > 0, "the disk did fill: {s}");
    let missing = n - delivered.len() as u64;
    if on_full == "drop_oldest" {
        assert!(
            missing <= dropped,
            "{missing} of {n} missing but only {dropped} dropped were counted"
        );
        assert!(delivered.contains(&(n - 1)), "drop_oldest keeps the newest");
    } else {
        // Refused appends held their acknowledgements: nothing is lost.
        assert_eq!(missing, 0, "refused forwards were lost: {s}");
    }
    // New events are accepted again once space is back.
    producer.publish("data/full", format!("{n:06}:after"));
    let after = backend.collect_until(WAIT, |m| m.text().starts_with(&format!("{n:06}:")));
    assert!(
        after.iter().any(|m| m.text() == format!("{n:06}:after")),
        "ledge did not recover: {}\nlog tail:\n{}",
        gateway.status(),
        ledge
            .log_text()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(ledge.terminate().code(), Some(0));
    let verify = gateway.cli(&["spool", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_full_disk_under_drop_oldest_keeps_the_newest_and_counts_the_rest() {
    fill_the_disk_then_drain("drop_oldest");
}

#[test]
fn a_full_disk_under_reject_refuses_then_recovers_when_space_returns() {
    fill_the_disk_then_drain("reject");
}
