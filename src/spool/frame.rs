//! The on-flash record frame. **Frozen format**: changing it needs a new
//! segment version (see `segment.rs`), and old versions must stay readable.
//!
//! ```text
//! offset size field
//!      0    2 magic  0xA7 0x1E          resync point after corruption
//!      2    4 len    u32 LE             body length, <= MAX_BODY
//!      6    4 crc    u32 LE             CRC-32C of bytes 10.. (seq..body) and len, ^ CRC_XOR
//!     10    8 seq    u64 LE             record number, +1 per record, never reused
//!     18    8 ts     u64 LE             UNIX milliseconds when appended
//!     26    1 kind   u8                 event, log, metric, dead-letter
//!     27  len body                      postcard-encoded, per kind (see `body.rs`)
//! ```
//!
//! 27 bytes of framing: at 256-byte bodies the frame is 1.105× the body.
//! The CRC covers the length too, so a flipped length bit is caught; the
//! XOR constant makes an all-zero region fail even if a zero magic slipped
//! through. Decoding distinguishes "not enough bytes yet" (a torn or still
//! growing tail) from "these bytes are not a record" (corruption), as the
//! reader and recovery must treat them differently.

use crc::{Crc, CRC_32_ISCSI};

pub const MAGIC: [u8; 2] = [0xA7, 0x1E];
pub const HEADER_LEN: usize = 27;
/// Largest body a record may carry. A length above it is corruption, so a
/// garbage length never makes the reader allocate or skip gigabytes.
pub const MAX_BODY: usize = 4 << 20;
const CRC_XOR: u32 = 0x5EED_1ED6;

/// The spool's one CRC-32C (Castagnoli) table: frames and cursor files.
pub(crate) static CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// What a record is, so readers can select and route without decoding bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Event = 1,
    Log = 2,
    Metric = 3,
    DeadLetter = 4,
}

impl Kind {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Event),
            2 => Some(Self::Log),
            3 => Some(Self::Metric),
            4 => Some(Self::DeadLetter),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Log => "log",
            Self::Metric => "metric",
            Self::DeadLetter => "dead-letter",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Event, Self::Log, Self::Metric, Self::DeadLetter]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A decoded record header plus where its body lies in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub ts_ms: u64,
    pub kind: Kind,
    /// Body length.
    pub len: usize,
}

impl Frame {
    /// Total bytes the frame occupies.
    pub fn size(&self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Why bytes could not be decoded as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the record does: a torn tail, or a record
    /// still being written.
    Incomplete,
    /// The bytes are not a valid record.
    Corrupt(Corruption),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    BadMagic,
    LengthTooLarge,
    BadChecksum,
    UnknownKind,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadMagic => "bad magic",
            Self::LengthTooLarge => "length over the maximum",
            Self::BadChecksum => "checksum mismatch",
            Self::UnknownKind => "unknown record kind",
        })
    }
}

/// Appends one framed record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, ts_ms: u64, kind: Kind, body: &[u8]) {
    debug_assert!(body.len() <= MAX_BODY);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts_ms.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    let crc = checksum(&out[start..]);
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `bytes`. The body is
/// `bytes[HEADER_LEN..frame.size()]`.
pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    if bytes.len() < 2 {
        return Err(DecodeError::Incomplete);
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::Corrupt(Corruption::BadMagic));
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let len = u32::from_le_bytes(bytes[2..6].try_into().unwrap_or_default()) as usize;
    if len > MAX_BODY {
        return Err(DecodeError::Corrupt(Corruption::LengthTooLarge));
    }
    if bytes.len() < HEADER_LEN + len {
        return Err(DecodeError::Incomplete);
    }
    let stored = u32::from_le_bytes(bytes[6..10].try_into().unwrap_or_default());
    if checksum(&bytes[..HEADER_LEN + len]) != stored {
        return Err(DecodeError::Corrupt(Corruption::BadChecksum));
    }
    let kind = Kind::from_u8(bytes[26]).ok_or(DecodeError::Corrupt(Corruption::UnknownKind))?;
    Ok(Frame {
        seq: u64::from_le_bytes(bytes[10..18].try_into().unwrap_or_default()),
        ts_ms: u64::from_le_bytes(bytes[18..26].try_into().unwrap_or_default()),
        kind,
        len,
    })
}

/// CRC over the length field and everything after the CRC field.
fn checksum(frame: &[u8]) -> u32 {
    let mut digest = CRC32C.digest();
    digest.update(&frame[2..6]);
    digest.update(&frame[10..]);
    digest.finalize() ^ CRC_XOR
}

/// Offset of the next position in `bytes` (after the first byte) where a
/// valid record starts, for resynchronising after corruption.
pub fn resync(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len().saturating_sub(1))
        .filter(|&i| bytes[i..i + 2] == MAGIC)
        .find(|&i| decode(&bytes[i..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, seq, 1_700_000_000_000, Kind::Event, body);
        out
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = one(42, b"hello");
        let frame = decode(&bytes).unwrap();
        assert_eq!(
            frame,
            Frame {
                seq: 42,
                ts_ms: 1_700_000_000_000,
                kind: Kind::Event,
                len: 5
            }
        );
        assert_eq!(&bytes[HEADER_LEN..frame.size()], b"hello");
        assert_eq!(frame.size(), bytes.len());
    }

    #[test]
    fn a_short_read_is_incomplete_not_corrupt() {
        let bytes = one(1, b"payload");
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(DecodeError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zeros_are_never_a_record() {
        assert_eq!(
            decode(&[0; 64]),
            Err(DecodeError::Corrupt(Corruption::BadMagic))
        );
        let mut zeros = vec![0u8; 64];
        zeros[..2].copy_from_slice(&MAGIC);
        assert_eq!(
            decode(&zeros),
            Err(DecodeError::Corrupt(Corruption::BadChecksum))
        );
    }

    #[test]
    fn a_huge_length_is_corruption_before_any_read() {
        let mut bytes = one(1, b"x");
        bytes[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Corrupt(Corruption::LengthTooLarge))
        );
    }

    #[test]
    fn resync_finds_the_next_record_after_garbage() {
        let mut bytes = vec![0xA7, 0x1E, 0xff, 0x00, 0x13];
        let offset = bytes.len();
        bytes.extend(one(7, b"after"));
        assert_eq!(resync(&bytes), Some(offset));
        assert_eq!(resync(&bytes[offset..]), None);
    }

    proptest! {
        #[test]
        fn any_single_byte_flip_is_detected(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = one(9, &body);
            let i = position.index(bytes.len());
            bytes[i] ^= flip;
            // Either detected as corrupt, or (length bits changed) seen as
            // incomplete; never decoded as a record.
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn records_decode_back_to_back(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
            let mut bytes = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                encode(&mut bytes, i as u64, 5, Kind::Log, body);
            }
            let mut offset = 0;
            for (i, body) in bodies.iter().enumerate() {
                let frame = decode(&bytes[offset..]).unwrap();
                prop_assert_eq!(frame.seq, i as u64);
                prop_assert_eq!(&bytes[offset + HEADER_LEN..offset + frame.size()], &body[..]);
                offset += frame.size();
            }
            prop_assert_eq!(offset, bytes.len());
        }
    }
}
