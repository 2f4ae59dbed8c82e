//! A running ledge (`ledge run`): starts every part in order, waits for a
//! stop signal, and shuts down without losing in-flight work.
//!
//! Start order: data dir → embedded broker → modules (a bad one disables
//! only its function) → dispatcher and workers → MQTT link → sensors and
//! schedules. GPIO outputs are set to their safe state before any module
//! loads, and back to it once the workers have drained. Stop order is the reverse of the data flow: sources stop, the
//! dispatcher closes and workers drain their queues (bounded by
//! `DRAIN_DEADLINE`), publishes still queued are pumped to the broker, and
//! the MQTT link disconnects cleanly.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{BrokerMode, CatchUp, Plan, SensorKind, Timing, TriggerSource};
use crate::deploy::store::Store;
use crate::deploy::watch::{Verdict, Watch};
use crate::dispatch::{Dispatcher, Routing};
use crate::hw::gpio::GpioLines;
use crate::mqtt::link::{Link, LinkParts};
use crate::mqtt::LinkState;
use crate::runtime::{LoadedFunction, Runtime};
use crate::sinks::local::{LocalPublisher, Outboxes};
use crate::sinks::spool::SpoolSink;
use crate::sinks::{DeadLetterSink, ForwardSink, LogSink, PublishSink, Sinks};
use crate::sources::mqtt::MqttSource;
use crate::sources::{schedule, sensor};
use crate::spool::Spool;
use crate::telemetry::StatusSources;
use crate::topic::TopicFilter;
use crate::uplink::{Subscriptions, Uplink, UplinkStatus};

/// How long workers may keep draining queued events after a stop signal
/// before the rest are abandoned (and counted in the log).
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long queued publishes and the MQTT DISCONNECT may take at the end.
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// How often aliases on probation are judged.
const PROBATION_CHECK: Duration = Duration::from_millis(500);

pub use crate::control::ReloadRequest;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Link(#[from] crate::mqtt::link::LinkError),
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(String),
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("function store: {0}")]
    Store(#[from] crate::deploy::store::StoreError),
}

/// Runs ledge until SIGINT or SIGTERM; SIGHUP reloads the config.
pub async fn run(plan: Plan) -> Result<(), NodeError> {
    let (requests, requests_received) = tokio::sync::mpsc::unbounded_channel();
    let mut signals = Signals::install(requests_received)?;
    let notifier = Arc::new(crate::service::Notifier::from_env());
    let node = Node::start(plan, requests).await?;
    let (stop_watchdog, watchdog_stopped) = watch::channel(false);
    if let Some(interval) = crate::service::watchdog_interval() {
        log::info!(target: "ledge::service", "systemd watchdog on: keep-alive every {}ms", interval.as_millis());
        tokio::spawn(crate::service::keep_alive(
            Arc::clone(&notifier),
            interval,
            watchdog_stopped,
        ));
    }
    notifier.notify("READY=1\nSTATUS=serving");
    let mut node = node;
    loop {
        match signals.next().await {
            Signal::Stop(name) => {
                log::info!(target: "ledge::node", "{name} received");
                break;
            }
            Signal::Probation => node.check_probation().await,
            Signal::Reload(request) => {
                let why = request
                    .as_ref()
                    .map_or("SIGHUP received", |r| r.why.as_str());
                log::info!(target: "ledge::node", "{why}: reloading {} and the function store", node.plan.source.display());
                notifier.notify(&format!(
                    "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                    monotonic_usec()
                ));
                let outcome = node.reload().await.map_err(|e| e.to_string());
                let status = match &outcome {
                    Ok(summary) => {
                        log::info!(target: "ledge::node", "reloaded: {summary}");
                        "STATUS=serving".to_owned()
                    }
                    Err(e) => {
                        log::error!(target: "ledge::node", "reload failed, still running the previous config: {e}");
                        format!("STATUS=serving the previous config (reload failed: {e})")
                    }
                };
                if let Some(reply) = request.and_then(|r| r.reply) {
                    let _ = reply.send(outcome);
                }
                notifier.notify(&format!("READY=1\n{status}"));
            }
        }
    }
    notifier.notify("STOPPING=1\nSTATUS=draining");
    log::info!(target: "ledge::node", "stopping: draining in-flight work");
    node.stop().await;
    let _ = stop_watchdog.send(true);
    Ok(())
}

/// CLOCK_MONOTONIC in µs, which systemd wants with `RELOADING=1`.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// Why a reload was refused; the running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(crate::config::ConfigErrors),
    #[error("{} changed: those take a restart (systemctl restart ledge); nothing was applied", .0.join(", "))]
    NeedsRestart(Vec<String>),
    #[error("{0}")]
    Module(String),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
    #[error("function store: {0}")]
    Store(#[from] crate::deploy::store::StoreError),
}

/// The part of a running ledge a reload replaces: the functions with their
/// queues and workers, and the sources that hold them (sensors, schedules,
/// durable trigger feeders). The MQTT link, broker, spool and uplink outlive
/// it.
struct Pipeline {
    dispatcher: Arc<Dispatcher>,
    workers: Vec<std::thread::JoinHandle<()>>,
    stop_sources: watch::Sender<bool>,
    sources: JoinSet<()>,
    /// Feeders of durable triggers; they finish once the workers have.
    feeders: JoinSet<()>,
}

