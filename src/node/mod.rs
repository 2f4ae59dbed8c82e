//! A running ledge (`ledge run`): starts every part in order, serves until
//! asked to stop, reloads on request, and shuts down without losing
//! in-flight work.
//!
//! - `start`: the wiring, in start order: data dir and function store →
//!   uplink spools → sinks (GPIO outputs to their safe state before any
//!   module loads) → modules (a bad one disables only its function) →
//!   pipeline (dispatcher, workers, sources, feeders) → uplink (and the OTA
//!   receiver) → the link to the local broker → services (status, metrics,
//!   control socket).
//! - `pipeline`: what a reload replaces, module loading (written once, for
//!   start and reload), and the reload itself.
//! - `signals`: SIGTERM/SIGINT/SIGHUP as lifecycle events.
//!
//! Deployment policy (probation, rollbacks, reports) lives in
//! `deploy::probation`; systemd's protocol in `service`.
//!
//! Stop order is the reverse of the data flow: sources stop, the dispatcher
//! closes and workers drain their queues (bounded by `DRAIN_DEADLINE`),
//! actuators go back to safe, publishes still queued are pumped to the
//! broker, the link and the uplink disconnect cleanly, spools sync.

mod pipeline;
mod signals;
mod start;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Plan;
use crate::deploy::probation::Reporter;
use crate::deploy::store::Store;
use crate::deploy::watch::Watch;
use crate::dispatch::{Dispatcher, Routing};
use crate::lifecycle::{Event, ReloadRequest};
use crate::mqtt::LinkState;
use crate::runtime::Runtime;
use crate::sinks::local::Outboxes;
use crate::sinks::{PublishSink, Sinks};
use crate::spool::Spool;
use crate::telemetry::StatusSources;
use crate::topic::TopicFilter;
use pipeline::Pipeline;

/// How long workers may keep draining queued events after a stop signal
/// before the rest are abandoned (and counted in the log).
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long queued publishes and the MQTT DISCONNECT may take at the end.
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// How often aliases on probation are judged.
const PROBATION_CHECK: Duration = Duration::from_millis(500);

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
    #[error("HTTP server: {0}")]
    Http(crate::http::StartError),
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

/// Runs ledge until SIGINT or SIGTERM; SIGHUP reloads the config.
pub async fn run(plan: Plan) -> Result<(), NodeError> {
    let events = signals::forward()?;
    run_with(plan, events).await
}

/// Runs ledge until `events` says stop (or ends); a reload event re-reads
/// the config. The control socket and deployments ask for reloads too.
pub async fn run_with(
    plan: Plan,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<(), NodeError> {
    let (reloads, mut reload_requests) = mpsc::unbounded_channel();
    let notifier = Arc::new(crate::service::Notifier::from_env());
    let mut node = Node::start(plan, reloads).await?;
    let (stop_watchdog, watchdog_stopped) = watch::channel(false);
    if let Some(interval) = crate::service::watchdog_interval() {
        log::info!(target: "ledge::service", "systemd watchdog on: keep-alive every {}ms", interval.as_millis());
        tokio::spawn(crate::service::keep_alive(
            Arc::clone(&notifier),
            interval,
            watchdog_stopped,
        ));
    }
    notifier.notify(crate::service::READY);
    let mut probation = tokio::time::interval(PROBATION_CHECK);
    probation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.recv() => event.unwrap_or(Event::Stop("the event source")),
            Some(request) = reload_requests.recv() => Event::Reload(Some(request)),
            _ = probation.tick() => {
                node.check_probation().await;
                continue;
            }
        };
        match event {
            Event::Stop(why) => {
                log::info!(target: "ledge::node", "{why} received");
                break;
            }
            Event::Reload(request) => node.reload_on(request, &notifier).await,
        }
    }
    notifier.notify(crate::service::STOPPING);
    log::info!(target: "ledge::node", "stopping: draining in-flight work");
    node.stop().await;
    let _ = stop_watchdog.send(true);
    Ok(())
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
    /// Function streams by function name; they outlive reloads (a
    /// stream's directory can be open only once).
    streams: HashMap<String, Arc<Spool>>,
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
    reporter: Reporter,
    /// The config's functions for the deployment receiver.
    config_functions: Arc<std::sync::RwLock<Vec<crate::config::FunctionSpec>>>,
    /// What `ledge status` and the metrics are made from.
    status: Arc<StatusSources>,
}

impl Node {
    /// One reload, with systemd told before and after and the requester
    /// (if any) given the outcome.
    async fn reload_on(
        &mut self,
        request: Option<ReloadRequest>,
        notifier: &crate::service::Notifier,
    ) {
        let why = request
            .as_ref()
            .map_or("SIGHUP received", |r| r.why.as_str());
        log::info!(target: "ledge::node", "{why}: reloading {} and the function store", self.plan.source.display());
        notifier.notify(&crate::service::reloading());
        let outcome = self.reload().await.map_err(|e| e.to_string());
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

    /// Watches the aliases the store has on probation.
    fn refresh_watches(&mut self) {
        let metrics = self.pipeline.dispatcher.metrics();
        self.watches =
            crate::deploy::probation::watches(&self.store, &self.plan, &self.watches, &metrics);
    }

    /// Judges the aliases on probation; reloads if one was rolled back.
    async fn check_probation(&mut self) {
        if self.watches.is_empty() {
            return;
        }
        let metrics = self.pipeline.dispatcher.metrics();
        let rolled_back = crate::deploy::probation::judge(
            &self.store,
            &self.reporter,
            &self.plan.deploy,
            &mut self.watches,
            &metrics,
        );
        if rolled_back {
            match self.reload().await {
                Ok(summary) => {
                    log::info!(target: "ledge::node", "reloaded after a rollback: {summary}")
                }
                Err(e) => log::error!(target: "ledge::node", "reload after a rollback failed: {e}"),
            }
        }
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
        for spool in self.streams.values() {
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
