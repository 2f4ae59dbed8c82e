//! The part of a running ledge a reload replaces: the functions with their
//! queues and workers, and the sources that hold them (sensors, schedules,
//! the feeders of function streams). The MQTT link, broker, spools and
//! uplink outlive it. Module loading, written once for start and reload,
//! and the reload itself live here too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Node, ReloadError};
use crate::config::{CatchUp, Plan, SensorKind, Target, Timing, TriggerSource};
use crate::deploy::probation::{self, Reporter};
use crate::deploy::store::Store;
use crate::dispatch::Dispatcher;
use crate::hw::gpio::GpioLines;
use crate::runtime::{LoadedFunction, Runtime};
use crate::sinks::{PublishSink, Sinks};
use crate::sources::mqtt::MqttSource;
use crate::sources::{schedule, sensor};
use crate::spool::Spool;
use crate::topic::TopicFilter;

pub(super) struct Pipeline {
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) workers: Vec<std::thread::JoinHandle<()>>,
    pub(super) stop_sources: watch::Sender<bool>,
    pub(super) sources: JoinSet<()>,
    /// Feeders of function streams; they finish once the workers have.
    pub(super) feeders: JoinSet<()>,
}

/// What a module that fails to load does to the rest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum OnBadModule {
    /// At start: only its function is disabled; the others run.
    Disable,
    /// On reload: the whole reload is refused; the running version keeps
    /// serving.
    Refuse,
}

/// Loads every function of `plan`, indexed like `plan.functions` (`None`:
/// disabled). A version on probation that cannot load sends its alias back
/// (reported); `reread` then gives the plan with the store laid over it
/// again and loading starts over — at most once per alias, since an alias
/// leaves probation when it moves.
pub(super) fn load_functions(
    runtime: &Runtime,
    plan: &mut Plan,
    store: &Store,
    reporter: &Reporter,
    on_bad: OnBadModule,
    reread: impl Fn() -> Result<Plan, ReloadError>,
) -> Result<Vec<Option<LoadedFunction>>, ReloadError> {
    loop {
        let mut moved = false;
        let mut loaded = Vec::with_capacity(plan.functions.len());
        for spec in &plan.functions {
            let e = match runtime.load(spec.clone()) {
                Ok(function) => {
                    loaded.push(Some(function));
                    continue;
                }
                Err(e) => e,
            };
            let rolled_back = probation::roll_back_unloadable(store, reporter, spec, &e.reason);
            moved |= rolled_back;
            match on_bad {
                OnBadModule::Disable => {
                    log::error!(target: "ledge::node", "{e}; function `{}` is disabled", spec.qualified_name());
                    loaded.push(None);
                }
                OnBadModule::Refuse if rolled_back => break,
                OnBadModule::Refuse => return Err(ReloadError::Module(e.to_string())),
            }
        }
        if !moved {
            return Ok(loaded);
        }
        *plan = reread()?;
    }
}

impl Pipeline {
    /// Builds the dispatcher for `plan`, opens the function streams it
    /// needs and starts the workers. With `previous` (a reload), function
    /// metrics carry on from it and sources start later, once the previous
    /// pipeline's have stopped.
    pub(super) fn start(
        plan: &Plan,
        functions: &[Option<LoadedFunction>],
        sinks: &Sinks,
        publisher: &Arc<dyn PublishSink>,
        open_streams: &mut HashMap<String, Arc<Spool>>,
        previous: Option<&Arc<Dispatcher>>,
        room: &Arc<tokio::sync::Notify>,
    ) -> Result<Self, ReloadError> {
        let streams = open_function_streams(plan, functions, open_streams)?;
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
            pipeline.start_feeders(open_streams, plan);
        }
        Ok(pipeline)
    }

    pub(super) fn start_sources(
        &mut self,
        plan: &Plan,
        publisher: &Arc<dyn PublishSink>,
        sinks: &Sinks,
    ) {
        start_sources(
            plan,
            &self.dispatcher,
            publisher,
            sinks.gpio.as_ref(),
            &self.stop_sources.subscribe(),
            &mut self.sources,
        );
    }

    pub(super) fn start_feeders(&mut self, streams: &HashMap<String, Arc<Spool>>, plan: &Plan) {
        // One stream per function name, read by one feeder. It feeds what
        // the function's first durable trigger resolves to (a version, or
        // an alias's version and canary); without durable triggers, the
        // function itself (its spilled events).
        let mut fed = HashSet::new();
        let durable_routes = plan.routes.iter().filter(|r| r.durable).map(|r| {
            let target = Target {
                function: r.function,
                canary: r.canary,
            };
            (r.function, target, r.batch)
        });
        let spill_only = (0..plan.functions.len()).map(|id| {
            let target = Target {
                function: id,
                canary: None,
            };
            (id, target, None)
        });
        for (function, target, batch) in durable_routes.chain(spill_only) {
            let name = &plan.functions[function].name;
            let Some(spool) = streams.get(name) else {
                continue;
            };
            if !fed.insert(name.clone()) {
                continue;
            }
            let dispatcher = Arc::clone(&self.dispatcher);
            let spool = Arc::clone(spool);
            let stop = self.stop_sources.subscribe();
            match batch {
                Some(batch) => self.feeders.spawn(crate::dispatch::feed_batches(
                    dispatcher, target, spool, batch, stop,
                )),
                None => self
                    .feeders
                    .spawn(crate::dispatch::feed(dispatcher, target, spool, stop)),
            };
        }
    }
}

