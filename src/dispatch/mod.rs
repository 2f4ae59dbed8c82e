//! The dispatcher: takes events from every source, looks up which functions
//! they trigger in the routing table, and queues them for those functions'
//! workers.
//!
//! `submit` never blocks and never allocates per function beyond an `Arc`
//! clone: the event is shared. Every function has a spool stream beside its
//! queue (`fn-<name>`). When a function's queue is full:
//! - a source that can be held back (a client of the embedded broker) has
//!   the event queued anyway and is told to hold back until there is room
//!   (the broker stops reading that client: TCP backpressure);
//! - any other source's event spills into the function's stream, and its
//!   feeder queues it when there is room (Lambda keeps throttled async
//!   events the same way, up to `max_event_age`). While a stream holds
//!   spilled events, new ones follow them through it, roughly in order;
//! - only an event the stream refuses too (full disk, `on_full = "reject"`)
//!   goes to the failure destination, counted and logged in summary.
//!
//! Here: the dispatcher, its routing table and per-function slots. Beside
//! it: `routing` (the swap point reloads use), `submit` (routing one event
//! and overflow), `queue`, `worker` (the threads that run functions),
//! `durable` (feeders of function streams), `sync` (request/response),
//! `named` (functions by name: lookup, async submits, descriptions),
//! `request_id`.

mod durable;
mod named;
pub mod queue;
pub mod request_id;
mod routing;
mod submit;
pub mod sync;
mod worker;

pub use durable::{feed, feed_batches, CURSOR as DURABLE_CURSOR};
pub use named::Refused;
pub use routing::Routing;

/// What a source can do when a function's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The source can wait (a client of the embedded broker): queue the
    /// event anyway and report [`Submitted::hold_back`].
    HoldBack,
    /// The source cannot wait: spill into the function's stream.
    Spill,
}

