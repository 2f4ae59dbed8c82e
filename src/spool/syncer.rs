//! The syncer thread: the only code that writes segment files. It decides
//! when to write what producers buffered (`sync_delay`: the durability
//! policies of the module docs), writes it in large `write`s, makes it
//! durable with `fdatasync` and publishes the new watermark; it enforces
//! `max_bytes` (`drop_oldest`), rolls segments, persists cursors and
//! deletes segments every reader is past. A failed `fdatasync` latches the
//! spool; ENOSPC keeps the records buffered until space returns.
//!
//! It holds the active segment file ([`ActiveFile`]) on its own; everything
//! it shares with producers and readers is in `state.rs`, and the lock on
//! it is never held across a write or an fsync.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cursor;
use super::options::{FsyncPolicy, OnFull};
use super::segment;
use super::state::{SegmentInfo, Shared, State};

/// Starts the syncer thread on a freshly recovered spool.
pub(crate) fn spawn(shared: Arc<Shared>, active: ActiveFile) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("spool-sync".to_owned())
        .spawn(move || Syncer { shared, active }.run())
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
            let _ = crate::fs::sync_dir(&self.shared.dir);
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
fn sync_delay(
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
