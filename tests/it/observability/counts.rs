//! Built-in metrics equal the exact counts of a scripted workload, through
//! `ledge metrics --json`, the table, and the Prometheus endpoint.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common;
use crate::common::gateway::{Gateway, Module};
use crate::common::process;

const WAIT: Duration = Duration::from_secs(20);

/// The whole HTTP response to `GET /metrics`.
fn scrape_response(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn metrics_equal_the_counts_of_a_scripted_workload() {
    let metrics_port = common::free_port();
    let gateway = Gateway::new("m1")
        .with_mosquitto()
        .append(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\""
        ))
        .echo("echo", "echo/in", "echo/out")
        .function(
            "fails",
            Module::Fixture("always_fails"),
            "retries = 1\nretry_backoff = \"20ms\"\non_failure = \"drop\"\nallow_publish = [\"fails/#\"]",
        )
        .mqtt_trigger("fails/in", "fails")
        .function(
            "slow",
            Module::Fixture("slow_echo"),
            "max_concurrency = 1\nqueue_size = 2\nallow_publish = [\"done\"]",
        )
        .mqtt_trigger("slow/in", "slow");
    let ledge = gateway.start();
    let config = gateway.config();
    let config_str = config.to_str().unwrap();
    let client = gateway.client("metrics-client", &["echo/out", "fails/attempts", "done"]);

    for i in 0..20 {
        client.publish("echo/in", format!("{i}"));
    }
    for _ in 0..5 {
        client.publish("fails/in", "x");
    }
    // `slow` takes 300 ms a call, one at a time, two may wait in its queue:
    // the first event runs; of the nine sent while it does, two wait in the
    // queue and seven find it full, spill into the function's stream and
    // run after them.
    client.publish("slow/in", "first");
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..9 {
        client.publish("slow/in", "burst");
    }
    // 20 echoes, 10 attempts of `fails`, 10 runs of `slow`.
    let got = client.collect(40, WAIT);
    assert_eq!(got.len(), 40, "log:\n{}", ledge.log_text());
    assert!(client.drain(Duration::from_millis(700)).is_empty());

    let m = gateway.metrics();
    let echo = &m["echo"];
    assert_eq!(
        (echo["invocations"].as_u64(), echo["errors"].as_u64()),
        (Some(20), Some(0)),
        "{m}"
    );
    let p50 = echo["p50_us"].as_u64().unwrap();
    let p90 = echo["p90_us"].as_u64().unwrap();
    let p99 = echo["p99_us"].as_u64().unwrap();
    let max = echo["max_us"].as_u64().unwrap();
    assert!(0 < p50 && p50 <= p90 && p90 <= p99, "{echo}");
    assert!(max as f64 * 1.2 + 1.0 >= p99 as f64, "{echo}");
    let fails = &m["fails"];
    assert_eq!(fails["invocations"], 10, "{m}");
    assert_eq!(fails["errors"], 10, "{m}");
    assert_eq!(fails["retries"], 5, "{m}");
    assert_eq!(fails["dead_letters"], 5, "{m}");
    let slow = &m["slow"];
    assert_eq!(slow["invocations"], 10, "{m}");
    assert_eq!(slow["throttled"], 7, "{m}");
    assert_eq!(slow["spilled"], 7, "{m}");
    // Nothing was lost to the failure destination.
    assert_eq!(slow["dead_letters"], 0, "{m}");
    assert_eq!(slow["dead_letter_errors"], 0, "{m}");
    assert_eq!(slow["concurrent"], 0, "{m}");
    assert_eq!(slow["queued"], 0, "{m}");
    // The guest waits until now_ms (whole milliseconds) is 300 past its
    // first reading, which may have been taken up to 1 ms before the next
    // tick: the call can end just past 299 ms (seen: 299.97 ms).
    assert!(slow["p50_us"].as_u64().unwrap() >= 299_000, "{m}");

    let table = process::ledge(&["metrics", "--config", config_str]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("slow ") && l.contains(" 7 ")),
        "{table}"
    );

    let scraped = scrape_response(metrics_port);
    assert!(scraped.starts_with("HTTP/1.1 200 OK"), "{scraped}");
    for line in [
        "ledge_invocations_total{device=\"m1\",function=\"echo\"} 20",
        "ledge_throttles_total{device=\"m1\",function=\"slow\"} 7",
        "ledge_retries_total{device=\"m1\",function=\"fails\"} 5",
        "ledge_spilled_total{device=\"m1\",function=\"slow\"} 7",
        "ledge_duration_seconds_count{device=\"m1\",function=\"slow\"} 10",
        "# TYPE ledge_duration_seconds histogram",
        "ledge_duration_seconds_bucket{device=\"m1\",function=\"slow\",le=\"+Inf\"} 10",
    ] {
        assert!(scraped.contains(line), "missing {line}:\n{scraped}");
    }
    let cli = process::ledge(&["metrics", "--prometheus", "--config", config_str]);
    assert!(String::from_utf8_lossy(&cli.stdout)
        .contains("ledge_errors_total{device=\"m1\",function=\"fails\"} 10"));
}
