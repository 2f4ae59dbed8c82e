//! The dispatcher: takes events from every source, looks up which functions
//! they trigger in the routing table, and queues them for those functions'
//! workers.
//!
//! `submit` never blocks and never allocates per function beyond an `Arc`
//! clone: the event is shared. A full queue throttles that one function's
//! copy of the event (counted, logged at a limited rate); the other
//! functions still get theirs.

mod durable;
pub mod queue;
pub mod request_id;
pub mod sync;
mod worker;

pub use durable::{feed, feed_batches, CURSOR as DURABLE_CURSOR};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
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
    /// `None` when the function is disabled (its module failed to load).
    queue: Option<Arc<EventQueue<Job>>>,
    metrics: Arc<FunctionMetrics>,
    /// When a throttle was last logged, to limit the log to one line a second.
    last_throttle_log_ms: AtomicU64,
    /// The function's own spool stream, if any of its triggers is durable.
    durable: Option<Arc<Spool>>,
    /// Where throttled events go; set when the workers start.
    failure: std::sync::OnceLock<worker::RetryContext>,
}

/// The routing table, compiled from the config's triggers: (function,
/// durable) per route.
#[derive(Default)]
struct Routes {
    mqtt: Vec<(TopicFilter, Target, bool)>,
    sensor: HashMap<String, Vec<(Target, bool)>>,
    /// `f:alias`, and `f` when it has a default alias.
    aliases: HashMap<String, Target>,
}

/// The dispatcher every long-lived source submits to. A config reload
/// builds a new dispatcher and swaps it in here: a submit holds the read
/// lock for its whole call, so once `replace` returns no event can still
/// reach the old dispatcher, and closing it loses nothing.
#[derive(Clone)]
pub struct Routing(Arc<RwLock<Arc<Dispatcher>>>);

impl Routing {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self(Arc::new(RwLock::new(dispatcher)))
    }

    /// The dispatcher events go to now.
    pub fn current(&self) -> Arc<Dispatcher> {
        // A poisoned lock only means a submit panicked; the pointer is intact.
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Routes an event through the current dispatcher (see
    /// [`Dispatcher::submit`]).
    pub fn submit(&self, event: Event) -> Vec<Durable> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .submit(event)
    }

    /// Queues a synchronous request through the current dispatcher (see
    /// [`Dispatcher::submit_sync`]).
    pub fn submit_sync(&self, function: &str, event: Event, reply: sync::Reply) {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .submit_sync(function, Arc::new(event), reply)
    }

    /// Makes `next` the dispatcher for every later event; returns the old one.
    pub fn replace(&self, next: Arc<Dispatcher>) -> Arc<Dispatcher> {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, next)
    }
}

pub struct Dispatcher {
    slots: Vec<Slot>,
    routes: Routes,
    started: Instant,
    /// State of the generator that splits events between an alias's two
    /// versions.
    split: AtomicU64,
}

impl Dispatcher {
    /// Builds the routing table and one queue per enabled function.
    /// `functions[i]` is `Some` if function `i` of the plan loaded;
    /// `durable[i]` is function `i`'s spool stream for durable triggers.
    pub fn new(
        plan: &Plan,
        functions: &[Option<LoadedFunction>],
        durable: Vec<Option<Arc<Spool>>>,
    ) -> Self {
        let slots = plan
            .functions
            .iter()
            .zip(functions)
            .zip(durable.into_iter().chain(std::iter::repeat(None)))
            .map(|((spec, loaded), durable)| Slot {
                name: spec.qualified_name(),
                queue: loaded
                    .as_ref()
                    .map(|_| Arc::new(EventQueue::new(spec.queue_size))),
                metrics: Arc::default(),
                last_throttle_log_ms: AtomicU64::new(0),
                durable,
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
            }
        }
        Self {
            slots,
            routes,
            started: Instant::now(),
            split: AtomicU64::new(unix_seed()),
        }
    }