/// Everything a running ledge owns, in the order it must be stopped.
struct Node {
    plan: Plan,
    /// The config text `plan` came from, to tell what a reload changes.
    config_text: String,
    runtime: Runtime,
    routing: Routing,
    pipeline: Pipeline,
    sinks: Sinks,
    /// Durable trigger streams by function name; they outlive reloads (a
    /// stream's directory can be open only once).
    durable: HashMap<String, Arc<Spool>>,
    /// The MQTT link's subscriptions; a reload sends the new set.
    filters: watch::Sender<Vec<TopicFilter>>,
    /// Control socket and metrics shipping.
    stop_services: watch::Sender<bool>,
    services: JoinSet<()>,
    /// Last holder of ledge's own publisher besides the sources.
    publisher: Arc<dyn PublishSink>,
    /// Every producer's queue to the local broker; closing it lets the pump
    /// finish once what is queued went out.
    outboxes: Arc<Outboxes>,
    pump: tokio::task::JoinHandle<()>,
    stop_links: watch::Sender<bool>,
    link: tokio::task::JoinHandle<()>,
    link_state: Arc<LinkState>,
    /// The embedded broker, if ledge runs one.
    #[cfg(feature = "local-broker")]
    broker: Option<crate::broker::Broker>,
    /// "A full queue has room again", shared by every dispatcher.
    room: Arc<tokio::sync::Notify>,
    uplink: Option<tokio::task::JoinHandle<()>>,
    spool: Option<Arc<Spool>>,
    /// Logs and metrics for upstream, beside `spool`.
    telemetry: Option<Arc<Spool>>,
    /// Versions, aliases, and deployment reports.
    store: Store,
    watches: Vec<Watch>,
    /// Where deployment reports go upstream (`<prefix>/deploy/status`).
    reports: Option<(Arc<SpoolSink>, String)>,
    /// The config's functions for the deployment receiver.
    config_functions: Arc<std::sync::RwLock<Vec<crate::config::FunctionSpec>>>,
    /// What `ledge status` and the metrics are made from.
    status: Arc<StatusSources>,
}

impl Node {
    async fn start(
        mut plan: Plan,
        requests: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&plan.device.data_dir).map_err(|source| NodeError::DataDir {
            path: plan.device.data_dir.clone(),
            source,
        })?;
        let store = Store::under(&plan.device.data_dir);
        let config_plan = plan.clone();
        apply_store(&mut plan, &store)?;
        {
            // Modules a crash left behind between storing and recording.
            let lock = store.lock()?;
            let removed = store.collect_garbage(&lock, &[])?;
            if removed > 0 {
                log::info!(target: "ledge::deploy", "function store: removed {removed} unreferenced modules");
            }
        }
        // What a reload compares against; unreadable only if the file went
        // away since it was parsed, and then every later reload fails anyway.
        let config_text = crate::config::read_text(&plan.source).unwrap_or_default();
        let runtime = Runtime::new(plan.broker.max_payload)
            .map_err(|e| NodeError::Runtime(e.to_string()))?
            .with_device_id(&plan.device.id);
        let (spool, telemetry) = open_uplink_spools(&plan)?.unzip();
        let spool_sink = match (&spool, &telemetry, &plan.upstream) {
            (Some(spool), Some(telemetry), Some(upstream)) => Some(Arc::new(SpoolSink::new(
                Arc::clone(spool),
                Arc::clone(telemetry),
                &upstream.topic_prefix,
                upstream.ship_logs,
            ))),
            _ => None,
        };

        let link_state = Arc::new(LinkState::default());
        let outboxes = Outboxes::new(Arc::clone(&link_state));
        let publisher: Arc<dyn PublishSink> = Arc::new(LocalPublisher::new(&outboxes));
        let room = Arc::new(tokio::sync::Notify::new());
        // Outputs go to their safe state before any function can run.
        let gpio = Arc::new(GpioLines::open(&plan.gpio.backend, &plan.gpio.outputs));
        let sinks = Sinks {
            gpio: Some(Arc::clone(&gpio)),
            publish: Arc::clone(&publisher),
            forward: spool_sink.clone().map(|s| s as Arc<dyn ForwardSink>),
            logs: spool_sink.clone().map(|s| s as Arc<dyn LogSink>),
            dead_letters: spool_sink.clone().map(|s| s as Arc<dyn DeadLetterSink>),
        };
        if let (Some(sink), Some(upstream)) = (&spool_sink, &plan.upstream) {
            if upstream.ship_logs.is_some() {
                crate::telemetry::ship_own_logs(Arc::clone(sink));
            }
        }
        let mut durable = HashMap::new();
        let reports = match (&spool_sink, &plan.upstream) {
            (Some(sink), Some(upstream)) => Some((
                Arc::clone(sink),
                format!("{}/deploy/status", upstream.topic_prefix),
            )),
            _ => None,
        };
        report_cli_moves(&store, reports.as_ref(), &plan.device.id);
        // A version on probation that cannot start sends its alias back
        // before anything runs; the store is then laid over the config again.
        let functions = loop {
            let mut moved = false;
            let mut loaded = Vec::with_capacity(plan.functions.len());
            for spec in &plan.functions {
                match runtime.load(spec.clone()) {
                    Ok(function) => loaded.push(Some(function)),
                    Err(e) => {
                        moved |= roll_back_unloadable(
                            &store,
                            reports.as_ref(),
                            &plan.device.id,
                            spec,
                            &e.reason,
                        );
                        log::error!(target: "ledge::node", "{e}; function `{}` is disabled", spec.qualified_name());
                        loaded.push(None);
                    }
                }
            }
            if !moved {
                break loaded;
            }
            plan = config_plan.clone();
            apply_store(&mut plan, &store)?;
        };
        let pipeline = Pipeline::start(
            &plan,
            &functions,
            &sinks,
            &publisher,
            &mut durable,
            None,
            &room,
        )
        .map_err(|e| match e {
            ReloadError::Spool(e) => NodeError::Spool(e),
            ReloadError::Threads(e) => NodeError::Threads(e),
            other => NodeError::Runtime(other.to_string()),
        })?;
        let routing = Routing::new(Arc::clone(&pipeline.dispatcher));