impl Node {
    /// Re-reads the config file and swaps in its functions, triggers and
    /// sensors without dropping an event: the new functions' workers start
    /// first, the old sensors and schedules stop, new events go to the new
    /// dispatcher from one instant on, and the old one finishes every event
    /// it had already accepted. Nothing changes if the new config is
    /// invalid or changes a section only a restart can apply.
    pub(super) async fn reload(&mut self) -> Result<String, ReloadError> {
        self.reporter.report_cli_moves(&self.store);
        let path = self.plan.source.clone();
        let text = crate::config::read_text(&path).map_err(ReloadError::Config)?;
        let restart = crate::config::changes_needing_restart(&self.config_text, &text);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let reread = || {
            let mut plan = crate::config::parse_with(&path, &text, self.plan.board_flag.as_deref())
                .map_err(ReloadError::Config)?;
            probation::apply_store(&mut plan, &self.store)?;
            Ok(plan)
        };
        let mut plan = reread()?;
        let functions = load_functions(
            &self.runtime,
            &mut plan,
            &self.store,
            &self.reporter,
            OnBadModule::Refuse,
            reread,
        )?;
        let next = Pipeline::start(
            &plan,
            &functions,
            &self.sinks,
            &self.publisher,
            &mut self.streams,
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
        self.pipeline.start_feeders(&self.streams, &plan);
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
            .unwrap_or_else(|e| e.into_inner()) = probation::latest_specs(&plan);
        self.plan = plan;
        self.config_text = text;
        self.refresh_watches();
        probation::collect_garbage(&self.store, &self.plan);
        Ok(summary)
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
            let confirmed = spool.cursor(crate::dispatch::DURABLE_CURSOR).unwrap_or(0);
            let waiting = next.saturating_sub(1).saturating_sub(confirmed);
            let durable = plan
                .routes
                .iter()
                .any(|r| r.durable && plan.functions[r.function].name == spec.name);
            if waiting > 0 || durable {
                log::info!(target: "ledge::spool", "function stream {} open; {waiting} events from before the restart run again", dir.display());
            }
            let spool = Arc::new(spool);
            open.insert(spec.name.clone(), Arc::clone(&spool));
            Ok(Some(spool))
        })
        .collect()
}

/// Starts the sensors and schedules of `plan`; they submit to `dispatcher`
/// until `stopped` changes.
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
        let TriggerSource::Schedule {
            timing,
            payload,
            jitter,
        } = &route.source
        else {
            continue;
        };
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
            // Differs per device and schedule (a fleet spreads out) and per
            // start.
            seed: schedule::state::fnv1a(identity.as_bytes()) ^ crate::rand::next_u64(),
        };
        tasks.spawn(schedule::run(
            schedule,
            Arc::clone(dispatcher),
            stopped.clone(),
        ));
    }
}

/// Every filter the local link subscribes to: triggers and forward rules.
pub(super) fn subscriptions(dispatcher: &Dispatcher, plan: &Plan) -> Vec<TopicFilter> {
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
