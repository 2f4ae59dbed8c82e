//! `[[function]]`: each function's module, limits, grants, environment and
//! failure policy, and the check that their reserved concurrency fits the
//! device (`[device] max_concurrency`, or the board's default).
//!
//! Files read: none. The module is not opened (a module that fails to load
//! disables only its function, at run time); `env_file` is read by
//! [`super::secrets`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use toml::Spanned;

use super::{map_file, Resolver};
use crate::config::plan::{
    is_identifier, FailurePolicy, FunctionSpec, OnFailure, PublishLimit, Qualifier,
};
use crate::config::raw::RawFunction;
use crate::config::ConfigError;
use crate::topic::TopicFilter;
use crate::units::parse_rate;

/// Default linear-memory cap of a function.
const DEFAULT_MEMORY: u64 = 16 << 20;
/// Default per-invocation timeout. Lambda and Greengrass use 3 s; gateway
/// logic that takes longer than a second is usually waiting on something it
/// should not be.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound of a function's event queue, in events. Measured (see
/// BENCHMARKS.md): with 128, bursts above ~5,000 readings a second filled
/// it and ledge's sustained rate fell to what its overflow path (the
/// function's spool stream) can feed; 4,096 absorbs a second of a busy
/// sensor hub in memory. Bounded in bytes too, by
/// [`QUEUE_BYTES`](crate::config::QUEUE_BYTES).
const DEFAULT_QUEUE_SIZE: usize = 4096;

/// Most publishes a full bucket may hold (`publish_burst`). A million is
/// more than a gateway's link carries in several seconds: a larger burst
/// would limit nothing, and is more likely a typo.
const MAX_BURST: usize = 1_000_000;

/// Default bound on the sum of `max_concurrency`: 8 per CPU core (wasm is
/// CPU-bound while it runs, but functions spend most of their time idle).
fn default_max_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 8
}

