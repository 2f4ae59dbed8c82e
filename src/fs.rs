//! Crash-safe file replacement and file locks: the one place ledge writes a
//! small file so that a crash or a power cut leaves the old content or the
//! new, never a torn file, and the one place it takes a lock file.
//!
//! [`write_atomic`] is what every such file goes through (spool cursors and
//! META, the function store's states and modules, OTA chunks, schedule
//! catch-up markers, fake GPIO outputs). The order matters:
//!
//! 1. write `<name>.tmp` beside the target (same directory, so same file
//!    system: the rename cannot turn into a copy);
//! 2. `fsync` it, so the bytes are on the medium before any name points at
//!    them;
//! 3. `rename` it over the target: the commit point, atomic for every
//!    process that opens the name afterwards;
//! 4. `fsync` the directory, so the rename itself is on the medium. Without
//!    this a power cut can bring back the *old* file after the caller was
//!    told the new one is stored (ext4 and f2fs both keep the rename in the
//!    page cache until the directory is synced).
//!
//! A crash between 3 and 4 leaves the new content visible to a restart on
//! the same running kernel; only a power cut can undo it, and step 4 is what
//! closes that window. A failure before 3 removes the `.tmp` file; a crash
//! there leaves it, and each owner ignores or removes it (the spool deletes
//! them when it opens, the store's garbage collection does).
//!
//! # Test hook
//!
//! `LEDGE_TEST_PAUSE_AFTER_RENAME=<suffix>` makes the thread that renames a
//! file whose path ends in `<suffix>` print one line to stderr and stop for
//! good between steps 3 and 4, so a test can `kill -9` the process at
//! exactly that point (`tests/it/acknowledged_means_stored/atomic_replace.rs`). Unset, it costs one
//! `OnceLock` read per replacement.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable of the test hook (see the module docs).
pub const PAUSE_AFTER_RENAME: &str = "LEDGE_TEST_PAUSE_AFTER_RENAME";

/// Replaces `path` with `bytes` so that a crash or a power cut leaves either
/// the old file or the new one, and the new one once this returns. The
/// directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Out of space, most likely: the half-written copy must not keep
        // holding what space there is.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    pause_if_asked(path);
    sync_dir(parent(path))
}

/// `fsync`s a directory, so that creations, renames and deletions in it
/// survive a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary file [`write_atomic`] writes before renaming it over
/// `path`: `<name>.tmp` in the same directory.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Takes an exclusive lock on `path` (created if missing), waiting while
/// another process holds it. The lock is held until the returned file is
/// dropped (or the process dies: the kernel releases it).
pub fn lock(path: &Path) -> std::io::Result<File> {
    let file = open_lock_file(path)?;
    file.lock()?;
    Ok(file)
}

/// Like [`lock`] without waiting: `Ok(None)` if another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The test hook: stops this thread for good after renaming a file whose
/// path ends in the suffix the environment names.
fn pause_if_asked(path: &Path) {
    static SUFFIX: OnceLock<Option<OsString>> = OnceLock::new();
    let suffix = SUFFIX.get_or_init(|| std::env::var_os(PAUSE_AFTER_RENAME));
    let Some(suffix) = suffix.as_ref().filter(|s| !s.is_empty()) else {
        return;
    };
    if path.as_os_str().as_bytes().ends_with(suffix.as_bytes()) {
        eprintln!(
            "{PAUSE_AFTER_RENAME}: renamed {}, paused before the directory fsync",
            path.display()
        );
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_leaves_the_new_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("state.json")]);
    }

    #[test]
    fn the_temporary_file_is_the_whole_name_plus_tmp() {
        // `with_extension` would give `a.json` and `a.wasm` one temp file.
        assert_eq!(
            temp_path(Path::new("/d/a.json")),
            Path::new("/d/a.json.tmp")
        );
        assert_eq!(temp_path(Path::new("17")), Path::new("17.tmp"));
    }

    #[test]
    fn a_replacement_in_a_missing_directory_fails_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let error = write_atomic(&dir.path().join("no/such/file"), b"x").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_held_lock_is_refused_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let held = lock(&path).unwrap();
        // flock(2) locks belong to the open file description, so a second
        // open in the same process contends like another process would.
        assert!(try_lock(&path).unwrap().is_none());
        drop(held);
        assert!(try_lock(&path).unwrap().is_some());
    }
}
