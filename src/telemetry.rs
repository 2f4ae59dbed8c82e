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
        let mut functions = Map::new();
        for (name, metrics) in self.routing.current().metrics() {
            let m = metrics.snapshot();
            functions.insert(
                name,
                json!({
                    "invocations": m.invocations,
                    "errors": m.errors,
                    "timeouts": m.timeouts,
                    "throttled": m.throttled,
                    "retries": m.retries,
                    "dead_letters": m.dead_letters,
                    "dead_letter_errors": m.dead_letter_errors,
                    "mean_us": m.mean_duration_us(),
                    "max_us": m.duration_max_us,
                }),
            );
        }
        Value::Object(functions)
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
        "disk_full": spool.disk_full(),
        "failed": spool.failure(),
    })
}

/// Spools a status snapshot every `interval` until `shutdown` changes.
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
