//! Opening a spool after any kind of stop: clean, kill -9, or power loss.
//! Also the read-only inspection behind `ledge spool stat` and `verify`.
//!
//! Only the active (newest) segment is scanned at open: sealed segments were
//! synced when they rolled, and readers check their records one by one. At
//! open every segment must be a regular file with a whole header, and the
//! active one is scanned: a torn tail is cut at the last whole record
//! (WARN: records not yet acknowledged, the normal trace of a power cut);
//! damage anywhere else is reported at ERROR with what it cost (see
//! `damage.rs`) and skipped. Every outcome is a running spool plus log
//! lines, never a refusal to start.
//!
//! Seqs are never reused for different records: the next seq is past the
//! last record found and past every cursor, so records upstream confirmed
//! and the storage then lost (a card that lied about `fdatasync`) cannot
//! come back under the same seq and be dropped upstream as duplicates.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::cursor;
use super::damage::{Lost, Report};
use super::options::SpoolOptions;
use super::segment;
use super::state::{CursorState, SegmentInfo, SpoolError};

const META: &str = "META";
const META_MAGIC: &[u8; 8] = b"LDGMETA1";

pub(crate) struct Recovered {
    pub lock: File,
    pub epoch: u64,
    pub segments: Vec<SegmentInfo>,
    pub next_seq: u64,
    pub cursors: BTreeMap<String, CursorState>,
    /// The active segment, opened for appending, and its length (all of it
    /// durable).
    pub active_file: File,
    pub active_len: u64,
    /// Damage found, for the spool to log and count.
    pub damage: Vec<Report>,
}

fn io(dir: &Path, what: &str) -> impl Fn(std::io::Error) -> SpoolError {
    let (dir, what) = (dir.to_path_buf(), what.to_owned());
    move |e| SpoolError::Io {
        dir: dir.clone(),
        message: format!("{what}: {e}"),
    }
}

pub(crate) fn open(dir: &Path, _options: &SpoolOptions) -> Result<Recovered, SpoolError> {
    std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the spool directory"))?;
    let lock = take_lock(dir)?;
    remove_temporaries(dir).map_err(io(dir, "cannot clean temporary files"))?;
    let epoch = epoch(dir).map_err(io(dir, "cannot read or write META"))?;
    let names = list_segments(dir).map_err(io(dir, "cannot list segments"))?;
    let stored_cursors = cursor::load_all(dir).map_err(io(dir, "cannot read cursors"))?;
    // The highest seq any reader confirmed: never numbered again.
    let confirmed = stored_cursors.values().max().copied().unwrap_or(0);
    let mut damage = Vec::new();

    let mut segments = usable_segments(dir, &names, &mut damage);
    let newest_name = names.last().copied();
    let recovered = match segments.last() {
        Some(active) if Some(active.base) == newest_name => {
            let base = active.base;
            recover_active(dir, base, confirmed, &mut damage)
                .map_err(io(dir, "cannot recover the active segment"))?
        }
        // No segment, or the newest is unusable (reported): a new active
        // segment after everything, past the unusable one's name.
        _ => {
            let base = newest_name
                .map_or(1, |n| n + 1)
                .max(segments.last().map_or(1, |s| s.base + 1))
                .max(confirmed + 1);
            let file =
                segment::create(dir, base).map_err(io(dir, "cannot create the active segment"))?;
            segments.push(SegmentInfo {
                base,
                bytes: segment::HEADER_LEN as u64,
                created: Instant::now(),
            });
            (base, file)
        }
    };
    let (next_seq, file) = recovered;
    if let Some(active) = segments.last_mut() {
        // Recovery may have cut or rewritten it.
        active.bytes = file
            .metadata()
            .map_err(io(dir, "cannot stat the active segment"))?
            .len();
    }
    let oldest = segments.first().map_or(next_seq, |s| s.base);
    let cursors = stored_cursors
        .into_iter()
        .map(|(name, seq)| {
            let clamped = seq.clamp(oldest.saturating_sub(1), next_seq - 1);
            if clamped != seq {
                log::warn!(target: "ledge::spool", "{}: cursor {name} at {seq} is outside the spool ({oldest}..{next_seq}); using {clamped}", dir.display());
            }
            (name, CursorState::new(clamped))
        })
        .collect();
    let len = segments
        .last()
        .map_or(segment::HEADER_LEN as u64, |s| s.bytes);
    Ok(Recovered {
        lock,
        epoch,
        segments,
        next_seq,
        cursors,
        active_file: file,
        active_len: len,
        damage,
    })
}

