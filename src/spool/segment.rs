//! Segment files: naming, the 16-byte header, creating a segment, and
//! scanning a segment's records (used by recovery, `spool verify` and
//! readers).
//!
//! ```text
//! <base_seq:020>.seg     base_seq = seq of the first record the segment holds
//! header  0  6 b"LDGSEG"
//!         6  2 version u16 LE (1)
//!         8  8 base_seq u64 LE (must equal the name)
//! then frames back to back (frame.rs), no padding.
//! ```
//!
//! Naming segments by their first seq means a directory listing alone gives
//! their order and how many records each holds (the next one's base minus
//! its own). A segment appears under its name only with its header written
//! and synced (see [`create`]), so a segment without a whole header is
//! damage, never a roll a crash interrupted.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::frame::{self, DecodeError, Frame};

pub const HEADER_LEN: usize = 16;
const MAGIC: &[u8; 6] = b"LDGSEG";
const VERSION: u16 = 1;

pub fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base seq of a segment file name, or `None` if it is not one.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

pub fn header(base: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..6].copy_from_slice(MAGIC);
    out[6..8].copy_from_slice(&VERSION.to_le_bytes());
    out[8..].copy_from_slice(&base.to_le_bytes());
    out
}

/// Checks a segment header against the base its name promises.
pub fn check_header(bytes: &[u8], base: u64) -> Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "header is {} bytes, expected {HEADER_LEN}",
            bytes.len()
        ));
    }
    if &bytes[..6] != MAGIC {
        return Err("not a ledge spool segment (bad magic)".to_owned());
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(format!(
            "segment format version {version} is not supported (expected {VERSION})"
        ));
    }
    let stored = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if stored != base {
        return Err(format!(
            "header says base seq {stored}, file name says {base}"
        ));
    }
    Ok(())
}

/// One good record found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub frame: Frame,
    /// Offset of the frame in the segment.
    pub offset: usize,
}

/// A stretch of bytes that held no valid record, skipped by the scan, or
/// (`len` 0) a place where records are missing between two good ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    pub len: usize,
    pub reason: String,
    /// The seqs (inclusive) that should have been here and are not.
    pub lost: Option<(u64, u64)>,
}

/// What a scan of a whole segment found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Found>,
    /// Damaged stretches between good records.
    pub damage: Vec<Damage>,
    /// End of the last good record: everything after it is a torn or
    /// damaged tail (or nothing).
    pub valid_end: usize,
    /// Bytes after `valid_end` that are not all zero (a torn write rather
    /// than preallocated or never-written space).
    pub torn_tail: usize,
}

/// Scans `bytes` (a whole segment, header included) for records. Seqs must
/// rise from `base`; a record with a lower seq than expected is treated as
/// damage (stale bytes from an earlier life of the file). Damage is skipped
/// by resynchronising on the next valid frame, so it costs only the records
/// it hit; bytes after the last good record that hold no valid frame are
/// the tail (`valid_end`, `torn_tail`).
pub fn scan(bytes: &[u8], base: u64) -> Scan {
    let mut scan = Scan {
        valid_end: HEADER_LEN.min(bytes.len()),
        ..Scan::default()
    };
    let mut offset = HEADER_LEN;
    let mut expected = base;
    while offset < bytes.len() {
        let reason = match frame::decode(&bytes[offset..]) {
            Ok(found) if found.seq >= expected => {
                if found.seq > expected {
                    note_gap(&mut scan, offset, expected, found.seq - 1);
                }
                scan.records.push(Found {
                    frame: found,
                    offset,
                });
                expected = found.seq + 1;
                offset += found.size();
                scan.valid_end = offset;
                continue;
            }
            Ok(found) => format!(
                "record seq {} where {expected} or later was expected",
                found.seq
            ),
            // Not enough bytes for the record's length: a torn tail, unless
            // a valid record follows (then the length itself is damaged).
            Err(DecodeError::Incomplete) => "length runs past the next record".to_owned(),
            Err(DecodeError::Corrupt(why)) => why.to_string(),
        };
        match frame::resync(&bytes[offset..]) {
            Some(next) => {
                scan.damage.push(Damage {
                    offset,
                    len: next,
                    reason,
                    lost: None,
                });
                offset += next;
            }
            None => break,
        }
    }
    let tail = &bytes[scan.valid_end.min(bytes.len())..];
    scan.torn_tail = if tail.iter().all(|b| *b == 0) {
        0
    } else {
        tail.len()
    };
    scan
}

