//! The function store under `<data_dir>/functions/`: modules by content,
//! published versions, and aliases, as Lambda keeps them.
//!
//! Layout:
//!
//! ```text
//! functions/
//!   .lock                  flock(2): one writer at a time (ledge, the CLI)
//!   modules/<sha256>.wasm  module bytes, named by their hash, never rewritten
//!   <function>.json        the function's state: $LATEST draft, versions, aliases
//!   uploads/               chunked over-the-air uploads in progress
//! ```
//!
//! Every change is one atomic replacement of one `<function>.json` (temp
//! file, fsync, rename, directory fsync), after the module it refers to is
//! durable. So a kill -9 at any instant leaves either the old state or the
//! new one, and at worst a module no state refers to, which
//! [`Store::collect_garbage`] removes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt function state: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("function `{0}` has no published version {1}")]
    NoSuchVersion(String, u32),
    #[error("function `{0}` has no alias `{1}`")]
    NoSuchAlias(String, String),
    #[error("alias `{alias}` of `{function}` has no earlier target to roll back to: it is at the oldest target it remembers (point it elsewhere with `ledge alias set`)")]
    NothingToRollBack { function: String, alias: String },
    #[error("`{0}` is not a valid {1} name: use letters, digits, `-` and `_` (an alias must not start with a digit)")]
    BadName(String, &'static str),
    #[error("function `{function}`: version {version} is not newer than {latest}, the highest published; version numbers only go up")]
    VersionNotNewer {
        function: String,
        version: u32,
        latest: u32,
    },
    #[error("weight {0}% is out of range: the second version gets 1 to 99 percent")]
    BadWeight(u8),
    #[error(
        "`{function}:{version}` is in use by alias `{alias}`; point the alias elsewhere first"
    )]
    VersionInUse {
        function: String,
        version: u32,
        alias: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a version pins besides its module: the settings it was published
/// with. `None` keeps the config's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Topic filters the version may publish / forward to. They can only
    /// narrow what the config allows (see `deploy::effective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_publish: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_forward: Option<Vec<String>>,
}

/// An immutable published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub sha256: String,
    pub size: u64,
    pub settings: Settings,
    pub published_at_ms: u64,
    /// `cli` or `ota:<key id>`.
    pub origin: String,
}

/// The mutable draft (`$LATEST`) when it comes from the store rather than
/// the config's `module`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub sha256: String,
    pub size: u64,
    pub deployed_at_ms: u64,
}

/// Where an alias points: one version, or two with a share for the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasTarget {
    pub version: u32,
    /// `(other version, its percent of events)`, for a canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<(u32, u8)>,
}

impl AliasTarget {
    pub fn single(version: u32) -> Self {
        Self {
            version,
            canary: None,
        }
    }

    /// Every version this target can send an event to.
    pub fn versions(&self) -> impl Iterator<Item = u32> {
        std::iter::once(self.version).chain(self.canary.map(|(v, _)| v))
    }
}

impl std::fmt::Display for AliasTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.canary {
            None => write!(f, "{}", self.version),
            Some((other, percent)) => write!(
                f,
                "{} ({}%), {other} ({percent}%)",
                self.version,
                100 - percent
            ),
        }
    }
}

/// A watch on a freshly switched alias: if the new target fails too often
/// before it has proven itself, the alias moves back to `previous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probation {
    pub since_ms: u64,
    /// Why the switch happened (`cli`, `ota`), for the report.
    pub origin: String,
}

/// How many targets before `previous` an alias remembers: rollbacks can go
/// this many steps further back.
pub const MAX_EARLIER: usize = 15;

/// An alias and its history. Rollback goes back one step each time:
/// `target` becomes `previous`, `previous` the last of `earlier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub target: AliasTarget,
    /// What it pointed at before the last change: where `rollback` goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<AliasTarget>,
    /// Targets before `previous`, oldest first, at most [`MAX_EARLIER`].
    /// Kept apart from `previous` so state files written before it load
    /// (as an empty history) and older ledges still read new ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<AliasTarget>,
    pub updated_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<Probation>,
}

/// One function's entry in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<Draft>,
    #[serde(default)]
    pub versions: BTreeMap<u32, Version>,
    /// The highest version number ever published; survives deletions so a
    /// number is never reused and an old deployment cannot come back.
    #[serde(default)]
    pub highest: u32,
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
}

impl FunctionState {
    /// Versions an alias can route to (loaded when ledge runs).
    pub fn routed_versions(&self) -> Vec<u32> {
        let mut versions: Vec<u32> = self
            .aliases
            .values()
            .flat_map(|a| a.target.versions())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        versions
    }
}

/// A function store directory, opened for reading or changing.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while the store is changed; dropping it releases the lock.
pub struct StoreLock {
    _file: File,
}

