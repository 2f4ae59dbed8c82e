//! Cron schedules through the real binary: a six-field (seconds) expression
//! fires on the seconds it names, in its time zone; jitter delays each run
//! by less than its bound; a restart after missed runs fires exactly one
//! catch-up event with `catch_up = "once"` and none with `"skip"`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::broker::{Message, TestClient};
use crate::common::gateway::{Gateway, Module};
use crate::common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

/// `gateway` running `echo` (publishing on `tick`) on a schedule trigger
/// with `trigger` keys.
fn ticking(gateway: Gateway, trigger: &str) -> Gateway {
    gateway
        .function(
            "echo",
            Module::Example("echo"),
            "env = { ECHO_TOPIC = \"tick\" }\nallow_publish = [\"tick\"]",
        )
        .append(&format!(
            "[[trigger]]\nsource = \"schedule\"\nfunction = \"echo\"\n{trigger}"
        ))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// When the message reached the test client, in UNIX ms.
fn arrived_ms(m: &Message) -> u64 {
    now_ms() - m.received.elapsed().as_millis() as u64
}

fn start(gateway: &Gateway, client_id: &str) -> (Ledge, TestClient) {
    let mut ledge = Ledge::spawn(&gateway.write(), &[]);
    ledge.wait_for_line("running as", WAIT);
    let client = gateway.client(client_id, &["tick"]);
    (ledge, client)
}

/// With an external broker the client subscribes before ledge starts, so
/// it sees the events ledge fires the moment it starts (catch-ups).
fn start_watched(gateway: &Gateway, config: &Path, client_id: &str) -> (Ledge, TestClient) {
    let client = gateway.client(client_id, &["tick"]);
    let mut ledge = Ledge::spawn(config, &[]);
    ledge.wait_for_line("running as", WAIT);
    (ledge, client)
}

#[test]
fn a_seconds_cron_fires_on_the_seconds_it_names_in_its_time_zone() {
    let gateway = ticking(
        Gateway::new("c1"),
        "cron = \"*/2 * * * * *\"\ntimezone = \"+02:00\"",
    );
    let (mut ledge, client) = start(&gateway, "cron-client");
    let ticks = client.collect(4, WAIT);
    assert_eq!(ticks.len(), 4, "{}", ledge.log_text());
    let mut previous = None;
    for tick in &ticks {
        let event = tick.json();
        let at = event["scheduled_at"].as_u64().unwrap();
        assert_eq!(at % 2000, 0, "not on an even second: {event}");
        let arrived = arrived_ms(tick);
        assert!(
            arrived >= at && arrived < at + 1500,
            "scheduled {at}, arrived {arrived}"
        );
        if let Some(previous) = previous {
            assert_eq!(at - previous, 2000, "a run was skipped or doubled");
        }
        previous = Some(at);
        // Local time two hours ahead of UTC, same second.
        let iso = event["scheduled_at_iso"].as_str().unwrap();
        assert!(iso.ends_with("+02:00"), "{iso}");
        let local_hour = (at / 1000 / 3600 + 2) % 24;
        assert_eq!(&iso[11..13], format!("{local_hour:02}"), "{iso}");
        assert_eq!(&iso[17..19], format!("{:02}", at / 1000 % 60), "{iso}");
        assert_eq!(event["cron"], "*/2 * * * * *");
        assert!(event.get("catch_up").is_none(), "{event}");
    }
    assert!(ledge.terminate().success());
}

#[test]
fn jitter_delays_each_run_by_less_than_its_bound() {
    // A cron schedule and an `every` one, both with jitter.
    let gateway = ticking(
        Gateway::new("c2"),
        "cron = \"* * * * * *\"\njitter = \"700ms\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"echo\"\nevery = \"1s\"\njitter = \"400ms\"",
    );
    let (mut ledge, client) = start(&gateway, "jitter-client");
    let (mut ticks, mut rate) = (Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + WAIT;
    while (ticks.len() < 8 || rate.len() < 4) && std::time::Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(500)) {
            if m.json().get("cron").is_some() {
                ticks.push(m);
            } else {
                rate.push(m);
            }
        }
    }
    assert!(ticks.len() >= 8 && rate.len() >= 4, "{}", ledge.log_text());
    let ticks = &ticks[..8];
    for tick in &rate {
        let event = tick.json();
        let delay = arrived_ms(tick) - event["scheduled_at"].as_u64().unwrap();
        assert!(
            delay < 400 + 500,
            "every + jitter: {delay} ms late: {event}"
        );
        assert!(
            event["scheduled_at_iso"].as_str().unwrap().ends_with('Z'),
            "{event}"
        );
        assert_eq!(event["every"], "1s");
    }
    let delays: Vec<u64> = ticks
        .iter()
        .map(|t| arrived_ms(t) - t.json()["scheduled_at"].as_u64().unwrap())
        .collect();
    // Bound 700 ms plus the invocation and the broker hop on a busy box.
    assert!(delays.iter().all(|d| *d < 700 + 500), "{delays:?}");
    // Without jitter every delay would be a few ms; eight draws all under
    // 60 ms of 700 has probability (6/70)^8.
    assert!(delays.iter().any(|d| *d >= 60), "no jitter: {delays:?}");
    let distinct: std::collections::BTreeSet<u64> = ticks
        .iter()
        .map(|t| t.json()["scheduled_at"].as_u64().unwrap())
        .collect();
    assert_eq!(distinct.len(), 8, "a second fired twice");
    assert!(ledge.terminate().success());
}

