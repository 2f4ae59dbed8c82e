//! Opening a spool after any kind of stop: clean, kill -9, or power loss.
//! Also the read-only inspection behind `ledge spool stat` and `verify`.
//!
//! Only the active (newest) segment is scanned at open: sealed segments were
//! synced when they rolled. A torn or damaged tail is cut at the last whole
//! record; damage between good records is reported and left for readers to
//! skip. Every outcome is a running spool plus log lines, never a refusal to
//! start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::cursor::{self, CursorState};
use super::segment;
use super::writer::{sync_dir, ActiveFile, SegmentInfo, SpoolError};
use super::SpoolOptions;

const META: &str = "META";
const META_MAGIC: &[u8; 8] = b"LDGMETA1";

pub(crate) struct Recovered {
    pub lock: File,
    pub epoch: u64,
    pub segments: Vec<SegmentInfo>,
    pub next_seq: u64,
    pub cursors: BTreeMap<String, CursorState>,
    pub active: ActiveFile,
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
    let mut bases = list_segments(dir).map_err(io(dir, "cannot list segments"))?;
    let stored_cursors = cursor::load_all(dir).map_err(io(dir, "cannot read cursors"))?;

    let mut next_seq = None;
    while let Some(&base) = bases.last() {
        match recover_active(dir, base) {
            Ok(next) => {
                next_seq = Some(next);
                break;
            }
            Err(reason) => {
                // Only a segment created by a roll that a crash interrupted
                // (no complete header) gets here: it holds no records.
                log::warn!(target: "ledge::spool", "{}: removing unusable newest segment {}: {reason}", dir.display(), segment::file_name(base));
                std::fs::remove_file(dir.join(segment::file_name(base)))
                    .map_err(io(dir, "cannot remove a broken segment"))?;
                bases.pop();
            }
        }
    }
    let next_seq = match next_seq {
        Some(next) => next,
        None => {
            // A fresh spool, or one whose segments were all removed: never
            // reuse a seq a cursor has already confirmed.
            let base = stored_cursors.values().max().map_or(1, |c| c + 1);
            create_segment(dir, base).map_err(io(dir, "cannot create the first segment"))?;
            bases.push(base);
            base
        }
    };
    let segments = bases
        .iter()
        .map(|&base| segment_info(dir, base))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir, "cannot stat segments"))?;
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
    let active_base = *bases.last().unwrap_or(&next_seq);
    let path = dir.join(segment::file_name(active_base));
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io(dir, "cannot open the active segment"))?;
    let len = file
        .metadata()
        .map_err(io(dir, "cannot stat the active segment"))?
        .len();
    Ok(Recovered {
        lock,
        epoch,
        segments,
        next_seq,
        cursors,
        active: ActiveFile {
            file,
            len,
            synced_len: len,
        },
    })
}

fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(io(dir, "cannot open LOCK"))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(dir, "cannot lock LOCK")(e)),
    }
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
    let epoch = random_u64();
    let tmp = dir.join("META.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(META_MAGIC)?;
    file.write_all(&epoch.to_le_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(epoch)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
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

fn create_segment(dir: &Path, base: u64) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(dir.join(segment::file_name(base)))?;
    file.write_all(&segment::header(base))?;
    file.sync_all()?;
    sync_dir(dir)
}

fn segment_info(dir: &Path, base: u64) -> std::io::Result<SegmentInfo> {
    let metadata = std::fs::metadata(dir.join(segment::file_name(base)))?;
    let age = metadata
        .created()
        .or_else(|_| metadata.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    Ok(SegmentInfo {
        base,
        bytes: metadata.len(),
        created: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
    })
}

/// Scans the active segment, cuts a torn tail, and returns the next seq.
fn recover_active(dir: &Path, base: u64) -> Result<u64, String> {
    let path = dir.join(segment::file_name(base));
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
    segment::check_header(&bytes, base)?;
    let scan = segment::scan(&bytes, base);
    for damage in &scan.damage {
        log::warn!(target: "ledge::spool", "{}: skipped {} damaged bytes at offset {} ({})", path.display(), damage.len, damage.offset, damage.reason);
    }
    if scan.valid_end < bytes.len() {
        let cut = bytes.len() - scan.valid_end;
        let what = if scan.torn_tail > 0 {
            "torn or damaged tail"
        } else {
            "zero-filled tail"
        };
        log::warn!(target: "ledge::spool", "{}: truncating {what} of {cut} bytes at offset {}", path.display(), scan.valid_end);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open to truncate: {e}"))?;
        file.set_len(scan.valid_end as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot truncate: {e}"))?;
    }
    Ok(scan.records.last().map_or(base, |r| r.frame.seq + 1))
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
        bytes += std::fs::metadata(dir.join(segment::file_name(*base)))?.len();
    }
    let newest_seq = match bases.last() {
        Some(&base) => {
            let data = std::fs::read(dir.join(segment::file_name(base)))?;
            segment::scan(&data, base)
                .records
                .last()
                .map(|r| r.frame.seq)
                .or_else(|| base.checked_sub(1).filter(|s| *s > 0))
        }
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
        let bytes = std::fs::read(dir.join(&name))?;
        if let Err(reason) = segment::check_header(&bytes, base) {
            report.problems.push(format!("{name}: {reason}"));
            continue;
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
        for damage in &scan.damage {
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
