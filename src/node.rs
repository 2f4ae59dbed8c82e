//! A running ledge (`ledge run`): starts every part in order, waits for a
//! stop signal, and shuts down without losing in-flight work.
//!
//! Start order: data dir → embedded broker → modules (a bad one disables
//! only its function) → dispatcher and workers → MQTT link → sensors and
//! schedules. Stop order is the reverse of the data flow: sources stop, the
//! dispatcher closes and workers drain their queues (bounded by
//! `DRAIN_DEADLINE`), publishes still queued are pumped to the broker, and
//! the MQTT link disconnects cleanly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{BrokerMode, Plan, TriggerSource};
use crate::dispatch::Dispatcher;
use crate::mqtt::LinkState;
use crate::runtime::{LoadedFunction, Runtime};
use crate::sinks::local::{self, LocalPublisher};
use crate::sinks::spool::SpoolSink;
use crate::sinks::{ForwardSink, LogSink, PublishSink, Sinks};
use crate::sources::mqtt::MqttSource;
use crate::sources::{schedule, sensor};
use crate::spool::Spool;
use crate::telemetry::StatusSources;
use crate::topic::TopicFilter;
use crate::uplink::{Uplink, UplinkStatus};

/// How long workers may keep draining queued events after a stop signal
/// before the rest are abandoned (and counted in the log).
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long queued publishes and the MQTT DISCONNECT may take at the end.
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(String),
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// Loads every function of the plan; failures are logged and leave `None`.
pub fn load_functions(runtime: &Runtime, plan: &Plan) -> Vec<Option<LoadedFunction>> {
    plan.functions
        .iter()
        .map(|spec| match runtime.load(spec.clone()) {
            Ok(function) => Some(function),
            Err(e) => {
                log::error!(target: "ledge::node", "{e}; function `{}` is disabled", spec.name);
                None
            }
        })
        .collect()
}

/// Runs ledge until SIGINT or SIGTERM.
pub async fn run(plan: Plan) -> Result<(), NodeError> {
    let node = Node::start(plan).await?;
    wait_for_stop_signal().await?;
    log::info!(target: "ledge::node", "stopping: draining in-flight work");
    node.stop().await;
    Ok(())
}

/// Everything a running ledge owns, in the order it must be stopped.
struct Node {
    dispatcher: Arc<Dispatcher>,
    workers: Vec<std::thread::JoinHandle<()>>,
    stop_sources: watch::Sender<bool>,
    sources: JoinSet<()>,
    /// Last holder of the local publisher besides the workers and sources.
    publisher: Arc<dyn PublishSink>,
    pump: tokio::task::JoinHandle<()>,
    stop_links: watch::Sender<bool>,
    link: tokio::task::JoinHandle<()>,
    link_state: Arc<LinkState>,
    uplink: Option<tokio::task::JoinHandle<()>>,
    spool: Option<Arc<Spool>>,
    /// Feeders of durable triggers; they finish once the workers have.
    feeders: JoinSet<()>,
    durable: Vec<Arc<Spool>>,
}

