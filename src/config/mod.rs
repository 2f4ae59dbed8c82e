//! Configuration: the TOML file a user writes, turned into a [`Plan`] the
//! rest of ledge trusts.
//!
//! Two stages, as in ripgrep's flags: [`raw`] mirrors the file key by key;
//! `resolve` checks it, one resolver per section (names unique, triggers
//! point at real functions, sizes and durations parsed, paths resolved
//! against the config file's folder), and produces the [`plan`] types.
//! Every error carries `file:line:col`, and all errors in a file are
//! reported at once rather than one per attempt.
//!
//! Files read: the config file ([`read_text`]), and those its sections name
//! (secret files, the users file, zoneinfo, `/etc/hostname`): each resolver's
//! module doc lists its own. [`files`] reads them all, capped.
//!
//! Key-by-key documentation lives in docs/config.md.

pub mod files;
pub mod http;
pub mod lint;
mod names;
pub mod plan;
pub mod raw;
pub mod redact;
mod resolve;
mod secret;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use plan::{
    BatchSpec, BrokerMode, BrokerPlan, CatchUp, CronTiming, DeployPlan, DevicePlan, FailurePolicy,
    ForwardRule, FunctionId, FunctionSpec, GpioInputSpec, GpioOutputSpec, GpioPlan, LineAddress,
    OnFailure, Plan, PublishLimit, Qualifier, Report, Route, Secret, SensorKind, SensorSpec,
    Target, Timing, TlsFiles, TriggerSource, UpstreamPlan, Waveform, QUEUE_BYTES,
};

/// A place in a config file, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where, if the problem is at a place in the file (not e.g. "cannot read").
    pub location: Option<Location>,
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Maps byte offsets in a config file to line and column (both 1-based,
/// columns counted in characters).
///
/// Line starts are found once, so locating is a binary search: a config
/// with 20,000 functions locates each of them without rescanning the file.
pub struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    pub fn locate(&self, span: Range<usize>) -> Location {
        let offset = floor_char_boundary(self.text, span.start.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: Some(self.locate(span)),
            file: self.file.to_path_buf(),
            message: message.into(),
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Reads, parses and resolves a config file.
pub fn load(path: &Path) -> Result<Plan, ConfigErrors> {
    load_with(path, None)
}

/// Like [`load`], with a board profile from the command line (`--board`),
/// which wins over `[device] board`.
pub fn load_with(path: &Path, board: Option<&str>) -> Result<Plan, ConfigErrors> {
    let text = read_text(path)?;
    parse_with(path, &text, board)
}

/// The text of a config file: a regular file of at most
/// [`files::MAX_CONFIG_FILE`], UTF-8 (a bad byte is located by line and
/// column).
pub fn read_text(path: &Path) -> Result<String, ConfigErrors> {
    let unlocated = |message: String| {
        ConfigErrors(vec![ConfigError {
            location: None,
            file: path.to_path_buf(),
            message,
        }])
    };
    let bytes = files::read_capped(path, files::MAX_CONFIG_FILE)
        .map_err(|e| unlocated(format!("cannot read config: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        // The valid prefix locates the bad byte by line and column.
        let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let map = SourceMap::new(path, prefix);
        ConfigErrors(vec![map.error(
            valid..valid,
            format!(
                "not valid UTF-8 (byte 0x{:02x}); a config file must be UTF-8 text",
                bytes[valid]
            ),
        )])
    })
}

/// Top-level tables a running ledge takes on reload (SIGHUP). A change
/// anywhere else (device, brokers, spool, forwards...) needs a restart.
pub const RELOADABLE: [&str; 3] = ["function", "trigger", "sensor"];

/// The top-level keys, other than the reloadable ones, whose values differ
/// between two versions of a config file. Both texts must parse.
pub fn changes_needing_restart(old: &str, new: &str) -> Vec<String> {
    let parse = |text: &str| toml::from_str::<toml::Table>(text).unwrap_or_default();
    let (old, new) = (parse(old), parse(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !RELOADABLE.contains(&key.as_str()) && old.get(*key) != new.get(*key))
        .map(|key| format!("[{key}]"))
        .collect()
}

/// Parses and resolves config text; `path` names the file in errors and is
/// the base for relative paths inside it.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ConfigErrors> {
    parse_with(path, text, None)
}

/// Like [`parse`], with a `--board` flag.
pub fn parse_with(path: &Path, text: &str, board: Option<&str>) -> Result<Plan, ConfigErrors> {
    let map = SourceMap::new(path, text);
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        let error = match e.span() {
            Some(span) => map.error(span, message),
            None => ConfigError {
                location: None,
                file: path.to_path_buf(),
                message,
            },
        };
        ConfigErrors(vec![error])
    })?;
    resolve::resolve(&map, raw, board)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nbé = \"x\"\n";
        let map = SourceMap::new(Path::new("f.toml"), text);
        assert_eq!(map.locate(0..1).to_string(), "f.toml:1:1");
        let offset = text.find('"').unwrap();
        assert_eq!(map.locate(offset..offset + 1).to_string(), "f.toml:2:6");
    }

    #[test]
    fn only_non_reloadable_changes_need_a_restart() {
        let old = "[device]\nid = \"a\"\n[[function]]\nname = \"f\"\n";
        let functions_changed =
            "[device]\nid = \"a\"\n[[function]]\nname = \"g\"\n[[trigger]]\nfunction = \"g\"\n";
        assert!(changes_needing_restart(old, functions_changed).is_empty());
        // Formatting and comments are not changes.
        let reformatted = "# note\n[device]\nid   =   \"a\"\n[[function]]\nname = \"f\"\n";
        assert!(changes_needing_restart(old, reformatted).is_empty());
        let device_changed = "[device]\nid = \"b\"\n[upstream]\nurl = \"mqtt://h:1\"\n";
        assert_eq!(
            changes_needing_restart(old, device_changed),
            vec!["[device]".to_owned(), "[upstream]".to_owned()]
        );
    }

    #[test]
    fn syntax_errors_carry_file_line_and_column() {
        let err = parse(Path::new("bad.toml"), "[device]\nid = \n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.toml:2:"), "{text}");
    }

    #[test]
    fn unknown_keys_are_rejected_where_they_stand() {
        let err = parse(
            Path::new("c.toml"),
            "[device]\nid = \"x\"\ncolour = \"red\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.toml:3:1:"), "{text}");
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn wrong_types_are_rejected_where_they_stand() {
        let text = "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nmax_concurrency = \"two\"\n";
        let err = parse(Path::new("t.toml"), text).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:4:19:"), "{err}");
    }
}
