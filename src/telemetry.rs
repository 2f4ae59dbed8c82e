//! What ledge reports about itself: the status document behind `ledge
//! status`, the same document spooled upstream as a metric snapshot every
//! `metrics.interval`, and ledge's own warnings and errors shipped upstream
//! as log records.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::dispatch::Routing;
use crate::mqtt::LinkState;
use crate::sinks::spool::SpoolSink;
use crate::spool::body::{self, MetricBody};
use crate::spool::{Kind, Spool};
use crate::uplink::{UplinkStatus, CURSOR};

/// Everything a status document is made from.
pub struct StatusSources {
    pub device: String,
    pub started: Instant,
    /// Reads the current dispatcher at each request: a reload replaces it.
    pub routing: Routing,
    pub link: Arc<LinkState>,
    pub spool: Option<Arc<Spool>>,
    /// The telemetry stream beside the uplink spool (logs, metrics).
    pub telemetry: Option<Arc<Spool>>,
    pub uplink: Option<Arc<UplinkStatus>>,
}

impl StatusSources {
    /// The status document. Holds no secrets: nothing from `env` or
    /// credentials ever goes in.
    pub fn status(&self) -> Value {
        let mut doc = json!({
            "device": self.device,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "local_broker": { "connected": self.link.connected.load(Ordering::Acquire) },
            "functions": self.functions(),
        });
        if let Some(spool) = &self.spool {
            doc["spool"] = spool_status(spool);
        }
        if let Some(telemetry) = &self.telemetry {
            doc["telemetry_spool"] = spool_status(telemetry);
        }
        if let (Some(uplink), Some(spool)) = (&self.uplink, &self.spool) {
            let confirmed = spool.cursor(CURSOR).unwrap_or(0);
            let last_error = uplink.last_error.lock().map(|e| e.clone()).unwrap_or(None);
            doc["uplink"] = json!({
                "connected": uplink.connected.load(Ordering::Acquire),
                "confirmed_seq": confirmed,
                "lag_records": spool.synced_through().saturating_sub(confirmed),
                "messages_sent": uplink.messages_sent.load(Ordering::Relaxed),
                "reconnects": uplink.reconnects.load(Ordering::Relaxed),
                "last_error": last_error,
            });
        }
        doc
    }

    fn functions(&self) -> Value {
        let dispatcher = self.routing.current();
        let mut functions = Map::new();
        for (name, metrics) in dispatcher.metrics() {
            let m = metrics.snapshot();
            let queued = dispatcher.queue_depth(&name);
            functions.insert(
                name,
                json!({
                    "invocations": m.invocations,
                    "errors": m.errors,
                    "timeouts": m.timeouts,
                    "throttled": m.throttled,
                    "spilled": m.spilled,
                    "loops_stopped": m.loops_stopped,
                    "retries": m.retries,
                    "dead_letters": m.dead_letters,
                    "dead_letter_errors": m.dead_letter_errors,
                    "concurrent": m.concurrent,
                    "queued": queued,
                    "mean_us": m.mean_duration_us(),
                    "p50_us": m.duration_p50_us,
                    "p90_us": m.duration_p90_us,
                    "p99_us": m.duration_p99_us,
                    "max_us": m.duration_max_us,
                    "event_age_p50_us": m.event_age_p50_us,
                    "event_age_p99_us": m.event_age_p99_us,
                }),
            );
        }
        Value::Object(functions)
    }
}

