//! The one piece of schedule state that outlives ledge: for each cron
//! schedule with `catch_up = "once"`, the last scheduled time it handled.
//!
//! `<data_dir>/schedules/<function>-<hash>.last` holds that time as UNIX
//! milliseconds and a newline (`1764000000000\n`); the hash is of the
//! function, the expression and the time zone, so editing the schedule
//! starts afresh rather than catching up on a different one. The file is
//! replaced with `crate::fs::write_atomic` (temporary file, fsync, rename,
//! directory fsync), so a power cut leaves the old time or the new one,
//! never a torn file, and never the old one once a run was recorded. Format
//! version: this one; a file that does not parse is treated as absent.

use std::path::{Path, PathBuf};

/// The state file of one schedule.
pub fn path(data_dir: &Path, function: &str, expression: &str, timezone: &str) -> PathBuf {
    let key = fnv1a(format!("{function}\n{expression}\n{timezone}").as_bytes());
    data_dir
        .join("schedules")
        .join(format!("{function}-{key:016x}.last"))
}

/// The last handled scheduled time (UNIX ms), if the file exists and parses.
pub fn read(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Records `scheduled_ms` as the last handled scheduled time.
pub fn write(path: &Path, scheduled_ms: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fs::write_atomic(path, format!("{scheduled_ms}\n").as_bytes())
}

/// A stable 64-bit hash (FNV-1a): file names must not change between builds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_time_round_trips_and_garbage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), "f", "* * * * *", "UTC");
        assert_eq!(read(&file), None);
        write(&file, 1_764_000_000_000).unwrap();
        assert_eq!(read(&file), Some(1_764_000_000_000));
        assert!(!crate::fs::temp_path(&file).exists());
        std::fs::write(&file, "yesterday").unwrap();
        assert_eq!(read(&file), None);
    }

    #[test]
    fn each_schedule_has_its_own_file() {
        let dir = Path::new("/d");
        assert_ne!(
            path(dir, "f", "* * * * *", "UTC"),
            path(dir, "f", "0 * * * *", "UTC")
        );
        assert_ne!(
            path(dir, "f", "* * * * *", "UTC"),
            path(dir, "f", "* * * * *", "+01:00")
        );
        assert!(path(dir, "f", "@daily", "UTC").starts_with("/d/schedules"));
    }
}
