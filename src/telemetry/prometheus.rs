//! The status document as Prometheus text exposition (format 0.0.4); the
//! HTTP server (`http`) serves it at `/metrics`. Counters end in `_total`,
//! durations are in seconds and are histograms with buckets at powers of
//! two microseconds, the same on every device, so they sum across a fleet.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::metrics::{DURATION_BUCKETS, EVENT_AGE_BUCKETS};

/// Prometheus text exposition (format 0.0.4) being written: families of
/// samples, each family with its HELP and TYPE, samples contiguous.
struct Exposition {
    out: String,
}

impl Exposition {
    /// One family; nothing is written if it has no samples.
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, String)>) {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{name}{labels} {value}");
        }
    }

    /// A histogram family from `histogram_json` documents, with a bucket
    /// at every power of two µs in `bounds` (every device the same).
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: (u32, u32),
        series: Vec<(String, &Value)>,
    ) {
        if series.is_empty() {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, h) in series {
            let inner = labels.trim_start_matches('{').trim_end_matches('}');
            let comma = if inner.is_empty() { "" } else { "," };
            let listed: Vec<(u64, u64)> = h["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| (b[0].as_u64().unwrap_or(0), b[1].as_u64().unwrap_or(0)))
                .collect();
            for power in bounds.0..=bounds.1 {
                let bound = 1u64 << power;
                let count = listed
                    .iter()
                    .take_while(|(le, _)| *le <= bound)
                    .last()
                    .map_or(0, |(_, n)| *n);
                let le = bound as f64 / 1e6;
                let _ = writeln!(
                    self.out,
                    "{name}_bucket{{{inner}{comma}le=\"{le}\"}} {count}"
                );
            }
            let count = h["count"].as_u64().unwrap_or(0);
            let sum = h["sum_us"].as_u64().unwrap_or(0) as f64 / 1e6;
            let _ = writeln!(
                self.out,
                "{name}_bucket{{{inner}{comma}le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(self.out, "{name}_sum{labels} {sum}");
            let _ = writeln!(self.out, "{name}_count{labels} {count}");
        }
    }
}

/// `{a="x",b="y"}`, values escaped as the format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{key}=\"{escaped}\"");
    }
    out.push('}');
    out
}

fn number(value: &Value) -> String {
    match value {
        Value::Bool(b) => u8::from(*b).to_string(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_owned(),
    }
}

fn seconds_from_ms(value: &Value) -> String {
    (value.as_u64().unwrap_or(0) as f64 / 1e3).to_string()
}

/// The status document as Prometheus text exposition (format 0.0.4):
/// counters end in `_total`, durations are in seconds and are histograms
/// (buckets at powers of two microseconds, the same on every device, so
/// they sum across a fleet).
pub fn prometheus(doc: &Value) -> String {
    let mut x = Exposition { out: String::new() };
    let device = doc["device"].as_str().unwrap_or("");
    let dev = labels(&[("device", device)]);
    x.family(
        "ledge_start_time_seconds",
        "gauge",
        "When this ledge started, UNIX seconds.",
        vec![(dev.clone(), seconds_from_ms(&doc["started_ms"]))],
    );
    x.family(
        "ledge_local_broker_connected",
        "gauge",
        "1 while ledge's link to its local broker is up.",
        vec![(dev.clone(), number(&doc["local_broker"]["connected"]))],
    );
    let uplink = &doc["uplink"];
    if uplink.is_object() {
        for (key, name, kind, help) in [
            (
                "connected",
                "ledge_uplink_connected",
                "gauge",
                "1 while the uplink to the upstream broker is up.",
            ),
            (
                "reconnects",
                "ledge_uplink_reconnects_total",
                "counter",
                "Uplink connections that failed or were lost.",
            ),
            (
                "messages_sent",
                "ledge_uplink_messages_sent_total",
                "counter",
                "Messages published upstream, re-sends included.",
            ),
        ] {
            x.family(name, kind, help, vec![(dev.clone(), number(&uplink[key]))]);
        }
        x.family(
            "ledge_uplink_disconnected_seconds",
            "gauge",
            "Seconds since the uplink was last connected (since the start if never); 0 while connected.",
            vec![(dev.clone(), seconds_from_ms(&uplink["disconnected_ms"]))],
        );
    }
    spool_families(&mut x, doc, device);
    broker_families(&mut x, &doc["broker"], &dev);
    let sensors: Vec<(String, String)> = doc["sensors"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            (
                labels(&[("device", device), ("sensor", name)]),
                number(&s["errors"]),
            )
        })
        .collect();
    x.family(
        "ledge_sensor_errors_total",
        "counter",
        "Failed sensor readings.",
        sensors,
    );
    function_families(&mut x, doc, device);
    x.out
}

