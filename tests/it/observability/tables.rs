//! The status, metrics and functions tables line up and show every
//! counter; `ledge status` says clearly when no ledge is running.

use super::{cli, WAIT};
use crate::common;
use crate::common::gateway::Gateway;
use crate::common::process;

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
    let long = "a_function_with_a_rather_long_name";
    let gateway = Gateway::new("gw-t")
        .echo(long, "echo/in", "echo/out")
        .echo("e", "e/in", "echo/out");
    let config = gateway.write();
    let ledge = gateway.start();
    let client = gateway.client("producer", &["echo/out"]);
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

#[test]
fn status_says_clearly_when_no_ledge_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "[device]\nid = \"idle\"\ndata_dir = \"data\"\n");
    let output = process::ledge(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach ledge at") && stderr.contains("ledge.sock"),
        "{stderr}"
    );
}

/// A stock mosquitto lets a client have 20 QoS 1 publishes unacknowledged
/// (its `max_inflight_messages`, announced as the MQTT 5 Receive Maximum):
/// it paces every function's QoS 1 publishes, so status shows it and the
/// log says what it limits. The embedded broker announces none.
#[test]
fn the_local_broker_receive_maximum_is_in_status_and_a_small_one_in_the_log() {
    let gateway = Gateway::new("gw-rm")
        .with_mosquitto()
        .echo("e", "e/in", "e/out");
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("QoS 1 publishes unacknowledged", WAIT);
    assert!(
        line.contains("lets ledge have 20") && line.contains("max_inflight_messages"),
        "{line}"
    );
    let status = gateway.status();
    assert_eq!(status["local_broker"]["receive_maximum"], 20, "{status}");

    let embedded = Gateway::new("gw-rm-embedded").echo("e", "e/in", "e/out");
    let _ledge = embedded.start();
    let status = embedded.status();
    assert_eq!(status["local_broker"]["connected"], true, "{status}");
    assert!(
        status["local_broker"]["receive_maximum"].is_null(),
        "{status}"
    );
}