/// What became of one submitted event.
#[derive(Default)]
pub struct Submitted {
    /// Records that must be durable before the source acknowledges the
    /// event (durable triggers).
    pub waits: Vec<Durable>,
    /// Some function is over capacity: hold the source back until the
    /// node's `room` signal.
    pub hold_back: bool,
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::config::{FunctionId, Plan, Target, TriggerSource};
use crate::event::{Event, EventSource};
use crate::metrics::FunctionMetrics;
use crate::runtime::LoadedFunction;
use crate::sinks::Sinks;
use crate::spool::Spool;
use crate::topic::TopicFilter;
use queue::{EventQueue, PushError};

/// One event waiting for one function.
pub struct Job {
    pub event: Arc<Event>,
    pub enqueued_at: Instant,
    /// For an event from a durable trigger: whom to tell when it was run.
    pub receipt: Option<Receipt>,
    /// 1 for the first attempt; retries count up.
    pub attempt: u32,
    /// For a synchronous request: where the response goes. Such a job is
    /// never retried.
    pub reply: Option<Box<sync::Reply>>,
}

impl queue::Weighted for Job {
    /// Payload, subject, and the job and event themselves.
    fn weight(&self) -> usize {
        self.event.payload.len() + self.event.subject.len() + 128
    }
}

impl Job {
    /// A first attempt of `event`, queued now.
    pub fn new(event: Arc<Event>) -> Self {
        Self {
            event,
            enqueued_at: Instant::now(),
            receipt: None,
            attempt: 1,
            reply: None,
        }
    }
}

/// Tells a durable trigger's feeder that the record `seq` has been run (its
/// invocation finished, successfully or not). A job dropped unrun sends
/// nothing, so the record runs again after a restart.
pub struct Receipt {
    pub seq: u64,
    pub done: tokio::sync::mpsc::UnboundedSender<u64>,
}

/// A record some source must wait on before acknowledging its input.
pub struct Durable {
    pub spool: Arc<Spool>,
    pub seq: u64,
}

/// A function as the dispatcher sees it.
struct Slot {
    name: String,
    /// The function's settings, for callers that describe it (Lambda's
    /// GetFunction).
    spec: Arc<crate::config::FunctionSpec>,
    /// `None` when the function is disabled (its module failed to load).
    queue: Option<Arc<EventQueue<Job>>>,
    metrics: Arc<FunctionMetrics>,
    /// When an overflow was last logged, to limit the log to one summary
    /// line every `OVERFLOW_LOG_EVERY`.
    last_overflow_log_ms: AtomicU64,
    /// Overflow events not yet mentioned in the log.
    unlogged_overflows: AtomicU64,
    /// When a stopped loop was last logged (ms since start).
    last_loop_log_ms: AtomicU64,
    /// The function's own spool stream, for durable triggers' events.
    stream: Option<Arc<Spool>>,
    /// The same stream when its feeder feeds this very function (not
    /// another version of it, nor in batches): events that find the queue
    /// full may spill there.
    spill: Option<Arc<Spool>>,
    /// Set while the stream holds spilled events its feeder has not queued
    /// yet: new events then go through the stream too, behind them.
    spilling: Arc<AtomicBool>,
    /// Where events that can be neither queued nor spilled go; set when
    /// the workers start.
    failure: std::sync::OnceLock<worker::RetryContext>,
}

/// At most one overflow summary per function in this many milliseconds.
const OVERFLOW_LOG_EVERY_MS: u64 = 10_000;

/// The routing table, compiled from the config's triggers: (function,
/// durable) per route.
#[derive(Default)]
struct Routes {
    mqtt: Vec<(TopicFilter, Target, bool)>,
    sensor: HashMap<String, Vec<(Target, bool)>>,
    /// `f:alias`, and `f` when it has a default alias.
    aliases: HashMap<String, Target>,
    /// HTTP routes; the server matches requests against them and submits
    /// to their function by name.
    http: Vec<Arc<crate::config::http::HttpRoute>>,
}

pub struct Dispatcher {
    slots: Vec<Slot>,
    routes: Routes,
    started: Instant,
    /// Notified when a full queue has room again (shared by every queue
    /// and every dispatcher of a node).
    room: Arc<tokio::sync::Notify>,
}

impl Dispatcher {
    /// Builds the routing table and one queue per enabled function.
    /// `functions[i]` is `Some` if function `i` of the plan loaded;
    /// `streams[i]` is function `i`'s spool stream (`None`: events that do
    /// not fit the queue go to the failure destination). `room` is
    /// notified whenever a full queue has room again.
    pub fn new(
        plan: &Plan,
        functions: &[Option<LoadedFunction>],
        streams: Vec<Option<Arc<Spool>>>,
        room: Arc<tokio::sync::Notify>,
    ) -> Self {
        let fed = fed_functions(plan);
        let slots = plan
            .functions
            .iter()
            .enumerate()
            .zip(functions)
            .zip(streams.into_iter().chain(std::iter::repeat(None)))
            .map(|(((id, spec), loaded), stream)| Slot {
                spill: stream.clone().filter(|_| fed.contains(&id)),
                name: spec.qualified_name(),
                spec: Arc::new(spec.clone()),
                queue: loaded.as_ref().map(|_| {
                    Arc::new(EventQueue::new(
                        spec.queue_size,
                        crate::config::QUEUE_BYTES,
                        Arc::clone(&room),
                    ))
                }),
                metrics: Arc::default(),
                last_overflow_log_ms: AtomicU64::new(0),
                unlogged_overflows: AtomicU64::new(0),
                last_loop_log_ms: AtomicU64::new(0),
                stream,
                spilling: Arc::new(AtomicBool::new(false)),
                failure: std::sync::OnceLock::new(),
            })
            .collect();
        let mut routes = Routes {
            aliases: plan
                .aliases
                .iter()
                .map(|(name, target)| (name.clone(), *target))
                .collect(),
            ..Routes::default()
        };
        for route in &plan.routes {
            let target = Target {
                function: route.function,
                canary: route.canary,
            };
            match &route.source {
                TriggerSource::Mqtt { filter } => {
                    routes.mqtt.push((filter.clone(), target, route.durable))
                }
                TriggerSource::Sensor { sensor } => routes
                    .sensor
                    .entry(sensor.clone())
                    .or_default()
                    .push((target, route.durable)),
                // Schedules know their function; they call `submit_routed`.
                TriggerSource::Schedule { .. } => {}
                TriggerSource::Http(route) => routes.http.push(Arc::new((**route).clone())),
            }
        }
        Self {
            slots,
            routes,
            started: Instant::now(),
            room,
        }
    }

    /// The node's "a queue has room again" signal.
    pub fn room(&self) -> &Arc<tokio::sync::Notify> {
        &self.room
    }

    /// The flag a function's feeder clears once its stream has no spilled
    /// events left.
    pub fn spilling_flag(&self, function: FunctionId) -> Option<Arc<AtomicBool>> {
        self.slots.get(function).map(|s| Arc::clone(&s.spilling))
    }

