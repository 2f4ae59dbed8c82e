//! `durable = true`: an event's invocation that a crash interrupts runs
//! again after the restart, and events that had not run yet run then too.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::gateway::{Gateway, Module};
use crate::common::process;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_invocation_interrupted_by_kill_9_runs_again_after_restart() {
    let gateway = Gateway::new("gw-durable")
        .with_persistent_mosquitto()
        .function(
            "slow",
            Module::Fixture("slow_echo"),
            "timeout = \"5s\"\nallow_publish = [\"done\"]",
        )
        .append(
            "[[trigger]]\nsource = \"mqtt\"\ntopic = \"jobs\"\nfunction = \"slow\"\ndurable = true",
        );
    let watcher = gateway.client("watcher", &["done"]);
    let ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    for job in 0..5 {
        producer.publish("jobs", format!("job-{job}"));
    }
    // The first job finishes after 300 ms; the second is then mid-call.
    let first = watcher.next(WAIT).expect("first job done");
    assert_eq!(first.text(), "job-0");
    std::thread::sleep(Duration::from_millis(100));
    process::signal(ledge.pid(), "KILL");
    drop(ledge);

    let mut ledge = gateway.start();
    let log = ledge.log_text();
    assert!(
        log.contains("events from before the restart run again"),
        "{log}"
    );
    // At least once: job-0 may run again too (its confirmation is saved
    // lazily), so collect until jobs 1 to 4 have all been seen.
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + WAIT;
    while (1..5).any(|j| !seen.contains(&format!("job-{j}")))
        && std::time::Instant::now() < deadline
    {
        if let Some(m) = watcher.next(Duration::from_millis(200)) {
            seen.insert(m.text());
        }
    }
    for job in 1..5 {
        assert!(
            seen.contains(&format!("job-{job}")),
            "job-{job} never ran to completion; got {seen:?}"
        );
    }
    assert_eq!(ledge.terminate().code(), Some(0));
    // Everything ran and was confirmed: a restart runs nothing again.
    let mut ledge = gateway.start();
    assert!(
        ledge
            .log_text()
            .contains("0 events from before the restart run again"),
        "{}",
        ledge.log_text()
    );
    assert!(
        watcher.drain(Duration::from_millis(800)).is_empty(),
        "nothing re-runs once confirmed"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}
