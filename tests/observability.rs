//! What an operator can see of a running ledge: the Prometheus endpoint
//! (checked by `promtool`), the retained online/offline status upstream,
//! outage and drain lines in the log, alias moves reported with who moved
//! them, `ledge logs`, and the status, metrics and functions tables.
//! Real binary, real mosquitto (local and upstream), real promtool.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::{ledge, Ledge};

const WAIT: Duration = Duration::from_secs(30);

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Scrapes until `series` satisfies `ok`; fails with the last body.
fn scrape_until(port: u16, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = scrape(port);
        if sample(&body, series).is_some_and(&ok) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached the expected value:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool_check(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n--- exposition ---\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn cli(config: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let output = ledge(&all);
    assert!(
        output.status.success(),
        "ledge {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn prometheus_shows_uplink_spool_broker_sensors_and_histograms_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start(dir.path());
    let backend = TestClient::connect(upstream.port, "backend", &["ledge/o1/events/#"]);
    let local = common::free_port();
    let metrics = common::free_port();
    let text = format!(
        "[device]\nid = \"o1\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"5s\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [[forward]]\ntopic = \"data/#\"\n\
         [[sensor]]\nname = \"gone\"\nkind = \"w1\"\ndevice = \"28-000000000000\"\nsysfs_root = \"sys\"\ninterval = \"100ms\"\n{}{}",
        upstream.port,
        common::function_toml("echo", &common::example("echo"), "env = { ECHO_TOPIC = \"echo/out\" }\nallow_publish = [\"echo/out\"]"),
        common::mqtt_trigger("echo/in", "echo"),
    );
    let config = common::write_config(dir.path(), &text);
    let ledge = Ledge::start(&config);
    let client = TestClient::connect(local, "producer", &["echo/out"]);
    for i in 0..6 {
        client.publish("echo/in", format!("{i}"));
        client.publish("data/x", format!("{i}"));
    }
    assert_eq!(client.collect(6, WAIT).len(), 6, "{}", ledge.log_text());
    assert_eq!(backend.collect(6, WAIT).len(), 6, "{}", ledge.log_text());

    // An invocation is counted just after its output went out.
    scrape_until(
        metrics,
        "ledge_duration_seconds_count{device=\"o1\",function=\"echo\"}",
        |v| v == 6.0,
    );
    let body = scrape_until(
        metrics,
        "ledge_spool_lag_records{device=\"o1\",stream=\"uplink\"}",
        |v| v == 0.0,
    );
    for (series, want) in [
        ("ledge_uplink_connected{device=\"o1\"}", 1.0),
        ("ledge_uplink_disconnected_seconds{device=\"o1\"}", 0.0),
        (
            "ledge_spool_oldest_unsent_age_seconds{device=\"o1\",stream=\"uplink\"}",
            0.0,
        ),
        (
            "ledge_duration_seconds_bucket{device=\"o1\",function=\"echo\",le=\"+Inf\"}",
            6.0,
        ),
        (
            "ledge_duration_seconds_count{device=\"o1\",function=\"echo\"}",
            6.0,
        ),
        (
            "ledge_function_loaded{device=\"o1\",function=\"echo\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&body, series), Some(want), "{series}:\n{body}");
    }
    assert!(
        body.contains("# TYPE ledge_duration_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE ledge_event_age_seconds histogram"),
        "{body}"
    );
    // Buckets are cumulative and end at the count.
    let buckets: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("ledge_duration_seconds_bucket{device=\"o1\",function=\"echo\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(buckets.len() > 10, "{body}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let records = sample(
        &body,
        "ledge_spool_records{device=\"o1\",stream=\"uplink\"}",
    );
    assert!(records >= Some(6.0), "{body}");
    assert!(
        sample(
            &body,
            "ledge_spool_bytes{device=\"o1\",stream=\"telemetry\"}"
        ) > Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "ledge_spool_dropped_records_total{device=\"o1\",stream=\"telemetry\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "ledge_spool_rejected_records_total{device=\"o1\",stream=\"uplink\"}"
        ),
        Some(0.0)
    );
    assert!(
        sample(&body, "ledge_broker_connections_total{device=\"o1\"}") >= Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "ledge_broker_received_messages_total{device=\"o1\"}") >= Some(12.0),
        "{body}"
    );
    assert!(
        sample(&body, "ledge_broker_sent_messages_total{device=\"o1\"}") >= Some(6.0),
        "{body}"
    );
    for series in [
        "ledge_broker_refused_connections_total{device=\"o1\"}",
        "ledge_broker_malformed_packets_total{device=\"o1\"}",
        "ledge_broker_dropped_messages{device=\"o1\"}",
        "ledge_dead_letter_errors_total{device=\"o1\",function=\"echo\"}",
    ] {
        assert_eq!(sample(&body, series), Some(0.0), "{series}:\n{body}");
    }
    scrape_until(
        metrics,
        "ledge_sensor_errors_total{device=\"o1\",sensor=\"gone\"}",
        |v| v >= 1.0,
    );
    promtool_check(&body);

    // The upstream goes away: the uplink says so, and what waits is counted.
    drop(backend);
    upstream.kill();
    scrape_until(metrics, "ledge_uplink_connected{device=\"o1\"}", |v| {
        v == 0.0
    });
    for i in 0..5 {
        client.publish("data/x", format!("late {i}"));
    }
    let body = scrape_until(
        metrics,
        "ledge_spool_lag_records{device=\"o1\",stream=\"uplink\"}",
        |v| v == 5.0,
    );
    assert_eq!(
        sample(&body, "ledge_uplink_connected{device=\"o1\"}"),
        Some(0.0),
        "{body}"
    );
    // Both grow while the outage lasts.
    scrape_until(
        metrics,
        "ledge_uplink_disconnected_seconds{device=\"o1\"}",
        |v| v > 0.0,
    );
    scrape_until(
        metrics,
        "ledge_spool_oldest_unsent_age_seconds{device=\"o1\",stream=\"uplink\"}",
        |v| v > 0.0,
    );
    scrape_until(
        metrics,
        "ledge_uplink_reconnects_total{device=\"o1\"}",
        |v| v >= 1.0,
    );
    promtool_check(&scrape(metrics));
}

/// A function that publishes each event's payload to `out/<tag>`; with
/// `fail`, it then fails.
fn tagged(dir: &Path, tag: &str, fail: bool) -> PathBuf {
    let topic = format!("out/{tag}");
    let end = if fail {
        "(i32.const 1)"
    } else {
        "(i32.const 0)"
    };
    let wat = format!(
        r#"(module
  (import "ledge_v1" "publish" (func $publish (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{topic}")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $publish (i32.const 0) (i32.const {len}) (local.get $ptr) (local.get $len) (i32.const 1)))
    {end}))"#,
        len = topic.len()
    );
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

/// The next message on `ledge/gw/deploy/status` whose event is `event`.
fn deploy_report(client: &TestClient, event: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if m.topic == "ledge/gw/deploy/status" && m.json()["event"] == event {
                return m.json();
            }
        }
    }
    panic!("no `{event}` report on ledge/gw/deploy/status");
}

#[test]
fn a_rolled_back_version_keeps_its_metrics_and_every_alias_move_says_who_moved_it() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let metrics = common::free_port();
    let v0 = tagged(dir.path(), "v0", false);
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
         [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [deploy]\nwatch_invocations = 10\nmax_error_rate = 0.2\n\
         [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\nretries = 0\non_failure = \"drop\"\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"in/#\"\nfunction = \"tag:live\"\n",
        v0.display(),
        port = mosquitto.port,
    );
    let config = common::write_config(dir.path(), &text);
    let v1 = tagged(dir.path(), "v1", false);
    let v2 = tagged(dir.path(), "v2", true);
    // Moved while no ledge runs: reported when it starts.
    let deploy = |module: &Path| {
        cli(
            &config,
            &[
                "deploy",
                "tag",
                module.to_str().unwrap(),
                "--publish",
                "--alias",
                "live",
            ],
        )
    };
    deploy(&v1);
    let client = TestClient::connect(mosquitto.port, "ops", &["out/#", "ledge/gw/deploy/status"]);
    let mut ledge = Ledge::start(&config);
    let first = deploy_report(&client, "alias_moved");
    assert_eq!(first["function"], "tag", "{first}");
    assert_eq!(first["alias"], "live", "{first}");
    assert_eq!(first["to"], "1", "{first}");
    assert!(first["from"].is_null(), "{first}");
    assert!(
        first["moved_by"]
            .as_str()
            .is_some_and(|by| by.starts_with("cli")),
        "{first}"
    );
    for id in 0..12 {
        client.publish("in/x", format!("e{id}"));
    }
    assert_eq!(deploy_report(&client, "healthy")["versions"][0], "tag:1");

    deploy(&v2);
    let second = deploy_report(&client, "alias_moved");
    assert_eq!(
        (second["from"].as_str(), second["to"].as_str()),
        (Some("1"), Some("2")),
        "{second}"
    );
    assert!(
        second["moved_by"]
            .as_str()
            .is_some_and(|by| by.starts_with("cli")),
        "{second}"
    );
    let deadline = Instant::now() + WAIT;
    let mut id = 100;
    let rolled_back = loop {
        assert!(Instant::now() < deadline, "{}", ledge.log_text());
        client.publish("in/x", format!("e{id}"));
        id += 1;
        if let Some(m) = client.next(Duration::from_millis(100)) {
            if m.topic == "ledge/gw/deploy/status" && m.json()["event"] == "rolled_back" {
                break m.json();
            }
        }
    };
    assert_eq!(rolled_back["moved_by"], "ledge: probation", "{rolled_back}");
    ledge.wait_for_log("reloaded after a rollback", WAIT);

    // tag:2 is no longer loaded; the evidence against it stays.
    let body = scrape_until(
        metrics,
        "ledge_function_loaded{device=\"gw\",function=\"tag:2\"}",
        |v| v == 0.0,
    );
    let errors = sample(
        &body,
        "ledge_errors_total{device=\"gw\",function=\"tag:2\"}",
    );
    assert!(errors >= Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            "ledge_function_loaded{device=\"gw\",function=\"tag:1\"}"
        ),
        Some(1.0),
        "{body}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli(&config, &["metrics", "--json"])).unwrap();
    assert_eq!(json["tag:2"]["loaded"], false, "{json}");
    assert!(json["tag:2"]["errors"].as_u64() >= Some(1), "{json}");
    let table = cli(&config, &["metrics"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tag:2") && l.contains("unloaded")),
        "{table}"
    );
    // Every move is in the log too.
    let log = ledge.log_text();
    assert!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"alias_moved\""))
            .count()
            >= 2,
        "{log}"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

/// Collects `<prefix>/status` messages with a fresh client until one has
/// `state`; a fresh client sees the retained one first.
fn status_message(port: u16, id: &str, state: &str) -> serde_json::Value {
    let client = TestClient::connect(port, id, &["ledge/gw-s/status"]);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if m.json()["state"] == state {
                return m.json();
            }
        }
    }
    panic!("no retained `{state}` status on ledge/gw-s/status");
}

#[test]
fn upstream_sees_online_then_offline_on_a_clean_stop_and_by_will_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start(dir.path());
    let local = common::free_port();
    let text = format!(
        "[device]\nid = \"gw-s\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"5s\"\n",
        upstream.port
    );
    let config = common::write_config(dir.path(), &text);

    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("connected to upstream", WAIT);
    let online = status_message(upstream.port, "watch-1", "online");
    assert_eq!(online["device"], "gw-s", "{online}");
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"), "{online}");
    // When the gateway booted, and when this ledge started.
    let boot = online["boot_ms"].as_u64().expect("boot_ms");
    let started = online["started_ms"].as_u64().expect("started_ms");
    assert!(boot > 1_600_000_000_000 && started >= boot, "{online}");
    assert_eq!(ledge.terminate().code(), Some(0));
    let offline = status_message(upstream.port, "watch-2", "offline");
    assert_eq!(offline["reason"], "stopped", "{offline}");
    assert_eq!(offline["started_ms"], started, "{offline}");

    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("connected to upstream", WAIT);
    let online = status_message(upstream.port, "watch-3", "online");
    assert!(online["started_ms"].as_u64() > Some(started), "{online}");
    common::process::signal(ledge.pid(), "KILL");
    let _ = ledge.wait(WAIT);
    let offline = status_message(upstream.port, "watch-4", "offline");
    assert_eq!(offline["reason"], "connection lost", "{offline}");
    assert_eq!(offline["started_ms"], online["started_ms"], "{offline}");
}

#[test]
fn an_outage_is_warned_about_and_the_drained_backlog_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let local = common::free_port();
    let upstream_port = common::free_port();
    let text = format!(
        "[device]\nid = \"gw-o\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{upstream_port}\"\noutage_warning = \"1s\"\n\
         [[forward]]\ntopic = \"data/#\"\n"
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(local, "producer", &[]);
    for i in 0..20 {
        client.publish("data/x", format!("{i}"));
    }
    let warning = ledge.wait_for_log("upstream unreachable for", WAIT);
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("waiting in the spool"), "{warning}");
    let _upstream = Mosquitto::start_on(dir.path(), upstream_port);
    let drained = ledge.wait_for_line("upstream backlog drained", WAIT);
    assert!(drained.contains("INFO"), "{drained}");
    assert!(drained.contains("20 records"), "{drained}");
    assert_eq!(ledge.terminate().code(), Some(0));
}

