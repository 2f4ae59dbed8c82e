//! What the uplink tells the rest of ledge about itself: `UplinkStatus`,
//! the live state only the uplink task writes, and `UplinkSnapshot`, one
//! reading of it that `ledge status`, Prometheus and the outage warning all
//! take instead of working the numbers out again.
//!
//! The confirmed seq is not kept here: it is the spool's `uplink` cursor,
//! which the uplink moves on every confirmation (and the spool itself moves
//! past records `on_full = drop_oldest` deleted), so a snapshot reads it
//! from there and can never disagree with what a restart resumes from.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::CURSOR;
use crate::spool::Spool;

/// The uplink's live state, shared with whoever reports on it.
#[derive(Debug, Default)]
pub struct UplinkStatus {
    connected: AtomicBool,
    /// Messages published, re-sends included.
    messages_sent: AtomicU64,
    /// Connections that failed or were lost.
    reconnects: AtomicU64,
    /// Why the last connection failed.
    last_error: Mutex<Option<String>>,
    /// When the current (or last) connection was made, UNIX ms; 0 before
    /// the first.
    connected_at_ms: AtomicU64,
    /// When the link was last lost (or the uplink started, if it never
    /// connected), UNIX ms; 0 before the uplink starts.
    down_since_ms: AtomicU64,
}

/// The uplink as it is at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkSnapshot {
    pub connected: bool,
    /// How long the link has been down, ms; 0 while connected.
    pub disconnected_ms: u64,
    /// When the link went down (or the uplink started), UNIX ms.
    pub down_since_ms: u64,
    /// When the current (or last) connection was made, UNIX ms; 0 if it
    /// never connected.
    pub connected_at_ms: u64,
    /// The highest event seq upstream confirmed.
    pub confirmed_seq: u64,
    /// Durable event records upstream has not confirmed yet.
    pub lag_records: u64,
    /// Messages published, re-sends included.
    pub messages_sent: u64,
    /// Connections that failed or were lost.
    pub reconnects: u64,
    pub last_error: Option<String>,
}

impl UplinkStatus {
    /// The uplink now, its event stream being `events`, at `now_ms`.
    pub fn snapshot(&self, events: &Spool, now_ms: u64) -> UplinkSnapshot {
        let connected = self.connected.load(Ordering::Acquire);
        let down_since_ms = self.down_since_ms.load(Ordering::Acquire);
        let confirmed_seq = confirmed(events);
        UplinkSnapshot {
            connected,
            disconnected_ms: if connected {
                0
            } else {
                now_ms.saturating_sub(down_since_ms)
            },
            down_since_ms,
            connected_at_ms: self.connected_at_ms.load(Ordering::Acquire),
            confirmed_seq,
            lag_records: events.synced_through().saturating_sub(confirmed_seq),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The uplink starts at `now_ms`: down until its first connection
    /// (unless an earlier start already said so).
    pub(super) fn starting(&self, now_ms: u64) {
        let _ = self
            .down_since_ms
            .compare_exchange(0, now_ms, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(super) fn connected(&self, now_ms: u64) {
        self.connected_at_ms.store(now_ms, Ordering::Release);
        self.connected.store(true, Ordering::Release);
    }

    /// A connection ended at `now_ms` (or an attempt did; only a link
    /// that was up moves `down_since_ms`).
    pub(super) fn disconnected(&self, now_ms: u64) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.down_since_ms.store(now_ms, Ordering::Release);
        }
    }

    /// A connection failed or was lost for `reason`.
    pub(super) fn failed(&self, reason: String) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub(super) fn sent(&self) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// The highest seq of `spool` upstream confirmed (the uplink's cursor).
pub fn confirmed(spool: &Spool) -> u64 {
    spool.cursor(CURSOR).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Kind;

    fn spool(dir: &std::path::Path) -> Spool {
        Spool::open(dir, Default::default()).unwrap()
    }

    #[test]
    fn a_snapshot_counts_the_down_time_only_while_the_link_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let events = spool(dir.path());
        let status = UplinkStatus::default();
        status.starting(1_000);
        let down = status.snapshot(&events, 4_000);
        assert!(!down.connected);
        assert_eq!((down.down_since_ms, down.disconnected_ms), (1_000, 3_000));
        assert_eq!(down.connected_at_ms, 0, "never connected");

        status.connected(5_000);
        let up = status.snapshot(&events, 9_000);
        assert!(up.connected);
        assert_eq!((up.disconnected_ms, up.connected_at_ms), (0, 5_000));

        status.disconnected(9_500);
        status.failed("connection reset".to_owned());
        let lost = status.snapshot(&events, 10_000);
        assert_eq!((lost.down_since_ms, lost.disconnected_ms), (9_500, 500));
        assert_eq!(lost.reconnects, 1);
        assert_eq!(lost.last_error.as_deref(), Some("connection reset"));
    }

    #[test]
    fn an_attempt_that_never_connected_keeps_the_outage_start() {
        let dir = tempfile::tempdir().unwrap();
        let events = spool(dir.path());
        let status = UplinkStatus::default();
        status.starting(1_000);
        status.disconnected(2_000);
        status.starting(3_000);
        assert_eq!(status.snapshot(&events, 4_000).down_since_ms, 1_000);
    }

    #[test]
    fn confirmed_and_lag_come_from_the_uplink_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let events = spool(dir.path());
        let _reader = events.reader(CURSOR);
        for _ in 0..5 {
            events.append(Kind::Log, b"x").unwrap();
        }
        let durable = events.wait_durable(5, std::time::Duration::from_secs(10));
        assert!(durable.unwrap(), "five records durable");
        events.ack(CURSOR, 3);
        let snapshot = UplinkStatus::default().snapshot(&events, 0);
        assert_eq!((snapshot.confirmed_seq, snapshot.lag_records), (3, 2));
    }
}