/// Records `first..=last` are missing before `offset`: charged to the damage
/// just before them, or noted as a gap of their own.
fn note_gap(scan: &mut Scan, offset: usize, first: u64, last: u64) {
    match scan.damage.last_mut() {
        Some(damage) if damage.offset >= scan.valid_end && damage.lost.is_none() => {
            damage.lost = Some((first, last));
        }
        _ => scan.damage.push(Damage {
            offset,
            len: 0,
            reason: "records missing".to_owned(),
            lost: Some((first, last)),
        }),
    }
}

/// Creates segment `base` in `dir` with its header written and synced, then
/// gives it its name (rename, directory fsync): a crash leaves either no
/// segment or a whole header, never a headerless file under a segment name.
/// Returns the file opened for appending.
pub fn create(dir: &Path, base: u64) -> std::io::Result<File> {
    let path = dir.join(file_name(base));
    crate::fs::write_atomic(&path, &header(base))?;
    OpenOptions::new().append(true).open(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::frame::{encode, Kind};

    fn segment(base: u64, bodies: &[&[u8]]) -> Vec<u8> {
        let mut bytes = header(base).to_vec();
        for (i, body) in bodies.iter().enumerate() {
            encode(&mut bytes, base + i as u64, 1, Kind::Event, body);
        }
        bytes
    }

    #[test]
    fn names_sort_in_seq_order_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("00000000000000000042.tmp"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn a_clean_segment_scans_completely() {
        let bytes = segment(100, &[b"a", b"bb", b"ccc"]);
        let scan = scan(&bytes, 100);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.frame.seq).collect();
        assert_eq!(seqs, vec![100, 101, 102]);
        assert_eq!(scan.valid_end, bytes.len());
        assert!(scan.damage.is_empty());
        assert_eq!(scan.torn_tail, 0);
    }

    #[test]
    fn a_torn_tail_ends_the_scan_at_the_last_whole_record() {
        let mut bytes = segment(1, &[b"first", b"second"]);
        let whole = bytes.len();
        encode(&mut bytes, 3, 1, Kind::Event, b"third, torn");
        bytes.truncate(whole + 10);
        let scan = scan(&bytes, 1);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.valid_end, whole);
        assert_eq!(scan.torn_tail, 10);
    }

    #[test]
    fn zeros_after_the_last_record_are_not_a_torn_tail() {
        let mut bytes = segment(1, &[b"x"]);
        let whole = bytes.len();
        bytes.extend([0u8; 4096]);
        let scan = scan(&bytes, 1);
        assert_eq!((scan.valid_end, scan.torn_tail), (whole, 0));
    }

    #[test]
    fn damage_in_the_middle_is_skipped_and_reported() {
        let mut bytes = segment(1, &[b"one", b"two", b"three"]);
        let second = HEADER_LEN + crate::spool::frame::HEADER_LEN + 3;
        bytes[second + 12] ^= 0xff;
        let scan = scan(&bytes, 1);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.frame.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].offset, second);
        assert_eq!(scan.damage[0].lost, Some((2, 2)));
        assert_eq!(scan.valid_end, bytes.len());
    }

    #[test]
    fn a_length_running_past_the_next_record_is_damage_not_a_tail() {
        let mut bytes = segment(1, &[b"one", b"two", b"three"]);
        let second = HEADER_LEN + crate::spool::frame::HEADER_LEN + 3;
        bytes[second + 3] ^= 0x40; // length + 16 KiB: past the end of the file
        let scan = scan(&bytes, 1);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.frame.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(scan.damage[0].offset, second);
        assert_eq!(scan.damage[0].lost, Some((2, 2)));
        assert_eq!((scan.valid_end, scan.torn_tail), (bytes.len(), 0));
    }

    #[test]
    fn a_segment_is_named_only_once_its_header_is_synced() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut file = create(dir.path(), 7).unwrap();
        file.write_all(b"appended").unwrap();
        let bytes = std::fs::read(dir.path().join(file_name(7))).unwrap();
        assert!(check_header(&bytes, 7).is_ok());
        assert_eq!(&bytes[HEADER_LEN..], b"appended");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn headers_must_match_their_names() {
        assert!(check_header(&header(5), 5).is_ok());
        assert!(check_header(&header(5), 6)
            .unwrap_err()
            .contains("base seq 5"));
        assert!(check_header(b"short", 5).is_err());
        assert!(check_header(&[0; 16], 5).unwrap_err().contains("bad magic"));
    }
}
