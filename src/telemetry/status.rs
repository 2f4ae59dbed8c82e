//! The status document behind `ledge status`: one JSON value made from
//! the running parts (functions, local link, spool streams, uplink, broker,
//! sensors), the same value `ship` spools upstream as a metric snapshot and
//! `prometheus` renders as text. Holds no secrets: nothing from `env` or
//! credentials ever goes in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::dispatch::{Dispatcher, Routing};
use crate::metrics::{Buckets, FunctionMetrics, DURATION_BUCKETS, EVENT_AGE_BUCKETS};
use crate::mqtt::LinkState;
use crate::spool::Spool;
use crate::time::{boot_ms, started_ms};
use crate::uplink::{status as uplink_status, UplinkStatus, CURSOR};

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
    /// The embedded broker, if ledge runs one.
    #[cfg(feature = "local-broker")]
    pub broker: Option<crate::broker::Broker>,
    /// What the document remembers between requests.
    pub memory: StatusMemory,
}

/// State kept for the status document.
#[derive(Default)]
pub struct StatusMemory {
    /// Metrics of function versions a reload removed, by qualified name:
    /// the evidence for (or against) a rollback stays until restart.
    retired: Mutex<BTreeMap<String, Arc<FunctionMetrics>>>,
    /// Per spool directory, the oldest unconfirmed record last read, so a
    /// scrape reads the disk only when the uplink cursor has moved.
    unsent: Mutex<HashMap<PathBuf, Unsent>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Unsent {
    cursor: u64,
    oldest: u64,
    /// Append time of the first unconfirmed record; `None` if there was
    /// nothing unconfirmed.
    at_ms: Option<u64>,
}

impl StatusSources {
    /// Keeps the metrics of `old`'s functions once a reload has replaced
    /// it, so versions it ran and the new one does not stay visible
    /// (marked unloaded).
    pub fn retire(&self, old: &Dispatcher) {
        let mut retired = self
            .memory
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, metrics) in old.metrics() {
            retired.insert(name, metrics);
        }
    }

    /// The status document. Holds no secrets: nothing from `env` or
    /// credentials ever goes in.
    pub fn status(&self) -> Value {
        let mut doc = json!({
            "device": self.device,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "started_ms": started_ms(),
            "local_broker": {
                "connected": self.link.connected.load(Ordering::Acquire),
                // null: no limit announced (or the embedded broker).
                "receive_maximum": match self.link.receive_maximum.load(Ordering::Relaxed) {
                    0 => Value::Null,
                    n => n.into(),
                },
            },
            "functions": self.functions(),
        });
        if let Some(boot) = boot_ms() {
            doc["boot_ms"] = boot.into();
        }
        if let Some(broker) = self.broker_status() {
            doc["broker"] = broker;
        }
        if let Some(spool) = &self.spool {
            doc["spool"] = self.spool_status(spool);
        }
        if let Some(telemetry) = &self.telemetry {
            doc["telemetry_spool"] = self.spool_status(telemetry);
        }
        if let (Some(uplink), Some(spool)) = (&self.uplink, &self.spool) {
            let uplink = uplink.snapshot(spool, crate::event::unix_ms());
            doc["uplink"] = json!({
                "connected": uplink.connected,
                "disconnected_ms": uplink.disconnected_ms,
                "connected_at_ms": uplink.connected_at_ms,
                "confirmed_seq": uplink.confirmed_seq,
                "lag_records": uplink.lag_records,
                "messages_sent": uplink.messages_sent,
                "reconnects": uplink.reconnects,
                "last_error": uplink.last_error,
            });
        }
        let sensors: Map<String, Value> = crate::metrics::sensor_errors()
            .into_iter()
            .map(|(name, errors)| (name, json!({ "errors": errors })))
            .collect();
        if !sensors.is_empty() {
            doc["sensors"] = Value::Object(sensors);
        }
        doc
    }

    #[cfg(feature = "local-broker")]
    fn broker_status(&self) -> Option<Value> {
        let broker = self.broker.as_ref()?;
        let c = broker.counters();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (sessions, dropped) = broker.sessions_and_drops();
        Some(json!({
            "connections": get(&c.connections),
            "refused": get(&c.refused),
            "connect_timeouts": get(&c.connect_timeouts),
            "malformed": get(&c.malformed),
            "received": get(&c.received),
            "sent": get(&c.sent),
            "paused": get(&c.paused),
            "sessions": sessions,
            "dropped": dropped,
        }))
    }