fn spool_families(x: &mut Exposition, doc: &Value, device: &str) {
    let streams: Vec<(&str, &Value)> = [
        ("uplink", &doc["spool"]),
        ("telemetry", &doc["telemetry_spool"]),
    ]
    .into_iter()
    .filter(|(_, s)| s.is_object())
    .collect();
    let per_stream = |key: &str, convert: fn(&Value) -> String| -> Vec<(String, String)> {
        streams
            .iter()
            .map(|(stream, s)| {
                (
                    labels(&[("device", device), ("stream", stream)]),
                    convert(&s[key]),
                )
            })
            .collect()
    };
    for (key, name, kind, help) in [
        (
            "bytes",
            "ledge_spool_bytes",
            "gauge",
            "Bytes of the spool stream on flash.",
        ),
        (
            "records",
            "ledge_spool_records",
            "gauge",
            "Records held in the spool stream, confirmed or not.",
        ),
        (
            "lag_records",
            "ledge_spool_lag_records",
            "gauge",
            "Durable records upstream has not confirmed yet.",
        ),
        (
            "appended",
            "ledge_spool_appended_records_total",
            "counter",
            "Records appended to the spool stream.",
        ),
        (
            "dropped",
            "ledge_spool_dropped_records_total",
            "counter",
            "Unconfirmed records deleted to make room (on_full = drop_oldest).",
        ),
        (
            "rejected",
            "ledge_spool_rejected_records_total",
            "counter",
            "Appends the spool stream refused (full, or storage too slow).",
        ),
        (
            "damaged_records",
            "ledge_spool_damaged_records_total",
            "counter",
            "Records lost to damage on flash.",
        ),
        (
            "disk_full",
            "ledge_spool_disk_full",
            "gauge",
            "1 while writes to the spool stream fail for lack of space.",
        ),
    ] {
        x.family(name, kind, help, per_stream(key, number));
    }
    x.family(
        "ledge_spool_oldest_unsent_age_seconds",
        "gauge",
        "Age of the oldest record upstream has not confirmed; 0 when all are.",
        per_stream("oldest_unsent_age_ms", seconds_from_ms),
    );
}

fn broker_families(x: &mut Exposition, broker: &Value, dev: &str) {
    if !broker.is_object() {
        return;
    }
    for (key, name, kind, help) in [
        (
            "connections",
            "ledge_broker_connections_total",
            "counter",
            "Client connections the embedded broker accepted.",
        ),
        (
            "refused",
            "ledge_broker_refused_connections_total",
            "counter",
            "Connections refused: too many, bad login, reserved client id.",
        ),
        (
            "connect_timeouts",
            "ledge_broker_connect_timeouts_total",
            "counter",
            "Connections closed for sending no CONNECT in time.",
        ),
        (
            "malformed",
            "ledge_broker_malformed_packets_total",
            "counter",
            "Connections closed for a malformed packet.",
        ),
        (
            "received",
            "ledge_broker_received_messages_total",
            "counter",
            "PUBLISH packets received from clients.",
        ),
        (
            "sent",
            "ledge_broker_sent_messages_total",
            "counter",
            "PUBLISH packets sent to clients.",
        ),
        (
            "paused",
            "ledge_broker_paused_clients_total",
            "counter",
            "Times a client was paused because ledge was busy.",
        ),
        (
            "sessions",
            "ledge_broker_sessions",
            "gauge",
            "Sessions the broker knows (connected or persistent).",
        ),
        (
            "dropped",
            "ledge_broker_dropped_messages",
            "gauge",
            "Messages dropped for full client queues, over the sessions known now.",
        ),
    ] {
        x.family(
            name,
            kind,
            help,
            vec![(dev.to_owned(), number(&broker[key]))],
        );
    }
}