    /// The function (version) one event for `target` goes to: the canary
    /// gets its percent of events, chosen at random per event.
    pub fn pick(&self, target: Target) -> FunctionId {
        let Some((canary, percent)) = target.canary else {
            return target.function;
        };
        if crate::rand::below(100) < u64::from(percent) {
            canary
        } else {
            target.function
        }
    }

    /// Keeps counting where `old` left off for every function both know by
    /// name, so a reload does not reset a function's metrics. Call before
    /// `spawn_workers`.
    pub fn inherit_metrics(&mut self, old: &Dispatcher) {
        for slot in &mut self.slots {
            if let Some(previous) = old.slots.iter().find(|s| s.name == slot.name) {
                slot.metrics = Arc::clone(&previous.metrics);
            }
        }
    }

    /// Starts the worker threads of every enabled function.
    pub fn spawn_workers(
        &self,
        functions: &[Option<LoadedFunction>],
        sinks: &Sinks,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut handles = Vec::new();
        for (slot, function) in self.slots.iter().zip(functions) {
            if let (Some(queue), Some(function)) = (&slot.queue, function) {
                let _ =
                    slot.failure
                        .set(worker::failure_destination(function, &slot.metrics, sinks));
                handles.extend(worker::spawn(function, queue, &slot.metrics, sinks)?);
            }
        }
        Ok(handles)
    }

    /// The MQTT topic filters the local link must subscribe to.
    pub fn mqtt_filters(&self) -> Vec<TopicFilter> {
        let mut filters: Vec<TopicFilter> =
            self.routes.mqtt.iter().map(|(f, _, _)| f.clone()).collect();
        filters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        filters.dedup();
        filters
    }

    /// Queues a job without throttling it: `Err` hands it back if the
    /// queue is full (the caller retries later) or closed.
    pub fn push_job(&self, function: FunctionId, job: Job) -> Result<(), PushError<Job>> {
        match self.slots.get(function).and_then(|s| s.queue.as_ref()) {
            Some(queue) => queue.push(job),
            None => Err(PushError::Closed(job)),
        }
    }

    /// Capacity of a function's queue.
    pub fn queue_capacity(&self, function: FunctionId) -> usize {
        self.slots
            .get(function)
            .and_then(|s| s.queue.as_ref())
            .map_or(0, |q| q.capacity())
    }

    /// Stops accepting events; workers drain their queues, then exit.
    pub fn close(&self) {
        for queue in self.slots.iter().filter_map(|s| s.queue.as_ref()) {
            queue.close();
        }
    }

    /// Makes workers stop after their current invocation; returns the number
    /// of queued events left behind, per function.
    pub fn abandon(&self) -> Vec<(String, usize)> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let left = slot.queue.as_ref()?.abandon();
                (left > 0).then(|| (slot.name.clone(), left))
            })
            .collect()
    }

    /// Each function's name and counters.
    pub fn metrics(&self) -> Vec<(String, Arc<FunctionMetrics>)> {
        self.slots
            .iter()
            .map(|slot| (slot.name.clone(), Arc::clone(&slot.metrics)))
            .collect()
    }

    /// Events waiting for the function named `name`.
    pub fn queue_depth(&self, name: &str) -> usize {
        self.slots
            .iter()
            .find(|slot| slot.name == name)
            .and_then(|slot| slot.queue.as_ref())
            .map_or(0, |q| q.len())
    }

    /// Events waiting across all queues.
    pub fn queued(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|slot| slot.queue.as_ref())
            .map(|q| q.len())
            .sum()
    }
}

/// The functions whose stream's feeder queues events for them one by one:
/// per function name, the target of its first durable trigger (if that is
/// not batched), else the first function of that name (its `$LATEST`).
/// Must agree with the node's `start_feeders`.
fn fed_functions(plan: &Plan) -> std::collections::HashSet<FunctionId> {
    let mut seen = std::collections::HashSet::new();
    let mut fed = std::collections::HashSet::new();
    let durable = plan
        .routes
        .iter()
        .filter(|r| r.durable)
        .map(|r| (r.function, r.batch.is_none()));
    let all = (0..plan.functions.len()).map(|id| (id, true));
    for (id, one_by_one) in durable.chain(all) {
        if seen.insert(plan.functions[id].name.as_str()) && one_by_one {
            fed.insert(id);
        }
    }
    fed
}
