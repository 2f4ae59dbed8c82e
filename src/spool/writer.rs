//! The writing side of the spool: appends into a memory buffer, one syncer
//! thread that writes and syncs, quota enforcement, and the durability
//! watermark producers wait on. See the module docs in `mod.rs` for the
//! guarantees.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cursor;
use super::damage::{Ledger, Report};
use super::frame::{self, Kind};
use super::recovery::{self, Recovered};
use super::segment;
use super::{FsyncPolicy, OnFull, Reader, SpoolOptions};

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

/// A segment on disk as the writer tracks it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub base: u64,
    pub bytes: u64,
    pub created: Instant,
}

pub(crate) struct State {
    pub next_seq: u64,
    /// Framed records waiting for the syncer.
    pending: Vec<u8>,
    /// (seq, end offset in `pending`) per buffered record.
    pending_ends: Vec<(u64, usize)>,
    /// Highest seq known durable.
    pub synced_through: u64,
    /// Highest seq a producer is waiting to see durable: while it is above
    /// `synced_through` the syncer commits at once (group commit on demand).
    wanted: u64,
    /// Length of the active segment known durable: readers treat bytes
    /// before it as whole records (anything else there is damage) and do
    /// not look past it.
    pub active_synced: u64,
    /// Segments in seq order; the last is the active one.
    pub segments: Vec<SegmentInfo>,
    pub closing: bool,
    pub failed: Option<String>,
    /// Set while writes fail with ENOSPC.
    disk_full_since: Option<Instant>,
    pub cursors: BTreeMap<String, cursor::CursorState>,
    last_sync: Instant,
    last_full_log: Option<Instant>,
}

impl State {
    fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Lowest confirmed seq over all cursors; `None` without cursors.
    fn min_cursor(&self, persisted: bool) -> Option<u64> {
        self.cursors
            .values()
            .map(|c| if persisted { c.persisted } else { c.acked })
            .min()
    }
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: SpoolOptions,
    pub epoch: u64,
    pub state: Mutex<State>,
    /// Wakes the syncer: records pending, a cursor moved, or closing.
    wake: Condvar,
    /// Wakes blocking waiters when `synced_through` moves or the spool fails.
    durable: Condvar,
    /// The same watermark for async waiters.
    pub watermark: watch::Sender<u64>,
    pub counters: Counters,
    /// The flock on LOCK, held until `close` (readers may outlive the spool).
    lock_file: Mutex<Option<File>>,
    /// Damage reported so far, so each piece is logged and counted once.
    damage: Mutex<Ledger>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs and counts damage found in a segment (once per place and lost
    /// seq, however often it is found).
    pub fn report_damage(&self, report: &Report) {
        self.damage.lock().unwrap_or_else(|p| p.into_inner()).note(
            &self.dir,
            report,
            &self.counters,
        );
    }
}

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
            active,
            damage,
        } = recovery::open(dir, &options)?;
        let synced_through = next_seq - 1;
        let state = State {
            next_seq,
            pending: Vec::new(),
            pending_ends: Vec::new(),
            synced_through,
            wanted: synced_through,
            active_synced: active.synced_len,
            segments,
            closing: false,
            failed: None,
            disk_full_since: None,
            cursors,
            last_sync: Instant::now(),
            last_full_log: None,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            options,
            epoch,
            state: Mutex::new(state),
            wake: Condvar::new(),
            durable: Condvar::new(),
            watermark: watch::Sender::new(synced_through),
            counters: Counters::default(),
            lock_file: Mutex::new(Some(lock)),
            damage: Mutex::new(Ledger::default()),
        });
        for report in &damage {
            shared.report_damage(report);
        }
        let syncer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("spool-sync".to_owned())
                .spawn(move || Syncer { shared, active }.run())
                .map_err(|e| SpoolError::Io {
                    dir: dir.to_path_buf(),
                    message: format!("cannot start the syncer thread: {e}"),
                })?
        };
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
                .or_insert_with(|| cursor::CursorState::new(floor));
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