fn function_families(x: &mut Exposition, doc: &Value, device: &str) {
    let empty = Map::new();
    let functions = doc["functions"].as_object().unwrap_or(&empty);
    let label = |name: &str| labels(&[("device", device), ("function", name)]);
    for (key, name, kind, help) in [
        ("loaded", "ledge_function_loaded", "gauge", "1 while the function (version) is loaded; 0 once a reload removed it (its counts stay until restart)."),
        ("invocations", "ledge_invocations_total", "counter", "Invocations started."),
        ("errors", "ledge_errors_total", "counter", "Invocations that failed."),
        ("timeouts", "ledge_timeouts_total", "counter", "Invocations that timed out."),
        ("throttled", "ledge_throttles_total", "counter", "Events that found the function's queue full."),
        ("spilled", "ledge_spilled_total", "counter", "Events that waited in the function's spool stream because its queue was full."),
        ("loops_stopped", "ledge_recursive_loops_stopped_total", "counter", "Events not run because 16 function publishes in a row led to them."),
        ("retries", "ledge_retries_total", "counter", "Retries scheduled after a failed attempt."),
        ("dead_letters", "ledge_dead_letters_total", "counter", "Events sent to the failure destination."),
        ("dead_letter_errors", "ledge_dead_letter_errors_total", "counter", "Events the failure destination refused."),
        ("dropped_disabled", "ledge_disabled_drops_total", "counter", "Events refused because the function is disabled (its module failed to load)."),
        ("publish_throttled", "ledge_publish_throttled_total", "counter", "Publishes refused (ERR_THROTTLED) because the function was over its publish_rate."),
        ("concurrent", "ledge_concurrent_executions", "gauge", "Invocations running now."),
        ("queued", "ledge_queue_depth", "gauge", "Events waiting in the queue."),
    ] {
        let samples = functions
            .iter()
            .map(|(name, f)| (label(name), number(&f[key])))
            .collect();
        x.family(name, kind, help, samples);
    }
    x.histogram(
        "ledge_duration_seconds",
        "Invocation duration.",
        DURATION_BUCKETS,
        functions
            .iter()
            .map(|(name, f)| (label(name), &f["duration_histogram"]))
            .collect(),
    );
    x.histogram(
        "ledge_event_age_seconds",
        "Time from an asynchronous event's receipt to the start of its invocation.",
        EVENT_AGE_BUCKETS,
        functions
            .iter()
            .map(|(name, f)| (label(name), &f["event_age_histogram"]))
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::status::histogram_json;
    use serde_json::json;

    #[test]
    fn sparse_histograms_render_every_bucket_cumulatively() {
        let h = crate::metrics::Histogram::default();
        for us in [20, 30, 5000] {
            h.record(us);
        }
        let doc = histogram_json(&h.buckets(DURATION_BUCKETS.0, DURATION_BUCKETS.1));
        assert_eq!(doc["buckets"], json!([[32, 2], [8192, 3]]));
        let mut x = Exposition { out: String::new() };
        x.histogram(
            "t_seconds",
            "T.",
            (4, 14),
            vec![("{f=\"a\"}".to_owned(), &doc)],
        );
        let counts: Vec<&str> = x
            .out
            .lines()
            .filter(|l| l.starts_with("t_seconds_bucket"))
            .map(|l| l.rsplit_once(' ').unwrap().1)
            .collect();
        // le 16, 32, 64 … 16384 µs, then +Inf.
        assert_eq!(
            counts,
            ["0", "2", "2", "2", "2", "2", "2", "2", "2", "3", "3", "3"]
        );
        assert!(x
            .out
            .contains("t_seconds_bucket{f=\"a\",le=\"0.000032\"} 2"));
        assert!(x.out.contains("t_seconds_sum{f=\"a\"} 0.00505"));
        assert!(x.out.contains("t_seconds_count{f=\"a\"} 3"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "{a=\"x\\\"y\\\\z\\n\"}");
    }
}
