//! The spool: an append-only, segmented log on flash that holds everything
//! ledge has accepted for upstream until upstream has confirmed it.
//!
//! # On disk (`<data_dir>/spool/<stream>/`)
//!
//! ```text
//! LOCK                      flock'd by the running ledge; a second one is refused
//! META                      written once: format version and a random spool epoch
//! 00000000000000000001.seg  segments, named by the seq of their first record
//! 00000000000000081920.seg  the last one is the active segment
//! uplink.cursor             per reader: the highest seq it has confirmed
//! ```
//!
//! Record framing is in [`frame`], segment layout in [`segment`]. Records are
//! numbered by a u64 `seq` that rises by one per record and is never reused,
//! so `(device, epoch, seq)` identifies a record upstream across restarts.
//!
//! # Writing and the durability policies
//!
//! [`Spool::append`] frames a record into an in-memory buffer and returns its
//! seq at once. One syncer thread writes buffered records to the active
//! segment in large `write`s and makes them durable with `fdatasync`. A
//! producer learns its record is durable by waiting for `synced_through >=
//! seq` ([`Spool::wait_durable`], [`Spool::durable`]); nothing is
//! acknowledged to a producer before that. Waiting also tells the syncer
//! that someone waits, which under `interval` makes it commit at once
//! (group commit on demand, see `sync_delay` in `writer.rs`). `spool.fsync`
//! chooses how:
//!
//! | policy | what the syncer does | acknowledged ingestion costs | on power loss |
//! |---|---|---|---|
//! | `always` | one `write` + `fdatasync` per record | one fdatasync per record (~1,000/s on a desktop SSD, far less on SD) | every acknowledged record survives |
//! | `batch` | group commit: everything buffered when it wakes, one `write`, one `fdatasync`, waited for or not | one fdatasync per group; waiters share it | every acknowledged record survives |
//! | `interval:50ms` | records nobody waits for (logs, metrics): at most one `fdatasync` per interval. As soon as a producer waits: group commit at once, as `batch` | as `batch` for waited records; unwaited ones cost one fdatasync per interval at most | every acknowledged record survives |
//!
//! So under the default `interval:50ms` an acknowledgement waits about one
//! fdatasync, not up to the interval: with a broker's window of 20
//! unacknowledged `[[forward]]` messages, ingestion was capped at 20 per
//! 50 ms (~400/s) before group commit on demand, and is bound by fdatasync
//! latency after (benches/spool.rs `waiting`). The interval still paces
//! what nobody waits for, which is where it saves flash wear.
//!
//! Records appended but not yet acknowledged may be lost on power loss under
//! every policy (they survive a process crash if the `write` happened). The
//! policies trade producer latency and fsync rate (flash wear) for
//! throughput, never the guarantee. This assumes the device honours
//! `fdatasync`; cheap SD cards that lie lose recent records, and the loss is
//! detected (CRC, seq gaps) rather than delivered as garbage.
//!
//! A failed `fdatasync` is final (the kernel may have dropped the pages):
//! the spool latches the error, stops accepting appends, and a restart runs
//! recovery. ENOSPC on `write` is not final: the unwritten records stay
//! buffered, `on_full` applies, and writing resumes when space returns.
//!
//! # Bounds
//!
//! `max_bytes` caps segments plus buffered records. When an append would
//! exceed it, `on_full = "drop_oldest"` deletes the oldest sealed segment
//! (its unconfirmed records are counted as dropped and logged) and
//! `on_full = "reject"` refuses the append (counted and logged).
//!
//! # Record classes: events and telemetry never share a budget
//!
//! Forwards, dead letters and deployment reports are data someone accepted
//! (an MQTT acknowledgement, a function's `forward` returning OK); logs and
//! metric snapshots are telemetry, and a guest can produce them at any rate
//! (every refused host call logs a line). A spool drops whole segments, so
//! if both classes shared one, a log flood would evict acknowledged events
//! with the segments they share. So the uplink has two streams: `uplink`
//! for events, and `telemetry` ([`TELEMETRY_STREAM`]) for logs and metrics,
//! each a spool of its own with its own share of `max_bytes`
//! ([`SpoolOptions::split_for_telemetry`]: telemetry 1/8, always
//! `drop_oldest`). Whatever the rate of logs, they only ever displace
//! older logs and metrics; events, forwards and dead letters are dropped
//! only by the event stream's own `on_full`, for lack of room for other
//! events. The uplink drains the event stream first and telemetry when it
//! has caught up. (Per-class accounting inside one spool was the
//! alternative; it would need segments rewritten or kept per class to
//! free telemetry alone, i.e. two streams anyway, with one seq space.)
//!
//! # Readers and reclaiming space
//!
//! A [`Reader`] delivers durable records in seq order from its cursor. The
//! reader's owner confirms progress with [`Spool::ack`]; cursors are
//! persisted (temp file, fsync, rename, directory fsync) at most once per
//! `cursor_interval` and always before a segment they cover is deleted.
//! A segment is deleted whole once every cursor is past its last record.
//! After a crash a reader resumes at its persisted cursor, so records may be
//! delivered twice but never skipped.
//!
//! # Recovery and damage
//!
//! Opening a spool checks that every segment is a regular file with a whole
//! header and scans only the active segment (sealed ones were synced when
//! they rolled): a torn tail is truncated at the last whole record and
//! logged at WARN with its offset (records not yet acknowledged, the
//! normal trace of a power cut). Everything else is damage, found at open
//! or by a reader in a sealed segment, and handled alike
//! (`damage.rs`): skipped by resynchronising on the next frame whose CRC
//! matches (so it costs only the records it hit), logged once at ERROR
//! with the segment, the offset and the seqs lost, and counted once in
//! `Counters::damaged_segments` / `damaged_records`. A segment that is not
//! a file, cannot be read or is missing costs its own records and no
//! others; a damaged header costs nothing (each record has its own CRC);
//! a newest segment with no header lost what it held and starts over.
//! Seqs are never numbered again: the next seq is past the last record
//! found and past every cursor. Nothing needs a human: the worst case is
//! counted loss, never a crash loop or a stalled reader.

