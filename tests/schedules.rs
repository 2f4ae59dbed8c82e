//! Cron schedules through the real binary: a six-field (seconds) expression
//! fires on the seconds it names, in its time zone; jitter delays each run
//! by less than its bound; a restart after missed runs fires exactly one
//! catch-up event with `catch_up = "once"` and none with `"skip"`; bad
//! expressions and zones are `ledge check` errors at their file:line:col.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::broker::{Message, TestClient};
use common::process::{ledge, Ledge};

const WAIT: Duration = Duration::from_secs(20);

fn config(dir: &Path, port: u16, id: &str, trigger: &str) -> std::path::PathBuf {
    config_with(
        dir,
        &format!("embedded = true\nlisten = \"127.0.0.1:{port}\""),
        id,
        trigger,
    )
}

/// A config whose `[broker]` section is `broker`.
fn config_with(dir: &Path, broker: &str, id: &str, trigger: &str) -> std::path::PathBuf {
    let echo = common::example("echo");
    let text = format!(
        "[device]\nid = \"{id}\"\ndata_dir = \"data\"\n[broker]\n{broker}\n\
         [[function]]\nname = \"echo\"\nmodule = \"{}\"\nenv = {{ ECHO_TOPIC = \"tick\" }}\nallow_publish = [\"tick\"]\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"echo\"\n{trigger}\n",
        echo.display()
    );
    common::write_config(dir, &text)
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

fn start(config: &Path, port: u16, client_id: &str) -> (Ledge, TestClient) {
    let mut ledge = Ledge::spawn(config, &[]);
    ledge.wait_for_line("running as", WAIT);
    let client = TestClient::connect(port, client_id, &["tick"]);
    (ledge, client)
}

/// With an external broker the client subscribes before ledge starts, so
/// it sees the events ledge fires the moment it starts (catch-ups).
fn start_watched(config: &Path, port: u16, client_id: &str) -> (Ledge, TestClient) {
    let client = TestClient::connect(port, client_id, &["tick"]);
    let mut ledge = Ledge::spawn(config, &[]);
    ledge.wait_for_line("running as", WAIT);
    (ledge, client)
}

#[test]
fn a_seconds_cron_fires_on_the_seconds_it_names_in_its_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = config(
        dir.path(),
        port,
        "c1",
        "cron = \"*/2 * * * * *\"\ntimezone = \"+02:00\"",
    );
    let (mut ledge, client) = start(&config, port, "cron-client");
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
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // A cron schedule and an `every` one, both with jitter.
    let config = config(
        dir.path(),
        port,
        "c2",
        "cron = \"* * * * * *\"\njitter = \"700ms\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"echo\"\nevery = \"1s\"\njitter = \"400ms\"",
    );
    let (mut ledge, client) = start(&config, port, "jitter-client");
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
    let dir = tempfile::tempdir().unwrap();
    // A catch-up fires as ledge starts: the watcher must be subscribed
    // before, on a broker that outlives ledge.
    let mosquitto = common::broker::Mosquitto::start(dir.path());
    let port = mosquitto.port;
    let broker = format!("url = \"mqtt://127.0.0.1:{port}\"");
    let once = config_with(
        dir.path(),
        &broker,
        "c3",
        "cron = \"*/5 * * * * *\"\ncatch_up = \"once\"",
    );
    // First run: one ordinary event, then stop.
    let (mut ledge, client) = start_watched(&once, port, "catchup-1");
    let first = client.next(WAIT).expect("a first run");
    assert!(first.json().get("catch_up").is_none(), "{}", first.text());
    assert!(ledge.terminate().success());
    drop(client);
    let file = state_file(dir.path());
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
    let (mut ledge, client) = start_watched(&once, port, "catchup-2");
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
    let skip = config_with(
        dir.path(),
        &broker,
        "c3",
        "cron = \"*/5 * * * * *\"\ncatch_up = \"skip\"",
    );
    let restart_ms = now_ms();
    std::fs::write(&file, format!("{}\n", restart_ms - 3_600_000)).unwrap();
    let (mut ledge, client) = start_watched(&skip, port, "catchup-3");
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

#[test]
fn bad_cron_expressions_and_time_zones_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let echo = common::example("echo");
    let text = format!(
        "[[function]]\nname = \"f\"\nmodule = \"{}\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"61 * * * *\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"@daily\"\ntimezone = \"Mars/Olympus\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"@daily\"\ncatch_up = \"twice\"\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"a\"\nfunction = \"f\"\njitter = \"1s\"\n",
        echo.display()
    );
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = config.display().to_string();
    for expected in [
        format!("{path}:7:8: bad cron expression: minute 61 is out of range 0-59"),
        format!("{path}:12:12: unknown time zone `Mars/Olympus`"),
        format!("{path}:17:12: unknown catch_up `twice`"),
        format!("{path}:22:10: `jitter` does not apply to a `mqtt` trigger"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    // A good one, in an IANA zone, is listed in the routing table.
    let text = format!(
        "[[function]]\nname = \"f\"\nmodule = \"{}\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"30 7 * * MON-FRI\"\ntimezone = \"Europe/Berlin\"\njitter = \"30s\"\ncatch_up = \"once\"\n",
        echo.display()
    );
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("schedule cron 30 7 * * MON-FRI (Europe/Berlin)"),
        "{stdout}"
    );
}