        let (stop_services, services_stopped) = watch::channel(false);
        let (stop_links, links_stopped) = watch::channel(false);
        let uplink_status = plan
            .upstream
            .as_ref()
            .map(|_| Arc::new(UplinkStatus::default()));
        let config_functions = Arc::new(std::sync::RwLock::new(latest_specs(&plan)));
        let uplink = match (&spool, &plan.upstream, &uplink_status) {
            (Some(spool), Some(upstream), Some(status)) => {
                let subscriptions = if plan.deploy.trusted_keys.is_empty() {
                    log::info!(target: "ledge::deploy", "over-the-air deployments off: no [deploy] trusted_keys");
                    None
                } else {
                    let (messages, received) = std::sync::mpsc::channel();
                    let reports = reports.clone();
                    let device = plan.device.id.clone();
                    let receiver = crate::deploy::ota::Receiver {
                        prefix: upstream.topic_prefix.clone(),
                        store: store.clone(),
                        rules: plan.deploy.clone(),
                        functions: Arc::clone(&config_functions),
                        runtime: runtime.clone(),
                        reloads: requests.clone(),
                        report: Box::new(move |report| {
                            report_deploy(reports.as_ref(), &device, report)
                        }),
                    };
                    let filters = receiver.filters();
                    std::thread::Builder::new()
                        .name("ledge-deploy".to_owned())
                        .spawn(move || receiver.run(received))
                        .map_err(NodeError::Threads)?;
                    log::info!(target: "ledge::deploy", "over-the-air deployments on {}/deploy ({} trusted keys)", upstream.topic_prefix, plan.deploy.trusted_keys.len());
                    Some(Subscriptions {
                        purpose: "deployments".to_owned(),
                        filters,
                        deliver: messages,
                    })
                };
                let uplink = Uplink {
                    plan: upstream.clone(),
                    device: plan.device.id.clone(),
                    spool: Arc::clone(spool),
                    telemetry: telemetry.clone(),
                    status: Arc::clone(status),
                    subscriptions,
                };
                Some(tokio::spawn(uplink.run(links_stopped.clone())))
            }
            _ => None,
        };
        let mut mqtt = MqttSource::new(plan.broker.max_payload);
        mqtt.forwards = plan.forwards.clone();
        mqtt.spool = spool_sink.clone();
        // Synchronous invokes: the link to an external broker (MQTT 5)
        // serves both MQTT 5 requests and envelopes itself; the embedded
        // broker speaks 3.1.1 only, so there ledge's local side takes
        // envelopes and replies through the local publisher.
        if matches!(plan.broker.mode, BrokerMode::Embedded { .. }) {
            mqtt.invoke_prefix = format!("ledge/{}/invoke/", plan.device.id);
            mqtt.replies = Some(Arc::downgrade(&publisher));
        }
        let (filters, filters_wanted) = watch::channel(subscriptions(&pipeline.dispatcher, &plan));
        let link = Link::start(LinkParts {
            plan: &plan,
            source: mqtt,
            routing: &routing,
            outboxes: &outboxes,
            state: &link_state,
            room: &room,
            filters: filters_wanted,
            stop: links_stopped,
        })
        .await?;
        let mut services = JoinSet::new();
        let status = Arc::new(StatusSources {
            device: plan.device.id.clone(),
            started: std::time::Instant::now(),
            routing: routing.clone(),
            link: Arc::clone(&link_state),
            spool: spool.clone(),
            telemetry: telemetry.clone(),
            uplink: uplink_status,
            #[cfg(feature = "local-broker")]
            broker: link.broker.clone(),
            memory: Default::default(),
        });
        if let Some(telemetry) = &telemetry {
            services.spawn(crate::telemetry::ship_metrics(
                Arc::clone(&status),
                Arc::clone(telemetry),
                plan.metrics_interval,
                services_stopped.clone(),
            ));
        }
        if let Some(address) = plan.metrics_listen {
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => {
                    log::info!(target: "ledge::metrics", "Prometheus metrics on http://{address}/metrics");
                    services.spawn(crate::telemetry::serve_prometheus(
                        listener,
                        Arc::clone(&status),
                        services_stopped.clone(),
                    ));
                }
                Err(e) => {
                    log::error!(target: "ledge::metrics", "cannot serve metrics on {address}: {e}; running without the endpoint")
                }
            }
        }
        let socket = crate::control::socket_path(&plan.device.data_dir);
        match crate::control::bind(&socket) {
            Ok(listener) => {
                services.spawn(crate::control::serve(
                    listener,
                    Arc::clone(&status),
                    requests.clone(),
                    services_stopped.clone(),
                ));
            }
            Err(e) => {
                log::warn!(target: "ledge::control", "no control socket at {}: {e}; `ledge status` will not reach this ledge", socket.display())
            }
        }

        for warning in crate::config::lint::warnings(&plan) {
            log::warn!(target: "ledge::node", "{warning}");
        }
        let enabled = functions.iter().filter(|f| f.is_some()).count();
        log::info!(
            target: "ledge::node",
            "ledge {} running as `{}`: {enabled} of {} functions enabled, {} routes, {} sensors; broker {}{}",
            env!("CARGO_PKG_VERSION"),
            plan.device.id,
            plan.functions.len(),
            plan.routes.len(),
            plan.sensors.len(),
            plan.broker.mode,
            plan.upstream.as_ref().map(|u| format!("; upstream {}:{}", u.host, u.port)).unwrap_or_default()
        );
        let mut node = Self {
            plan,
            config_text,
            runtime,
            routing,
            pipeline,
            sinks,
            durable,
            filters,
            stop_services,
            services,
            publisher,
            outboxes,
            pump: link.pump,
            stop_links,
            link: link.task,
            link_state,
            #[cfg(feature = "local-broker")]
            broker: link.broker,
            room,
            uplink,
            spool,
            telemetry,
            store,
            watches: Vec::new(),
            reports,
            config_functions,
            status,
        };
        node.refresh_watches();
        Ok(node)
    }

    /// Re-reads the config file and swaps in its functions, triggers and
    /// sensors without dropping an event: the new functions' workers start
    /// first, the old sensors and schedules stop, new events go to the new
    /// dispatcher from one instant on, and the old one finishes every event
    /// it had already accepted. Nothing changes if the new config is
    /// invalid or changes a section only a restart can apply.
    async fn reload(&mut self) -> Result<String, ReloadError> {
        report_cli_moves(&self.store, self.reports.as_ref(), &self.plan.device.id);
        let path = self.plan.source.clone();
        let text = crate::config::read_text(&path).map_err(ReloadError::Config)?;
        let restart = crate::config::changes_needing_restart(&self.config_text, &text);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        // A version that cannot load makes its alias roll back (once per
        // alias), then the store is read again.
        let (plan, functions) = loop {
            let mut plan = crate::config::parse_with(&path, &text, self.plan.board_flag.as_deref())
                .map_err(ReloadError::Config)?;
            apply_store(&mut plan, &self.store)?;
            // Unlike at start, a module that fails to load refuses the whole
            // reload: the version that works keeps serving.
            let mut functions = Vec::with_capacity(plan.functions.len());
            let mut failure = None;
            for spec in &plan.functions {
                match self.runtime.load(spec.clone()) {
                    Ok(loaded) => functions.push(Some(loaded)),
                    Err(e) => {
                        failure = Some((spec.clone(), e));
                        break;
                    }
                }
            }
            match failure {
                None => break (plan, functions),
                Some((spec, e)) => {
                    if !self.roll_back_unloadable(&spec, &e.reason) {
                        return Err(ReloadError::Module(e.to_string()));
                    }
                }
            }
        };
        let next = Pipeline::start(
            &plan,
            &functions,
            &self.sinks,
            &self.publisher,
            &mut self.durable,
            Some(&self.pipeline.dispatcher),
            &self.room,
        )?;
        let old = std::mem::replace(&mut self.pipeline, next);
        // Old sensors and schedules submit straight to the old dispatcher:
        // they stop before the swap so none of their events is left behind.
        let _ = old.stop_sources.send(true);
        let mut old_sources = old.sources;
        while old_sources.join_next().await.is_some() {}
        self.routing.replace(Arc::clone(&self.pipeline.dispatcher));
        self.status.retire(&old.dispatcher);
        old.dispatcher.close();
        self.pipeline
            .start_sources(&plan, &self.publisher, &self.sinks);
        let _ = self
            .filters
            .send(subscriptions(&self.pipeline.dispatcher, &plan));
        // Every event the old dispatcher accepted runs; each invocation is
        // bounded by its function's timeout, so this ends.
        let workers = old.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        let mut old_feeders = old.feeders;
        while old_feeders.join_next().await.is_some() {}
        // The old feeders have confirmed what ran; the new ones read on from
        // there, so no durable event runs twice.
        self.pipeline.start_feeders(&self.durable, &plan);
        let enabled = functions.iter().filter(|f| f.is_some()).count();
        let summary = format!(
            "{enabled} of {} functions enabled, {} routes, {} sensors",
            plan.functions.len(),
            plan.routes.len(),
            plan.sensors.len()
        );
        *self
            .config_functions
            .write()
            .unwrap_or_else(|e| e.into_inner()) = latest_specs(&plan);
        self.plan = plan;
        self.config_text = text;
        self.refresh_watches();
        self.collect_garbage();
        Ok(summary)
    }

    fn roll_back_unloadable(&self, spec: &crate::config::FunctionSpec, reason: &str) -> bool {
        roll_back_unloadable(
            &self.store,
            self.reports.as_ref(),
            &self.plan.device.id,
            spec,
            reason,
        )
    }

    /// Removes store modules nothing uses any more: no draft, no version,
    /// and nothing running (the old pipeline's calls have all finished).
    fn collect_garbage(&self) {
        let in_use: Vec<String> = self
            .plan
            .functions
            .iter()
            .filter_map(|f| f.module_path.file_stem()?.to_str().map(str::to_owned))
            .collect();
        let removed = self
            .store
            .lock()
            .and_then(|lock| self.store.collect_garbage(&lock, &in_use));
        match removed {
            Ok(0) => {}
            Ok(n) => {
                log::info!(target: "ledge::deploy", "function store: removed {n} modules nothing uses")
            }
            Err(e) => log::warn!(target: "ledge::deploy", "function store clean-up failed: {e}"),
        }
    }

    /// Watches the aliases the store has on probation.
    fn refresh_watches(&mut self) {
        let metrics = self.pipeline.dispatcher.metrics();
        let snapshot = |name: &str| {
            metrics
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m.snapshot())
                .unwrap_or_default()
        };
        let mut watches = Vec::new();
        // One entry per function: its `$LATEST` (versions share the name).
        let names = self
            .plan
            .functions
            .iter()
            .filter(|f| f.version == "$LATEST")
            .map(|f| f.name.as_str());
        for name in names {
            match self.store.state(name) {
                Ok(state) => {
                    watches.extend(Watch::from_state(name, &state, &self.watches, snapshot))
                }
                Err(e) => log::error!(target: "ledge::deploy", "{e}"),
            }
        }
        for watch in watches.iter().filter(|w| !self.watches.contains(w)) {
            log::info!(target: "ledge::deploy", "{}:{} -> {} on probation: watched for {} invocations or {}s (max error rate {})", watch.function, watch.alias, watch.versions.join(", "), self.plan.deploy.watch_invocations, self.plan.deploy.watch_period.as_secs(), self.plan.deploy.max_error_rate);
        }
        self.watches = watches;
    }

    /// Judges the aliases on probation: a failing one goes back to its
    /// previous target, a proven one is trusted.
    async fn check_probation(&mut self) {
        if self.watches.is_empty() {
            return;
        }
        let metrics = self.pipeline.dispatcher.metrics();
        let now_ms = crate::deploy::store::now_ms();
        let mut rolled_back = false;
        for watch in std::mem::take(&mut self.watches) {
            let counts: Vec<crate::metrics::Snapshot> = watch
                .versions
                .iter()
                .map(|v| {
                    metrics
                        .iter()
                        .find(|(n, _)| n == v)
                        .map(|(_, m)| m.snapshot())
                        .unwrap_or_default()
                })
                .collect();
            let elapsed = Duration::from_millis(now_ms.saturating_sub(watch.since_ms));
            let verdict = watch.judge(&counts, elapsed, &self.plan.deploy);
            let outcome = match verdict {
                Verdict::Pending => {
                    self.watches.push(watch);
                    continue;
                }
                Verdict::Healthy { invocations, errors } => self
                    .store
                    .lock()
                    .and_then(|lock| self.store.end_probation(&lock, &watch.function, &watch.alias))
                    .map(|()| serde_json::json!({
                        "event": "healthy",
                        "function": watch.function,
                        "alias": watch.alias,
                        "versions": watch.versions,
                        "invocations": invocations,
                        "errors": errors,
                    })),
                Verdict::Failing { invocations, errors } => self
                    .store
                    .lock()
                    .and_then(|lock| self.store.rollback(&lock, &watch.function, &watch.alias))
                    .map(|(from, to)| {
                        rolled_back = true;
                        serde_json::json!({
                            "event": "rolled_back",
                            "function": watch.function,
                            "alias": watch.alias,
                            "from": from.to_string(),
                            "to": to.to_string(),
                            "reason": format!("{errors} of {invocations} invocations failed (max error rate {})", self.plan.deploy.max_error_rate),
                            "moved_by": "ledge: probation",
                        })
                    }),
            };
            match outcome {
                Ok(report) => self.report(report),
                Err(e) => {
                    log::error!(target: "ledge::deploy", "{}:{}: cannot record the probation's outcome: {e}", watch.function, watch.alias)
                }
            }
        }
        if rolled_back {
            match self.reload().await {
                Ok(summary) => {
                    log::info!(target: "ledge::node", "reloaded after a rollback: {summary}")
                }
                Err(e) => log::error!(target: "ledge::node", "reload after a rollback failed: {e}"),
            }
        }
    }

    /// Logs a deployment event and sends it upstream on
    /// `<prefix>/deploy/status` (through the spool: it survives an outage).
    fn report(&self, report: serde_json::Value) {
        report_deploy(self.reports.as_ref(), &self.plan.device.id, report);
    }

    async fn stop(mut self) {
        let _ = self.pipeline.stop_sources.send(true);
        let _ = self.stop_services.send(true);
        while self.pipeline.sources.join_next().await.is_some() {}
        while self.services.join_next().await.is_some() {}
        let dispatcher = Arc::clone(&self.pipeline.dispatcher);
        dispatcher.close();
        drain_workers(&dispatcher, std::mem::take(&mut self.pipeline.workers)).await;
        // No function runs any more: actuators go back to their safe state.
        if let Some(gpio) = &self.sinks.gpio {
            gpio.restore_all();
        }
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, async {
            while self.pipeline.feeders.join_next().await.is_some() {}
        })
        .await;
        for spool in self.durable.values() {
            spool.close();
        }
        // Workers and sources are gone; closing the outboxes lets the pump
        // finish once every queued publish is handed to the broker.
        drop(self.publisher);
        drop(self.sinks);
        self.outboxes.close();
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, self.pump).await;
        let _ = self.stop_links.send(true);
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, self.link).await;
        #[cfg(feature = "local-broker")]
        if let Some(broker) = &self.broker {
            broker.stop();
        }
        if let Some(uplink) = self.uplink {
            let _ = tokio::time::timeout(DISCONNECT_DEADLINE, uplink).await;
        }
        // Writes and syncs what is buffered and saves the cursors.
        for spool in self.spool.iter().chain(&self.telemetry) {
            spool.close();
        }
        log_summary(&dispatcher, &self.link_state);
    }
}

