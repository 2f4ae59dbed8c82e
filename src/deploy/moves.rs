//! Alias moves made from the command line (`ledge deploy --alias`, `ledge
//! alias set`, `ledge rollback`), waiting for the running ledge to report
//! them on `<prefix>/deploy/status`.
//!
//! The CLI cannot reach upstream itself, and a move made while no ledge
//! runs must not go unreported: the CLI appends one JSON line per move to
//! `<store>/alias-moves.jsonl` (under the store lock, synced), and the
//! running ledge takes them out at start and at every reload. A report is
//! handed on before the file goes, so a crash in between repeats a report
//! rather than losing it.

use std::io::Write;
use std::path::PathBuf;

use super::store::{Store, StoreError, StoreLock};

fn path(store: &Store) -> PathBuf {
    store.root().join("alias-moves.jsonl")
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Records a move for the running ledge to report. Call with the lock held.
pub fn record(
    store: &Store,
    _lock: &StoreLock,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    let path = path(store);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(format!("{report}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&path))
}

/// Hands every recorded move to `report`, oldest first, then forgets them.
/// A line a crash tore is skipped (and logged).
pub fn drain(store: &Store, mut report: impl FnMut(serde_json::Value)) -> Result<(), StoreError> {
    let path = path(store);
    if !path.exists() {
        return Ok(());
    }
    let lock = store.lock()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(move_report) => report(move_report),
            Err(e) => {
                log::warn!(target: "ledge::deploy", "{}: skipping an unreadable alias move ({e})", path.display())
            }
        }
    }
    std::fs::remove_file(&path).map_err(io(&path))?;
    drop(lock);
    Ok(())
}

/// Who moved an alias from this process's command line: `cli (user NAME,
/// uid N)`.
pub fn cli_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli (user {user}, uid {uid})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_moves_are_drained_once_in_order_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        {
            let lock = store.lock().unwrap();
            record(&store, &lock, &serde_json::json!({ "n": 1 })).unwrap();
            record(&store, &lock, &serde_json::json!({ "n": 2 })).unwrap();
        }
        // A crash mid-append leaves a torn last line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path(&store))
            .unwrap();
        file.write_all(b"{\"n\": 3").unwrap();
        let mut seen = Vec::new();
        drain(&store, |r| seen.push(r["n"].as_u64().unwrap())).unwrap();
        assert_eq!(seen, vec![1, 2]);
        drain(&store, |_| panic!("drained twice")).unwrap();
    }
}
