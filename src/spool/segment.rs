//! Segment files: naming, the 16-byte header, and scanning a segment's
//! records (used by recovery, `spool verify` and readers).
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
//! its own).

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

/// A stretch of bytes that held no valid record, skipped by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    pub len: usize,
    pub reason: String,
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
/// rise by one from `base`; a record with any other seq is treated as
/// damage (stale bytes from an earlier life of the file), except a jump
/// forward, which is accepted and shows up as a gap in `records`.
pub fn scan(bytes: &[u8], base: u64) -> Scan {
    let mut scan = Scan {
        valid_end: HEADER_LEN.min(bytes.len()),
        ..Scan::default()
    };
    let mut offset = HEADER_LEN;
    let mut expected = base;
    while offset < bytes.len() {
        match frame::decode(&bytes[offset..]) {
            Ok(found) if found.seq >= expected => {
                scan.records.push(Found {
                    frame: found,
                    offset,
                });
                expected = found.seq + 1;
                offset += found.size();
                scan.valid_end = offset;
            }
            Ok(found) => {
                let reason = format!(
                    "record seq {} where {expected} or later was expected",
                    found.seq
                );
                offset = skip(bytes, offset, reason, &mut scan);
            }
            Err(DecodeError::Incomplete) => break,
            Err(DecodeError::Corrupt(why)) => {
                offset = skip(bytes, offset, why.to_string(), &mut scan);
            }
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

/// Records damage from `offset` to the next valid record and returns where
/// scanning resumes (the end of the input if no record follows).
fn skip(bytes: &[u8], offset: usize, reason: String, scan: &mut Scan) -> usize {
    match frame::resync(&bytes[offset..]) {
        Some(next) => {
            scan.damage.push(Damage {
                offset,
                len: next,
                reason,
            });
            offset + next
        }
        None => bytes.len(),
    }
}

/// Reads a whole segment file.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
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
        assert_eq!(scan.valid_end, bytes.len());
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