/// Deletes the oldest sealed segment to make room; false if there is none.
fn drop_oldest(shared: &Shared, state: &mut State) -> bool {
    if state.segments.len() < 2 {
        return false;
    }
    let oldest = state.segments.remove(0);
    let last = state.segments[0].base - 1;
    let confirmed = state.min_cursor(false).unwrap_or(oldest.base - 1);
    let lost = last.saturating_sub(confirmed.max(oldest.base - 1));
    let path = shared.dir.join(segment::file_name(oldest.base));
    if let Err(e) = std::fs::remove_file(&path) {
        log::error!(target: "ledge::spool", "cannot delete {}: {e}", path.display());
    }
    // Readers behind the dropped segment skip to the next one.
    for cursor in state.cursors.values_mut() {
        cursor.acked = cursor.acked.max(last);
    }
    shared.counters.dropped.fetch_add(lost, Ordering::Relaxed);
    log::warn!(
        target: "ledge::spool",
        "{}: spool full (on_full = drop_oldest): deleted segment with records {}..={last}, {lost} of them never confirmed upstream",
        shared.dir.display(),
        oldest.base
    );
    true
}

/// The active segment file, owned by the syncer thread.
pub(crate) struct ActiveFile {
    pub file: File,
    /// Bytes in the file.
    pub len: u64,
    /// Bytes known durable.
    pub synced_len: u64,
}

/// Why a batch could not be fully written.
enum WriteFailure {
    /// Out of space: `written` leading records are durable, the rest are not.
    NoSpace {
        written: usize,
        error: std::io::Error,
    },
    /// Anything else, including every fsync failure: final.
    Fatal(String),
}

struct Syncer {
    shared: Arc<Shared>,
    active: ActiveFile,
}

impl Syncer {
    fn run(mut self) {
        let mut buffer = Vec::new();
        let mut ends = Vec::new();
        let mut next_housekeeping = Instant::now() + self.shared.options.cursor_interval;
        loop {
            let closing = {
                let mut state = self.shared.lock();
                loop {
                    if state.failed.is_some() {
                        return;
                    }
                    let now = Instant::now();
                    if now >= next_housekeeping || (state.closing && state.pending.is_empty()) {
                        break;
                    }
                    if !state.pending.is_empty() {
                        let wait = self.wait_before_sync(&state, now);
                        if wait.is_zero() || state.closing {
                            break;
                        }
                        state = self.sleep(state, wait.min(next_housekeeping - now));
                    } else {
                        state = self.sleep(state, next_housekeeping - now);
                    }
                }
                std::mem::swap(&mut buffer, &mut state.pending);
                std::mem::swap(&mut ends, &mut state.pending_ends);
                state.closing && buffer.is_empty()
            };
            if !buffer.is_empty() {
                self.sync_batch(&mut buffer, &mut ends);
            }
            if Instant::now() >= next_housekeeping || closing {
                self.housekeeping();
                next_housekeeping = Instant::now() + self.shared.options.cursor_interval;
            }
            if closing {
                return;
            }
        }
    }

    /// How long to wait before syncing pending records.
    fn wait_before_sync(&self, state: &State, now: Instant) -> Duration {
        sync_delay(
            self.shared.options.fsync,
            state.wanted > state.synced_through,
            state.last_sync,
            state.disk_full_since,
            now,
        )
    }