/// The segments that are regular files, with their sizes. Anything else
/// under a segment name (a directory, something that cannot be stat'ed) is
/// reported with the seqs it should hold and left alone. Sealed segments'
/// headers are checked too (16 bytes each); a damaged one is reported, and
/// its records are still delivered: each carries its own checksum.
fn usable_segments(dir: &Path, names: &[u64], damage: &mut Vec<Report>) -> Vec<SegmentInfo> {
    let mut usable = Vec::with_capacity(names.len());
    for (i, &base) in names.iter().enumerate() {
        let lost = names
            .get(i + 1)
            .map_or(Lost::From(base), |&next| Lost::Range(base, next - 1));
        let path = dir.join(segment::file_name(base));
        let info = std::fs::symlink_metadata(&path).and_then(|metadata| {
            if metadata.is_file() {
                Ok(segment_info(base, &metadata))
            } else {
                Err(std::io::Error::other(format!(
                    "is a {}, not a file",
                    kind_of(&metadata)
                )))
            }
        });
        match info {
            Ok(info) => usable.push(info),
            Err(e) => damage.push(Report {
                segment: base,
                offset: 0,
                what: format!("unusable ({e})"),
                lost,
            }),
        }
    }
    let sealed = usable.len().saturating_sub(1);
    for info in &usable[..sealed] {
        let mut header = [0u8; segment::HEADER_LEN];
        let read = File::open(dir.join(segment::file_name(info.base)))
            .and_then(|mut f| f.read(&mut header));
        let problem = match read {
            Ok(n) => segment::check_header(&header[..n], info.base).err(),
            Err(e) => Some(format!("cannot be read: {e}")),
        };
        if let Some(reason) = problem {
            damage.push(Report {
                segment: info.base,
                offset: 0,
                what: format!("damaged header ({reason})"),
                lost: Lost::Nothing,
            });
        }
    }
    usable
}

fn kind_of(metadata: &std::fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    crate::fs::try_lock(&dir.join("LOCK"))
        .map_err(io(dir, "cannot lock LOCK"))?
        .ok_or_else(|| SpoolError::Locked(dir.to_path_buf()))
}

fn remove_temporaries(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The spool epoch: random, written once. Upstream tells two spools of one
/// device apart by it (say, after the SD card was replaced).
fn epoch(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join(META);
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == 16 && &bytes[..8] == META_MAGIC {
            return Ok(u64::from_le_bytes(
                bytes[8..16].try_into().unwrap_or_default(),
            ));
        }
        log::warn!(target: "ledge::spool", "{}: META is damaged; writing a new epoch", dir.display());
    }
    let epoch = crate::rand::next_u64();
    let mut meta = [0u8; 16];
    meta[..8].copy_from_slice(META_MAGIC);
    meta[8..].copy_from_slice(&epoch.to_le_bytes());
    crate::fs::write_atomic(&path, &meta)?;
    Ok(epoch)
}

