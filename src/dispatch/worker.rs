//! Worker threads: where wasm runs.
//!
//! Each function gets `max_concurrency` OS threads. Each thread keeps one
//! warm instance, takes events from the function's queue, and runs them one
//! at a time. Running wasm on its own threads is what keeps a runaway guest
//! from delaying MQTT keep-alives or other functions: the async reactor never
//! executes guest code, and a slow function only occupies its own workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::queue::{EventQueue, PushError};
use super::Job;
use crate::config::OnFailure;
use crate::metrics::FunctionMetrics;
use crate::runtime::{Instance, Invocation, InvokeError, LoadedFunction, Outcome};
use crate::sinks::{local, OutgoingMessage, Qos, Sinks};
use crate::spool::body::DeadLetterBody;

/// Stack for worker threads. wasmi keeps the guest's stack on the heap, so
/// worker threads need little of their own.
const WORKER_STACK: usize = 256 << 10;
/// How long a worker waits for an invocation's forwards to become durable.
const FORWARD_DURABLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events a function's only worker takes from its queue per wake-up (one
/// lock, no wake-up per event). With several workers each takes fewer, so
/// the others are not left idle.
const BATCH_ONE_WORKER: usize = 64;
const BATCH_PER_WORKER: usize = 4;
/// Invocations after which the publishes held back in a batch are sent on
/// (the first one's wait stays well under a millisecond).
const FLUSH_EVERY: usize = 16;

/// The failure destination of one function, for the dispatcher.
pub(super) fn failure_destination(
    function: &LoadedFunction,
    metrics: &Arc<FunctionMetrics>,
    sinks: &Sinks,
) -> RetryContext {
    RetryContext {
        function: function.clone(),
        metrics: Arc::clone(metrics),
        sinks: sinks.clone(),
    }
}

