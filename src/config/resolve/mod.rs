//! Stage two of configuration: the raw config ([`super::raw`]) checked and
//! resolved into a [`Plan`]. Defaults are applied here and nowhere else.
//!
//! [`resolve`] walks the raw config once, section by section, collecting
//! every problem with its location instead of stopping at the first, so
//! `ledge check` can list all of them. Each section has its resolver, an
//! `impl Resolver` block in its own module; this module holds what they
//! share: the error list, spans, the board profile, and the parsing of
//! paths, sizes, durations and counts.
//!
//! | section | resolver | files it reads |
//! |---|---|---|
//! | `[device]`, `--board` | [`device`] | `/etc/hostname` (default id) |
//! | `[broker]` | [`broker`] | `users_file` |
//! | `password_file`, `env_file` | [`secrets`] | both |
//! | `[upstream]`, `[[forward]]` | [`upstream`] | none (TLS files must exist) |
//! | `[spool]` | [`spool`] | none |
//! | `[[function]]` | [`functions`] | none (`env_file` via [`secrets`]) |
//! | `[[sensor]]` | [`sensors`] | none (a replay `file` must exist) |
//! | `[[trigger]]` | [`triggers`] | zoneinfo (`$TZDIR` or `/usr/share/zoneinfo`) |
//! | `[[gpio_output]]`, gpio sensors, `allow_gpio` | [`gpio`] | none |
//! | `[deploy]` | [`deploy`] | none |
//! | `[log]`, `[metrics]` | [`observability`] | none |
//! | `[http]`, http triggers | [`http`] | `api_keys_file`, `credentials_file` |
//!
//! Module files are *not* opened here: a module that fails to load disables
//! only its function at run time (see `runtime::load`), while `ledge check`
//! reports it as an error.

mod broker;
mod deploy;
mod device;
mod functions;
mod gpio;
mod http;
mod observability;
mod secrets;
mod sensors;
mod spool;
mod triggers;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::plan::{GpioPlan, Plan};
use super::raw::RawConfig;
use super::{ConfigError, ConfigErrors, Location, SourceMap};
use crate::board::{Board, BoardDefaults};
use crate::units::{parse_duration, parse_size};

/// Builds a [`Plan`] from the raw config, or every error found on the way.
/// `board_flag` is `--board`, which wins over `[device] board`.
pub(super) fn resolve(
    map: &SourceMap<'_>,
    raw: RawConfig,
    board_flag: Option<&str>,
) -> Result<Plan, ConfigErrors> {
    let mut resolver = Resolver {
        map,
        base: map_base(map),
        errors: Vec::new(),
        board: None,
    };
    resolver.board = resolver.board(&raw.device, board_flag);
    let gpio_backend = resolver.gpio_backend(&raw.device);
    let device = resolver.device(&raw.device);
    let broker = resolver.broker(raw.broker, &device.id);
    let spool = resolver.spool(&raw.spool);
    let upstream = raw.upstream.map(|u| resolver.upstream(u, &device.id));
    let forwards = resolver.forwards(raw.forwards, upstream.is_some());
    let metrics_interval = resolver.metrics_interval(&raw.metrics);
    let metrics_listen = resolver.metrics_listen(&raw.metrics);
    let http = resolver.http(raw.http, &raw.metrics.listen, metrics_listen);
    let gpio_grants: Vec<Vec<Spanned<String>>> = raw
        .functions
        .iter()
        .map(|f| f.get_ref().allow_gpio.clone())
        .collect();
    let sensor_spans: HashMap<String, Range<usize>> = raw
        .sensors
        .iter()
        .map(|s| (s.get_ref().name.get_ref().clone(), s.get_ref().name.span()))
        .collect();
    let functions = resolver.functions(raw.functions);
    resolver.check_concurrency(&raw.device.max_concurrency, &functions);
    let sensors = resolver.sensors(raw.sensors);
    let gpio_outputs = resolver.gpio_outputs(raw.gpio_outputs);
    resolver.check_gpio(&gpio_grants, &gpio_outputs, &sensors, &sensor_spans);
    let routes = resolver.routes(raw.triggers, &functions, &sensors);
    resolver.check_http_routes(http.as_ref(), &routes);
    let deploy = resolver.deploy(&raw.deploy);
    let log_json = resolver.log_json(&raw.log);
    if !resolver.errors.is_empty() {
        resolver.errors.sort_by_key(|e| {
            e.location
                .as_ref()
                .map(|l| (l.line, l.column))
                .unwrap_or_default()
        });
        return Err(ConfigErrors(resolver.errors));
    }
    Ok(Plan {
        source: map_file(map),
        device,
        broker,
        functions,
        routes,
        sensors,
        log_level: raw.log.level,
        log_json,
        spool,
        upstream,
        forwards,
        metrics_interval,
        metrics_listen,
        aliases: BTreeMap::new(),
        deploy,
        board: resolver.board,
        board_flag: board_flag.map(str::to_owned),
        gpio: GpioPlan {
            backend: gpio_backend,
            outputs: gpio_outputs,
        },
        http,
    })
}

