//! Functions by name, for callers that name one rather than trigger it
//! (Lambda's Invoke API, synchronous requests, HTTP routes): which
//! version a name picks now, submitting an asynchronous event to it, and
//! the settings that describe it (ListFunctions, GetFunction).

use std::sync::Arc;

use super::*;
use crate::config::http::HttpRoute;
use crate::config::FunctionSpec;

/// Why an event for a named function was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `not_found`, `disabled` or `unavailable`, as in `sync` replies.
    pub status: &'static str,
    pub message: String,
}

impl Dispatcher {
    /// Queues an event for the function named `function` (as
    /// `submit_sync` names it) on the asynchronous path: a full queue
    /// spills to its stream, failures are retried and end at the failure
    /// destination, like an event from a trigger.
    pub fn submit_async(&self, function: &str, event: Arc<Event>) -> Result<(), Refused> {
        let id = self
            .find(function)
            .ok_or_else(|| self.not_found(function))?;
        self.enabled(id)?;
        let mut submitted = Submitted::default();
        self.submit_one(id, event, false, Overflow::Spill, &mut submitted);
        Ok(())
    }

    /// The function (version) a name picks now: `f:$LATEST` is the draft
    /// itself, `f:alias` and a bare `f` with a default alias go where the
    /// alias sends them (a canary takes its share), `f:7` is version 7.
    pub fn find(&self, function: &str) -> Option<FunctionId> {
        match function.strip_suffix(":$LATEST") {
            Some(name) => self.slots.iter().position(|s| s.name == name),
            None => match self.routes.aliases.get(function) {
                Some(target) => Some(self.pick(*target)).filter(|&id| id < self.slots.len()),
                None => self.slots.iter().position(|s| s.name == function),
            },
        }
    }

    /// The slot and queue of a function that can take an event now.
    pub(super) fn runnable(
        &self,
        function: &str,
    ) -> Result<(&Slot, &Arc<EventQueue<Job>>), Refused> {
        let id = self
            .find(function)
            .ok_or_else(|| self.not_found(function))?;
        self.enabled(id)
    }

    /// The slot and queue of function `id`, unless it is disabled.
    fn enabled(&self, id: FunctionId) -> Result<(&Slot, &Arc<EventQueue<Job>>), Refused> {
        let Some(slot) = self.slots.get(id) else {
            return Err(self.not_found(&id.to_string()));
        };
        let Some(queue) = &slot.queue else {
            slot.metrics
                .dropped_disabled
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refused {
                status: "disabled",
                message: "the function's module failed to load (see the log)".to_owned(),
            });
        };
        Ok((slot, queue))
    }

    fn not_found(&self, function: &str) -> Refused {
        let known: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        Refused {
            status: "not_found",
            message: format!(
                "no function `{function}` on this device (defined: {})",
                known.join(", ")
            ),
        }
    }

    /// The HTTP routes of this config.
    pub fn http_routes(&self) -> &[Arc<HttpRoute>] {
        &self.routes.http
    }

    /// Every function (version) with its settings, and whether it is
    /// enabled (its module loaded).
    pub fn functions(&self) -> impl Iterator<Item = (&Arc<FunctionSpec>, bool)> {
        self.slots.iter().map(|s| (&s.spec, s.queue.is_some()))
    }

    /// A function (version) by id, with whether it is enabled.
    pub fn function(&self, id: FunctionId) -> Option<(&Arc<FunctionSpec>, bool)> {
        self.slots.get(id).map(|s| (&s.spec, s.queue.is_some()))
    }

    /// Where an alias (`f:live`, or `f` with a default alias) sends events.
    pub fn alias(&self, name: &str) -> Option<Target> {
        self.routes.aliases.get(name).copied()
    }
}
