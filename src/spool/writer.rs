//! The spool handle: appends into the memory buffer the syncer drains,
//! durability waits, reader cursors and acknowledgements, and a clean
//! close. Opening runs recovery (`recovery.rs`) and starts the syncer
//! (`syncer.rs`); see the module docs in `mod.rs` for the guarantees.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::frame::{self, Kind};
use super::options::{OnFull, SpoolOptions};
use super::reader::Reader;
use super::recovery::{self, Recovered};
use super::state::{AppendError, Counters, CursorState, Shared, SpoolError, State};
use super::syncer::{self, ActiveFile};

/// An open spool. Dropping it flushes and syncs what is buffered.
pub struct Spool {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, running recovery.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Self, SpoolError> {
        let Recovered {
            lock,
            epoch,
            segments,
            next_seq,
            cursors,
            active_file,
            active_len,
            damage,
        } = recovery::open(dir, &options)?;
        let state = State::recovered(next_seq, segments, active_len, cursors);
        let shared = Arc::new(Shared::new(dir.to_path_buf(), options, epoch, state, lock));
        for report in &damage {
            shared.report_damage(report);
        }
        let active = ActiveFile {
            file: active_file,
            len: active_len,
            synced_len: active_len,
        };
        let syncer = syncer::spawn(Arc::clone(&shared), active).map_err(|e| SpoolError::Io {
            dir: dir.to_path_buf(),
            message: format!("cannot start the syncer thread: {e}"),
        })?;
        Ok(Self {
            shared,
            syncer: Mutex::new(Some(syncer)),
        })
    }

    /// Buffers one record and returns its seq. Durable once
    /// `synced_through() >= seq`.
    pub fn append(&self, kind: Kind, body: &[u8]) -> Result<u64, AppendError> {
        self.append_at(kind, unix_ms(), body)
    }

    pub fn append_at(&self, kind: Kind, ts_ms: u64, body: &[u8]) -> Result<u64, AppendError> {
        if body.len() > frame::MAX_BODY {
            return Err(AppendError::TooLarge(body.len()));
        }
        let options = &self.shared.options;
        let size = frame::HEADER_LEN + body.len();
        let mut state = self.shared.lock();
        if let Some(reason) = &state.failed {
            return Err(AppendError::Failed(reason.clone()));
        }
        if state.closing {
            return Err(AppendError::Closed);
        }
        if state.pending.len() + size > options.max_pending {
            return Err(self.refuse(&mut state, AppendError::Backlog));
        }
        // Under `reject` the quota counts buffered records too, so nothing
        // accepted is ever refused later. Under `drop_oldest` the syncer
        // makes room before each write (see `make_room`).
        let over = state.disk_bytes() + (state.pending.len() + size) as u64 > options.max_bytes;
        if options.on_full == OnFull::Reject && (over || state.disk_full_since.is_some()) {
            return Err(self.refuse(&mut state, AppendError::Full));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        frame::encode(&mut state.pending, seq, ts_ms, kind, body);
        let end = state.pending.len();
        state.pending_ends.push((seq, end));
        drop(state);
        self.shared
            .counters
            .appended
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .counters
            .body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(seq)
    }

    /// Counts a refused append and logs it (at most once a second).
    fn refuse(&self, state: &mut State, error: AppendError) -> AppendError {
        let rejected = self
            .shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let due = state
            .last_full_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            state.last_full_log = Some(Instant::now());
            log::warn!(target: "ledge::spool", "{}: append refused: {error} ({rejected} refused so far)", self.shared.dir.display());
        }
        error
    }

    /// Highest durable seq.
    pub fn synced_through(&self) -> u64 {
        self.shared.lock().synced_through
    }

