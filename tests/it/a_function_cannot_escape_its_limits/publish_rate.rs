//! A function cannot publish faster than its `publish_rate`: past its
//! bucket the guest gets `ERR_THROTTLED`, nothing is sent, and the refused
//! publishes are counted and summarised, not logged one by one. Counted,
//! not timed: a burst of 10 and a rate of one an hour.

use std::time::Duration;

use crate::common::gateway::{Gateway, Module};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_function_over_its_publish_rate_gets_its_burst_delivered_and_the_rest_refused() {
    let gateway = Gateway::new("gw-rate")
        .function(
            "burst",
            Module::Fixture("publish_burst"),
            "allow_publish = [\"burst/out\"]\npublish_rate = \"1/h\"\npublish_burst = 10\nretries = 0",
        )
        .mqtt_trigger("burst/in", "burst");
    let mut ledge = gateway.start();
    let client = gateway.client("client", &["burst/out"]);
    client.publish("burst/in", "go");

    // 50 publishes in one invocation: the burst goes out, nothing more.
    assert_eq!(client.collect(10, WAIT).len(), 10, "{}", ledge.log_text());
    let extra = client.drain(Duration::from_millis(500));
    assert!(extra.is_empty(), "{} more delivered", extra.len());

    // The guest saw ERR_THROTTLED for each of the other 40 (it fails on
    // any other code), and the function's metrics count them.
    ledge.wait_for_log("40 publishes throttled", WAIT);
    let burst = &gateway.metrics()["burst"];
    assert_eq!(burst["invocations"], 1, "{burst}");
    assert_eq!(burst["errors"], 0, "{burst}");
    assert_eq!(burst["publish_throttled"], 40, "{burst}");
    // One summary line for 40 refusals.
    let lines = ledge.log_text().matches("publishes throttled").count();
    assert_eq!(lines, 1, "{}", ledge.log_text());
    let prometheus = gateway.cli(&["metrics", "--prometheus"]);
    let text = String::from_utf8_lossy(&prometheus.stdout);
    assert!(
        text.contains("ledge_publish_throttled_total{device=\"gw-rate\",function=\"burst\"} 40"),
        "{text}"
    );
    assert!(ledge.terminate().success());
}