impl Pipeline {
    /// Builds the dispatcher for `plan`, opens the durable streams it needs
    /// and starts the workers; sources start separately. With `previous`,
    /// function metrics carry on from it.
    fn start(
        plan: &Plan,
        functions: &[Option<LoadedFunction>],
        sinks: &Sinks,
        publisher: &Arc<dyn PublishSink>,
        durable: &mut HashMap<String, Arc<Spool>>,
        previous: Option<&Arc<Dispatcher>>,
        room: &Arc<tokio::sync::Notify>,
    ) -> Result<Self, ReloadError> {
        let streams = open_function_streams(plan, functions, durable)?;
        let mut dispatcher = Dispatcher::new(plan, functions, streams, Arc::clone(room));
        if let Some(previous) = previous {
            dispatcher.inherit_metrics(previous);
        }
        let dispatcher = Arc::new(dispatcher);
        let workers = dispatcher
            .spawn_workers(functions, sinks)
            .map_err(ReloadError::Threads)?;
        let (stop_sources, _) = watch::channel(false);
        let mut pipeline = Self {
            dispatcher,
            workers,
            stop_sources,
            sources: JoinSet::new(),
            feeders: JoinSet::new(),
        };
        if previous.is_none() {
            pipeline.start_sources(plan, publisher, sinks);
            pipeline.start_feeders(durable, plan);
        }
        Ok(pipeline)
    }