/// Starts the workers of one function.
pub fn spawn(
    function: &LoadedFunction,
    queue: &Arc<EventQueue<Job>>,
    metrics: &Arc<FunctionMetrics>,
    sinks: &Sinks,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    // The function's publishes get their own share of the link.
    let mut sinks = sinks.clone();
    if let Some(own) = sinks.publish.for_function(&function.spec.name) {
        sinks.publish = own;
    }
    (0..function.spec.max_concurrency)
        .map(|n| {
            let worker = Worker {
                function: function.clone(),
                queue: Arc::clone(queue),
                metrics: Arc::clone(metrics),
                sinks: sinks.clone(),
                runtime: tokio::runtime::Handle::try_current().ok(),
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
    /// The async runtime whose timers run pending retries.
    runtime: Option<tokio::runtime::Handle>,
}

/// A function's failure destination, and what a retry needs of its worker,
/// owned so that a retry can outlive the worker thread that scheduled it.
/// The dispatcher holds one per function too, for throttled events.
pub(super) struct RetryContext {
    function: LoadedFunction,
    metrics: Arc<FunctionMetrics>,
    sinks: Sinks,
}

impl RetryContext {
    /// Hands a finally failed event to the function's `on_failure`
    /// destination. If that fails too, the whole dead letter goes to the
    /// log so nothing is lost silently.
    /// `quiet` skips the log line on success (throttled events are logged,
    /// rate-limited, by the dispatcher).
    pub(super) fn dead_letter(
        &self,
        invocation: &Invocation,
        error: &InvokeError,
        why: &str,
        quiet: bool,
    ) {
        let spec = &self.function.spec;
        let letter = DeadLetterBody::V1 {
            function: spec.name.clone(),
            version: spec.version.clone(),
            request_id: invocation.request_id.clone(),
            error_kind: error.kind().to_owned(),
            error: error.to_string(),
            attempts: invocation.attempt,
            source: invocation.event.source.to_string(),
            subject: invocation.event.subject.clone(),
            payload: invocation.event.payload.to_vec(),
            received_at_ms: invocation.event.received_at_ms,
        };
        let stored = match &spec.failure.on_failure {
            OnFailure::Drop => {
                self.metrics.dead_letters.fetch_add(1, Ordering::Relaxed);
                if quiet {
                    return;
                }
                log::warn!(target: "ledge::invoke", "{} {}: {why}; dropped (on_failure = \"drop\")", spec.name, invocation.request_id);
                return;
            }
            OnFailure::DeadLetter => match &self.sinks.dead_letters {
                Some(sink) => sink
                    .dead_letter(&letter)
                    .map(|seq| format!("dead-letter record {seq}")),
                None => Err("no [upstream] is configured to keep dead letters".to_owned()),
            },
            OnFailure::Topic(topic) => self
                .sinks
                .publish
                .publish(OutgoingMessage {
                    topic: topic.clone(),
                    payload: letter.to_json(None).to_string().into(),
                    qos: Qos::AtLeastOnce,
                    depth: 0,
                    retain: false,
                })
                .map(|()| format!("published to `{topic}`"))
                .map_err(|e| e.to_string()),
        };
        match stored {
            Ok(place) => {
                self.metrics.dead_letters.fetch_add(1, Ordering::Relaxed);
                if quiet {
                    return;
                }
                log::warn!(target: "ledge::invoke", "{} {}: {why}; {place}", spec.name, invocation.request_id);
            }
            Err(e) => {
                self.metrics
                    .dead_letter_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!(
                    target: "ledge::invoke",
                    "{} {}: {why}, and the failure destination refused it ({e}); dead letter: {}",
                    spec.name,
                    invocation.request_id,
                    letter.to_json(None)
                );
            }
        }
    }
}

/// A failed event waiting for its next attempt.
struct PendingRetry {
    job: Option<Job>,
    /// The error of the attempt that failed, for a dead letter.
    last_error: String,
    queue: Arc<EventQueue<Job>>,
    worker: RetryContext,
}

impl PendingRetry {
    /// Queues the next attempt, over the queue's capacity if need be (a
    /// retry is already held in memory; refusing it would lose it). A
    /// closed queue (ledge stopping or reloading) ends the event at the
    /// failure destination, with the reason.
    fn fire(mut self) {
        let Some(job) = self.job.take() else {
            return;
        };
        let (job, reason) = match self.queue.push_over(job) {
            Ok(()) => return,
            Err(PushError::Full(job)) => (job, "not retried: the queue is full"),
            Err(PushError::Closed(job)) => (job, "not retried: ledge is stopping or reloading"),
        };
        let invocation = Invocation {
            request_id: super::request_id::next(),
            event: job.event,
            attempt: job.attempt - 1,
        };
        let error = InvokeError::Throttled(format!("{reason}; last error: {}", self.last_error));
        self.worker.dead_letter(&invocation, &error, reason, false);
        // A durable event stays unconfirmed (its receipt is dropped unsent)
        // and runs again after a restart.
    }
}

impl Drop for PendingRetry {
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            // The runtime shut down before the retry was due.
            log::warn!(
                target: "ledge::invoke",
                "{}: a retry (attempt {}) of an event from {} {} was pending at shutdown and is not run{}",
                self.worker.function.spec.name,
                job.attempt,
                job.event.source,
                job.event.subject,
                if job.receipt.is_some() { "; its durable trigger runs it after the restart" } else { "" }
            );
        }
    }
}

impl Worker {
    fn run(self) {
        // This thread's long invocations yield the CPU to short ones.
        crate::runtime::priority::manage_this_thread();
        // Instantiate before the first event so that event does not pay for it.
        let mut instance = self.instantiate().ok();
        let max = if self.function.spec.max_concurrency == 1 {
            BATCH_ONE_WORKER
        } else {
            BATCH_PER_WORKER
        };
        let mut batch = Vec::with_capacity(max);
        while self.queue.pop_batch(&mut batch, max) {
            // One wake-up of the link's drain task per few invocations, not
            // one per publish (sinks::local); a lone event's publishes leave
            // when it ends.
            local::hold_wakes();
            for (n, job) in batch.drain(..).enumerate() {
                self.run_job(job, &mut instance);
                if n % FLUSH_EVERY == FLUSH_EVERY - 1 {
                    local::flush_wakes();
                }
            }
            local::release_wakes();
        }
    }

    fn run_job(&self, job: Job, instance: &mut Option<Instance>) {
        let Job {
            event,
            receipt,
            attempt,
            reply,
            ..
        } = job;
        let invocation = Invocation {
            request_id: super::request_id::next(),
            event,
            attempt,
        };
        if reply.is_none() {
            let age_ms = crate::event::unix_ms().saturating_sub(invocation.event.received_at_ms);
            self.metrics.event_ages.record(age_ms.saturating_mul(1000));
            let max_age = self.function.spec.failure.max_event_age;
            if attempt == 1 && Duration::from_millis(age_ms) > max_age {
                // Waited too long (spilled during a long overload, or a
                // durable event from before a long outage): like Lambda,
                // it goes to the failure destination instead of running late.
                let why = format!(
                    "not run: the event waited {}s, longer than max_event_age ({}s)",
                    age_ms / 1000,
                    max_age.as_secs()
                );
                let error = InvokeError::Throttled(why.clone());
                self.dead_letter(&invocation, &error, &why);
                drop(receipt.map(Done));
                return;
            }
        }
        let tail = reply.as_ref().is_some_and(|r| r.wants_logs());
        self.metrics.concurrent.fetch_add(1, Ordering::Relaxed);
        let (result, duration, tail) = self.run_once(&invocation, instance, tail);
        self.metrics.concurrent.fetch_sub(1, Ordering::Relaxed);
        if let Some(reply) = reply {
            // Synchronous: the caller gets the outcome and decides.
            reply.outcome(
                &self.function.spec.name,
                &self.function.spec.version,
                &invocation.request_id,
                result,
                duration,
                tail,
            );
            return;
        }
        match result {
            // Tells a durable trigger's feeder the event has run.
            Ok(_) => drop(receipt.map(Done)),
            Err(error) => self.after_failure(invocation, error, receipt),
        }
    }

    /// Runs one attempt: its response or error, how long it took, and
    /// with `tail` the lines it logged and its REPORT line.
    fn run_once(
        &self,
        invocation: &Invocation,
        instance: &mut Option<Instance>,
        tail: bool,
    ) -> (
        Result<Vec<u8>, InvokeError>,
        Duration,
        Option<super::sync::Tail>,
    ) {
        let warm = match instance {
            Some(warm) => warm,
            // The previous instance trapped or never started: a fresh one
            // for this event, or fail the event with the reason.
            None => match self.instantiate() {
                Ok(fresh) => instance.insert(fresh),
                Err(e) => {
                    self.metrics.record_invocation(Duration::ZERO, true, false);
                    self.log_failure(invocation, &e, Duration::ZERO);
                    return (Err(e), Duration::ZERO, None);
                }
            },
        };
        warm.tail_logs(tail);
        let mut outcome = warm.invoke(invocation);
        self.await_forwards(&mut outcome);
        if self.report(invocation, &outcome) {
            *instance = None;
        }
        let tail = tail.then(|| super::sync::Tail {
            report: crate::logging::report_line(
                outcome.duration,
                outcome.fuel_used,
                self.function.spec.memory_limit,
                outcome.memory_bytes,
            ),
            logs: std::mem::take(&mut outcome.logs),
        });
        (outcome.result, outcome.duration, tail)
    }

    /// Retries a failed event after its backoff, or, after the last attempt
    /// (or once it is older than `max_event_age`), hands it to the
    /// function's failure destination.
    fn after_failure(
        &self,
        invocation: Invocation,
        error: InvokeError,
        receipt: Option<super::Receipt>,
    ) {
        let policy = &self.function.spec.failure;
        let next = invocation.attempt + 1;
        let delay = policy.backoff(next);
        let age = Duration::from_millis(
            crate::event::unix_ms().saturating_sub(invocation.event.received_at_ms),
        );
        if !error.is_permanent()
            && invocation.attempt <= policy.retries
            && age + delay <= policy.max_event_age
        {
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            log::info!(
                target: "ledge::invoke",
                "{} {}: attempt {} of {} failed; retry in {}ms",
                self.function.spec.name,
                invocation.request_id,
                invocation.attempt,
                policy.retries + 1,
                delay.as_millis()
            );
            let mut job = Job::new(invocation.event);
            job.receipt = receipt;
            job.attempt = next;
            self.schedule_retry(job, delay, error.to_string());
            return;
        }
        let why = if error.is_permanent() {
            "not retried: the function reported a permanent failure".to_owned()
        } else if invocation.attempt <= policy.retries {
            format!(
                "not retried: the event is {}s old and max_event_age is {}s",
                age.as_secs(),
                policy.max_event_age.as_secs()
            )
        } else {
            format!("failed {} attempts", invocation.attempt)
        };
        self.dead_letter(&invocation, &error, &why);
        drop(receipt.map(Done));
    }

    /// Puts the job back on the function's queue after `delay`, on the
    /// async runtime's timer when there is one (so no thread sleeps per
    /// pending retry).
    fn schedule_retry(&self, job: Job, delay: Duration, last_error: String) {
        let retry = PendingRetry {
            job: Some(job),
            last_error,
            queue: Arc::clone(&self.queue),
            worker: self.retry_context(),
        };
        match &self.runtime {
            Some(handle) => {
                handle.spawn(async move {
                    tokio::time::sleep(delay).await;
                    retry.fire();
                });
            }
            None => {
                let _ = std::thread::Builder::new()
                    .name("ledge-retry".to_owned())
                    .spawn(move || {
                        std::thread::sleep(delay);
                        retry.fire();
                    });
            }
        }
    }

    fn retry_context(&self) -> RetryContext {
        RetryContext {
            function: self.function.clone(),
            metrics: Arc::clone(&self.metrics),
            sinks: self.sinks.clone(),
        }
    }

    fn dead_letter(&self, invocation: &Invocation, error: &InvokeError, why: &str) {
        self.retry_context()
            .dead_letter(invocation, error, why, false);
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
        // Nothing held back waits on the disk.
        local::flush_wakes();
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
        if outcome.publishes_throttled > 0 {
            self.metrics
                .publish_throttled
                .fetch_add(u64::from(outcome.publishes_throttled), Ordering::Relaxed);
        }
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
                    "{name} {} ok in {}µs ({} from {}, {} bytes out); {}",
                    invocation.request_id,
                    outcome.duration.as_micros(),
                    invocation.event.source,
                    invocation.event.subject,
                    response.len(),
                    crate::logging::report_line(
                        outcome.duration,
                        outcome.fuel_used,
                        self.function.spec.memory_limit,
                        outcome.memory_bytes,
                    )
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
