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
//! (group commit on demand, see `sync_delay` in `syncer.rs`). `spool.fsync`
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
//!
//! # Inside: who owns what
//!
//! ```text
//!   producers ──append──▶ writer.rs ──pending──▶ syncer.rs ──write, fdatasync──▶ segments
//!        ▲   wait_durable     │                     │ publish synced_through
//!        └──────────────── state.rs (Shared: State under one mutex, counters) ◀── reader.rs
//!                             ▲                     │ persist cursors, reclaim
//!                recovery.rs ─┘ (at open)       cursor.rs
//! ```
//!
//! | file | owns |
//! |---|---|
//! | `options.rs` | [`SpoolOptions`], [`FsyncPolicy`], [`OnFull`], the telemetry split |
//! | `state.rs` | the ledger neither side owns: `Shared` and its `State`, errors, [`Counters`] |
//! | `writer.rs` | [`Spool`]: the handle producers and the uplink hold (append, wait, ack, close) |
//! | `syncer.rs` | the syncer thread: when to write, writing and syncing, quota, rolling, reclaiming |
//! | `reader.rs` | [`Reader`]: durable records in seq order from a cursor |
//! | `recovery.rs` | opening after any stop; `spool stat` / `verify` |
//! | `cursor.rs` | cursor files |
//! | `damage.rs` | reporting damage once |
//! | `segment.rs`, `frame.rs`, `body.rs` | the frozen on-disk formats |
//!
//! Dependencies run one way: `writer` uses `recovery`, `syncer` and
//! `reader`; those share `state` and use `cursor`, `damage` and the formats
//! below them; nothing uses `writer`. The spool imports nothing from the
//! pipeline: only `crate::fs`, `crate::rand`, `crate::hex` and the duration
//! syntax in `crate::units`.

pub mod body;
mod cursor;
mod damage;
pub mod frame;
mod options;
mod reader;
mod recovery;
pub mod segment;
mod state;
mod syncer;
mod writer;

use std::path::{Path, PathBuf};

pub use frame::Kind;
pub use options::{FsyncPolicy, OnFull, SpoolOptions, TELEMETRY_SHARE, TELEMETRY_STREAM};
pub use reader::{Reader, Record};
pub use recovery::{inspect, list_segments as recovery_list, verify, Inspection, VerifyReport};
pub use state::{AppendError, Counters, SpoolError};
pub use writer::Spool;

/// The folder of one spool stream under a data dir.
pub fn stream_dir(data_dir: &Path, stream: &str) -> PathBuf {
    data_dir.join("spool").join(stream)
}