pub fn now_ms() -> u64 {
    crate::event::unix_ms()
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub use crate::hex::encode as hex;

/// A function or alias name: safe as a file name and an MQTT topic level.
pub fn check_name(name: &str, what: &'static str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !(what == "alias" && name.as_bytes()[0].is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned(), what))
    }
}

impl Store {
    /// The store of a data dir (created on first write).
    pub fn under(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("functions"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("modules")
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn module_path(&self, sha256: &str) -> PathBuf {
        self.modules_dir().join(format!("{sha256}.wasm"))
    }

    fn state_path(&self, function: &str) -> PathBuf {
        self.root.join(format!("{function}.json"))
    }

    /// Takes the store's write lock, waiting for another writer.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        std::fs::create_dir_all(self.modules_dir()).map_err(io(&self.root))?;
        let path = self.root.join(".lock");
        let file = crate::fs::lock(&path).map_err(io(&path))?;
        Ok(StoreLock { _file: file })
    }

    /// Names of the functions with an entry in the store.
    pub fn functions(&self) -> Result<Vec<String>, StoreError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if let Some(name) = file.strip_suffix(".json") {
                if check_name(name, "function").is_ok() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// A function's state; empty if it has none.
    pub fn state(&self, function: &str) -> Result<FunctionState, StoreError> {
        let path = self.state_path(function);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FunctionState::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Replaces a function's state atomically. Call with the lock held.
    pub fn save(
        &self,
        _lock: &StoreLock,
        function: &str,
        state: &FunctionState,
    ) -> Result<(), StoreError> {
        check_name(function, "function")?;
        let path = self.state_path(function);
        let json = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&path, &json)
    }

    /// Stores module bytes under their hash (a no-op if present); returns
    /// the hash. Durable when it returns.
    pub fn put_module(&self, _lock: &StoreLock, bytes: &[u8]) -> Result<String, StoreError> {
        let sha256 = sha256_hex(bytes);
        let path = self.module_path(&sha256);
        let intact = std::fs::read(&path).is_ok_and(|old| sha256_hex(&old) == sha256);
        if !intact {
            write_atomically(&path, bytes)?;
        }
        Ok(sha256)
    }

    /// Moves a fully verified file (an OTA upload) into the module store.
    pub fn adopt_module(
        &self,
        _lock: &StoreLock,
        file: &Path,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let path = self.module_path(sha256);
        std::fs::rename(file, &path).map_err(io(&path))?;
        crate::fs::sync_dir(&self.modules_dir()).map_err(io(&self.modules_dir()))
    }

    /// Makes `module` (already stored) the function's `$LATEST`.
    pub fn set_draft(
        &self,
        lock: &StoreLock,
        function: &str,
        sha256: &str,
        size: u64,
    ) -> Result<FunctionState, StoreError> {
        let mut state = self.state(function)?;
        state.latest = Some(Draft {
            sha256: sha256.to_owned(),
            size,
            deployed_at_ms: now_ms(),
        });
        self.save(lock, function, &state)?;
        Ok(state)
    }

    /// Publishes a version: `number` if given (it must be above every
    /// version ever published), else the next one. Returns its number.
    pub fn publish(
        &self,
        lock: &StoreLock,
        function: &str,
        number: Option<u32>,
        version: Version,
    ) -> Result<u32, StoreError> {
        let mut state = self.state(function)?;
        let number = match number {
            Some(n) if n <= state.highest => {
                return Err(StoreError::VersionNotNewer {
                    function: function.to_owned(),
                    version: n,
                    latest: state.highest,
                })
            }
            Some(n) => n,
            None => state.highest + 1,
        };
        state.highest = number;
        state.versions.insert(number, version);
        self.save(lock, function, &state)?;
        Ok(number)
    }

    /// Points `alias` at `target`, remembering the old target for
    /// rollback; with `probation`, the new target is watched.
    pub fn set_alias(
        &self,
        lock: &StoreLock,
        function: &str,
        alias: &str,
        target: AliasTarget,
        probation: Option<Probation>,
    ) -> Result<Option<AliasTarget>, StoreError> {
        check_name(alias, "alias")?;
        let mut state = self.state(function)?;
        for version in target.versions() {
            if !state.versions.contains_key(&version) {
                return Err(StoreError::NoSuchVersion(function.to_owned(), version));
            }
        }
        if let Some((_, percent)) = target.canary {
            if !(1..=99).contains(&percent) {
                return Err(StoreError::BadWeight(percent));
            }
        }
        let old = state.aliases.get(alias);
        let previous = old.map(|a| a.target);
        if previous == Some(target) {
            return Ok(previous);
        }
        let mut earlier = old.map(|a| a.earlier.clone()).unwrap_or_default();
        earlier.extend(old.and_then(|a| a.previous));
        if earlier.len() > MAX_EARLIER {
            earlier.drain(..earlier.len() - MAX_EARLIER);
        }
        state.aliases.insert(
            alias.to_owned(),
            Alias {
                target,
                previous,
                earlier,
                updated_at_ms: now_ms(),
                probation,
            },
        );
        self.save(lock, function, &state)?;
        Ok(previous)
    }

    /// Moves `alias` one step back in its history (to its previous target;
    /// the target it leaves is forgotten, so a second rollback goes further
    /// back, not forward); returns (from, to).
    pub fn rollback(
        &self,
        lock: &StoreLock,
        function: &str,
        alias: &str,
    ) -> Result<(AliasTarget, AliasTarget), StoreError> {
        let mut state = self.state(function)?;
        let entry = state
            .aliases
            .get_mut(alias)
            .ok_or_else(|| StoreError::NoSuchAlias(function.to_owned(), alias.to_owned()))?;
        let previous = entry
            .previous
            .ok_or_else(|| StoreError::NothingToRollBack {
                function: function.to_owned(),
                alias: alias.to_owned(),
            })?;
        let from = entry.target;
        let mut earlier = std::mem::take(&mut entry.earlier);
        *entry = Alias {
            target: previous,
            previous: earlier.pop(),
            earlier,
            updated_at_ms: now_ms(),
            probation: None,
        };
        self.save(lock, function, &state)?;
        Ok((from, previous))
    }

    /// Deletes a published version no alias points at or rolls back to next
    /// (its number is never reused); older history entries naming it are
    /// forgotten. Its module goes at the next garbage collection.
    pub fn delete_version(
        &self,
        lock: &StoreLock,
        function: &str,
        version: u32,
    ) -> Result<(), StoreError> {
        let mut state = self.state(function)?;
        if !state.versions.contains_key(&version) {
            return Err(StoreError::NoSuchVersion(function.to_owned(), version));
        }
        let holder = state.aliases.iter().find(|(_, a)| {
            a.target.versions().any(|v| v == version)
                || a.previous
                    .is_some_and(|p| p.versions().any(|v| v == version))
        });
        if let Some((alias, _)) = holder {
            return Err(StoreError::VersionInUse {
                function: function.to_owned(),
                version,
                alias: alias.clone(),
            });
        }
        state.versions.remove(&version);
        for entry in state.aliases.values_mut() {
            entry.earlier.retain(|t| t.versions().all(|v| v != version));
        }
        self.save(lock, function, &state)
    }

    /// Ends an alias's probation (it proved itself).
    pub fn end_probation(
        &self,
        lock: &StoreLock,
        function: &str,
        alias: &str,
    ) -> Result<(), StoreError> {
        let mut state = self.state(function)?;
        if let Some(entry) = state.aliases.get_mut(alias) {
            if entry.probation.take().is_some() {
                self.save(lock, function, &state)?;
            }
        }
        Ok(())
    }

    /// Deletes modules nothing refers to: no draft, version, or any
    /// `in_use` hash (modules loaded by a running ledge), and stale upload
    /// leftovers. Returns how many files went.
    pub fn collect_garbage(
        &self,
        _lock: &StoreLock,
        in_use: &[String],
    ) -> Result<usize, StoreError> {
        let mut keep: Vec<String> = in_use.to_vec();
        for function in self.functions()? {
            let state = self.state(&function)?;
            keep.extend(state.latest.map(|d| d.sha256));
            keep.extend(state.versions.into_values().map(|v| v.sha256));
        }
        let mut removed = 0;
        let dir = self.modules_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let referenced = name
                .strip_suffix(".wasm")
                .is_some_and(|sha| keep.iter().any(|k| k == sha));
            if !referenced {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    crate::fs::write_atomic(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(sha: &str) -> Version {
        Version {
            sha256: sha.to_owned(),
            size: 1,
            settings: Settings::default(),
            published_at_ms: 0,
            origin: "test".to_owned(),
        }
    }

    #[test]
    fn versions_only_go_up_and_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        assert_eq!(store.publish(&lock, "f", None, version("a")).unwrap(), 1);
        assert_eq!(store.publish(&lock, "f", Some(5), version("b")).unwrap(), 5);
        assert!(matches!(
            store.publish(&lock, "f", Some(5), version("c")),
            Err(StoreError::VersionNotNewer { latest: 5, .. })
        ));
        assert!(matches!(
            store.publish(&lock, "f", Some(3), version("c")),
            Err(StoreError::VersionNotNewer { .. })
        ));
        assert_eq!(store.publish(&lock, "f", None, version("c")).unwrap(), 6);
    }

    #[test]
    fn an_alias_rolls_back_to_its_previous_target() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        store.publish(&lock, "f", None, version("a")).unwrap();
        store.publish(&lock, "f", None, version("b")).unwrap();
        assert!(store
            .rollback(&lock, "f", "live")
            .is_err_and(|e| matches!(e, StoreError::NoSuchAlias(..))));
        store
            .set_alias(&lock, "f", "live", AliasTarget::single(1), None)
            .unwrap();
        assert!(matches!(
            store.rollback(&lock, "f", "live"),
            Err(StoreError::NothingToRollBack { .. })
        ));
        store
            .set_alias(&lock, "f", "live", AliasTarget::single(2), None)
            .unwrap();
        let (from, to) = store.rollback(&lock, "f", "live").unwrap();
        assert_eq!((from.version, to.version), (2, 1));
        assert_eq!(store.state("f").unwrap().aliases["live"].target.version, 1);
        // The target it left is forgotten: no rolling forward.
        assert!(matches!(
            store.rollback(&lock, "f", "live"),
            Err(StoreError::NothingToRollBack { .. })
        ));
    }

    #[test]
    fn an_alias_history_is_bounded_and_forgets_deleted_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        let last = MAX_EARLIER as u32 + 5;
        for number in 1..=last {
            store.publish(&lock, "f", None, version("a")).unwrap();
            store
                .set_alias(&lock, "f", "live", AliasTarget::single(number), None)
                .unwrap();
        }
        let entry = &store.state("f").unwrap().aliases["live"];
        assert_eq!(entry.earlier.len(), MAX_EARLIER);
        assert_eq!(entry.earlier[0].version, last - 1 - MAX_EARLIER as u32);
        // An old version in the history can be deleted; rollback skips it.
        let skipped = last - 3;
        store.delete_version(&lock, "f", skipped).unwrap();
        let mut steps = Vec::new();
        while let Ok((_, to)) = store.rollback(&lock, "f", "live") {
            steps.push(to.version);
        }
        let expected: Vec<u32> = (last - 1 - MAX_EARLIER as u32..last)
            .rev()
            .filter(|v| *v != skipped)
            .collect();
        assert_eq!(steps, expected);
    }

    #[test]
    fn aliases_refuse_unknown_versions_bad_weights_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        store.publish(&lock, "f", None, version("a")).unwrap();
        store.publish(&lock, "f", None, version("b")).unwrap();
        assert!(matches!(
            store.set_alias(&lock, "f", "live", AliasTarget::single(9), None),
            Err(StoreError::NoSuchVersion(_, 9))
        ));
        let bad_weight = AliasTarget {
            version: 1,
            canary: Some((2, 100)),
        };
        assert!(matches!(
            store.set_alias(&lock, "f", "live", bad_weight, None),
            Err(StoreError::BadWeight(100))
        ));
        assert!(matches!(
            store.set_alias(&lock, "f", "7up", AliasTarget::single(1), None),
            Err(StoreError::BadName(..))
        ));
        assert!(matches!(
            store.set_alias(&lock, "f", "../x", AliasTarget::single(1), None),
            Err(StoreError::BadName(..))
        ));
    }

    #[test]
    fn a_version_an_alias_needs_cannot_be_deleted_and_its_number_stays_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        for sha in ["a", "b", "c"] {
            store.publish(&lock, "f", None, version(sha)).unwrap();
        }
        store
            .set_alias(&lock, "f", "live", AliasTarget::single(1), None)
            .unwrap();
        store
            .set_alias(&lock, "f", "live", AliasTarget::single(2), None)
            .unwrap();
        // 2 is the target, 1 the rollback target: both needed.
        for needed in [1, 2] {
            assert!(matches!(
                store.delete_version(&lock, "f", needed),
                Err(StoreError::VersionInUse { .. })
            ));
        }
        store.delete_version(&lock, "f", 3).unwrap();
        assert!(matches!(
            store.delete_version(&lock, "f", 3),
            Err(StoreError::NoSuchVersion(_, 3))
        ));
        assert_eq!(store.publish(&lock, "f", None, version("d")).unwrap(), 4);
    }

    #[test]
    fn garbage_collection_keeps_referenced_and_in_use_modules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::under(dir.path());
        let lock = store.lock().unwrap();
        let a = store.put_module(&lock, b"a").unwrap();
        let b = store.put_module(&lock, b"b").unwrap();
        let c = store.put_module(&lock, b"c").unwrap();
        store.publish(&lock, "f", None, version(&a)).unwrap();
        assert_eq!(
            store
                .collect_garbage(&lock, std::slice::from_ref(&c))
                .unwrap(),
            1
        );
        assert!(store.module_path(&a).exists());
        assert!(!store.module_path(&b).exists());
        assert!(store.module_path(&c).exists());
    }
}
