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
use crate::sinks::PublishSink;
use crate::sources::mqtt::MqttSource;
use crate::sources::{schedule, sensor};

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
    let dispatcher = Arc::new(Dispatcher::new(&plan, &functions));

    let link_state = Arc::new(LinkState::default());
    let (client, eventloop) = crate::mqtt::connect(&plan.broker);
    let (publisher, outgoing) = LocalPublisher::new(Arc::clone(&link_state));
    let publisher: Arc<dyn PublishSink> = Arc::new(publisher);
    let workers = dispatcher
        .spawn_workers(&functions, &publisher)
        .map_err(NodeError::Threads)?;

    let (stop_sources, sources_stopped) = watch::channel(false);
    let (stop_link, link_stopped) = watch::channel(false);
    let mut sources = JoinSet::new();
    let pump = tokio::spawn(local::pump(outgoing, client.clone()));
    let link = {
        let dispatcher = Arc::clone(&dispatcher);
        let mqtt = MqttSource::new(plan.broker.max_payload);
        tokio::spawn(crate::mqtt::drive(
            client,
            eventloop,
            dispatcher.mqtt_filters(),
            Arc::clone(&link_state),
            link_stopped,
            move |publish| mqtt.incoming_publish(&dispatcher, publish),
        ))
    };
    start_sources(
        &plan,
        &dispatcher,
        &publisher,
        &sources_stopped,
        &mut sources,
    );

    let enabled = functions.iter().filter(|f| f.is_some()).count();
    log::info!(
        target: "ledge::node",
        "ledge {} running as `{}`: {enabled} of {} functions enabled, {} routes, {} sensors; broker {}",
        env!("CARGO_PKG_VERSION"),
        plan.device.id,
        plan.functions.len(),
        plan.routes.len(),
        plan.sensors.len(),
        plan.broker.mode
    );

    wait_for_stop_signal().await?;
    log::info!(target: "ledge::node", "stopping: draining in-flight work");

    let _ = stop_sources.send(true);
    while sources.join_next().await.is_some() {}
    dispatcher.close();
    drain_workers(&dispatcher, workers).await;
    // Workers are gone; dropping the last publisher lets the pump finish
    // once every queued publish is handed to the client.
    drop(publisher);
    let _ = tokio::time::timeout(DISCONNECT_DEADLINE, pump).await;
    let _ = stop_link.send(true);
    let _ = tokio::time::timeout(DISCONNECT_DEADLINE, link).await;
    log_summary(&dispatcher, &link_state);
    Ok(())
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
