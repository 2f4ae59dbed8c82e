//! The ledger neither the writer nor a reader owns: what producers, the
//! syncer thread and readers share about one open spool, its errors, and its
//! counters.
//!
//! [`Shared`] is behind an `Arc` held by the [`Spool`](super::Spool)
//! handle, the syncer thread and every [`Reader`](super::Reader) (readers
//! may outlive the handle). Its mutable part, [`State`], sits under one
//! mutex, taken briefly: producers append framed records to `pending`, the
//! syncer swaps `pending` out, writes it with the lock released, then
//! publishes `synced_through`; readers copy a view of the segments and the
//! watermark and read files with the lock released. Nobody does I/O while
//! holding it except deleting a segment (`drop_oldest`), which must be
//! atomic with forgetting it.
//!
//! Two condition variables and one `watch` carry the protocol between
//! them: `wake` tells the syncer there is work, `durable` wakes blocking
//! producers when the watermark moves, `watermark` does the same for async
//! ones.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use super::damage::{Ledger, Report};
use super::options::SpoolOptions;

/// Why the spool as a whole cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {message}")]
    Io { dir: PathBuf, message: String },
    #[error("spool {0} is in use by another ledge process")]
    Locked(PathBuf),
    #[error("spool stopped after a write or sync failure: {0}")]
    Failed(String),
}

/// Why one append was not accepted. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("spool is full (max_bytes, on_full = reject)")]
    Full,
    #[error("record of {0} bytes is larger than the spool's 4 MiB record limit")]
    TooLarge(usize),
    #[error("spool write backlog is full (storage is not keeping up)")]
    Backlog,
    #[error("spool stopped after a write or sync failure: {0}")]
    Failed(String),
    #[error("spool is closed")]
    Closed,
}

/// Counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub appended: AtomicU64,
    /// Body bytes appended (the payload the producers handed in).
    pub body_bytes: AtomicU64,
    /// Bytes written to segment files (frames and headers).
    pub written_bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Records deleted unconfirmed by `drop_oldest`.
    pub dropped: AtomicU64,
    /// Appends refused (full, backlog).
    pub rejected: AtomicU64,
    /// Times a write hit ENOSPC.
    pub disk_full_events: AtomicU64,
    /// Segments found damaged (at open or while reading), each counted once.
    pub damaged_segments: AtomicU64,
    /// Records lost to damage (by seq, each counted once).
    pub damaged_records: AtomicU64,
}

/// A segment on disk as the spool tracks it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub base: u64,
    pub bytes: u64,
    pub created: Instant,
}

/// A reader's cursor in memory: what it confirmed, and what is on disk
/// (`cursor.rs` owns the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CursorState {
    pub acked: u64,
    pub persisted: u64,
}

impl CursorState {
    pub fn new(seq: u64) -> Self {
        Self {
            acked: seq,
            persisted: seq,
        }
    }
}

/// Everything about an open spool that changes, under one mutex.
pub(crate) struct State {
    /// The seq the next append gets.
    pub next_seq: u64,
    /// Framed records waiting for the syncer (producers append, the syncer
    /// takes them all at once).
    pub pending: Vec<u8>,
    /// (seq, end offset in `pending`) per buffered record.
    pub pending_ends: Vec<(u64, usize)>,
    /// Highest seq known durable: what producers wait on and the most a
    /// reader may deliver.
    pub synced_through: u64,
    /// Highest seq a producer is waiting to see durable: while it is above
    /// `synced_through` the syncer commits at once (group commit on demand).
    pub wanted: u64,
    /// Length of the active segment known durable: readers treat bytes
    /// before it as whole records (anything else there is damage) and do
    /// not look past it.
    pub active_synced: u64,
    /// Segments in seq order; the last is the active one.
    pub segments: Vec<SegmentInfo>,
    /// Set by `close`: the syncer writes what is pending and stops.
    pub closing: bool,
    /// Set when a write or fsync failed for good; appends are refused.
    pub failed: Option<String>,
    /// Set while writes fail with ENOSPC.
    pub disk_full_since: Option<Instant>,
    pub cursors: BTreeMap<String, CursorState>,
    /// When the syncer last wrote (paces `interval`).
    pub last_sync: Instant,
    /// When a refused append was last logged (at most once a second).
    pub last_full_log: Option<Instant>,
}

impl State {
    /// A spool recovery found: `next_seq` past every record, all of it
    /// durable, nothing pending.
    pub fn recovered(
        next_seq: u64,
        segments: Vec<SegmentInfo>,
        active_synced: u64,
        cursors: BTreeMap<String, CursorState>,
    ) -> Self {
        let synced_through = next_seq - 1;
        Self {
            next_seq,
            pending: Vec::new(),
            pending_ends: Vec::new(),
            synced_through,
            wanted: synced_through,
            active_synced,
            segments,
            closing: false,
            failed: None,
            disk_full_since: None,
            cursors,
            last_sync: Instant::now(),
            last_full_log: None,
        }
    }

    /// Bytes in segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Lowest confirmed seq over all cursors; `None` without cursors.
    pub fn min_cursor(&self, persisted: bool) -> Option<u64> {
        self.cursors
            .values()
            .map(|c| if persisted { c.persisted } else { c.acked })
            .min()
    }
}

/// What the spool handle, the syncer and the readers share.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: SpoolOptions,
    /// Random, from META: tells two spools of one device apart upstream.
    pub epoch: u64,
    pub state: Mutex<State>,
    /// Wakes the syncer: records pending, a producer waiting, or closing.
    pub wake: Condvar,
    /// Wakes blocking waiters when `synced_through` moves or the spool fails.
    pub durable: Condvar,
    /// The same watermark for async waiters.
    pub watermark: watch::Sender<u64>,
    pub counters: Counters,
    /// The lock on LOCK, held until `close` (readers may outlive the spool).
    pub lock_file: Mutex<Option<File>>,
    /// Damage reported so far, so each piece is logged and counted once.
    damage: Mutex<Ledger>,
}

impl Shared {
    pub fn new(
        dir: PathBuf,
        options: SpoolOptions,
        epoch: u64,
        state: State,
        lock_file: File,
    ) -> Self {
        let synced_through = state.synced_through;
        Self {
            dir,
            options,
            epoch,
            state: Mutex::new(state),
            wake: Condvar::new(),
            durable: Condvar::new(),
            watermark: watch::Sender::new(synced_through),
            counters: Counters::default(),
            lock_file: Mutex::new(Some(lock_file)),
            damage: Mutex::new(Ledger::default()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs and counts damage found in a segment (once per place and lost
    /// seq, however often it is found).
    pub fn report_damage(&self, report: &Report) {
        let new = self
            .damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(&self.dir, report);
        if new.segment {
            self.counters
                .damaged_segments
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .damaged_records
            .fetch_add(new.records, Ordering::Relaxed);
    }
}