    fn start_sources(&mut self, plan: &Plan, publisher: &Arc<dyn PublishSink>, sinks: &Sinks) {
        start_sources(
            plan,
            &self.dispatcher,
            publisher,
            sinks.gpio.as_ref(),
            &self.stop_sources.subscribe(),
            &mut self.sources,
        );
    }

    fn start_feeders(&mut self, streams: &HashMap<String, Arc<Spool>>, plan: &Plan) {
        // One stream per function name, read by one feeder. It feeds what
        // the function's first durable trigger resolves to (a version, or
        // an alias's version and canary); without durable triggers, the
        // function itself (its spilled events).
        let mut fed = std::collections::HashSet::new();
        let durable_routes = plan.routes.iter().filter(|r| r.durable).map(|r| {
            (
                r.function,
                crate::config::Target {
                    function: r.function,
                    canary: r.canary,
                },
                r.batch,
            )
        });
        let spill_only = (0..plan.functions.len()).map(|id| {
            (
                id,
                crate::config::Target {
                    function: id,
                    canary: None,
                },
                None,
            )
        });
        for (function, target, batch) in durable_routes.chain(spill_only) {
            let name = &plan.functions[function].name;
            let Some(spool) = streams.get(name) else {
                continue;
            };
            if !fed.insert(name.clone()) {
                continue;
            }
            match batch {
                Some(batch) => self.feeders.spawn(crate::dispatch::feed_batches(
                    Arc::clone(&self.dispatcher),
                    target,
                    Arc::clone(spool),
                    batch,
                    self.stop_sources.subscribe(),
                )),
                None => self.feeders.spawn(crate::dispatch::feed(
                    Arc::clone(&self.dispatcher),
                    target,
                    Arc::clone(spool),
                    self.stop_sources.subscribe(),
                )),
            };
        }
    }
}

