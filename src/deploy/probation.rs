//! Deployment policy while ledge runs: which aliases are on probation, the
//! verdict on each (healthy → trusted, failing → back one step), a version
//! that cannot even load sending its alias back, laying the function store
//! over a freshly parsed config, collecting unused modules, and reporting
//! every move upstream (`<prefix>/deploy/status`) and in the log.
//!
//! The node calls these at start, on every reload and on its probation
//! tick; they read the store and the functions' counters and decide.

use std::sync::Arc;
use std::time::Duration;

use super::store::{Store, StoreError};
use super::watch::{Verdict, Watch};
use crate::config::{DeployPlan, FunctionSpec, Plan};
use crate::metrics::{FunctionMetrics, Snapshot};
use crate::sinks::spool::SpoolSink;

/// Where deployment events go: the log always, and with an upstream the
/// spool, for `<prefix>/deploy/status` (it survives an outage).
#[derive(Clone)]
pub struct Reporter {
    device: String,
    upstream: Option<(Arc<SpoolSink>, String)>,
}

impl Reporter {
    pub fn new(device: &str, spool: Option<&Arc<SpoolSink>>, topic_prefix: Option<&str>) -> Self {
        let upstream = match (spool, topic_prefix) {
            (Some(sink), Some(prefix)) => {
                Some((Arc::clone(sink), format!("{prefix}/deploy/status")))
            }
            _ => None,
        };
        Self {
            device: device.to_owned(),
            upstream,
        }
    }

    /// Logs a deployment event (errors for rollbacks and rejections) and
    /// spools it for upstream, stamped with the device and the time.
    pub fn report(&self, mut report: serde_json::Value) {
        if let Some(object) = report.as_object_mut() {
            object.insert("device".to_owned(), self.device.clone().into());
            object.insert("at_ms".to_owned(), crate::event::unix_ms().into());
        }
        let text = report.to_string();
        let failed = report
            .get("event")
            .and_then(|e| e.as_str())
            .is_some_and(|e| matches!(e, "rolled_back" | "rejected"));
        if failed {
            log::error!(target: "ledge::deploy", "{text}");
        } else {
            log::info!(target: "ledge::deploy", "{text}");
        }
        if let Some((sink, topic)) = &self.upstream {
            if let Err(e) = sink.append(topic.clone(), text.as_bytes(), "deploy") {
                log::error!(target: "ledge::deploy", "cannot spool the deployment report: {e}");
            }
        }
    }

    /// Reports the alias moves the command line recorded (`deploy::moves`).
    pub fn report_cli_moves(&self, store: &Store) {
        if let Err(e) = super::moves::drain(store, |report| self.report(report)) {
            log::error!(target: "ledge::deploy", "cannot report alias moves made from the command line: {e}");
        }
    }
}

/// Lays the function store over a freshly parsed config.
pub fn apply_store(plan: &mut Plan, store: &Store) -> Result<(), StoreError> {
    for warning in super::effective::apply(plan, store)? {
        log::warn!(target: "ledge::deploy", "{warning}");
    }
    Ok(())
}

/// The config's own functions (`$LATEST`), without the store's versions.
pub fn latest_specs(plan: &Plan) -> Vec<FunctionSpec> {
    plan.functions
        .iter()
        .filter(|f| f.version == "$LATEST")
        .cloned()
        .collect()
}

/// A version that cannot load (it fails to instantiate) on an alias still
/// on probation sends that alias back to its previous target, reported.
/// True if any alias moved.
pub fn roll_back_unloadable(
    store: &Store,
    reporter: &Reporter,
    spec: &FunctionSpec,
    reason: &str,
) -> bool {
    let Ok(version) = spec.version.parse::<u32>() else {
        return false;
    };
    let Ok(state) = store.state(&spec.name) else {
        return false;
    };
    let mut moved = false;
    for (alias, entry) in &state.aliases {
        let suspect = entry.probation.is_some() && entry.target.versions().any(|v| v == version);
        if !suspect {
            continue;
        }
        let outcome = store
            .lock()
            .and_then(|lock| store.rollback(&lock, &spec.name, alias));
        match outcome {
            Ok((from, to)) => {
                moved = true;
                reporter.report(serde_json::json!({
                    "event": "rolled_back",
                    "function": spec.name,
                    "alias": alias,
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "reason": format!("version {version} fails to load: {reason}"),
                    "moved_by": "ledge: version fails to load",
                }));
            }
            Err(e) => {
                log::error!(target: "ledge::deploy", "{}:{alias}: cannot roll back: {e}", spec.name)
            }
        }
    }
    moved
}

