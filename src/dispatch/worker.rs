//! Worker threads: where wasm runs.
//!
//! Each function gets `max_concurrency` OS threads. Each thread keeps one
//! warm instance, takes events from the function's queue, and runs them one
//! at a time. Running wasm on its own threads is what keeps a runaway guest
//! from delaying MQTT keep-alives or other functions: the async reactor never
//! executes guest code, and a slow function only occupies its own workers.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::queue::EventQueue;
use super::Job;
use crate::metrics::FunctionMetrics;
use crate::runtime::{Instance, Invocation, InvokeError, LoadedFunction, Outcome};
use crate::sinks::Sinks;

/// Stack for worker threads. wasmi keeps the guest's stack on the heap, so
/// worker threads need little of their own.
const WORKER_STACK: usize = 256 << 10;
/// How long a worker waits for an invocation's forwards to become durable.
const FORWARD_DURABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the workers of one function.
pub fn spawn(
    function: &LoadedFunction,
    queue: &Arc<EventQueue<Job>>,
    metrics: &Arc<FunctionMetrics>,
    sinks: &Sinks,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..function.spec.max_concurrency)
        .map(|n| {
            let worker = Worker {
                function: function.clone(),
                queue: Arc::clone(queue),
                metrics: Arc::clone(metrics),
                sinks: sinks.clone(),
            };
            std::thread::Builder::new()
                .name(format!("fn-{}-{n}", function.spec.name))
                .stack_size(WORKER_STACK)
                .spawn(move || worker.run())
        })
        .collect()
}

/// Sends a receipt when dropped, i.e. after the loop iteration that ran
/// the event, whichever way it ended.
struct Done(super::Receipt);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.done.send(self.0.seq);
    }
}

struct Worker {
    function: LoadedFunction,
    queue: Arc<EventQueue<Job>>,
    metrics: Arc<FunctionMetrics>,
    sinks: Sinks,
}

impl Worker {
    fn run(self) {
        // Instantiate before the first event so that event does not pay for it.
        let mut instance = self.instantiate().ok();
        while let Some(job) = self.queue.pop() {
            let invocation = Invocation {
                request_id: super::request_id::next(),
                event: job.event,
                attempt: 1,
            };
            // Tells a durable trigger's feeder once this event has run, how
            // ever the invocation ends.
            let _done = job.receipt.map(Done);
            if instance.is_none() {
                // The previous instance trapped or never started: a fresh one
                // for this event, or fail the event with the reason.
                match self.instantiate() {
                    Ok(fresh) => instance = Some(fresh),
                    Err(e) => {
                        self.metrics.record_invocation(Duration::ZERO, true, false);
                        self.log_failure(&invocation, &e, Duration::ZERO);
                        continue;
                    }
                }
            }
            let Some(warm) = instance.as_mut() else {
                continue;
            };
            let mut outcome = warm.invoke(&invocation);
            self.await_forwards(&mut outcome);
            if self.report(&invocation, &outcome) {
                instance = None;
            }
        }
    }

    /// An invocation that forwarded records is done only once they are
    /// durable: otherwise a crash could lose output of an event that was
    /// already confirmed as handled.
    fn await_forwards(&self, outcome: &mut Outcome) {
        let (Some(seq), Some(sink), Ok(_)) =
            (outcome.forward_seq, &self.sinks.forward, &outcome.result)
        else {
            return;
        };
        let started = std::time::Instant::now();
        let result = sink.wait_durable(seq, FORWARD_DURABLE_TIMEOUT);
        outcome.duration += started.elapsed();
        let failure = match result {
            Ok(true) => return,
            Ok(false) => format!(
                "forwarded records not durable within {}s (storage too slow or full)",
                FORWARD_DURABLE_TIMEOUT.as_secs()
            ),
            Err(e) => format!("forwarded records not durable: {e}"),
        };
        outcome.result = Err(InvokeError::NotDurable(failure));
    }

    fn instantiate(&self) -> Result<Instance, InvokeError> {
        Instance::new(&self.function, self.sinks.clone(), false, true)
    }

    /// Records and logs an outcome; true if the instance must be replaced.
    fn report(&self, invocation: &Invocation, outcome: &Outcome) -> bool {
        let timed_out = matches!(outcome.result, Err(InvokeError::Timeout(_)));
        self.metrics
            .record_invocation(outcome.duration, outcome.result.is_err(), timed_out);
        let name = &self.function.spec.name;
        if outcome.logs_dropped > 0 {
            log::warn!(
                target: "ledge::invoke",
                "{name} {}: {} log lines over the per-invocation limit were dropped",
                invocation.request_id,
                outcome.logs_dropped
            );
        }
        match &outcome.result {
            Ok(response) => {
                log::debug!(
                    target: "ledge::invoke",
                    "{name} {} ok in {}µs ({} from {}, {} bytes out)",
                    invocation.request_id,
                    outcome.duration.as_micros(),
                    invocation.event.source,
                    invocation.event.subject,
                    response.len()
                );
                false
            }
            Err(e) => {
                self.log_failure(invocation, e, outcome.duration);
                e.poisons_instance()
            }
        }
    }

    fn log_failure(&self, invocation: &Invocation, error: &InvokeError, duration: Duration) {
        log::warn!(
            target: "ledge::invoke",
            "{} {} failed ({}) after {}µs on {} {}: {error}",
            self.function.spec.name,
            invocation.request_id,
            error.kind(),
            duration.as_micros(),
            invocation.event.source,
            invocation.event.subject,
        );
    }
}