/// One spool stream per function, `fn-<name>`, indexed like
/// `plan.functions`: its durable triggers' events and the events that
/// spill from its full queue. Versions of a function share its stream.
/// Streams already open (an earlier config) are reused from `open`; new
/// ones are added to it. A disabled function gets none unless one is on
/// disk already (its events wait there for a version that loads).
fn open_function_streams(
    plan: &Plan,
    functions: &[Option<LoadedFunction>],
    open: &mut HashMap<String, Arc<Spool>>,
) -> Result<Vec<Option<Arc<Spool>>>, crate::spool::SpoolError> {
    plan.functions
        .iter()
        .enumerate()
        .map(|(id, spec)| {
            if let Some(spool) = open.get(&spec.name) {
                return Ok(Some(Arc::clone(spool)));
            }
            let dir = crate::spool::stream_dir(&plan.device.data_dir, &format!("fn-{}", spec.name));
            let loaded = functions.get(id).is_some_and(Option::is_some);
            if !loaded && !dir.exists() {
                return Ok(None);
            }
            let spool = Spool::open(&dir, plan.spool.clone())?;
            let (_, next) = spool.seq_range();
            let waiting = next.saturating_sub(1).saturating_sub(spool.cursor(crate::dispatch::DURABLE_CURSOR).unwrap_or(0));
            let durable = plan.routes.iter().any(|r| r.durable && plan.functions[r.function].name == spec.name);
            if waiting > 0 || durable {
                log::info!(target: "ledge::spool", "function stream {} open; {waiting} events from before the restart run again", dir.display());
            }
            let spool = Arc::new(spool);
            open.insert(spec.name.clone(), Arc::clone(&spool));
            Ok(Some(spool))
        })
        .collect()
}