    fn sleep<'a>(&self, state: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        self.shared
            .wake
            .wait_timeout(state, timeout)
            .map(|(s, _)| s)
            .unwrap_or_else(|p| p.into_inner().0)
    }

    /// Writes and syncs one batch, then publishes the new watermark.
    fn sync_batch(&mut self, buffer: &mut Vec<u8>, ends: &mut Vec<(u64, usize)>) {
        let result = self.write_batch(buffer, ends);
        let mut state = self.shared.lock();
        state.last_sync = Instant::now();
        match result {
            Ok(()) => {
                if let Some(since) = state.disk_full_since.take() {
                    log::info!(target: "ledge::spool", "{}: space available again after {}s; writing resumed", self.shared.dir.display(), since.elapsed().as_secs());
                }
                buffer.clear();
                ends.clear();
            }
            Err(WriteFailure::NoSpace { written, error }) => {
                self.requeue(&mut state, buffer, ends, written);
                if state.disk_full_since.is_none() {
                    state.disk_full_since = Some(Instant::now());
                    self.shared
                        .counters
                        .disk_full_events
                        .fetch_add(1, Ordering::Relaxed);
                    log::warn!(target: "ledge::spool", "{}: {error}; records stay buffered and on_full = {} applies until space returns", self.shared.dir.display(), self.shared.options.on_full.as_str());
                }
                if self.shared.options.on_full == OnFull::DropOldest {
                    drop_oldest(&self.shared, &mut state);
                }
            }
            Err(WriteFailure::Fatal(reason)) => {
                log::error!(target: "ledge::spool", "{}: {reason}; the spool stops accepting records until ledge restarts and recovers it", self.shared.dir.display());
                state.failed = Some(reason);
                state.pending.clear();
                state.pending_ends.clear();
            }
        }
        drop(state);
        self.shared.durable.notify_all();
    }

    /// Puts records that were not written back in front of the buffer.
    fn requeue(
        &self,
        state: &mut State,
        buffer: &mut Vec<u8>,
        ends: &mut Vec<(u64, usize)>,
        written: usize,
    ) {
        let start = if written == 0 { 0 } else { ends[written - 1].1 };
        let mut bytes = buffer.split_off(start);
        let mut kept: Vec<(u64, usize)> = ends[written..]
            .iter()
            .map(|(s, e)| (*s, e - start))
            .collect();
        let offset = bytes.len();
        bytes.extend_from_slice(&state.pending);
        kept.extend(state.pending_ends.iter().map(|(s, e)| (*s, e + offset)));
        state.pending = bytes;
        state.pending_ends = kept;
        buffer.clear();
        ends.clear();
    }

    fn write_batch(&mut self, buffer: &[u8], ends: &[(u64, usize)]) -> Result<(), WriteFailure> {
        let always = self.shared.options.fsync == FsyncPolicy::Always;
        let mut chunk_start = 0;
        let mut synced = 0; // records of this batch known durable
        let mut i = 0;
        while i < ends.len() {
            // Gather records up to the segment limit (at least one).
            let mut j = i;
            let mut size = 0u64;
            while j < ends.len() {
                let len = (ends[j].1 - if j == 0 { 0 } else { ends[j - 1].1 }) as u64;
                if j > i
                    && (always || self.active.len + size + len > self.shared.options.segment_size)
                {
                    break;
                }
                size += len;
                j += 1;
            }
            let chunk_end = ends[j - 1].1;
            self.make_room((chunk_end - chunk_start) as u64);
            if let Err(error) = self.write_all(&buffer[chunk_start..chunk_end]) {
                return Err(self.undo_unsynced(error, synced));
            }
            if always || j == ends.len() || self.active.len >= self.shared.options.segment_size {
                self.sync()?;
                synced = j;
                self.publish(ends[j - 1].0);
            }
            if self.active.len >= self.shared.options.segment_size {
                let next_base = ends[j - 1].0 + 1;
                if let Err(error) = self.roll(next_base) {
                    return Err(self.no_space_or_fatal(error, synced));
                }
            }
            chunk_start = chunk_end;
            i = j;
        }
        Ok(())
    }

    /// Under `drop_oldest`, deletes the oldest segments until `bytes` more
    /// fit under `max_bytes` (or only the active segment is left).
    fn make_room(&self, bytes: u64) {
        if self.shared.options.on_full != OnFull::DropOldest {
            return;
        }
        let mut state = self.shared.lock();
        while state.disk_bytes() + bytes > self.shared.options.max_bytes
            && drop_oldest(&self.shared, &mut state)
        {}
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.active.file.write_all(bytes)?;
        self.active.len += bytes.len() as u64;
        if let Some(last) = self.shared.lock().segments.last_mut() {
            last.bytes = self.active.len;
        }
        self.shared
            .counters
            .written_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WriteFailure> {
        self.active
            .file
            .sync_data()
            .map_err(|e| WriteFailure::Fatal(format!("fdatasync failed: {e}")))?;
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.active.synced_len = self.active.len;
        Ok(())
    }

    /// A write failed: cut the file back to its durable length so no torn
    /// record is left for later appends to follow.
    fn undo_unsynced(&mut self, error: std::io::Error, synced: usize) -> WriteFailure {
        let cut = self.active.synced_len;
        let result = self.active.file.set_len(cut).and_then(|()| {
            use std::io::Seek;
            self.active
                .file
                .seek(std::io::SeekFrom::Start(cut))
                .map(|_| ())
        });
        self.active.len = cut;
        if let Some(last) = self.shared.lock().segments.last_mut() {
            last.bytes = cut;
        }
        if let Err(e) = result {
            return WriteFailure::Fatal(format!(
                "write failed ({error}) and the torn tail could not be cut: {e}"
            ));
        }
        self.no_space_or_fatal(error, synced)
    }

    fn no_space_or_fatal(&self, error: std::io::Error, written: usize) -> WriteFailure {
        if error.raw_os_error() == Some(libc::ENOSPC) || error.raw_os_error() == Some(libc::EDQUOT)
        {
            WriteFailure::NoSpace { written, error }
        } else {
            WriteFailure::Fatal(format!("write failed: {error}"))
        }
    }

    fn publish(&self, seq: u64) {
        let mut state = self.shared.lock();
        state.synced_through = state.synced_through.max(seq);
        state.active_synced = self.active.synced_len;
        drop(state);
        self.shared.watermark.send_replace(seq);
        self.shared.durable.notify_all();
    }

    /// Seals the active segment and starts `next_base`.
    fn roll(&mut self, next_base: u64) -> std::io::Result<()> {
        let file = segment::create(&self.shared.dir, next_base)?;
        let header = segment::HEADER_LEN as u64;
        self.shared
            .counters
            .written_bytes
            .fetch_add(header, Ordering::Relaxed);
        self.active = ActiveFile {
            file,
            len: header,
            synced_len: header,
        };
        let mut state = self.shared.lock();
        state.segments.push(SegmentInfo {
            base: next_base,
            bytes: header,
            created: Instant::now(),
        });
        state.active_synced = header;
        drop(state);
        log::debug!(target: "ledge::spool", "{}: rolled to segment {next_base}", self.shared.dir.display());
        Ok(())
    }

    /// Persists moved cursors, deletes segments every cursor is past, and
    /// rolls an old active segment. Cursor files are written before any
    /// segment they cover is deleted.
    fn housekeeping(&mut self) {
        let moved: Vec<(String, u64)> = {
            let state = self.shared.lock();
            state
                .cursors
                .iter()
                .filter(|(_, c)| c.acked != c.persisted)
                .map(|(name, c)| (name.clone(), c.acked))
                .collect()
        };
        let mut persisted_all = true;
        for (name, seq) in moved {
            match cursor::persist(&self.shared.dir, &name, seq) {
                Ok(()) => {
                    if let Some(c) = self.shared.lock().cursors.get_mut(&name) {
                        c.persisted = seq;
                    }
                }
                Err(e) => {
                    persisted_all = false;
                    log::warn!(target: "ledge::spool", "{}: cannot save cursor {name}: {e}", self.shared.dir.display());
                }
            }
        }
        // Normally a segment goes only once the cursor past it is on disk.
        // If the cursor cannot be written (the disk is full), segments that
        // upstream confirmed are deleted anyway: that is the only way space
        // comes back, and a crash before the cursor is saved then costs
        // nothing but a log line about records already delivered.
        self.reclaim(persisted_all);
        self.roll_if_old();
    }

    fn reclaim(&mut self, by_persisted_cursor: bool) {
        let mut deleted = false;
        let mut freed = 0;
        loop {
            let mut state = self.shared.lock();
            let Some(confirmed) = state.min_cursor(by_persisted_cursor) else {
                break;
            };
            if state.segments.len() < 2 || state.segments[1].base - 1 > confirmed {
                break;
            }
            let spent = state.segments.remove(0);
            drop(state);
            let path = self.shared.dir.join(segment::file_name(spent.base));
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!(target: "ledge::spool", "cannot delete {}: {e}", path.display());
            }
            deleted = true;
            freed += spent.bytes;
        }
        if deleted {
            let _ = sync_dir(&self.shared.dir);
            self.space_returned(freed);
        }
    }

    /// After freeing space with nothing left to write, the disk-full state
    /// ends here: no write will come to end it (under `reject` appends are
    /// refused while it lasts). If the disk is still full, the next write
    /// says so and the state returns.
    fn space_returned(&self, freed: u64) {
        let mut state = self.shared.lock();
        if state.pending.is_empty() {
            if let Some(since) = state.disk_full_since.take() {
                log::info!(target: "ledge::spool", "{}: {freed} bytes reclaimed after {}s of full disk; accepting records again", self.shared.dir.display(), since.elapsed().as_secs());
            }
        }
    }

    fn roll_if_old(&mut self) {
        let (old, next_base) = {
            let state = self.shared.lock();
            let old = state.segments.last().is_some_and(|s| {
                s.created.elapsed() >= self.shared.options.segment_max_age
                    && s.bytes > segment::HEADER_LEN as u64
            });
            (old && state.pending.is_empty(), state.synced_through + 1)
        };
        if old && self.active.len == self.active.synced_len {
            if let Err(e) = self.roll(next_base) {
                log::warn!(target: "ledge::spool", "{}: cannot roll an old segment: {e}", self.shared.dir.display());
            }
        }
    }
}

