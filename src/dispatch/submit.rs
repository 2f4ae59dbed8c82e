//! Submitting events: routing one to every function it triggers, and what
//! happens when a queue is full (hold the source back, spill into the
//! function's stream, or — only if that is refused too — the failure
//! destination); synchronous requests, which are refused rather than
//! spilled.

use std::sync::Arc;

use super::*;

impl Dispatcher {
    /// Routes an event to every function whose trigger matches it. Events
    /// for durable triggers go to the function's stream; the returned
    /// records must be durable before the event's source acknowledges it.
    /// A full queue is handled as `overflow` says (see the module docs).
    pub fn submit(&self, event: Event, overflow: Overflow) -> Submitted {
        let mut targets: [(FunctionId, bool); 8] = [(0, false); 8];
        let mut count = 0;
        let mut more: Vec<(FunctionId, bool)> = Vec::new();
        let mut add = |target: &Target, durable: bool| {
            // A durable event goes to the stream of the alias's main
            // version; its feeder splits the stream with the canary.
            let function = if durable {
                target.function
            } else {
                self.pick(*target)
            };
            if let Some(existing) = targets[..count]
                .iter_mut()
                .chain(more.iter_mut())
                .find(|(f, _)| *f == function)
            {
                existing.1 |= durable;
            } else if count < targets.len() {
                targets[count] = (function, durable);
                count += 1;
            } else {
                more.push((function, durable));
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
            EventSource::Schedule | EventSource::Invoke | EventSource::Http => {}
        }
        let mut submitted = Submitted::default();
        if count == 0 {
            return submitted;
        }
        let event = Arc::new(event);
        for &(function, durable) in targets[..count].iter().chain(more.iter()) {
            self.submit_one(
                function,
                Arc::clone(&event),
                durable,
                overflow,
                &mut submitted,
            );
        }
        submitted
    }

    /// Delivers an event to one function (a schedule's), through its stream
    /// if `durable`.
    pub fn submit_routed(
        &self,
        function: FunctionId,
        event: Arc<Event>,
        durable: bool,
    ) -> Option<Durable> {
        let mut submitted = Submitted::default();
        self.submit_one(function, event, durable, Overflow::Spill, &mut submitted);
        submitted.waits.pop()
    }

    pub(super) fn submit_one(
        &self,
        function: FunctionId,
        event: Arc<Event>,
        durable: bool,
        overflow: Overflow,
        submitted: &mut Submitted,
    ) {
        let Some(slot) = self.slots.get(function) else {
            return;
        };
        let Some(queue) = &slot.queue else {
            slot.metrics
                .dropped_disabled
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if event.depth > crate::event::MAX_CHAIN {
            self.stop_loop(slot, &event);
            return;
        }
        if durable {
            if let Some(stream) = &slot.stream {
                match durable::append(stream, &event) {
                    Ok(seq) => {
                        submitted.waits.push(Durable {
                            spool: Arc::clone(stream),
                            seq,
                        });
                        return;
                    }
                    Err(e) => {
                        log::warn!(target: "ledge::dispatch", "{}: durable trigger could not store an event ({e}); running it from memory", slot.name)
                    }
                }
            }
        }
        // Spilled events are waiting in the stream: new ones queue behind
        // them, so a burst runs roughly in arrival order.
        if overflow == Overflow::Spill && slot.spilling.load(Ordering::Acquire) {
            slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
            if let Err(event) = self.spill(slot, event) {
                self.overflowed(slot, event, "its stream refused it");
            }
            return;
        }
        let job = Job::new(event);
        let job = match queue.push(job) {
            Ok(()) => return,
            Err(PushError::Closed(_)) => return,
            Err(PushError::Full(job)) => job,
        };
        slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
        match overflow {
            Overflow::HoldBack => {
                if queue.push_over(job).is_ok() {
                    submitted.hold_back = true;
                }
            }
            Overflow::Spill => {
                if let Err(event) = self.spill(slot, job.event) {
                    self.overflowed(slot, event, "the queue is full and the stream refused it");
                }
            }
        }
    }

    /// Appends an event to the function's stream for its feeder; hands the
    /// event back if there is no stream or it refused.
    fn spill(&self, slot: &Slot, event: Arc<Event>) -> Result<(), Arc<Event>> {
        let Some(stream) = &slot.spill else {
            return Err(event);
        };
        match durable::append(stream, &event) {
            Ok(_) => {
                slot.spilling.store(true, Ordering::Release);
                slot.metrics.spilled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => Err(event),
        }
    }

    /// An event at the end of a chain of `MAX_CHAIN` function publishes: a
    /// recursive loop, stopped here (counted, logged at most every 10 s).
    fn stop_loop(&self, slot: &Slot, event: &Event) {
        let stopped = slot.metrics.loops_stopped.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        let last = slot.last_loop_log_ms.load(Ordering::Relaxed);
        if last == 0 || now_ms.saturating_sub(last) >= OVERFLOW_LOG_EVERY_MS {
            slot.last_loop_log_ms.store(now_ms, Ordering::Relaxed);
            log::warn!(
                target: "ledge::dispatch",
                "{}: not run: the event on `{}` was published by functions {} times in a row, a recursive loop (a function publishing to its own trigger, or functions feeding each other); {stopped} such events stopped so far",
                slot.name,
                crate::logging::shorten(&event.subject, 128),
                crate::event::MAX_CHAIN,
            );
        }
    }

    /// An event that could be neither queued nor spilled: to the failure
    /// destination, logged in summary.
    fn overflowed(&self, slot: &Slot, event: Arc<Event>, why: &str) {
        slot.unlogged_overflows.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        let last = slot.last_overflow_log_ms.load(Ordering::Relaxed);
        if last == 0 || now_ms.saturating_sub(last) >= OVERFLOW_LOG_EVERY_MS {
            slot.last_overflow_log_ms.store(now_ms, Ordering::Relaxed);
            let count = slot.unlogged_overflows.swap(0, Ordering::Relaxed);
            log::warn!(
                target: "ledge::dispatch",
                "{}: {count} events not run: {why} (first: {} {}); they go to the failure destination",
                slot.name,
                event.source,
                crate::logging::shorten(&event.subject, 128),
            );
        }
        let Some(destination) = slot.failure.get() else {
            return;
        };
        let invocation = crate::runtime::Invocation {
            request_id: request_id::next(),
            event,
            attempt: 0,
        };
        let error = crate::runtime::InvokeError::Throttled(format!("not queued: {why}"));
        destination.dead_letter(&invocation, &error, why, true);
    }

    /// Queues a synchronous request for the function named `function`, or
    /// answers at once if it cannot run: unknown, disabled, or its queue
    /// full (throttled, like Lambda's 429).
    pub fn submit_sync(&self, function: &str, event: Arc<Event>, reply: sync::Reply) {
        let (slot, queue) = match self.runnable(function) {
            Ok(found) => found,
            Err(refused) => {
                reply.refuse(function, refused.status, &refused.message);
                return;
            }
        };
        let mut job = Job::new(event);
        job.reply = Some(Box::new(reply));
        let (job, status, error) = match queue.push(job) {
            Ok(()) => return,
            Err(PushError::Full(job)) => {
                slot.metrics.throttled.fetch_add(1, Ordering::Relaxed);
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
}