    /// The function (version) one event for `target` goes to: the canary
    /// gets its percent of events, chosen at random per event.
    pub fn pick(&self, target: Target) -> FunctionId {
        let Some((canary, percent)) = target.canary else {
            return target.function;
        };
        // splitmix64: uniform enough for a traffic split, one atomic add.
        let mut z = self
            .split
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if z % 100 < u64::from(percent) {
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

    /// Routes an event to every function whose trigger matches it. Events
    /// for durable triggers go to the function's spool stream; the returned
    /// records must be durable before the event's source acknowledges it.
    pub fn submit(&self, event: Event) -> Vec<Durable> {
        let mut targets: Vec<(FunctionId, bool)> = Vec::new();
        let mut add = |target: &Target, durable: bool| {
            // A durable event goes to the stream of the alias's main
            // version; its feeder splits the stream with the canary.
            let function = if durable {
                target.function
            } else {
                self.pick(*target)
            };
            match targets.iter_mut().find(|(f, _)| *f == function) {
                Some(target) => target.1 |= durable,
                None => targets.push((function, durable)),
            }
        };
        match event.source {
            EventSource::Mqtt => {
                for (filter, target, durable) in &self.routes.mqtt {
                    if filter.matches(&event.subject) {
                        add(target, *durable);
                    }
                }
            }
            EventSource::Sensor => {
                for (target, durable) in
                    self.routes.sensor.get(&event.subject).into_iter().flatten()
                {
                    add(target, *durable);
                }
            }
            EventSource::Schedule | EventSource::Invoke => {}
        }
        let event = Arc::new(event);
        targets
            .into_iter()
            .filter_map(|(function, durable)| {
                self.submit_routed(function, Arc::clone(&event), durable)
            })
            .collect()
    }

    /// Delivers an event to one function, through its spool stream if
    /// `durable` (falling back to the queue if the spool refuses it).
    pub fn submit_routed(
        &self,
        function: FunctionId,
        event: Arc<Event>,
        durable: bool,
    ) -> Option<Durable> {
        let spool = self
            .slots
            .get(function)
            .and_then(|s| s.durable.as_ref())
            .filter(|_| durable);
        if let Some(spool) = spool {
            match durable::append(spool, &event) {
                Ok(seq) => {
                    return Some(Durable {
                        spool: Arc::clone(spool),
                        seq,
                    })
                }
                Err(e) => {
                    log::warn!(target: "ledge::dispatch", "{}: durable trigger could not store an event ({e}); running it from memory", self.slots[function].name)
                }
            }
        }
        self.submit_to(function, event);
        None
    }

    /// Queues an event for one function; false if it was refused.
    pub fn submit_to(&self, function: FunctionId, event: Arc<Event>) -> bool {
        let Some(slot) = self.slots.get(function) else {
            return false;
        };
        let Some(queue) = &slot.queue else {
            slot.metrics
                .dropped_disabled
                .fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let job = Job {
            event,
            enqueued_at: Instant::now(),
            receipt: None,
            attempt: 1,
            reply: None,
        };
        match queue.push(job) {
            Ok(()) => true,
            Err(PushError::Full(job)) => {
                slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                self.log_throttle(slot, &job.event);
                // Lambda sends events it gave up on to the failure
                // destination; so does ledge, rather than drop them.
                if let Some(destination) = slot.failure.get() {
                    let invocation = crate::runtime::Invocation {
                        request_id: request_id::next(),
                        event: job.event,
                        attempt: 0,
                    };
                    let why = format!("throttled: {} events already wait", queue.capacity());
                    let error = crate::runtime::InvokeError::Throttled(why.clone());
                    destination.dead_letter(&invocation, &error, &why, true);
                }
                false
            }
            Err(PushError::Closed(_)) => false,
        }
    }

    /// Queues a synchronous request for the function named `function`, or
    /// answers at once if it cannot run: unknown, disabled, or its queue
    /// full (throttled, like Lambda's 429).
    pub fn submit_sync(&self, function: &str, event: Arc<Event>, reply: sync::Reply) {
        let name = function.strip_suffix(":$LATEST").unwrap_or(function);
        let slot = match self.routes.aliases.get(name) {
            Some(target) => self.slots.get(self.pick(*target)),
            None => self.slots.iter().find(|s| s.name == name),
        };
        let Some(slot) = slot else {
            let known: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
            reply.refuse(
                function,
                "not_found",
                &format!(
                    "no function `{function}` on this device (defined: {})",
                    known.join(", ")
                ),
            );
            return;
        };
        let Some(queue) = &slot.queue else {
            slot.metrics
                .dropped_disabled
                .fetch_add(1, Ordering::Relaxed);
            reply.refuse(
                function,
                "disabled",
                "the function's module failed to load (see the log)",
            );
            return;
        };
        let job = Job {
            event,
            enqueued_at: Instant::now(),
            receipt: None,
            attempt: 1,
            reply: Some(Box::new(reply)),
        };
        let (job, status, error) = match queue.push(job) {
            Ok(()) => return,
            Err(PushError::Full(job)) => {
                slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                self.log_throttle(slot, &job.event);
                let error = format!(
                    "{} requests already wait for this function; retry later",
                    queue.capacity()
                );
                (job, "throttled", error)
            }
            Err(PushError::Closed(job)) => (job, "unavailable", "ledge is stopping".to_owned()),
        };
        if let Some(reply) = job.reply {
            reply.refuse(function, status, &error);
        }
    }

    fn log_throttle(&self, slot: &Slot, event: &Event) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = slot.last_throttle_log_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 1_000 && last != 0 {
            return;
        }
        slot.last_throttle_log_ms
            .store(now_ms.max(1), Ordering::Relaxed);
        log::warn!(
            target: "ledge::dispatch",
            "{}: queue full, event from {} {} throttled ({} throttled so far)",
            slot.name,
            event.source,
            event.subject,
            slot.metrics.throttled.load(Ordering::Relaxed)
        );
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

/// A seed that differs between runs, for the canary split.
fn unix_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