/// A version that cannot load (it fails to instantiate) on an alias still
/// on probation sends that alias back to its previous target, reported.
/// True if any alias moved.
fn roll_back_unloadable(
    store: &Store,
    reports: Option<&(Arc<SpoolSink>, String)>,
    device: &str,
    spec: &crate::config::FunctionSpec,
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
                report_deploy(
                    reports,
                    device,
                    serde_json::json!({
                        "event": "rolled_back",
                        "function": spec.name,
                        "alias": alias,
                        "from": from.to_string(),
                        "to": to.to_string(),
                        "reason": format!("version {version} fails to load: {reason}"),
                        "moved_by": "ledge: version fails to load",
                    }),
                );
            }
            Err(e) => {
                log::error!(target: "ledge::deploy", "{}:{alias}: cannot roll back: {e}", spec.name)
            }
        }
    }
    moved
}

/// The config's own functions (`$LATEST`), without the store's versions.
fn latest_specs(plan: &Plan) -> Vec<crate::config::FunctionSpec> {
    plan.functions
        .iter()
        .filter(|f| f.version == "$LATEST")
        .cloned()
        .collect()
}

/// Lays the function store over a freshly parsed config.
fn apply_store(plan: &mut Plan, store: &Store) -> Result<(), crate::deploy::store::StoreError> {
    for warning in crate::deploy::effective::apply(plan, store)? {
        log::warn!(target: "ledge::deploy", "{warning}");
    }
    Ok(())
}

/// Reports the alias moves the command line recorded (see `deploy::moves`).
fn report_cli_moves(store: &Store, reports: Option<&(Arc<SpoolSink>, String)>, device: &str) {
    let reported =
        crate::deploy::moves::drain(store, |report| report_deploy(reports, device, report));
    if let Err(e) = reported {
        log::error!(target: "ledge::deploy", "cannot report alias moves made from the command line: {e}");
    }
}