/// The status document's function metrics as Prometheus text exposition
/// (format 0.0.4): counters `_total`, gauges, and duration quantiles.
pub fn prometheus(doc: &Value) -> String {
    use std::fmt::Write;
    const COUNTERS: [(&str, &str, &str); 8] = [
        (
            "invocations",
            "ledge_invocations_total",
            "Invocations started.",
        ),
        ("errors", "ledge_errors_total", "Invocations that failed."),
        (
            "timeouts",
            "ledge_timeouts_total",
            "Invocations that timed out.",
        ),
        (
            "throttled",
            "ledge_throttles_total",
            "Events that found the function's queue full.",
        ),
        (
            "spilled",
            "ledge_spilled_total",
            "Events that waited in the function's spool stream because its queue was full.",
        ),
        (
            "retries",
            "ledge_retries_total",
            "Retries scheduled after a failed attempt.",
        ),
        (
            "dead_letters",
            "ledge_dead_letters_total",
            "Events sent to the failure destination.",
        ),
        (
            "dead_letter_errors",
            "ledge_dead_letter_errors_total",
            "Events the failure destination refused.",
        ),
    ];
    const GAUGES: [(&str, &str, &str); 2] = [
        (
            "concurrent",
            "ledge_concurrent_executions",
            "Invocations running now.",
        ),
        (
            "queued",
            "ledge_queue_depth",
            "Events waiting in the queue.",
        ),
    ];
    let empty = Map::new();
    let functions = doc["functions"].as_object().unwrap_or(&empty);
    let mut out = String::new();
    let device = doc["device"].as_str().unwrap_or("");
    for (key, metric, help) in COUNTERS {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (name, f) in functions {
            let _ = writeln!(
                out,
                "{metric}{{device=\"{device}\",function=\"{name}\"}} {}",
                f[key].as_u64().unwrap_or(0)
            );
        }
    }
    for (key, metric, help) in GAUGES {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for (name, f) in functions {
            let _ = writeln!(
                out,
                "{metric}{{device=\"{device}\",function=\"{name}\"}} {}",
                f[key].as_u64().unwrap_or(0)
            );
        }
    }
    let metric = "ledge_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {metric} Invocation duration.\n# TYPE {metric} summary"
    );
    for (name, f) in functions {
        for (quantile, key) in [("0.5", "p50_us"), ("0.9", "p90_us"), ("0.99", "p99_us")] {
            let seconds = f[key].as_u64().unwrap_or(0) as f64 / 1e6;
            let _ = writeln!(out, "{metric}{{device=\"{device}\",function=\"{name}\",quantile=\"{quantile}\"}} {seconds}");
        }
        let count = f["invocations"].as_u64().unwrap_or(0);
        let sum = (f["mean_us"].as_u64().unwrap_or(0) * count) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{metric}_sum{{device=\"{device}\",function=\"{name}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "{metric}_count{{device=\"{device}\",function=\"{name}\"}} {count}"
        );
    }
    out
}

/// Serves `prometheus(status)` to every HTTP request on `listener` until
/// `shutdown` changes. One response per connection, then close: all a
/// scraper needs, in a few lines rather than an HTTP crate.
pub async fn serve_prometheus(
    listener: tokio::net::TcpListener,
    sources: Arc<StatusSources>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!(target: "ledge::metrics", "metrics endpoint accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let sources = Arc::clone(&sources);
        tokio::spawn(async move {
            let exchange = async {
                // The request line and headers; their content does not matter.
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request).await?;
                let body = prometheus(&sources.status());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
        });
    }
}

fn spool_status(spool: &Spool) -> Value {
    let counters = spool.counters();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (oldest, next) = spool.seq_range();
    json!({
        "dir": spool.dir().display().to_string(),
        "bytes": spool.disk_bytes(),
        "segments": spool.segment_count(),
        "oldest_seq": oldest,
        "next_seq": next,
        "synced_through": spool.synced_through(),
        "appended": get(&counters.appended),
        "dropped": get(&counters.dropped),
        "rejected": get(&counters.rejected),
        "fsyncs": get(&counters.fsyncs),
        "damaged_segments": get(&counters.damaged_segments),
        "damaged_records": get(&counters.damaged_records),
        "disk_full": spool.disk_full(),
        "failed": spool.failure(),
    })
}

/// Spools a status snapshot every `interval` (into the telemetry stream)
/// until `shutdown` changes.
pub async fn ship_metrics(
    sources: Arc<StatusSources>,
    spool: Arc<Spool>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let record = body::encode(&MetricBody::V1 {
            json: sources.status().to_string(),
        });
        let _ = spool.append(Kind::Metric, &record);
    }
}

/// Ships ledge's own warnings and errors upstream.
pub fn ship_own_logs(sink: Arc<SpoolSink>) {
    crate::logging::set_shipper(Box::new(move |record: &log::Record<'_>| {
        sink.log_line(
            record.level(),
            record.target(),
            env!("CARGO_PKG_VERSION"),
            "",
            &record.args().to_string(),
        );
    }));
}
