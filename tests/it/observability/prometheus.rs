//! The Prometheus endpoint shows the uplink, the spool, the broker, the
//! sensors and per-function histograms, and passes `promtool`; a version
//! rolled back keeps its metrics, and every alias move says who moved it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{cli, promtool_check, sample, scrape, scrape_until, WAIT};
use crate::common::broker::TestClient;
use crate::common::gateway::Gateway;
use crate::common::{self, tagged};

#[test]
fn prometheus_shows_uplink_spool_broker_sensors_and_histograms_and_passes_promtool() {
    let metrics = common::free_port();
    let mut gateway = Gateway::new("o1")
        .with_upstream()
        .upstream("keep_alive = \"5s\"")
        .append(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [[forward]]\ntopic = \"data/#\"\n\
             [[sensor]]\nname = \"gone\"\nkind = \"w1\"\ndevice = \"28-000000000000\"\nsysfs_root = \"sys\"\ninterval = \"100ms\""
        ))
        .echo("echo", "echo/in", "echo/out");
    let backend = gateway.upstream_client("backend", &["ledge/o1/events/#"]);
    let ledge = gateway.start();
    let client = gateway.client("producer", &["echo/out"]);
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
    gateway.upstream.take().expect("the upstream").kill();
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
    let metrics = common::free_port();
    let gateway = Gateway::new("gw")
        .with_mosquitto()
        .broker("keep_alive = \"5s\"")
        .upstream_on_local()
        .append(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [deploy]\nwatch_invocations = 10\nmax_error_rate = 0.2"
        ));
    let v0 = tagged(gateway.dir(), "v0", false);
    let gateway = gateway
        .function(
            "tag",
            v0,
            "allow_publish = [\"out/#\"]\nretries = 0\non_failure = \"drop\"",
        )
        .mqtt_trigger("in/#", "tag:live");
    let config = gateway.write();
    let v1 = tagged(gateway.dir(), "v1", false);
    let v2 = tagged(gateway.dir(), "v2", true);
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
    let client = gateway.client("ops", &["out/#", "ledge/gw/deploy/status"]);
    let mut ledge = gateway.start();
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