pub mod body;
mod cursor;
mod damage;
pub mod frame;
mod reader;
mod recovery;
pub mod segment;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use frame::Kind;
pub use reader::{Reader, Record};
pub use recovery::{inspect, list_segments as recovery_list, verify, Inspection, VerifyReport};
pub use writer::{AppendError, Counters, Spool, SpoolError};

/// When the syncer calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Batch,
    Interval(Duration),
}

impl FsyncPolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch),
            _ => match text.strip_prefix("interval:") {
                Some(period) => crate::units::parse_duration(period)
                    .map(Self::Interval)
                    .and_then(|p| match p {
                        Self::Interval(d) if d.is_zero() => Err("the interval must be longer than zero".to_owned()),
                        p => Ok(p),
                    }),
                None => Err(format!(
                    "`{text}` is not a fsync policy (use \"always\", \"batch\" or \"interval:50ms\")"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Batch => f.write_str("batch"),
            Self::Interval(d) => {
                write!(f, "interval:{}", crate::units::format_duration(*d))
            }
        }
    }
}

/// What an append does when the spool is at `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    DropOldest,
    Reject,
}

impl OnFull {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "drop_oldest" => Ok(Self::DropOldest),
            "reject" => Ok(Self::Reject),
            _ => Err(format!(
                "`{text}` is not an on_full policy (use \"drop_oldest\" or \"reject\")"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// A segment rolls once it reaches this size.
    pub segment_size: u64,
    /// Cap on segments on disk plus records buffered in memory.
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub fsync: FsyncPolicy,
    /// Records buffered in memory before appends are refused as backlog
    /// (the device cannot keep up).
    pub max_pending: usize,
    /// How often changed cursors are persisted and spent segments reclaimed.
    pub cursor_interval: Duration,
    /// A non-empty active segment older than this rolls, so a quiet gateway
    /// can still reclaim it once confirmed.
    pub segment_max_age: Duration,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            segment_size: 8 << 20,
            max_bytes: 64 << 20,
            on_full: OnFull::DropOldest,
            fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
            max_pending: 4 << 20,
            cursor_interval: Duration::from_secs(1),
            segment_max_age: Duration::from_secs(3600),
        }
    }
}

/// The stream beside `uplink` that holds logs and metric snapshots for
/// upstream (see "Record classes" above).
pub const TELEMETRY_STREAM: &str = "telemetry";

/// The telemetry stream gets `max_bytes / TELEMETRY_SHARE`; the event
/// stream the rest.
pub const TELEMETRY_SHARE: u64 = 8;

impl SpoolOptions {
    /// The options of the uplink's two streams, events and telemetry, out of
    /// the configured ones: together they stay within `max_bytes`. The
    /// telemetry stream always drops its oldest when full (logs and metrics
    /// are worth less than the newest ones, and are never worth refusing
    /// for), rolls in smaller segments so dropping frees little at a time,
    /// and syncs at the configured interval (50 ms under `always` and
    /// `batch`): nobody waits for a log line.
    pub fn split_for_telemetry(&self) -> (SpoolOptions, SpoolOptions) {
        let telemetry_bytes = self.max_bytes / TELEMETRY_SHARE;
        let events = SpoolOptions {
            max_bytes: self.max_bytes - telemetry_bytes,
            ..self.clone()
        };
        let telemetry = SpoolOptions {
            max_bytes: telemetry_bytes,
            // At least 4 segments, so dropping one frees a quarter at most.
            segment_size: self.segment_size.min(telemetry_bytes / 4).max(4096),
            on_full: OnFull::DropOldest,
            fsync: match self.fsync {
                FsyncPolicy::Interval(period) => FsyncPolicy::Interval(period),
                FsyncPolicy::Always | FsyncPolicy::Batch => {
                    FsyncPolicy::Interval(Duration::from_millis(50))
                }
            },
            max_pending: self.max_pending.min(telemetry_bytes as usize),
            ..self.clone()
        };
        (events, telemetry)
    }
}

/// The folder of one spool stream under a data dir.
pub fn stream_dir(data_dir: &Path, stream: &str) -> PathBuf {
    data_dir.join("spool").join(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_gets_its_own_share_and_always_drops_its_oldest() {
        for options in [
            SpoolOptions::default(),
            SpoolOptions {
                max_bytes: 256 << 10,
                segment_size: 64 << 10,
                on_full: OnFull::Reject,
                fsync: FsyncPolicy::Always,
                ..SpoolOptions::default()
            },
        ] {
            let (events, telemetry) = options.split_for_telemetry();
            assert_eq!(events.max_bytes + telemetry.max_bytes, options.max_bytes);
            assert_eq!(telemetry.max_bytes, options.max_bytes / TELEMETRY_SHARE);
            assert_eq!(
                (events.on_full, events.fsync, events.segment_size),
                (options.on_full, options.fsync, options.segment_size)
            );
            assert_eq!(telemetry.on_full, OnFull::DropOldest);
            assert!(matches!(telemetry.fsync, FsyncPolicy::Interval(_)));
            assert!(telemetry.segment_size * 4 <= telemetry.max_bytes);
            assert!(telemetry.max_pending as u64 <= telemetry.max_bytes);
        }
    }
}
