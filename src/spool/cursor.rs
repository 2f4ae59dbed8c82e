//! Reader cursors: the highest seq a reader has confirmed, one small file
//! per reader, replaced with `crate::fs::write_atomic` so a crash leaves
//! either the old or the new value, never a torn one. Written at most once per `cursor_interval`, never per record.
//!
//! ```text
//! <name>.cursor   b"LDGC" | seq u64 LE | crc32c(first 12 bytes) u32 LE
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::frame::CRC32C;

const MAGIC: &[u8; 4] = b"LDGC";
const SUFFIX: &str = ".cursor";

fn encode(seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    let crc = CRC32C.checksum(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 16 || &bytes[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
    (CRC32C.checksum(&bytes[..12]) == crc)
        .then(|| u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default()))
}

/// Writes `<name>.cursor` atomically.
pub fn persist(dir: &Path, name: &str, seq: u64) -> std::io::Result<()> {
    crate::fs::write_atomic(&dir.join(format!("{name}{SUFFIX}")), &encode(seq))
}

/// Every readable cursor in `dir`. An unreadable one is logged and left
/// out: its reader starts from the oldest record (re-delivery, not loss).
pub fn load_all(dir: &Path) -> std::io::Result<BTreeMap<String, u64>> {
    let mut cursors = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        match std::fs::read(entry.path()).ok().as_deref().and_then(decode) {
            Some(seq) => {
                cursors.insert(name.to_owned(), seq);
            }
            None => log::warn!(
                target: "ledge::spool",
                "{}: cursor file is damaged; reader `{name}` restarts from the oldest record",
                entry.path().display()
            ),
        }
    }
    Ok(cursors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        persist(dir.path(), "uplink", 12_345).unwrap();
        persist(dir.path(), "uplink", 12_346).unwrap();
        let cursors = load_all(dir.path()).unwrap();
        assert_eq!(cursors.get("uplink"), Some(&12_346));
        assert!(!dir.path().join("uplink.cursor.tmp").exists());
    }

    #[test]
    fn a_damaged_cursor_is_ignored_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        persist(dir.path(), "uplink", 7).unwrap();
        let path = dir.path().join("uplink.cursor");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(load_all(dir.path()).unwrap().is_empty());
    }
}