pub fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(base) = segment::parse_name(&entry?.file_name().to_string_lossy()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn segment_info(base: u64, metadata: &std::fs::Metadata) -> SegmentInfo {
    let age = metadata
        .created()
        .or_else(|_| metadata.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    SegmentInfo {
        base,
        bytes: metadata.len(),
        created: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
    }
}

/// Scans the active segment, cuts a torn tail, reports damage, and returns
/// the next seq with the segment opened for appending.
fn recover_active(
    dir: &Path,
    base: u64,
    confirmed: u64,
    damage: &mut Vec<Report>,
) -> std::io::Result<(u64, File)> {
    let path = dir.join(segment::file_name(base));
    let bytes = std::fs::read(&path)?;
    if bytes.len() < segment::HEADER_LEN {
        // A segment gets its name only with its header synced, so whatever
        // it held is gone. It starts over empty under the same name.
        damage.push(Report {
            segment: base,
            offset: 0,
            what: format!("no header ({} bytes)", bytes.len()),
            lost: Lost::From(base),
        });
        crate::fs::write_atomic(&path, &segment::header(base))?;
        return Ok((base.max(confirmed + 1), reopen(&path)?));
    }
    let scan = segment::scan(&bytes, base);
    if let Err(reason) = segment::check_header(&bytes, base) {
        // Records after a damaged header are still whole (each has its own
        // checksum); with none left, whatever it held is gone.
        let lost = match scan.records.first() {
            Some(_) => Lost::Nothing,
            None => Lost::From(base),
        };
        damage.push(Report {
            segment: base,
            offset: 0,
            what: format!("damaged header ({reason})"),
            lost,
        });
    }
    for found in &scan.damage {
        damage.push(Report {
            segment: base,
            offset: found.offset as u64,
            what: if found.len == 0 {
                found.reason.clone()
            } else {
                format!("{} damaged bytes ({})", found.len, found.reason)
            },
            lost: found
                .lost
                .map_or(Lost::Nothing, |(first, last)| Lost::Range(first, last)),
        });
    }
    if scan.valid_end < bytes.len() {
        let cut = bytes.len() - scan.valid_end;
        let what = if scan.torn_tail > 0 {
            "torn or damaged tail"
        } else {
            "zero-filled tail"
        };
        log::warn!(target: "ledge::spool", "{}: truncating {what} of {cut} bytes at offset {}", path.display(), scan.valid_end);
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(scan.valid_end as u64)?;
        file.sync_all()?;
    }
    let mut next = scan.records.last().map_or(base, |r| r.frame.seq + 1);
    if confirmed >= next {
        // A reader confirmed records the file no longer has: the storage
        // lost them after fdatasync returned.
        damage.push(Report {
            segment: base,
            offset: scan.valid_end as u64,
            what: "records confirmed before the stop are missing from the end".to_owned(),
            lost: Lost::Range(next, confirmed),
        });
        next = confirmed + 1;
    }
    Ok((next, reopen(&path)?))
}

fn reopen(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

/// What `ledge spool stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub epoch: Option<u64>,
    pub segments: usize,
    pub bytes: u64,
    /// Oldest record still on disk, and newest; `None` when empty.
    pub oldest_seq: Option<u64>,
    pub newest_seq: Option<u64>,
    pub cursors: BTreeMap<String, u64>,
}

/// Reads a spool without locking or changing it.
pub fn inspect(dir: &Path) -> std::io::Result<Inspection> {
    let bases = list_segments(dir)?;
    let mut bytes = 0;
    for base in &bases {
        bytes += std::fs::symlink_metadata(dir.join(segment::file_name(*base)))
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
    }
    let newest_seq = match bases.last() {
        Some(&base) => std::fs::read(dir.join(segment::file_name(base)))
            .ok()
            .and_then(|data| {
                segment::scan(&data, base)
                    .records
                    .last()
                    .map(|r| r.frame.seq)
            })
            .or_else(|| base.checked_sub(1).filter(|s| *s > 0)),
        None => None,
    };
    let epoch = std::fs::read(dir.join(META))
        .ok()
        .filter(|b| b.len() == 16)
        .map(|b| u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()));
    Ok(Inspection {
        epoch,
        segments: bases.len(),
        bytes,
        oldest_seq: newest_seq.and(bases.first().copied()),
        newest_seq,
        cursors: cursor::load_all(dir)?,
    })
}

/// What `ledge spool verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    /// One line per problem, naming the file and offset.
    pub problems: Vec<String>,
}

/// Checks the CRC of every record in every segment, seq continuity inside
/// and between segments, and headers.
pub fn verify(dir: &Path) -> std::io::Result<VerifyReport> {
    let bases = list_segments(dir)?;
    let mut report = VerifyReport {
        segments: bases.len(),
        ..VerifyReport::default()
    };
    let mut expected: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let name = segment::file_name(base);
        let bytes = match std::fs::read(dir.join(&name)) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.problems.push(format!("{name}: cannot be read: {e}"));
                continue;
            }
        };
        if let Err(reason) = segment::check_header(&bytes, base) {
            report.problems.push(format!("{name}: {reason}"));
        }
        if let Some(want) = expected {
            if base != want {
                report.problems.push(format!(
                    "{name}: starts at seq {base}, but the previous segment ends at {}",
                    want - 1
                ));
            }
        }
        let scan = segment::scan(&bytes, base);
        let mut next = base;
        for found in &scan.records {
            if found.frame.seq != next {
                report.problems.push(format!(
                    "{name}: records {next}..{} missing before offset {}",
                    found.frame.seq - 1,
                    found.offset
                ));
            }
            next = found.frame.seq + 1;
        }
        for damage in scan.damage.iter().filter(|d| d.len > 0) {
            report.problems.push(format!(
                "{name}: {} damaged bytes at offset {} ({})",
                damage.len, damage.offset, damage.reason
            ));
        }
        if scan.torn_tail > 0 {
            let what = if i + 1 == bases.len() {
                "torn tail (recovered at next start)"
            } else {
                "damaged tail"
            };
            report.problems.push(format!(
                "{name}: {what}: {} bytes at offset {}",
                scan.torn_tail, scan.valid_end
            ));
        }
        report.records += scan.records.len() as u64;
        expected = Some(next);
    }
    Ok(report)
}