/// The state file of the one schedule under `<data_dir>/schedules/`.
fn state_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir.join("data/schedules"))
        .expect("schedules state dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "last"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn a_restart_after_missed_runs_catches_up_once_with_once_and_never_with_skip() {
    // A catch-up fires as ledge starts: the watcher must be subscribed
    // before, on a broker that outlives ledge.
    let gateway = ticking(
        Gateway::new("c3").with_mosquitto(),
        "cron = \"*/5 * * * * *\"\ncatch_up = \"once\"",
    );
    let config = gateway.write();
    // First run: one ordinary event, then stop.
    let (mut ledge, client) = start_watched(&gateway, &config, "catchup-1");
    let first = client.next(WAIT).expect("a first run");
    assert!(first.json().get("catch_up").is_none(), "{}", first.text());
    assert!(ledge.terminate().success());
    drop(client);
    let file = state_file(gateway.dir());
    let recorded: u64 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        recorded >= first.json()["scheduled_at"].as_u64().unwrap(),
        "the last run was recorded"
    );

    // "Down" for an hour: 720 runs missed. One catch-up event, for the
    // most recent missed time, then ordinary runs.
    let restart_ms = now_ms();
    std::fs::write(&file, format!("{}\n", restart_ms - 3_600_000)).unwrap();
    let (mut ledge, client) = start_watched(&gateway, &config, "catchup-2");
    let events: Vec<serde_json::Value> = client
        .collect(3, Duration::from_secs(9))
        .iter()
        .map(Message::json)
        .collect();
    let catch_ups: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["catch_up"] == true).collect();
    assert_eq!(catch_ups.len(), 1, "{events:?}");
    let at = catch_ups[0]["scheduled_at"].as_u64().unwrap();
    assert_eq!(at % 5000, 0);
    assert!(
        at <= now_ms() && at + 5000 + 3000 > restart_ms,
        "the most recent missed time: {at} vs restart at {restart_ms}"
    );
    assert_eq!(events[0]["catch_up"], true, "the catch-up comes first");
    assert!(
        events.len() >= 2 && events[1].get("catch_up").is_none(),
        "then ordinary runs: {events:?}"
    );
    ledge.wait_for_log("catching up the run of", WAIT);
    assert!(ledge.terminate().success());
    drop(client);

    // The same schedule with `skip`: an hour "down" fires nothing extra.
    let skip = gateway
        .text()
        .replace("catch_up = \"once\"", "catch_up = \"skip\"");
    std::fs::write(&config, skip).unwrap();
    let restart_ms = now_ms();
    std::fs::write(&file, format!("{}\n", restart_ms - 3_600_000)).unwrap();
    let (mut ledge, client) = start_watched(&gateway, &config, "catchup-3");
    let events: Vec<serde_json::Value> = client
        .collect(2, Duration::from_secs(7))
        .iter()
        .map(Message::json)
        .collect();
    assert!(!events.is_empty(), "ordinary runs continue");
    for event in &events {
        assert!(event.get("catch_up").is_none(), "{event}");
        assert!(
            event["scheduled_at"].as_u64().unwrap() + 1000 >= restart_ms,
            "a missed run fired: {event}"
        );
    }
    assert!(ledge.terminate().success());
    assert!(!ledge.log_text().contains("catching up"));
}
