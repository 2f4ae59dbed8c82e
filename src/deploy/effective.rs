//! The functions a ledge runs: the config's, with the function store laid
//! over them.
//!
//! - A function's `$LATEST` runs the config's `module`, or the store's
//!   draft if one was deployed (`ledge deploy` without `--publish`).
//! - Every version an alias points at, or a trigger names (`f:7`), becomes
//!   a function of its own in the plan, named `f` with version `7`, running
//!   its module with the settings it was published with. Its permissions
//!   can only narrow the config's: the config is the device's policy.
//! - `f:alias` (and a bare `f` whose config sets `default_alias`) resolve to
//!   a [`Target`]: one version, or two with a canary share.

use std::collections::HashMap;

use crate::config::{FunctionId, FunctionSpec, Plan, Qualifier, Target};
use crate::topic::TopicFilter;

use super::store::{AliasTarget, FunctionState, Store, StoreError, Version};

/// Which function and version a plan function runs, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub function: String,
    /// `None`: `$LATEST`.
    pub version: Option<u32>,
}

/// Lays the store over `plan`; returns warnings for the log.
pub fn apply(plan: &mut Plan, store: &Store) -> Result<Vec<String>, StoreError> {
    let mut warnings = Vec::new();
    let base = plan.functions.len();
    let mut states: Vec<FunctionState> = Vec::with_capacity(base);
    for spec in plan.functions.iter_mut() {
        let state = store.state(&spec.name)?;
        if let Some(draft) = &state.latest {
            spec.module_path = store.module_path(&draft.sha256);
        }
        states.push(state);
    }

    let mut version_ids: HashMap<(FunctionId, u32), FunctionId> = HashMap::new();
    for (function, state) in states.iter().enumerate() {
        let mut needed = state.routed_versions();
        needed.extend(plan.routes.iter().filter_map(|r| match r.qualifier {
            Qualifier::Version(n) if r.function == function => Some(n),
            _ => None,
        }));
        needed.sort_unstable();
        needed.dedup();
        for number in needed {
            let Some(version) = state.versions.get(&number) else {
                continue;
            };
            let spec = version_spec(
                &plan.functions[function],
                number,
                version,
                store,
                &mut warnings,
            );
            version_ids.insert((function, number), plan.functions.len());
            plan.functions.push(spec);
        }
    }

    let resolve = |function: FunctionId, target: &AliasTarget| -> Option<Target> {
        Some(Target {
            function: *version_ids.get(&(function, target.version))?,
            canary: match target.canary {
                Some((version, percent)) => {
                    Some((*version_ids.get(&(function, version))?, percent))
                }
                None => None,
            },
        })
    };
    for (function, state) in states.iter().enumerate() {
        let name = plan.functions[function].name.clone();
        for (alias, entry) in &state.aliases {
            if let Some(target) = resolve(function, &entry.target) {
                plan.aliases.insert(format!("{name}:{alias}"), target);
            }
        }
        if let Some(alias) = &plan.functions[function].default_alias {
            match plan.aliases.get(&format!("{name}:{alias}")).copied() {
                Some(target) => {
                    plan.aliases.insert(name.clone(), target);
                }
                None => warnings.push(format!(
                    "`{name}` routes to its default_alias `{alias}`, which does not exist yet: `{name}` runs $LATEST until it does"
                )),
            }
        }
    }

    let aliases = &plan.aliases;
    let names: Vec<String> = plan.functions.iter().map(|f| f.name.clone()).collect();
    plan.routes.retain_mut(|route| {
        let function = route.function;
        let name = &names[function];
        let target = match &route.qualifier {
            Qualifier::Default => aliases.get(name.as_str()).copied(),
            Qualifier::Latest => None,
            Qualifier::Version(number) => match version_ids.get(&(function, *number)) {
                Some(id) => Some(Target {
                    function: *id,
                    canary: None,
                }),
                None => {
                    warnings.push(format!(
                        "{}: trigger names `{name}:{number}`, which is not published: the trigger is off",
                        route.location
                    ));
                    return false;
                }
            },
            Qualifier::Alias(alias) => {
                let target = aliases.get(&format!("{name}:{alias}")).copied();
                if target.is_none() {
                    warnings.push(format!(
                        "{}: trigger names `{name}:{alias}`, which does not exist yet: it runs $LATEST until it does",
                        route.location
                    ));
                }
                target
            }
        };
        if let Some(target) = target {
            route.function = target.function;
            route.canary = target.canary;
        }
        true
    });
    Ok(warnings)
}

/// Published version `number` of function `name` as a plan function, read
/// from the store on demand: every published version is invocable, not
/// only those an alias or trigger routes to (which [`apply`] adds). The
/// second value holds warnings for permissions the version asked for but
/// the config does not grant.
pub fn published_version(
    plan: &Plan,
    store: &Store,
    name: &str,
    number: u32,
) -> Result<(FunctionSpec, Vec<String>), StoreError> {
    let config = plan
        .functions
        .iter()
        .find(|f| f.name == name && f.version == "$LATEST")
        .ok_or_else(|| StoreError::NoSuchVersion(name.to_owned(), number))?;
    let state = store.state(name)?;
    let version = state
        .versions
        .get(&number)
        .ok_or_else(|| StoreError::NoSuchVersion(name.to_owned(), number))?;
    let mut warnings = Vec::new();
    let spec = version_spec(config, number, version, store, &mut warnings);
    Ok((spec, warnings))
}

/// The plan function for a published version of `config`.
fn version_spec(
    config: &FunctionSpec,
    number: u32,
    version: &Version,
    store: &Store,
    warnings: &mut Vec<String>,
) -> FunctionSpec {
    let mut spec = config.clone();
    spec.version = number.to_string();
    spec.module_path = store.module_path(&version.sha256);
    spec.default_alias = None;
    let settings = &version.settings;
    if let Some(memory) = settings.memory_bytes {
        spec.memory_limit = memory as usize;
    }
    if let Some(timeout) = settings.timeout_ms {
        spec.timeout = std::time::Duration::from_millis(timeout);
    }
    for (key, value) in &settings.env {
        spec.env.insert(key.clone(), value.clone());
    }
    let label = format!("{}:{number}", config.name);
    if let Some(filters) = &settings.allow_publish {
        spec.allow_publish = narrow(
            &config.allow_publish,
            filters,
            &label,
            "allow_publish",
            warnings,
        );
    }
    if let Some(filters) = &settings.allow_forward {
        spec.allow_forward = narrow(
            &config.allow_forward,
            filters,
            &label,
            "allow_forward",
            warnings,
        );
    }
    spec
}

/// The filters of `wanted` the config's `allowed` covers; the rest are
/// dropped with a warning.
fn narrow(
    allowed: &[TopicFilter],
    wanted: &[String],
    label: &str,
    key: &str,
    warnings: &mut Vec<String>,
) -> Vec<TopicFilter> {
    let mut kept = Vec::new();
    for text in wanted {
        match TopicFilter::new(text) {
            Ok(filter) if allowed.iter().any(|a| a.covers(&filter)) => kept.push(filter),
            Ok(_) => warnings.push(format!(
                "{label}: {key} `{text}` is beyond what the config allows; not granted"
            )),
            Err(e) => warnings.push(format!(
                "{label}: {key} `{text}` is invalid ({e}); not granted"
            )),
        }
    }
    kept
}

/// Which store entry each plan function runs.
pub fn origins(plan: &Plan) -> Vec<Origin> {
    plan.functions
        .iter()
        .map(|spec| Origin {
            function: spec.name.clone(),
            version: spec.version.parse().ok(),
        })
        .collect()
}