    /// Blocks until `seq` is durable, the spool fails, or `timeout` passes.
    /// The syncer commits as soon as it can rather than at the policy's
    /// next interval.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<bool, SpoolError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        self.want(&mut state, seq);
        loop {
            if state.synced_through >= seq {
                return Ok(true);
            }
            if let Some(reason) = &state.failed {
                return Err(SpoolError::Failed(reason.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            state = self
                .shared
                .durable
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits (async) until `seq` is durable or the spool fails. The syncer
    /// commits as soon as it can rather than at the policy's next interval.
    pub async fn durable(&self, seq: u64) -> Result<(), SpoolError> {
        let mut watermark = self.shared.watermark.subscribe();
        self.want(&mut self.shared.lock(), seq);
        loop {
            if *watermark.borrow_and_update() >= seq {
                return Ok(());
            }
            if let Some(reason) = self.shared.lock().failed.clone() {
                return Err(SpoolError::Failed(reason));
            }
            if watermark.changed().await.is_err() {
                return Err(SpoolError::Failed("spool closed".to_owned()));
            }
        }
    }

    /// Tells the syncer a producer waits for `seq` (if it is not durable yet).
    fn want(&self, state: &mut State, seq: u64) {
        let seq = seq.min(state.next_seq - 1);
        if seq > state.synced_through && seq > state.wanted {
            state.wanted = seq;
            self.shared.wake.notify_one();
        }
    }

    /// Asks for everything appended so far to be made durable now (group
    /// commit), without waiting for it: for a reader that has caught up with
    /// the durable records and wants the rest (a function's spilled events)
    /// without the interval's delay. Returns true if anything was pending.
    pub fn sync_appended(&self) -> bool {
        let mut state = self.shared.lock();
        let last = state.next_seq - 1;
        let pending = last > state.synced_through;
        self.want(&mut state, last);
        pending
    }

    /// A receiver that changes whenever more records become durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.watermark.subscribe()
    }

    /// Opens a reader named `name`, starting after its persisted cursor.
    pub fn reader(&self, name: &str) -> Reader {
        let start = {
            let mut state = self.shared.lock();
            let floor = state
                .segments
                .first()
                .map_or(0, |s| s.base.saturating_sub(1));
            let entry = state
                .cursors
                .entry(name.to_owned())
                .or_insert_with(|| CursorState::new(floor));
            entry.acked
        };
        Reader::new(Arc::clone(&self.shared), name.to_owned(), start + 1)
    }

    /// Confirms that reader `name` is done with every record up to `seq`.
    /// Persisted lazily; never moves a cursor backwards.
    pub fn ack(&self, name: &str, seq: u64) {
        let mut state = self.shared.lock();
        let limit = state.synced_through;
        if let Some(cursor) = state.cursors.get_mut(name) {
            cursor.acked = cursor.acked.max(seq.min(limit));
        }
    }

    /// The seq and append time (UNIX ms) of the oldest durable record
    /// reader `name` has not confirmed; `None` if it confirmed them all.
    /// Reads one record from disk and registers no cursor (for metrics).
    pub fn first_unconfirmed(&self, name: &str) -> std::io::Result<Option<(u64, u64)>> {
        let (oldest, _) = self.seq_range();
        let next = (self.cursor(name).unwrap_or(0) + 1).max(oldest);
        let mut peek = Reader::new(Arc::clone(&self.shared), format!("{name} (peek)"), next);
        Ok(peek.next_batch(1, 1)?.first().map(|r| (r.seq, r.ts_ms)))
    }

    /// The confirmed seq of reader `name` (in memory).
    pub fn cursor(&self, name: &str) -> Option<u64> {
        self.shared.lock().cursors.get(name).map(|c| c.acked)
    }

    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Bytes on disk in segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.lock().disk_bytes()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.lock().segments.len()
    }

    /// Oldest seq still on disk and the next seq to be assigned.
    pub fn seq_range(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.segments.first().map_or(1, |s| s.base), state.next_seq)
    }

    /// True while writes fail for lack of space.
    pub fn disk_full(&self) -> bool {
        self.shared.lock().disk_full_since.is_some()
    }

    /// The latched failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// Writes and syncs everything buffered, persists cursors, stops the
    /// syncer. Called by `drop` too.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        let handle = self.syncer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        let mut lock = self
            .shared
            .lock_file
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lock.take();
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

/// Now as UNIX milliseconds (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
