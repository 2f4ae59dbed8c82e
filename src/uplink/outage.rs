//! What the log says about an outage of the uplink: a warning once it has
//! been down for `outage_warning` (then every ten times as long, so a
//! gateway offline for a week logs a few lines a day, not one a minute),
//! and one line when the backlog that built up has all been confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::status::{self, UplinkStatus};
use super::CURSOR;
use crate::spool::Spool;

/// How often the watcher looks at the uplink.
const TICK: Duration = Duration::from_secs(1);

/// Logs a warning while the uplink is down longer than `threshold`, until
/// `shutdown` changes.
pub async fn warn_while_down(
    status: Arc<UplinkStatus>,
    spool: Arc<Spool>,
    address: String,
    threshold: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let repeat = threshold.saturating_mul(10);
    // The outage warned about (its start) and when it was last mentioned.
    let mut warned: Option<(u64, Instant)> = None;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::event::unix_ms();
        let uplink = status.snapshot(&spool, now);
        if uplink.connected {
            warned = None;
            continue;
        }
        let since = uplink.down_since_ms;
        let down_for = Duration::from_millis(uplink.disconnected_ms);
        let due = match warned {
            Some((outage, last)) if outage == since => last.elapsed() >= repeat,
            _ => down_for >= threshold,
        };
        if !due {
            continue;
        }
        warned = Some((since, Instant::now()));
        let waiting = uplink.lag_records;
        let oldest = match spool.first_unconfirmed(CURSOR) {
            Ok(Some((_, at_ms))) => format!(
                ", the oldest from {} ago",
                elapsed(Duration::from_millis(now.saturating_sub(at_ms)))
            ),
            _ => String::new(),
        };
        let last_error = uplink
            .last_error
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        let never = if uplink.connected_at_ms == 0 {
            " (not connected since ledge started)"
        } else {
            ""
        };
        log::warn!(
            target: "ledge::uplink",
            "upstream unreachable for {} ({address}, since {}){never}: {waiting} records waiting in the spool{oldest}{last_error}",
            elapsed(down_for),
            crate::logging::utc_timestamp(since),
        );
    }
}

/// The backlog a connection found waiting: logged once it is confirmed.
pub struct Backlog {
    /// Per lane: the seq up to which records waited at connect, and how
    /// many did.
    lanes: Vec<(u64, u64)>,
    connected: Instant,
    outage: Duration,
    logged: bool,
}

impl Backlog {
    /// What waits in `spools` now, after an outage of `outage`.
    pub fn at_connect<'a>(spools: impl Iterator<Item = &'a Arc<Spool>>, outage: Duration) -> Self {
        let lanes: Vec<(u64, u64)> = spools
            .map(|spool| {
                let through = spool.synced_through();
                (through, through.saturating_sub(status::confirmed(spool)))
            })
            .collect();
        let logged = lanes.iter().all(|(_, waiting)| *waiting == 0);
        Self {
            lanes,
            connected: Instant::now(),
            outage,
            logged,
        }
    }

    /// Logs the drain once every lane has confirmed its backlog.
    pub fn check<'a>(&mut self, mut spools: impl Iterator<Item = &'a Arc<Spool>>) {
        if self.logged {
            return;
        }
        let drained = self.lanes.iter().all(|(through, _)| {
            spools
                .next()
                .is_some_and(|spool| status::confirmed(spool) >= *through)
        });
        if !drained {
            return;
        }
        self.logged = true;
        let events = self.lanes.first().map_or(0, |(_, n)| *n);
        let telemetry: u64 = self.lanes.iter().skip(1).map(|(_, n)| n).sum();
        log::info!(
            target: "ledge::uplink",
            "upstream backlog drained: {events} records (and {telemetry} log and metric records) confirmed in {}, after {} offline",
            elapsed(self.connected.elapsed()),
            elapsed(self.outage)
        );
    }
}

/// `850ms`, `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_times_read_naturally() {
        assert_eq!(elapsed(Duration::from_millis(850)), "850ms");
        assert_eq!(elapsed(Duration::from_secs(42)), "42s");
        assert_eq!(elapsed(Duration::from_secs(303)), "5m 3s");
        assert_eq!(elapsed(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(elapsed(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