impl Node {
    async fn start(plan: Plan) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&plan.device.data_dir).map_err(|source| NodeError::DataDir {
            path: plan.device.data_dir.clone(),
            source,
        })?;
        if let BrokerMode::Embedded { listen } = &plan.broker.mode {
            crate::broker::start(*listen, plan.broker.max_payload.saturating_mul(4))?;
        }
        let runtime =
            Runtime::new(plan.broker.max_payload).map_err(|e| NodeError::Runtime(e.to_string()))?;
        let functions = load_functions(&runtime, &plan);
        let durable = open_durable_spools(&plan)?;
        let dispatcher = Arc::new(Dispatcher::new(&plan, &functions, durable.clone()));
        let spool = open_uplink_spool(&plan)?;
        let spool_sink = match (&spool, &plan.upstream) {
            (Some(spool), Some(upstream)) => Some(Arc::new(SpoolSink::new(
                Arc::clone(spool),
                &upstream.topic_prefix,
                upstream.ship_logs,
            ))),
            _ => None,
        };

        let link_state = Arc::new(LinkState::default());
        let persistent = MqttSource::needs_manual_acks(&plan);
        let (client, eventloop) = crate::mqtt::connect(&plan.broker, persistent);
        let (publisher, outgoing) = LocalPublisher::new(Arc::clone(&link_state));
        let publisher: Arc<dyn PublishSink> = Arc::new(publisher);
        let sinks = Sinks {
            publish: Arc::clone(&publisher),
            forward: spool_sink.clone().map(|s| s as Arc<dyn ForwardSink>),
            logs: spool_sink.clone().map(|s| s as Arc<dyn LogSink>),
        };
        if let (Some(sink), Some(upstream)) = (&spool_sink, &plan.upstream) {
            if upstream.ship_logs.is_some() {
                crate::telemetry::ship_own_logs(Arc::clone(sink));
            }
        }
        let workers = dispatcher
            .spawn_workers(&functions, &sinks)
            .map_err(NodeError::Threads)?;

        let (stop_sources, sources_stopped) = watch::channel(false);
        let (stop_links, links_stopped) = watch::channel(false);
        let pump = tokio::spawn(local::pump(outgoing, client.clone()));
        let uplink_status = plan
            .upstream
            .as_ref()
            .map(|_| Arc::new(UplinkStatus::default()));
        let uplink = match (&spool, &plan.upstream, &uplink_status) {
            (Some(spool), Some(upstream), Some(status)) => {
                let uplink = Uplink {
                    plan: upstream.clone(),
                    device: plan.device.id.clone(),
                    spool: Arc::clone(spool),
                    status: Arc::clone(status),
                };
                Some(tokio::spawn(uplink.run(links_stopped.clone())))
            }
            _ => None,
        };
        let mut mqtt = MqttSource::new(plan.broker.max_payload);
        mqtt.forwards = plan.forwards.clone();
        mqtt.spool = spool_sink.clone();
        if persistent {
            let (acks, queue) = tokio::sync::mpsc::unbounded_channel();
            mqtt.acks = Some(acks);
            tokio::spawn(crate::sources::mqtt::acknowledge_in_order(
                client.clone(),
                queue,
            ));
        }
        let link = tokio::spawn(crate::mqtt::drive(
            client,
            eventloop,
            subscriptions(&dispatcher, &plan),
            Arc::clone(&link_state),
            links_stopped,
            {
                let dispatcher = Arc::clone(&dispatcher);
                move |publish| mqtt.incoming_publish(&dispatcher, publish)
            },
        ));
        let mut sources = JoinSet::new();
        start_sources(
            &plan,
            &dispatcher,
            &publisher,
            &sources_stopped,
            &mut sources,
        );
        let mut feeders = JoinSet::new();
        for (function, spool) in durable.iter().enumerate() {
            if let Some(spool) = spool {
                feeders.spawn(crate::dispatch::feed(
                    Arc::clone(&dispatcher),
                    function,
                    Arc::clone(spool),
                    sources_stopped.clone(),
                ));
            }
        }
        let status = Arc::new(StatusSources {
            device: plan.device.id.clone(),
            started: std::time::Instant::now(),
            dispatcher: Arc::clone(&dispatcher),
            link: Arc::clone(&link_state),
            spool: spool.clone(),
            uplink: uplink_status,
        });
        if let Some(spool) = &spool {
            sources.spawn(crate::telemetry::ship_metrics(
                Arc::clone(&status),
                Arc::clone(spool),
                plan.metrics_interval,
                sources_stopped.clone(),
            ));
        }
        let socket = crate::control::socket_path(&plan.device.data_dir);
        match crate::control::bind(&socket) {
            Ok(listener) => {
                sources.spawn(crate::control::serve(
                    listener,
                    status,
                    sources_stopped.clone(),
                ));
            }
            Err(e) => {
                log::warn!(target: "ledge::control", "no control socket at {}: {e}; `ledge status` will not reach this ledge", socket.display())
            }
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
        Ok(Self {
            dispatcher,
            workers,
            stop_sources,
            sources,
            publisher,
            pump,
            stop_links,
            link,
            link_state,
            uplink,
            spool,
            feeders,
            durable: durable.into_iter().flatten().collect(),
        })
    }

    async fn stop(mut self) {
        let _ = self.stop_sources.send(true);
        while self.sources.join_next().await.is_some() {}
        self.dispatcher.close();
        drain_workers(&self.dispatcher, self.workers).await;
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, async {
            while self.feeders.join_next().await.is_some() {}
        })
        .await;
        for spool in &self.durable {
            spool.close();
        }
        // Workers and sources are gone; dropping the last publisher lets the
        // pump finish once every queued publish is handed to the client.
        drop(self.publisher);
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, self.pump).await;
        let _ = self.stop_links.send(true);
        let _ = tokio::time::timeout(DISCONNECT_DEADLINE, self.link).await;
        if let Some(uplink) = self.uplink {
            let _ = tokio::time::timeout(DISCONNECT_DEADLINE, uplink).await;
        }
        if let Some(spool) = &self.spool {
            // Writes and syncs what is buffered and saves the cursor.
            spool.close();
        }
        log_summary(&self.dispatcher, &self.link_state);
    }
}