    #[cfg(not(feature = "local-broker"))]
    fn broker_status(&self) -> Option<Value> {
        None
    }

    fn functions(&self) -> Value {
        let dispatcher = self.routing.current();
        let mut functions = Map::new();
        for (name, metrics) in dispatcher.metrics() {
            let queued = dispatcher.queue_depth(&name);
            functions.insert(name, function_status(&metrics, queued, true));
        }
        let retired = self
            .memory
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, metrics) in retired.iter() {
            if !functions.contains_key(name) {
                functions.insert(name.clone(), function_status(metrics, 0, false));
            }
        }
        Value::Object(functions)
    }

    fn spool_status(&self, spool: &Spool) -> Value {
        let counters = spool.counters();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (oldest, next) = spool.seq_range();
        let synced = spool.synced_through();
        let oldest_unsent_age_ms = self
            .first_unsent_ms(spool)
            .map_or(0, |at| crate::event::unix_ms().saturating_sub(at));
        json!({
            "dir": spool.dir().display().to_string(),
            "bytes": spool.disk_bytes(),
            "segments": spool.segment_count(),
            "records": next.saturating_sub(oldest),
            "oldest_seq": oldest,
            "next_seq": next,
            "synced_through": synced,
            "lag_records": synced.saturating_sub(uplink_status::confirmed(spool)),
            "oldest_unsent_age_ms": oldest_unsent_age_ms,
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

    /// When the oldest record upstream has not confirmed was appended.
    fn first_unsent_ms(&self, spool: &Spool) -> Option<u64> {
        let cursor = uplink_status::confirmed(spool);
        if spool.synced_through() <= cursor {
            return None;
        }
        let (oldest, _) = spool.seq_range();
        let mut cache = self.memory.unsent.lock().unwrap_or_else(|p| p.into_inner());
        let known = cache.get(spool.dir()).copied();
        if let Some(known) = known.filter(|k| k.cursor == cursor && k.oldest == oldest) {
            if known.at_ms.is_some() {
                return known.at_ms;
            }
        }
        let at_ms = spool
            .first_unconfirmed(CURSOR)
            .ok()
            .flatten()
            .map(|(_, at)| at);
        cache.insert(
            spool.dir().to_path_buf(),
            Unsent {
                cursor,
                oldest,
                at_ms,
            },
        );
        at_ms
    }
}

fn function_status(m: &FunctionMetrics, queued: usize, loaded: bool) -> Value {
    let s = m.snapshot();
    json!({
        "loaded": loaded,
        "invocations": s.invocations,
        "errors": s.errors,
        "timeouts": s.timeouts,
        "throttled": s.throttled,
        "spilled": s.spilled,
        "loops_stopped": s.loops_stopped,
        "retries": s.retries,
        "dead_letters": s.dead_letters,
        "dead_letter_errors": s.dead_letter_errors,
        "dropped_disabled": s.dropped_disabled,
        "publish_throttled": s.publish_throttled,
        "concurrent": s.concurrent,
        "queued": queued,
        "mean_us": s.mean_duration_us(),
        "p50_us": s.duration_p50_us,
        "p90_us": s.duration_p90_us,
        "p99_us": s.duration_p99_us,
        "max_us": s.duration_max_us,
        "event_age_p50_us": s.event_age_p50_us,
        "event_age_p99_us": s.event_age_p99_us,
        "duration_histogram": histogram_json(&m.durations.buckets(DURATION_BUCKETS.0, DURATION_BUCKETS.1)),
        "event_age_histogram": histogram_json(&m.event_ages.buckets(EVENT_AGE_BUCKETS.0, EVENT_AGE_BUCKETS.1)),
    })
}

/// `{"buckets": [[upper bound µs, cumulative count], …], "count",
/// "sum_us"}`, listing only the bounds where the count grows (the snapshot
/// goes upstream every interval; the bounds are fixed, see
/// `metrics::DURATION_BUCKETS`).
pub(super) fn histogram_json(b: &Buckets) -> Value {
    let mut last = 0;
    let buckets: Vec<Value> = b
        .cumulative
        .iter()
        .filter(|(_, n)| std::mem::replace(&mut last, *n) != *n)
        .map(|(le, n)| json!([le, n]))
        .collect();
    json!({ "buckets": buckets, "count": b.count, "sum_us": b.sum_us })
}