/// Logs a deployment event and, with an upstream, spools it for
/// `<prefix>/deploy/status`.
pub fn report_deploy(
    reports: Option<&(Arc<SpoolSink>, String)>,
    device: &str,
    mut report: serde_json::Value,
) {
    if let Some(object) = report.as_object_mut() {
        object.insert("device".to_owned(), device.into());
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
    if let Some((sink, topic)) = reports {
        if let Err(e) = sink.append(topic.clone(), text.as_bytes(), "deploy") {
            log::error!(target: "ledge::deploy", "cannot spool the deployment report: {e}");
        }
    }
}

/// The uplink's event stream and its telemetry stream (logs, metrics).
type UplinkSpools = (Arc<Spool>, Arc<Spool>);

fn open_uplink_spools(plan: &Plan) -> Result<Option<UplinkSpools>, NodeError> {
    if plan.upstream.is_none() {
        return Ok(None);
    }
    let (events, telemetry) = plan.spool.split_for_telemetry();
    let open = |stream: &str, options: crate::spool::SpoolOptions| {
        let dir = crate::spool::stream_dir(&plan.device.data_dir, stream);
        let spool = Spool::open(&dir, options.clone())?;
        log::info!(
            target: "ledge::spool",
            "spool {} open: {} segments, {} bytes of {}, next seq {}, fsync {}",
            dir.display(),
            spool.segment_count(),
            spool.disk_bytes(),
            options.max_bytes,
            spool.seq_range().1,
            options.fsync
        );
        Ok::<_, NodeError>(Arc::new(spool))
    };
    Ok(Some((
        open("uplink", events)?,
        open(crate::spool::TELEMETRY_STREAM, telemetry)?,
    )))
}

/// Every filter the local link subscribes to: triggers and forward rules.
fn subscriptions(dispatcher: &Dispatcher, plan: &Plan) -> Vec<TopicFilter> {
    let mut filters = dispatcher.mqtt_filters();
    filters.extend(plan.forwards.iter().map(|f| f.filter.clone()));
    // Device ids are checked to be valid topic levels, so this always parses.
    if let Ok(invoke) = TopicFilter::new(&MqttSource::invoke_filter(&plan.device.id)) {
        filters.push(invoke);
    }
    filters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    filters.dedup();
    filters
}

fn start_sources(
    plan: &Plan,
    dispatcher: &Arc<Dispatcher>,
    publisher: &Arc<dyn PublishSink>,
    gpio: Option<&Arc<GpioLines>>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    for spec in &plan.sensors {
        if let (SensorKind::Gpio(input), Some(gpio)) = (&spec.kind, gpio) {
            tasks.spawn(sensor::gpio::run(
                spec.clone(),
                input.clone(),
                plan.gpio.backend.clone(),
                Arc::clone(gpio),
                Arc::clone(dispatcher),
                Arc::clone(publisher),
                stopped.clone(),
            ));
            continue;
        }
        match sensor::open(spec) {
            Ok(device) => {
                tasks.spawn(sensor::run(
                    spec.clone(),
                    device,
                    Arc::clone(dispatcher),
                    Arc::clone(publisher),
                    stopped.clone(),
                ));
            }
            Err(e) => log::error!(target: "ledge::sensor", "sensor {} not started: {e}", spec.name),
        }
    }
    for route in &plan.routes {
        if let TriggerSource::Schedule {
            timing,
            payload,
            jitter,
        } = &route.source
        {
            let function_name = plan.functions[route.function].name.clone();
            let state = match timing {
                Timing::Cron(c) if c.catch_up == CatchUp::Once => Some(schedule::state::path(
                    &plan.device.data_dir,
                    &function_name,
                    &c.expression,
                    &c.timezone,
                )),
                _ => None,
            };
            let identity = format!("{}\n{function_name}\n{timing}", plan.device.id);
            let schedule = schedule::Schedule {
                function: route.function,
                function_name,
                timing: timing.clone(),
                payload: payload.clone(),
                durable: route.durable,
                jitter: *jitter,
                state,
                // Differs per device and schedule (a fleet spreads out) and
                // per start.
                seed: schedule::state::fnv1a(identity.as_bytes()) ^ crate::event::unix_ms(),
            };
            tasks.spawn(schedule::run(
                schedule,
                Arc::clone(dispatcher),
                stopped.clone(),
            ));
        }
    }
}

/// Waits for the workers to finish their queues, abandoning what is left
/// after `DRAIN_DEADLINE`. In-flight invocations always finish (each is
/// bounded by its own timeout).
async fn drain_workers(dispatcher: &Dispatcher, workers: Vec<std::thread::JoinHandle<()>>) {
    let mut joined = tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    });
    if tokio::time::timeout(DRAIN_DEADLINE, &mut joined)
        .await
        .is_ok()
    {
        return;
    }
    for (function, left) in dispatcher.abandon() {
        log::warn!(
            target: "ledge::node",
            "{function}: {left} queued events not run at shutdown (drain took over {}s)",
            DRAIN_DEADLINE.as_secs()
        );
    }
    let _ = joined.await;
}

/// What a signal asks of a running ledge.
enum Signal {
    Stop(&'static str),
    /// SIGHUP (`None`) or a request (control socket, deployment).
    Reload(Option<ReloadRequest>),
    /// Time to judge the aliases on probation.
    Probation,
}

/// SIGTERM, SIGINT and SIGHUP, installed before ledge says it is ready (an
/// early SIGHUP would otherwise kill it).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    requests: tokio::sync::mpsc::UnboundedReceiver<ReloadRequest>,
    probation: tokio::time::Interval,
}

impl Signals {
    fn install(
        requests: tokio::sync::mpsc::UnboundedReceiver<ReloadRequest>,
    ) -> Result<Self, NodeError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut probation = tokio::time::interval(PROBATION_CHECK);
        probation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(NodeError::Signals)?,
            interrupt: signal(SignalKind::interrupt()).map_err(NodeError::Signals)?,
            hangup: signal(SignalKind::hangup()).map_err(NodeError::Signals)?,
            requests,
            probation,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Signal::Stop("SIGINT"),
            _ = self.hangup.recv() => Signal::Reload(None),
            Some(request) = self.requests.recv() => Signal::Reload(Some(request)),
            _ = self.probation.tick() => Signal::Probation,
        }
    }
}

fn log_summary(dispatcher: &Dispatcher, link: &LinkState) {
    for (name, metrics) in dispatcher.metrics() {
        let m = metrics.snapshot();
        log::info!(
            target: "ledge::node",
            "{name}: {} invocations, {} errors ({} timeouts), {} throttled, {} spilled, {} dead_letters, {} loops_stopped, mean {}µs, max {}µs",
            m.invocations,
            m.errors,
            m.timeouts,
            m.throttled,
            m.spilled,
            m.dead_letters,
            m.loops_stopped,
            m.mean_duration_us(),
            m.duration_max_us
        );
    }
    let connected = link.connected.load(Ordering::Acquire);
    log::info!(target: "ledge::node", "stopped (local broker was {})", if connected { "connected" } else { "disconnected" });
}