impl Resolver<'_> {
    pub(super) fn functions(&mut self, raw: Vec<Spanned<RawFunction>>) -> Vec<FunctionSpec> {
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut functions = Vec::with_capacity(raw.len());
        for entry in raw {
            let f = entry.into_inner();
            let name = f.name.get_ref().clone();
            if !is_identifier(&name, "") {
                self.fail(
                    f.name.span(),
                    "function name must be 1-64 letters, digits, `-` or `_`",
                );
            }
            if seen.insert(name.clone(), ()).is_some() {
                self.fail(f.name.span(), format!("duplicate function name `{name}`"));
            }
            functions.push(self.function(name, f));
        }
        functions
    }

    fn function(&mut self, name: String, f: RawFunction) -> FunctionSpec {
        let default_memory = self
            .board_size(|d| &d.function_memory)
            .unwrap_or(DEFAULT_MEMORY);
        let memory_limit = self.size(&f.memory, default_memory);
        if let Some(m) = &f.memory {
            if !(64 << 10..=4 << 30).contains(&memory_limit) {
                self.fail(m.span(), "memory must be between 64KiB and 4GiB");
            }
        }
        let allow_publish = self.filters(&f.allow_publish);
        let allow_forward = self.filters(&f.allow_forward);
        let max_fuel = f.max_fuel.as_ref().map(|fuel| {
            if *fuel.get_ref() == 0 {
                self.fail(fuel.span(), "max_fuel must be greater than zero");
            }
            *fuel.get_ref()
        });
        let failure = self.failure_policy(&f);
        let publish_limit = self.publish_limit(&f);
        let secret_env = match &f.env_file {
            Some(file) => self.env_file(file, &f.env),
            None => BTreeMap::new(),
        };
        FunctionSpec {
            secret_env,
            failure,
            version: "$LATEST".to_owned(),
            module_path: self.path(f.module.get_ref()),
            module_location: self.locate(f.module.span()),
            memory_limit: memory_limit as usize,
            timeout: self.duration(&f.timeout, DEFAULT_TIMEOUT),
            max_fuel,
            max_concurrency: self.positive(&f.max_concurrency, 1, 256),
            queue_size: self.positive(&f.queue_size, DEFAULT_QUEUE_SIZE, 1_000_000),
            env: f.env,
            allow_publish,
            allow_forward,
            default_alias: f.default_alias.as_ref().and_then(|alias| {
                match Qualifier::split(&format!("{name}:{}", alias.get_ref())) {
                    Ok((_, Qualifier::Alias(alias))) => Some(alias),
                    _ => {
                        self.fail(alias.span(), "default_alias must be an alias name (letters, digits, `-`, `_`; not a number)");
                        None
                    }
                }
            }),
            allow_gpio: f.allow_gpio.iter().map(|g| g.get_ref().clone()).collect(),
            publish_limit,
            name,
        }
    }

    /// `publish_rate` and `publish_burst`. No default: see
    /// [`PublishLimit`] and docs/config.md for why publishes are unlimited
    /// unless the config says otherwise.
    fn publish_limit(&mut self, f: &RawFunction) -> Option<PublishLimit> {
        let Some(rate) = &f.publish_rate else {
            if let Some(burst) = &f.publish_burst {
                self.fail(burst.span(), "publish_burst needs a publish_rate");
            }
            return None;
        };
        let per_second = match parse_rate(rate.get_ref()) {
            Ok(per_second) => per_second,
            Err(e) => {
                self.fail(rate.span(), format!("publish_rate: {e}"));
                return None;
            }
        };
        // One second's worth by default: a function may publish its rate's
        // worth at once after a quiet second, as a sensor batch does.
        let default_burst = per_second.ceil().clamp(1.0, MAX_BURST as f64) as usize;
        let burst = self.positive(&f.publish_burst, default_burst, MAX_BURST);
        Some(PublishLimit {
            rate: rate.get_ref().trim().to_owned(),
            per_second,
            burst: burst as u32,
        })
    }

    fn failure_policy(&mut self, f: &RawFunction) -> FailurePolicy {
        let defaults = FailurePolicy::default();
        let retries = match &f.retries {
            None => defaults.retries,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= 10 => n,
                _ => {
                    self.fail(v.span(), "retries must be between 0 and 10");
                    defaults.retries
                }
            },
        };
        let on_failure = match &f.on_failure {
            None => defaults.on_failure.clone(),
            Some(v) => match v.get_ref().as_str() {
                "dlq" => OnFailure::DeadLetter,
                "drop" => OnFailure::Drop,
                other => match other.strip_prefix("topic:") {
                    Some(topic) if TopicFilter::new(topic).is_ok_and(|t| !t.has_wildcards()) => {
                        OnFailure::Topic(topic.to_owned())
                    }
                    _ => {
                        self.fail(
                            v.span(),
                            "on_failure must be \"dlq\", \"drop\" or \"topic:<local topic without wildcards>\"",
                        );
                        defaults.on_failure.clone()
                    }
                },
            },
        };
        FailurePolicy {
            retries,
            retry_backoff: self.duration(&f.retry_backoff, defaults.retry_backoff),
            max_event_age: self.duration(&f.max_event_age, defaults.max_event_age),
            on_failure,
        }
    }

    fn filters(&mut self, raw: &[Spanned<String>]) -> Vec<TopicFilter> {
        raw.iter()
            .filter_map(|filter| match TopicFilter::new(filter.get_ref()) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.fail(filter.span(), format!("invalid topic filter: {e}"));
                    None
                }
            })
            .collect()
    }

    /// Each function's `max_concurrency` is reserved: its own worker
    /// threads, so no function can starve another. The device's limit
    /// bounds their sum, so a config cannot overcommit a small board.
    pub(super) fn check_concurrency(
        &mut self,
        limit: &Option<Spanned<i64>>,
        functions: &[FunctionSpec],
    ) {
        let default = self
            .board
            .as_ref()
            .map_or_else(default_max_concurrency, |b| b.defaults.max_concurrency);
        let allowed = self.positive(limit, default, 4096);
        let total: usize = functions.iter().map(|f| f.max_concurrency).sum();
        if total <= allowed {
            return;
        }
        let why = match (limit, &self.board) {
            (Some(_), _) => "[device] max_concurrency".to_owned(),
            (None, Some(board)) => format!("the default of board {}", board.name),
            (None, None) => format!(
                "the default [device] max_concurrency: 8 per CPU core, {} cores here",
                default / 8
            ),
        };
        let message = format!(
            "the functions reserve {total} concurrent executions in all (sum of max_concurrency), more than {allowed} ({why}); lower some max_concurrency or raise [device] max_concurrency"
        );
        match limit {
            Some(limit) => self.fail(limit.span(), message),
            None => {
                let span = functions
                    .iter()
                    .max_by_key(|f| f.max_concurrency)
                    .map(|f| f.module_location.clone());
                self.errors.push(ConfigError {
                    location: span,
                    file: map_file(self.map),
                    message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::resolve::{plan, FUNCTION};

    #[test]
    fn reserved_concurrency_may_not_exceed_the_device_limit() {
        let two = "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nmax_concurrency = 3\n\
                   [[function]]\nname = \"b\"\nmodule = \"b.wasm\"\nmax_concurrency = 2\n";
        assert!(plan(&format!("[device]\nmax_concurrency = 5\n{two}")).is_ok());
        let err = plan(&format!("[device]\nmax_concurrency = 4\n{two}")).unwrap_err();
        assert!(err.starts_with("/cfg/ledge.toml:2:19:"), "{err}");
        assert!(err.contains("reserve 5 concurrent executions"), "{err}");
    }

    #[test]
    fn function_defaults_and_relative_paths_are_resolved() {
        let plan = plan(FUNCTION).unwrap();
        let f = &plan.functions[0];
        assert_eq!(f.module_path, PathBuf::from("/cfg/f.wasm"));
        assert_eq!(f.memory_limit, 16 << 20);
        assert_eq!(f.timeout, Duration::from_secs(1));
        assert_eq!(f.max_concurrency, 1);
        assert_eq!(f.module_location.to_string(), "/cfg/ledge.toml:3:10");
    }

    #[test]
    fn human_units_are_parsed_and_bad_ones_located() {
        let text = format!("{FUNCTION}memory = \"4MiB\"\ntimeout = \"250ms\"\n");
        let f = plan(&text).unwrap().functions.remove(0);
        assert_eq!(
            (f.memory_limit, f.timeout),
            (4 << 20, Duration::from_millis(250))
        );

        let err = plan(&format!("{FUNCTION}timeout = \"250\"\n")).unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:4:11: `250` has no unit"),
            "{err}"
        );
    }

    #[test]
    fn publishes_are_unlimited_unless_a_rate_is_set_and_the_burst_defaults_to_a_second() {
        let f = |extra: &str| {
            plan(&format!("{FUNCTION}{extra}"))
                .unwrap()
                .functions
                .remove(0)
        };
        assert_eq!(f("").publish_limit, None);
        let limit = f("publish_rate = \"2000/s\"\n").publish_limit.unwrap();
        assert_eq!((limit.per_second, limit.burst), (2000.0, 2000));
        assert_eq!(limit.rate, "2000/s");
        let slow = f("publish_rate = \"1/h\"\n").publish_limit.unwrap();
        assert_eq!(slow.burst, 1, "at least one publish");
        let burst = f("publish_rate = \"1/h\"\npublish_burst = 10\n");
        assert_eq!(burst.publish_limit.unwrap().burst, 10);
    }

    #[test]
    fn duplicate_function_names_are_rejected_at_the_second() {
        let err = plan(&format!("{FUNCTION}{FUNCTION}")).unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:5:8: duplicate function name `f`"),
            "{err}"
        );
    }
}
