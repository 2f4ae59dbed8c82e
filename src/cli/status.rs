//! `ledge status` and `ledge metrics`: ask a running ledge over its control
//! socket and print what it says, as tables whose columns fit the values.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use super::table::{self, Align};
use super::{load_config, CliError};

fn fetch(config: &Path) -> Result<Value, CliError> {
    let plan = load_config(config)?;
    let socket = crate::control::socket_path(&plan.device.data_dir);
    crate::control::request(&socket, "status").map_err(|e| {
        CliError::Failed(anyhow!(
            "cannot reach ledge at {}: {e} (is `ledge run` running with this config?)",
            socket.display()
        ))
    })
}

/// `ledge metrics`: the functions part of the status document.
pub fn metrics(config: &Path, json: bool, prometheus: bool) -> Result<(), CliError> {
    let doc = fetch(config)?;
    if json {
        println!("{}", doc["functions"]);
        return Ok(());
    }
    if prometheus {
        print!("{}", crate::telemetry::prometheus(&doc));
        return Ok(());
    }
    print!("{}", function_table(&doc));
    Ok(())
}

/// Every function's counters, gauges and percentiles: one row each, one
/// column per number in the JSON document.
fn function_table(doc: &Value) -> String {
    use Align::{Left, Right};
    const COLUMNS: [(&str, &str); 18] = [
        ("invoked", "invocations"),
        ("errors", "errors"),
        ("timeouts", "timeouts"),
        ("throttled", "throttled"),
        ("spilled", "spilled"),
        ("retries", "retries"),
        ("dlq", "dead_letters"),
        ("dlq-errors", "dead_letter_errors"),
        ("dropped", "dropped_disabled"),
        ("pub-throttled", "publish_throttled"),
        ("running", "concurrent"),
        ("queued", "queued"),
        ("mean-µs", "mean_us"),
        ("p50-µs", "p50_us"),
        ("p90-µs", "p90_us"),
        ("p99-µs", "p99_us"),
        ("max-µs", "max_us"),
        ("age-p99-ms", "event_age_p99_us"),
    ];
    let mut headers = vec![("function", Left), ("state", Left)];
    headers.extend(COLUMNS.iter().map(|(header, _)| (*header, Right)));
    let rows: Vec<Vec<String>> = doc["functions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, f)| {
            let state = if f["loaded"].as_bool() == Some(false) {
                "unloaded"
            } else {
                "loaded"
            };
            let mut row = vec![name.clone(), state.to_owned()];
            row.extend(COLUMNS.iter().map(|(header, key)| {
                let value = f[*key].as_u64().unwrap_or(0);
                if header.ends_with("-ms") {
                    (value / 1000).to_string()
                } else {
                    value.to_string()
                }
            }));
            row
        })
        .collect();
    table::render(&headers, &rows)
}

pub fn status(config: &Path, json: bool) -> Result<(), CliError> {
    let doc = fetch(config)?;
    if json {
        println!("{doc}");
    } else {
        print!("{}", status_text(&doc));
    }
    Ok(())
}

fn status_text(doc: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        out.push_str(&format!("{label:<10} {text}\n"));
    };
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "connected"
        } else {
            "DISCONNECTED"
        }
    };
    let ago = |ms: &Value| elapsed(Duration::from_millis(ms.as_u64().unwrap_or(0)));
    line(
        "device",
        format!(
            "{} (ledge {}, up {}s)",
            doc["device"].as_str().unwrap_or("?"),
            doc["version"].as_str().unwrap_or("?"),
            doc["uptime_s"]
        ),
    );
    line("broker", yes(&doc["local_broker"]["connected"]).to_owned());
    if let Some(b) = doc.get("broker") {
        line(
            "",
            format!(
                "embedded: {} sessions, {} connections ({} refused, {} malformed), {} messages in, {} out, {} dropped for full client queues",
                b["sessions"], b["connections"], b["refused"], b["malformed"], b["received"], b["sent"], b["dropped"]
            ),
        );
    }
    if let Some(uplink) = doc.get("uplink") {
        let state = if uplink["connected"].as_bool() == Some(true) {
            "connected".to_owned()
        } else {
            format!("DISCONNECTED for {}", ago(&uplink["disconnected_ms"]))
        };
        line(
            "uplink",
            format!(
                "{state}, confirmed seq {}, lag {} records, {} messages sent, {} reconnects",
                uplink["confirmed_seq"],
                uplink["lag_records"],
                uplink["messages_sent"],
                uplink["reconnects"]
            ),
        );
        if let Some(error) = uplink["last_error"].as_str() {
            line("", format!("last error: {error}"));
        }
    }
    for (label, key) in [("spool", "spool"), ("telemetry", "telemetry_spool")] {
        let Some(spool) = doc.get(key) else {
            continue;
        };
        let unsent = match spool["lag_records"].as_u64() {
            Some(0) | None => "all sent".to_owned(),
            Some(n) => format!(
                "{n} unsent, oldest {} old",
                ago(&spool["oldest_unsent_age_ms"])
            ),
        };
        line(
            label,
            format!(
                "{}: {} records in {} segments, {} bytes, {unsent}, {} dropped, {} rejected{}{}",
                spool["dir"].as_str().unwrap_or("?"),
                spool["records"],
                spool["segments"],
                spool["bytes"],
                spool["dropped"],
                spool["rejected"],
                if spool["disk_full"].as_bool() == Some(true) {
                    ", DISK FULL"
                } else {
                    ""
                },
                spool["failed"]
                    .as_str()
                    .map(|f| format!(", FAILED: {f}"))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(sensors) = doc["sensors"].as_object() {
        let failing: Vec<String> = sensors
            .iter()
            .map(|(name, s)| format!("{name}: {} errors", s["errors"]))
            .collect();
        line("sensors", failing.join(", "));
    }
    out.push('\n');
    out.push_str(&function_table(doc));
    out
}

/// `42s`, `5m 3s`, … as the uplink's log lines say it.
fn elapsed(duration: Duration) -> String {
    crate::uplink::outage::elapsed(duration)
}
