//! Where every long-lived source submits: the current dispatcher, swapped
//! atomically by a reload.

use std::sync::{Arc, RwLock};

use super::{sync, Dispatcher, Overflow, Refused, Submitted};
use crate::event::Event;

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
    pub fn submit(&self, event: Event, overflow: Overflow) -> Submitted {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .submit(event, overflow)
    }

    /// Queues an asynchronous event for a named function through the
    /// current dispatcher (see [`Dispatcher::submit_async`]).
    pub fn submit_async(&self, function: &str, event: Event) -> Result<(), Refused> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .submit_async(function, Arc::new(event))
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
