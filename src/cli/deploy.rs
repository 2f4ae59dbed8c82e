//! `ledge deploy`, `versions --delete`, `alias set` and `rollback`: the
//! commands that change the function store. Listing it is `functions.rs`;
//! making signed over-the-air deployments is `sign.rs`.
//!
//! Commands change the store under the config's data_dir directly (holding
//! its lock), then ask a running ledge, if there is one, to apply the change
//! over its control socket. Without a running ledge the change takes effect
//! when it starts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{load_config, CliError};
use crate::config::{FunctionSpec, Plan};
use crate::deploy::ota;
use crate::deploy::store::{self, AliasTarget, Probation, Store, Version};

pub(super) fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(anyhow!("{e}"))
}

pub(super) fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow!("{e}"))
}

/// A function or alias name from the command line, checked before it
/// becomes part of a path in the store (`../x` must not reach outside it).
pub(super) fn check_name(name: &str, what: &'static str) -> Result<(), CliError> {
    store::check_name(name, what).map_err(usage)
}

fn config_function<'a>(plan: &'a Plan, name: &str) -> Result<&'a FunctionSpec, CliError> {
    plan.functions
        .iter()
        .find(|f| f.name == name && f.version == "$LATEST")
        .ok_or_else(|| {
            let known: Vec<&str> = plan
                .functions
                .iter()
                .filter(|f| f.version == "$LATEST")
                .map(|f| f.name.as_str())
                .collect();
            usage(format!(
                "no function `{name}` in {} (defined: {}); add its [[function]] first: the config holds its triggers and permissions",
                plan.source.display(),
                known.join(", ")
            ))
        })
}

/// Asks a running ledge to apply the store; says what happened.
fn apply(plan: &Plan) -> Result<(), CliError> {
    apply_running(plan).map(drop)
}

/// Like [`apply`]; true if a running ledge applied it.
fn apply_running(plan: &Plan) -> Result<bool, CliError> {
    let socket = crate::control::socket_path(&plan.device.data_dir);
    match crate::control::request(&socket, "reload") {
        Ok(reply) => match reply.get("error").and_then(|e| e.as_str()) {
            Some(e) => Err(failed(format!(
                "stored, but the running ledge could not apply it: {e}"
            ))),
            None => {
                println!("applied by the running ledge");
                Ok(true)
            }
        },
        Err(_) => {
            println!("no ledge running with this config: takes effect when it starts");
            Ok(false)
        }
    }
}

pub struct DeployRequest<'a> {
    pub config: &'a Path,
    pub function: &'a str,
    pub module: &'a Path,
    pub publish: bool,
    pub alias: Option<&'a str>,
    pub watch: bool,
    /// `--wait`: return after the new alias target's probation, with its
    /// verdict; the timeout, if not the default (`watch_period` + 1 min).
    pub wait: Option<Option<Duration>>,
}

