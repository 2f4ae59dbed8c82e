//! The dispatcher: takes events from every source, looks up which functions
//! they trigger in the routing table, and queues them for those functions'
//! workers.
//!
//! `submit` never blocks and never allocates per function beyond an `Arc`
//! clone: the event is shared. A full queue throttles that one function's
//! copy of the event (counted, logged at a limited rate); the other
//! functions still get theirs.

pub mod queue;
pub mod request_id;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::config::{FunctionId, Plan, TriggerSource};
use crate::event::{Event, EventSource};
use crate::metrics::FunctionMetrics;
use crate::runtime::LoadedFunction;
use crate::sinks::Sinks;
use crate::topic::TopicFilter;
use queue::{EventQueue, PushError};

/// One event waiting for one function.
pub struct Job {
    pub event: Arc<Event>,
    pub enqueued_at: Instant,
}

/// A function as the dispatcher sees it.
struct Slot {
    name: String,
    /// `None` when the function is disabled (its module failed to load).
    queue: Option<Arc<EventQueue<Job>>>,
    metrics: Arc<FunctionMetrics>,
    /// When a throttle was last logged, to limit the log to one line a second.
    last_throttle_log_ms: AtomicU64,
}

/// The routing table, compiled from the config's triggers.
#[derive(Default)]
struct Routes {
    mqtt: Vec<(TopicFilter, FunctionId)>,
    sensor: HashMap<String, Vec<FunctionId>>,
}

pub struct Dispatcher {
    slots: Vec<Slot>,
    routes: Routes,
    started: Instant,
}

impl Dispatcher {
    /// Builds the routing table and one queue per enabled function.
    /// `functions[i]` is `Some` if function `i` of the plan loaded.
    pub fn new(plan: &Plan, functions: &[Option<LoadedFunction>]) -> Self {
        let slots = plan
            .functions
            .iter()
            .zip(functions)
            .map(|(spec, loaded)| Slot {
                name: spec.name.clone(),
                queue: loaded
                    .as_ref()
                    .map(|_| Arc::new(EventQueue::new(spec.queue_size))),
                metrics: Arc::default(),
                last_throttle_log_ms: AtomicU64::new(0),
            })
            .collect();
        let mut routes = Routes::default();
        for route in &plan.routes {
            match &route.source {
                TriggerSource::Mqtt { filter } => {
                    routes.mqtt.push((filter.clone(), route.function))
                }
                TriggerSource::Sensor { sensor } => routes
                    .sensor
                    .entry(sensor.clone())
                    .or_default()
                    .push(route.function),
                // Schedules know their function; they call `submit_to`.
                TriggerSource::Schedule { .. } => {}
            }
        }
        Self {
            slots,
            routes,
            started: Instant::now(),
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
                handles.extend(worker::spawn(function, queue, &slot.metrics, sinks)?);
            }
        }
        Ok(handles)
    }

    /// The MQTT topic filters the local link must subscribe to.
    pub fn mqtt_filters(&self) -> Vec<TopicFilter> {
        let mut filters: Vec<TopicFilter> =
            self.routes.mqtt.iter().map(|(f, _)| f.clone()).collect();
        filters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        filters.dedup();
        filters
    }

    /// Routes an event to every function whose trigger matches it; returns
    /// how many functions it was queued for.
    pub fn submit(&self, event: Event) -> usize {
        let event = Arc::new(event);
        let mut targets: Vec<FunctionId> = Vec::new();
        match event.source {
            EventSource::Mqtt => {
                for (filter, function) in &self.routes.mqtt {
                    if filter.matches(&event.subject) && !targets.contains(function) {
                        targets.push(*function);
                    }
                }
            }
            EventSource::Sensor => {
                if let Some(functions) = self.routes.sensor.get(&event.subject) {
                    targets.extend(functions.iter().copied());
                    targets.dedup();
                }
            }
            EventSource::Schedule | EventSource::Invoke => {}
        }
        targets
            .into_iter()
            .filter(|function| self.submit_to(*function, Arc::clone(&event)))
            .count()
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
        };
        match queue.push(job) {
            Ok(()) => true,
            Err(PushError::Full(job)) => {
                slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                self.log_throttle(slot, &job.event);
                false
            }
            Err(PushError::Closed(_)) => false,
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

    /// Events waiting across all queues.
    pub fn queued(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|slot| slot.queue.as_ref())
            .map(|q| q.len())
            .sum()
    }
}
