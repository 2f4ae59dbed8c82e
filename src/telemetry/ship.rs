//! What goes upstream about ledge itself: a status snapshot spooled into
//! the telemetry stream every `metrics.interval`, and ledge's own warnings
//! and errors as log records.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::status::StatusSources;
use crate::sinks::spool::SpoolSink;
use crate::spool::body::{self, MetricBody};
use crate::spool::{Kind, Spool};

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