/// `ledge deploy NAME FILE.wasm [--publish] [--alias A] [--wait]`.
pub fn deploy(request: &DeployRequest<'_>) -> Result<(), CliError> {
    check_name(request.function, "function")?;
    if let Some(alias) = request.alias {
        check_name(alias, "alias")?;
    }
    let plan = load_config(request.config)?;
    let spec = config_function(&plan, request.function)?;
    let bytes = crate::runtime::read_module(request.module).map_err(usage)?;
    // The module must load and start under the function's settings before
    // it goes anywhere near the store.
    let runtime = crate::runtime::Runtime::new(plan.broker.max_payload).map_err(failed)?;
    let mut candidate = spec.clone();
    candidate.module_path = request.module.to_path_buf();
    runtime
        .load(candidate)
        .map_err(|e| usage(format!("{}: {}", request.module.display(), e.reason)))?;

    let store = Store::under(&plan.device.data_dir);
    let lock = store.lock().map_err(failed)?;
    let sha256 = store.put_module(&lock, &bytes).map_err(failed)?;
    store
        .set_draft(&lock, request.function, &sha256, bytes.len() as u64)
        .map_err(failed)?;
    println!(
        "{}:$LATEST <- {} ({} bytes, sha256 {sha256})",
        request.function,
        request.module.display(),
        bytes.len()
    );
    let mut switched = None;
    if request.publish {
        let version = Version {
            sha256,
            size: bytes.len() as u64,
            settings: ota::snapshot(spec, &store::Settings::default()),
            published_at_ms: store::now_ms(),
            origin: "cli".to_owned(),
        };
        let number = store
            .publish(&lock, request.function, None, version)
            .map_err(failed)?;
        println!("published {}:{number}", request.function);
        if let Some(alias) = request.alias {
            let target = AliasTarget::single(number);
            let previous = set_alias(
                &store,
                &lock,
                request.function,
                alias,
                target,
                request.watch,
            )?;
            switched = Some((alias, target, previous));
        }
    }
    drop(lock);
    let running = apply_running(&plan)?;
    let Some(timeout) = request.wait else {
        return Ok(());
    };
    let Some((alias, target, previous)) = switched else {
        return Err(usage(
            "--wait needs --alias: only an alias switch is on probation",
        ));
    };
    if !running {
        return Err(failed(format!(
            "--wait: no ledge is running with {}, so nothing judges {}:{alias}'s probation; start it (the probation continues then) or drop --wait",
            request.config.display(),
            request.function
        )));
    }
    if previous.is_some_and(|p| target.versions().all(|v| p.versions().any(|old| old == v))) {
        println!(
            "{}:{alias} -> {target}: nothing new to watch",
            request.function
        );
        return Ok(());
    }
    let timeout = timeout.unwrap_or(plan.deploy.watch_period + Duration::from_secs(60));
    wait_for_verdict(&plan, &store, request.function, alias, target, timeout)
}

