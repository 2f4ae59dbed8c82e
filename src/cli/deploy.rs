//! `ledge deploy`, `versions`, `alias set`, `rollback`, `functions`,
//! `keygen` and `sign`: the function store from the command line.
//!
//! Commands change the store under the config's data_dir directly (holding
//! its lock), then ask a running ledge, if there is one, to apply the change
//! over its control socket. Without a running ledge the change takes effect
//! when it starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{load_config, CliError};
use crate::config::{FunctionSpec, Plan};
use crate::deploy::document::{self, Deployment};
use crate::deploy::ota;
use crate::deploy::store::{self, AliasTarget, Probation, Store, Version};
use crate::signing;

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(anyhow!("{e}"))
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow!("{e}"))
}

/// A function or alias name from the command line, checked before it
/// becomes part of a path in the store (`../x` must not reach outside it).
fn check_name(name: &str, what: &'static str) -> Result<(), CliError> {
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

/// `ledge versions NAME`.
pub fn versions(config: &Path, function: &str, json: bool) -> Result<(), CliError> {
    check_name(function, "function")?;
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let state = store.state(function).map_err(failed)?;
    if json {
        println!("{}", serde_json::to_string(&state).map_err(failed)?);
        return Ok(());
    }
    println!(
        "{:<9} {:<14} {:>9} {:<8} {:<20} aliases",
        "version", "sha256", "bytes", "origin", "published"
    );
    if let Some(draft) = &state.latest {
        println!(
            "{:<9} {:<14} {:>9} {:<8} {:<20}",
            "$LATEST",
            &draft.sha256[..12.min(draft.sha256.len())],
            draft.size,
            "draft",
            format_ms(draft.deployed_at_ms)
        );
    }
    for (number, version) in &state.versions {
        let aliases: Vec<String> = state
            .aliases
            .iter()
            .filter(|(_, a)| a.target.versions().any(|v| v == *number))
            .map(|(name, a)| match a.target.canary {
                Some((v, pct)) if v == *number => format!("{name} ({pct}%)"),
                Some((_, pct)) => format!("{name} ({}%)", 100 - pct),
                None => name.clone(),
            })
            .collect();
        println!(
            "{:<9} {:<14} {:>9} {:<8} {:<20} {}",
            number,
            &version.sha256[..12.min(version.sha256.len())],
            version.size,
            version.origin,
            format_ms(version.published_at_ms),
            aliases.join(", ")
        );
    }
    Ok(())
}

/// `ledge functions`: every configured function with its store entry.
pub fn functions(config: &Path, json: bool) -> Result<(), CliError> {
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let running = crate::control::request(
        &crate::control::socket_path(&plan.device.data_dir),
        "status",
    )
    .ok();
    let mut rows = Vec::new();
    for spec in plan.functions.iter().filter(|f| f.version == "$LATEST") {
        let state = store.state(&spec.name).map_err(failed)?;
        let aliases: serde_json::Map<String, serde_json::Value> = state
            .aliases
            .iter()
            .map(|(name, a)| {
                let mut text = a.target.to_string();
                if a.probation.is_some() {
                    text.push_str(" [probation]");
                }
                (name.clone(), text.into())
            })
            .collect();
        let latest = match &state.latest {
            Some(draft) => format!("store {}", &draft.sha256[..12.min(draft.sha256.len())]),
            None => format!("config {}", spec.module_path.display()),
        };
        let state_text = match &running {
            None => "not running".to_owned(),
            Some(status) => {
                let loaded = status["functions"]
                    .as_object()
                    .map(|f| {
                        f.iter()
                            .filter(|(k, m)| {
                                (*k == &spec.name || k.starts_with(&format!("{}:", spec.name)))
                                    && m["loaded"] != false
                            })
                            .map(|(k, _)| k.clone())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                format!("running {}", loaded.join(" "))
            }
        };
        rows.push(serde_json::json!({
            "function": spec.name,
            "latest": latest,
            "versions": state.versions.keys().collect::<Vec<_>>(),
            "aliases": aliases,
            "default_alias": spec.default_alias,
            "state": state_text,
        }));
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    use super::table::Align::Left;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let versions: Vec<String> = row["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.to_string())
                .collect();
            let aliases: Vec<String> = row["aliases"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
            vec![
                text("function"),
                text("latest"),
                versions.join(","),
                aliases.join(" "),
                text("state"),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table::render(
            &[
                ("function", Left),
                ("$LATEST", Left),
                ("versions", Left),
                ("aliases", Left),
                ("state", Left),
            ],
            &table,
        )
    );
    Ok(())
}

fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::logging::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// `ledge keygen --id ID --out FILE`: writes the secret seed (mode 0600)
/// and prints the public key line for `[deploy] trusted_keys`.
pub fn keygen(id: &str, out: &Path) -> Result<(), CliError> {
    signing::parse_public_key(&format!("{id}:{}", "00".repeat(32))).map_err(usage)?;
    if out.exists() {
        return Err(usage(format!(
            "{} exists; refusing to overwrite a key",
            out.display()
        )));
    }
    let (seed, public) = signing::generate().map_err(failed)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| failed(format!("cannot create {}: {e}", out.display())))?;
    writeln!(file, "{}", store::hex(&seed))
        .map_err(|e| failed(format!("cannot write {}: {e}", out.display())))?;
    let line = format!("{id}:{}", store::hex(&public));
    std::fs::write(out.with_extension("pub"), format!("{line}\n"))
        .map_err(|e| failed(format!("cannot write the public key: {e}")))?;
    println!("{line}");
    eprintln!(
        "secret key in {} (keep it off the gateways); add the line above to [deploy] trusted_keys",
        out.display()
    );
    Ok(())
}

pub struct SignRequest<'a> {
    pub function: &'a str,
    pub module: &'a Path,
    pub version: u32,
    pub alias: Option<&'a str>,
    pub key: &'a Path,
    pub key_id: &'a str,
    pub chunk_size: u64,
    pub memory: Option<&'a str>,
    pub timeout: Option<&'a str>,
    pub env: &'a [String],
    pub out: &'a Path,
}

/// `ledge sign`: writes `OUT/deployment.json` (publish it on
/// `<prefix>/deploy`) and `OUT/chunks/<index>` (publish each on
/// `<prefix>/deploy/chunk/<function>/<version>/<index>`).
pub fn sign(request: &SignRequest<'_>) -> Result<(), CliError> {
    let key_text =
        crate::config::files::read_capped(request.key, crate::config::files::MAX_SECRET_FILE)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                usage(format!(
                    "cannot read key {}: not a readable regular UTF-8 file of at most 1 MiB",
                    request.key.display()
                ))
            })?;
    let seed = signing::parse_secret_key(&key_text)
        .map_err(|e| usage(format!("{}: {e}", request.key.display())))?;
    check_name(request.function, "function")?;
    if let Some(alias) = request.alias {
        check_name(alias, "alias")?;
    }
    let bytes = crate::runtime::read_module(request.module).map_err(usage)?;
    wasmi::Module::new(&wasmi::Engine::default(), &bytes[..]).map_err(|e| {
        usage(format!(
            "{} is not valid WebAssembly: {e}",
            request.module.display()
        ))
    })?;
    let mut settings = store::Settings::default();
    if let Some(memory) = request.memory {
        settings.memory_bytes = Some(
            crate::units::parse_size(memory)
                .map_err(|e| usage(format!("--memory {memory}: {e}")))?,
        );
    }
    if let Some(timeout) = request.timeout {
        settings.timeout_ms = Some(
            crate::units::parse_duration(timeout)
                .map_err(|e| usage(format!("--timeout {timeout}: {e}")))?
                .as_millis() as u64,
        );
    }
    for pair in request.env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| usage(format!("--env `{pair}`: write KEY=VALUE")))?;
        settings.env.insert(k.to_owned(), v.to_owned());
    }
    let deployment = Deployment {
        format: document::FORMAT.to_owned(),
        function: request.function.to_owned(),
        version: request.version,
        alias: request.alias.map(str::to_owned),
        sha256: store::sha256_hex(&bytes),
        size: bytes.len() as u64,
        chunk_size: request.chunk_size,
        settings,
        created_at_ms: store::now_ms(),
    };
    let envelope = document::seal(&deployment, request.key_id, &seed).map_err(failed)?;
    // Check what we wrote the way a gateway will.
    let public = signing::public_key(&seed).map_err(failed)?;
    let payload = serde_json::to_vec(&envelope).map_err(failed)?;
    document::verify(&payload, &[(request.key_id.to_owned(), public)], u64::MAX).map_err(usage)?;
    let chunks_dir = request.out.join("chunks");
    std::fs::create_dir_all(&chunks_dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", chunks_dir.display())))?;
    std::fs::write(request.out.join("deployment.json"), &payload)
        .map_err(|e| failed(format!("cannot write deployment.json: {e}")))?;
    for (index, chunk) in bytes.chunks(request.chunk_size as usize).enumerate() {
        let path: PathBuf = chunks_dir.join(index.to_string());
        std::fs::write(&path, chunk)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    }
    println!(
        "{}:{} signed by {}: {} bytes in {} chunks, sha256 {}",
        deployment.function,
        deployment.version,
        request.key_id,
        deployment.size,
        deployment.chunks(),
        deployment.sha256
    );
    println!(
        "publish {} on <prefix>/deploy and chunks/N on <prefix>/deploy/chunk/{}/{}/N",
        request.out.join("deployment.json").display(),
        deployment.function,
        deployment.version
    );
    Ok(())
}