/// Removes store modules nothing uses any more: no draft, no version, and
/// nothing running (the previous pipeline's calls have all finished).
pub fn collect_garbage(store: &Store, plan: &Plan) {
    let in_use: Vec<String> = plan
        .functions
        .iter()
        .filter_map(|f| f.module_path.file_stem()?.to_str().map(str::to_owned))
        .collect();
    let removed = store
        .lock()
        .and_then(|lock| store.collect_garbage(&lock, &in_use));
    match removed {
        Ok(0) => {}
        Ok(n) => {
            log::info!(target: "ledge::deploy", "function store: removed {n} modules nothing uses")
        }
        Err(e) => log::warn!(target: "ledge::deploy", "function store clean-up failed: {e}"),
    }
}

/// The aliases the store has on probation now, carrying over `current`
/// watches (their start counts); new ones are logged.
pub fn watches(
    store: &Store,
    plan: &Plan,
    current: &[Watch],
    metrics: &[(String, Arc<FunctionMetrics>)],
) -> Vec<Watch> {
    let snapshot = |name: &str| counts_of(metrics, name);
    let mut watches = Vec::new();
    // One entry per function: its `$LATEST` (versions share the name).
    let names = plan
        .functions
        .iter()
        .filter(|f| f.version == "$LATEST")
        .map(|f| f.name.as_str());
    for name in names {
        match store.state(name) {
            Ok(state) => watches.extend(Watch::from_state(name, &state, current, snapshot)),
            Err(e) => log::error!(target: "ledge::deploy", "{e}"),
        }
    }
    let rules = &plan.deploy;
    for watch in watches.iter().filter(|w| !current.contains(w)) {
        log::info!(target: "ledge::deploy", "{}:{} -> {} on probation: watched for {} invocations or {}s (max error rate {})", watch.function, watch.alias, watch.versions.join(", "), rules.watch_invocations, rules.watch_period.as_secs(), rules.max_error_rate);
    }
    watches
}

/// Judges every watch: a failing alias goes back one step, a proven one is
/// trusted, the rest stay in `watches`. True if any alias was rolled back
/// (the caller reloads).
pub fn judge(
    store: &Store,
    reporter: &Reporter,
    rules: &DeployPlan,
    watches: &mut Vec<Watch>,
    metrics: &[(String, Arc<FunctionMetrics>)],
) -> bool {
    let now_ms = super::store::now_ms();
    let mut rolled_back = false;
    for watch in std::mem::take(watches) {
        let counts: Vec<Snapshot> = watch
            .versions
            .iter()
            .map(|v| counts_of(metrics, v))
            .collect();
        let elapsed = Duration::from_millis(now_ms.saturating_sub(watch.since_ms));
        let outcome = match watch.judge(&counts, elapsed, rules) {
            Verdict::Pending => {
                watches.push(watch);
                continue;
            }
            Verdict::Healthy { invocations, errors } => store
                .lock()
                .and_then(|lock| store.end_probation(&lock, &watch.function, &watch.alias))
                .map(|()| {
                    serde_json::json!({
                        "event": "healthy",
                        "function": watch.function,
                        "alias": watch.alias,
                        "versions": watch.versions,
                        "invocations": invocations,
                        "errors": errors,
                    })
                }),
            Verdict::Failing { invocations, errors } => store
                .lock()
                .and_then(|lock| store.rollback(&lock, &watch.function, &watch.alias))
                .map(|(from, to)| {
                    rolled_back = true;
                    serde_json::json!({
                        "event": "rolled_back",
                        "function": watch.function,
                        "alias": watch.alias,
                        "from": from.to_string(),
                        "to": to.to_string(),
                        "reason": format!("{errors} of {invocations} invocations failed (max error rate {})", rules.max_error_rate),
                        "moved_by": "ledge: probation",
                    })
                }),
        };
        match outcome {
            Ok(report) => reporter.report(report),
            Err(e) => {
                log::error!(target: "ledge::deploy", "{}:{}: cannot record the probation's outcome: {e}", watch.function, watch.alias)
            }
        }
    }
    rolled_back
}

fn counts_of(metrics: &[(String, Arc<FunctionMetrics>)], name: &str) -> Snapshot {
    metrics
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m.snapshot())
        .unwrap_or_default()
}