fn log_lines(config: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    cli(config, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn ledge_logs_shows_recent_lines_and_follows_filtered_by_function_level_and_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let local = common::free_port();
    let text = format!(
        "[device]\nid = \"gw-l\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n{}{}{}{}",
        common::function_toml("talk", &common::fixture(dir.path(), "log_payload"), ""),
        common::mqtt_trigger("talk/in", "talk"),
        common::function_toml(
            "fails",
            &common::fixture(dir.path(), "always_fails"),
            "retries = 0\non_failure = \"drop\"\nallow_publish = [\"fails/#\"]"
        ),
        common::mqtt_trigger("fails/in", "fails"),
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(local, "producer", &[]);
    client.publish("talk/in", "hello from talk");
    client.publish("fails/in", "x");
    ledge.wait_for_log("hello from talk", WAIT);
    ledge.wait_for_log("failed (", WAIT);
    // Each invocation's line carries Lambda's REPORT facts.
    let report = ledge.wait_for_log("REPORT Duration:", WAIT);
    assert!(
        report.contains("Fuel Used:")
            && report.contains("Memory Size: 16384 KiB")
            && report.contains("Max Memory Used:"),
        "{report}"
    );

    let recent = log_lines(&config, &[]);
    assert!(
        recent.iter().any(|l| l["MESSAGE"] == "hello from talk"
            && l["FUNCTION"] == "talk"
            && l["LEVEL"] == "INFO"),
        "{recent:?}"
    );
    let talk = log_lines(&config, &["--function", "talk"]);
    assert!(
        !talk.is_empty() && talk.iter().all(|l| l["FUNCTION"] == "talk"),
        "{talk:?}"
    );
    let warnings = log_lines(&config, &["--level", "warn"]);
    assert!(
        warnings.iter().any(|l| l["FUNCTION"] == "fails")
            && warnings
                .iter()
                .all(|l| l["LEVEL"] == "WARN" || l["LEVEL"] == "ERROR"),
        "{warnings:?}"
    );
    let request_id = talk
        .iter()
        .find(|l| l["MESSAGE"] == "hello from talk")
        .and_then(|l| l["REQUEST_ID"].as_str())
        .expect("the function's line has its request id")
        .to_owned();
    let one = log_lines(&config, &["--request-id", &request_id]);
    assert!(!one.is_empty(), "no lines for {request_id}");
    assert!(
        one.iter().all(|l| l["REQUEST_ID"] == request_id.as_str()),
        "{one:?}"
    );
    // The human form names the function and request too.
    let human = cli(&config, &["logs", "--function", "talk"]);
    assert!(
        human
            .lines()
            .any(|l| l.contains("hello from talk") && l.contains(&request_id)),
        "{human}"
    );

    // -f: what arrives after it started, filtered.
    let mut follow = Command::new(common::process::ledge_bin())
        .args([
            "logs",
            "-f",
            "--function",
            "talk",
            "--lines",
            "0",
            "--config",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The follower is attached once ledge has logged its arrival.
    ledge.wait_for_log("following the log", WAIT);
    client.publish("fails/in", "not for talk");
    client.publish("talk/in", "live line");
    let line = received
        .recv_timeout(WAIT)
        .expect("ledge logs -f printed the new line");
    assert!(line.contains("live line"), "{line}");
    assert!(!line.contains("not for talk"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn json_log_lines_carry_journald_style_fields() {
    let dir = tempfile::tempdir().unwrap();
    let local = common::free_port();
    let text = format!(
        "[device]\nid = \"gw-j\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n[log]\nformat = \"json\"\n{}{}",
        common::function_toml("talk", &common::fixture(dir.path(), "log_payload"), ""),
        common::mqtt_trigger("talk/in", "talk"),
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(local, "producer", &[]);
    client.publish("talk/in", "in json");
    let line = ledge.wait_for_log("in json", WAIT);
    let doc: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(doc["MESSAGE"], "in json", "{doc}");
    assert_eq!(doc["FUNCTION"], "talk", "{doc}");
    assert_eq!(doc["LEVEL"], "INFO", "{doc}");
    assert_eq!(doc["PRIORITY"], "6", "{doc}");
    assert_eq!(doc["REQUEST_ID"].as_str().map(str::len), Some(16), "{doc}");
    // Every line is JSON, ledge's own included.
    for line in ledge.log_text().lines() {
        let doc: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            doc["TARGET"].is_string() && doc["TIMESTAMP"].is_string(),
            "{doc}"
        );
    }
    assert_eq!(ledge.terminate().code(), Some(0));
}

/// Where each whitespace-separated value of `line` ends (char columns).
fn value_ends(line: &str) -> Vec<usize> {
    let chars: Vec<char> = line.chars().collect();
    (0..chars.len())
        .filter(|&i| chars[i] != ' ' && chars.get(i + 1).is_none_or(|c| *c == ' '))
        .map(|i| i + 1)
        .collect()
}

/// Every row has a value under every right-aligned header, ending where
/// the header ends.
fn assert_right_aligned(table: &str, first_numeric: &str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let start = header.find(first_numeric).expect("numeric header");
    let start_col = header[..start].chars().count();
    let header_ends: Vec<usize> = value_ends(&header.chars().skip(start_col).collect::<String>());
    for row in lines {
        let tail: String = row.chars().skip(start_col).collect();
        let ends = value_ends(&tail);
        assert!(
            header_ends.iter().all(|e| ends.contains(e)),
            "row not aligned under the header:\n{table}"
        );
    }
}

#[test]
fn status_metrics_and_functions_tables_align_and_show_every_counter() {
    let dir = tempfile::tempdir().unwrap();
    let local = common::free_port();
    let long = "a_function_with_a_rather_long_name";
    let text = format!(
        "[device]\nid = \"gw-t\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n{}{}{}{}",
        common::function_toml(long, &common::example("echo"), "env = { ECHO_TOPIC = \"echo/out\" }\nallow_publish = [\"echo/out\"]"),
        common::mqtt_trigger("echo/in", long),
        common::function_toml("e", &common::example("echo"), "env = { ECHO_TOPIC = \"echo/out\" }\nallow_publish = [\"echo/out\"]"),
        common::mqtt_trigger("e/in", "e"),
    );
    let config = common::write_config(dir.path(), &text);
    let ledge = Ledge::start(&config);
    let client = TestClient::connect(local, "producer", &["echo/out"]);
    client.publish("echo/in", "one");
    client.publish("e/in", "two");
    assert_eq!(client.collect(2, WAIT).len(), 2, "{}", ledge.log_text());

    let json: serde_json::Value =
        serde_json::from_str(&cli(&config, &["metrics", "--json"])).unwrap();
    for name in [long, "e"] {
        let f = &json[name];
        assert!(f["p99_us"].as_u64() <= f["max_us"].as_u64(), "{f}");
        assert!(f["p50_us"].as_u64() <= f["max_us"].as_u64(), "{f}");
    }
    let metrics = cli(&config, &["metrics"]);
    let header = metrics.lines().next().unwrap();
    for column in ["timeouts", "spilled", "dlq-errors", "throttled", "retries"] {
        assert!(header.contains(column), "no `{column}` column:\n{metrics}");
    }
    assert_right_aligned(&metrics, "invoked");

    let status = cli(&config, &["status"]);
    let table: String = status
        .lines()
        .skip_while(|l| !l.starts_with("function "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        table.contains("timeouts") && table.contains("spilled"),
        "{status}"
    );
    assert!(table.contains("dlq-errors"), "{status}");
    assert_right_aligned(&table, "invoked");

    let functions = cli(&config, &["functions"]);
    let mut lines = functions.lines();
    let header = lines.next().unwrap();
    let state_col = header.find("state").unwrap();
    for row in lines {
        assert!(
            row.get(state_col..)
                .is_some_and(|s| s.starts_with("running")),
            "the state column is not aligned:\n{functions}"
        );
    }
}