/// How long the syncer waits before writing and syncing what is buffered
/// (`ZERO`: now). `someone_waits`: a producer waits for a buffered record.
///
/// Under `interval` a waiting producer is served at once (group commit:
/// everything buffered goes in that one write and fdatasync), so
/// acknowledgements are pipelined instead of paced at one batch per
/// interval; records nobody waits for (logs, metrics, a durable trigger's
/// events once acknowledged) keep the interval's pacing. Out of space,
/// writes are retried once a second whoever waits.
pub(crate) fn sync_delay(
    policy: FsyncPolicy,
    someone_waits: bool,
    last_sync: Instant,
    disk_full_since: Option<Instant>,
    now: Instant,
) -> Duration {
    if let Some(since) = disk_full_since {
        let retry = since.max(last_sync) + Duration::from_secs(1);
        return retry.saturating_duration_since(now);
    }
    match policy {
        FsyncPolicy::Interval(_) if someone_waits => Duration::ZERO,
        FsyncPolicy::Interval(period) => (last_sync + period).saturating_duration_since(now),
        FsyncPolicy::Always | FsyncPolicy::Batch => Duration::ZERO,
    }
}

/// Now as UNIX milliseconds (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// fsync a directory so creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: FsyncPolicy = FsyncPolicy::Interval(Duration::from_millis(50));

    #[test]
    fn a_waiting_producer_makes_the_syncer_commit_now() {
        let now = Instant::now();
        let just_synced = now - Duration::from_millis(10);
        assert_eq!(
            sync_delay(INTERVAL, true, just_synced, None, now),
            Duration::ZERO
        );
        // Nobody waits: the interval's pacing.
        assert_eq!(
            sync_delay(INTERVAL, false, just_synced, None, now),
            Duration::from_millis(40)
        );
        assert_eq!(
            sync_delay(INTERVAL, false, now - Duration::from_secs(1), None, now),
            Duration::ZERO
        );
        for policy in [FsyncPolicy::Always, FsyncPolicy::Batch] {
            for waits in [false, true] {
                assert_eq!(
                    sync_delay(policy, waits, just_synced, None, now),
                    Duration::ZERO
                );
            }
        }
    }

    #[test]
    fn out_of_space_retries_once_a_second_even_for_a_waiter() {
        let now = Instant::now();
        let full_since = Some(now - Duration::from_millis(300));
        for policy in [FsyncPolicy::Batch, INTERVAL] {
            assert_eq!(
                sync_delay(policy, true, now - Duration::from_secs(5), full_since, now),
                Duration::from_millis(700)
            );
        }
    }
}