fn map_base(map: &SourceMap<'_>) -> PathBuf {
    map_file(map)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn map_file(map: &SourceMap<'_>) -> PathBuf {
    map.locate(0..0).file
}

/// What every section's resolver shares while one config file is resolved.
struct Resolver<'a> {
    map: &'a SourceMap<'a>,
    /// Folder of the config file; relative paths in it start here.
    base: PathBuf,
    /// Every problem found so far; sorted by place at the end.
    errors: Vec<ConfigError>,
    /// The board profile, whose defaults apply where the file says nothing.
    board: Option<Board>,
}

impl Resolver<'_> {
    fn fail(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(self.map.error(span, message));
    }

    fn locate(&self, span: Range<usize>) -> Location {
        self.map.locate(span)
    }

    /// A problem that has no place in the file (a command-line flag).
    fn fail_unlocated(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: None,
            file: map_file(self.map),
            message: message.into(),
        });
    }

    /// A board default parsed as a size (profiles are checked by tests).
    fn board_size(&self, pick: impl Fn(&BoardDefaults) -> &str) -> Option<u64> {
        self.board
            .as_ref()
            .and_then(|b| parse_size(pick(&b.defaults)).ok())
    }

    /// A path from the file: relative ones start at the file's folder.
    fn path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            normalize(path)
        } else {
            normalize(&self.base.join(path))
        }
    }

    fn size(&mut self, value: &Option<Spanned<String>>, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => parse_size(v.get_ref()).unwrap_or_else(|e| {
                self.fail(v.span(), e);
                default
            }),
        }
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) if d.is_zero() => {
                    self.fail(v.span(), "must be longer than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.fail(v.span(), e);
                    default
                }
            },
        }
    }

    fn positive(&mut self, value: &Option<Spanned<i64>>, default: usize, max: usize) -> usize {
        match value {
            None => default,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    self.fail(v.span(), format!("must be between 1 and {max}"));
                    default
                }
            },
        }
    }
}

/// Removes `.` and `name/..` pairs without touching the file system, so
/// paths print the way a user would write them.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let popped = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if popped {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The names an error lists as defined: the first few and how many more, so
/// thousands of bad references to thousands of names stay linear.
fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let mut list = list.peekable();
    if list.peek().is_none() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = list.by_ref().take(SHOWN).collect();
    let more = list.count();
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{}, and {more} more", shown.join(", "))
    }
}

/// One function, for the resolvers' tests.
#[cfg(test)]
const FUNCTION: &str = "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\n";

/// The config text resolved as `/cfg/ledge.toml`, for the resolvers' tests.
#[cfg(test)]
pub(in crate::config) fn plan(text: &str) -> Result<Plan, String> {
    plan_on(text, None)
}

/// Like [`plan`], with a `--board` flag.
#[cfg(test)]
fn plan_on(text: &str, board: Option<&str>) -> Result<Plan, String> {
    super::parse_with(Path::new("/cfg/ledge.toml"), text, board).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerMode;

    #[test]
    fn an_empty_config_means_the_embedded_broker_and_nothing_to_run() {
        let plan = plan("").unwrap();
        assert_eq!(
            plan.broker.mode,
            BrokerMode::Embedded {
                listen: "127.0.0.1:1883".parse().unwrap()
            }
        );
        assert!(plan.functions.is_empty());
        assert_eq!(plan.broker.max_payload, 256 << 10);
    }

    #[test]
    fn every_error_in_the_file_is_reported_in_order() {
        let text = format!(
            "{FUNCTION}memory = \"lots\"\n[[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#/b\"\nfunction = \"f\"\n"
        );
        let err = plan(&text).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(lines[0].starts_with("/cfg/ledge.toml:4:"), "{err}");
        assert!(
            lines[1].starts_with("/cfg/ledge.toml:7:") && lines[1].contains("`#`"),
            "{err}"
        );
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("a/b/../../c/./d")),
            PathBuf::from("c/d")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(
            normalize(Path::new("/etc/ledge/../x")),
            PathBuf::from("/etc/x")
        );
    }
}