/// One spool stream per function with a durable trigger, `fn-<name>`.
fn open_durable_spools(plan: &Plan) -> Result<Vec<Option<Arc<Spool>>>, NodeError> {
    plan.functions
        .iter()
        .enumerate()
        .map(|(id, spec)| {
            if !plan.routes.iter().any(|r| r.function == id && r.durable) {
                return Ok(None);
            }
            let dir = crate::spool::stream_dir(&plan.device.data_dir, &format!("fn-{}", spec.name));
            let spool = Spool::open(&dir, plan.spool.clone())?;
            let (_, next) = spool.seq_range();
            let waiting = next.saturating_sub(1).saturating_sub(spool.cursor(crate::dispatch::DURABLE_CURSOR).unwrap_or(0));
            log::info!(target: "ledge::spool", "durable trigger stream {} open; {waiting} events from before the restart run again", dir.display());
            Ok(Some(Arc::new(spool)))
        })
        .collect()
}

fn open_uplink_spool(plan: &Plan) -> Result<Option<Arc<Spool>>, NodeError> {
    if plan.upstream.is_none() {
        return Ok(None);
    }
    let dir = crate::spool::stream_dir(&plan.device.data_dir, "uplink");
    let spool = Spool::open(&dir, plan.spool.clone())?;
    log::info!(
        target: "ledge::spool",
        "spool {} open: {} segments, {} bytes, next seq {}, fsync {}",
        dir.display(),
        spool.segment_count(),
        spool.disk_bytes(),
        spool.seq_range().1,
        plan.spool.fsync
    );
    Ok(Some(Arc::new(spool)))
}

/// Every filter the local link subscribes to: triggers and forward rules.
fn subscriptions(dispatcher: &Dispatcher, plan: &Plan) -> Vec<TopicFilter> {
    let mut filters = dispatcher.mqtt_filters();
    filters.extend(plan.forwards.iter().map(|f| f.filter.clone()));
    filters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    filters.dedup();
    filters
}

fn start_sources(
    plan: &Plan,
    dispatcher: &Arc<Dispatcher>,
    publisher: &Arc<dyn PublishSink>,
    stopped: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    for spec in &plan.sensors {
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
        if let TriggerSource::Schedule { every, payload } = &route.source {
            let schedule = schedule::Schedule {
                function: route.function,
                every: *every,
                payload: payload.clone(),
                durable: route.durable,
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

async fn wait_for_stop_signal() -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;
    tokio::select! {
        _ = terminate.recv() => log::info!(target: "ledge::node", "SIGTERM received"),
        _ = interrupt.recv() => log::info!(target: "ledge::node", "SIGINT received"),
    }
    Ok(())
}

fn log_summary(dispatcher: &Dispatcher, link: &LinkState) {
    for (name, metrics) in dispatcher.metrics() {
        let m = metrics.snapshot();
        log::info!(
            target: "ledge::node",
            "{name}: {} invocations, {} errors ({} timeouts), {} throttled, mean {}µs, max {}µs",
            m.invocations,
            m.errors,
            m.timeouts,
            m.throttled,
            m.mean_duration_us(),
            m.duration_max_us
        );
    }
    let connected = link.connected.load(Ordering::Acquire);
    log::info!(target: "ledge::node", "stopped (local broker was {})", if connected { "connected" } else { "disconnected" });
}