/// How often `--wait` reads the store and the running ledge's counters.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Waits until the running ledge ends `alias`'s probation (it writes the
/// outcome to the store: probation cleared, or the alias rolled back) and
/// reports the verdict: healthy is success, a rollback a failure.
fn wait_for_verdict(
    plan: &Plan,
    store: &Store,
    function: &str,
    alias: &str,
    target: AliasTarget,
    timeout: Duration,
) -> Result<(), CliError> {
    println!(
        "waiting for {function}:{alias} -> {target} to pass probation ({} invocations or {}s, max error rate {}; giving up after {}s)",
        plan.deploy.watch_invocations,
        plan.deploy.watch_period.as_secs(),
        plan.deploy.max_error_rate,
        timeout.as_secs()
    );
    let socket = crate::control::socket_path(&plan.device.data_dir);
    let slots: Vec<String> = target
        .versions()
        .map(|v| format!("{function}:{v}"))
        .collect();
    // The new versions' counters, as last seen (they vanish with a rollback).
    let mut counts = (0u64, 0u64);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(status) = crate::control::request(&socket, "status") {
            let sum = |field: &str| -> u64 {
                slots
                    .iter()
                    .filter_map(|slot| status["functions"][slot][field].as_u64())
                    .sum()
            };
            if slots
                .iter()
                .any(|slot| status["functions"][slot].is_object())
            {
                counts = (sum("invocations"), sum("errors"));
            }
        }
        let state = store.state(function).map_err(failed)?;
        let Some(entry) = state.aliases.get(alias) else {
            return Err(failed(format!(
                "{function}:{alias} was deleted while on probation"
            )));
        };
        let (invocations, errors) = counts;
        match (entry.target == target, entry.probation.is_some()) {
            (true, true) => {}
            (true, false) => {
                println!(
                    "healthy: {function}:{alias} -> {target} passed probation ({errors} of {invocations} invocations failed)"
                );
                return Ok(());
            }
            (false, false) => {
                return Err(failed(format!(
                    "rolled back: {function}:{alias} -> {} again; {target} failed probation ({errors} of {invocations} invocations failed, max error rate {})",
                    entry.target, plan.deploy.max_error_rate
                )));
            }
            (false, true) => {
                return Err(failed(format!(
                    "{function}:{alias} was pointed at {} by another deployment while {target} was on probation",
                    entry.target
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "{function}:{alias} -> {target} is still on probation after {}s ({invocations} invocations so far, {errors} failed; it needs {}): the verdict comes when enough events arrive or after watch_period ({}s)",
                timeout.as_secs(),
                plan.deploy.watch_invocations,
                plan.deploy.watch_period.as_secs()
            )));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Points the alias and says so; returns the target it had before.
fn set_alias(
    store: &Store,
    lock: &store::StoreLock,
    function: &str,
    alias: &str,
    target: AliasTarget,
    watch: bool,
) -> Result<Option<AliasTarget>, CliError> {
    let probation = watch.then(|| Probation {
        since_ms: store::now_ms(),
        origin: "cli".to_owned(),
    });
    let previous = store
        .set_alias(lock, function, alias, target, probation)
        .map_err(usage)?;
    match previous {
        Some(previous) if previous == target => {
            println!("{function}:{alias} already points at {target}");
            return Ok(Some(previous));
        }
        Some(previous) => println!("{function}:{alias} -> {target} (was {previous})"),
        None => println!("{function}:{alias} -> {target} (new alias)"),
    }
    record_move(
        store,
        lock,
        serde_json::json!({
            "event": "alias_moved",
            "function": function,
            "alias": alias,
            "from": previous.map(|p| p.to_string()),
            "to": target.to_string(),
        }),
    )?;
    Ok(previous)
}

/// Leaves an alias move for the running ledge to report upstream.
fn record_move(
    store: &Store,
    lock: &store::StoreLock,
    mut report: serde_json::Value,
) -> Result<(), CliError> {
    report["moved_by"] = crate::deploy::moves::cli_user().into();
    crate::deploy::moves::record(store, lock, &report).map_err(failed)
}

/// `ledge alias set NAME ALIAS VERSION [--weight V2=PCT]`.
pub fn alias_set(
    config: &Path,
    function: &str,
    alias: &str,
    version: u32,
    weight: Option<&str>,
    watch: bool,
) -> Result<(), CliError> {
    check_name(function, "function")?;
    check_name(alias, "alias")?;
    let plan = load_config(config)?;
    config_function(&plan, function)?;
    let canary = match weight {
        None => None,
        Some(text) => {
            let parsed = text.split_once('=').and_then(|(v, pct)| {
                Some((
                    v.trim().parse::<u32>().ok()?,
                    pct.trim().trim_end_matches('%').parse::<u8>().ok()?,
                ))
            });
            Some(parsed.ok_or_else(|| {
                usage(format!(
                    "--weight `{text}`: write VERSION=PERCENT, as in --weight 8=10"
                ))
            })?)
        }
    };
    let store = Store::under(&plan.device.data_dir);
    let lock = store.lock().map_err(failed)?;
    set_alias(
        &store,
        &lock,
        function,
        alias,
        AliasTarget { version, canary },
        watch,
    )?;
    drop(lock);
    apply(&plan)
}

/// `ledge rollback NAME ALIAS`.
pub fn rollback(config: &Path, function: &str, alias: &str) -> Result<(), CliError> {
    check_name(function, "function")?;
    check_name(alias, "alias")?;
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let lock = store.lock().map_err(failed)?;
    let (from, to) = store.rollback(&lock, function, alias).map_err(usage)?;
    println!("{function}:{alias} -> {to} (rolled back from {from})");
    record_move(
        &store,
        &lock,
        serde_json::json!({
            "event": "rolled_back",
            "function": function,
            "alias": alias,
            "from": from.to_string(),
            "to": to.to_string(),
            "reason": "ledge rollback",
        }),
    )?;
    let state = store.state(function).map_err(failed)?;
    match state.aliases.get(alias).and_then(|a| a.previous) {
        Some(next) => println!("another rollback would go to {next}"),
        None => println!("no earlier target: this is as far back as it goes"),
    }
    drop(lock);
    apply(&plan)
}

/// `ledge versions NAME --delete N`.
pub fn delete_version(config: &Path, function: &str, version: u32) -> Result<(), CliError> {
    check_name(function, "function")?;
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let lock = store.lock().map_err(failed)?;
    store
        .delete_version(&lock, function, version)
        .map_err(usage)?;
    println!("deleted {function}:{version} (its number is not reused)");
    drop(lock);
    apply(&plan)
}
