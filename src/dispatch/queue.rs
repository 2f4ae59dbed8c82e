//! A function's event queue: bounded, multi-producer, multi-consumer.
//!
//! Producers (the MQTT link, sensors, schedules) never block: a full queue
//! refuses the event and the caller counts it as throttled. Consumers (the
//! function's worker threads) block until an event arrives or the queue is
//! closed. Closing lets workers drain what is queued; abandoning makes them
//! stop at once and reports how many events were left.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Why `push` refused an item.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The queue holds `capacity` items already.
    Full(T),
    /// The queue is shutting down.
    Closed(T),
}

pub struct EventQueue<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the queue closes.
    available: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// No more pushes; pops drain what is left.
    closed: bool,
    /// Pops return `None` even if items are left.
    abandoned: bool,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
                abandoned: false,
            }),
            available: Condvar::new(),
            capacity,
        }
    }

    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(PushError::Full(item));
        }
        state.items.push_back(item);
        drop(state);
        self.available.notify_one();
        Ok(())
    }

    /// Waits for the next item; `None` once closed and drained, or abandoned.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if state.abandoned {
                return None;
            }
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses further pushes; consumers drain what is queued, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
    }

    /// Stops consumers now; returns how many items were left behind.
    pub fn abandon(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        state.abandoned = true;
        let left = state.items.len();
        state.items.clear();
        drop(state);
        self.available.notify_all();
        left
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking worker must not take the queue down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_queue_refuses_and_returns_the_item() {
        let queue = EventQueue::new(2);
        assert_eq!(queue.push(1), Ok(()));
        assert_eq!(queue.push(2), Ok(()));
        assert_eq!(queue.push(3), Err(PushError::Full(3)));
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.push(3), Ok(()));
    }

    #[test]
    fn closing_lets_consumers_drain_then_stop() {
        let queue = EventQueue::new(4);
        queue.push("a").unwrap();
        queue.close();
        assert_eq!(queue.push("b"), Err(PushError::Closed("b")));
        assert_eq!(queue.pop(), Some("a"));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn abandoning_reports_what_was_left() {
        let queue = EventQueue::new(4);
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.abandon(), 2);
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn a_blocked_consumer_wakes_on_push_and_on_close() {
        let queue = Arc::new(EventQueue::new(4));
        let consumer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(item) = queue.pop() {
                    seen.push(item);
                }
                seen
            })
        };
        for i in 0..3 {
            while queue.push(i).is_err() {
                std::thread::yield_now();
            }
        }
        queue.close();
        assert_eq!(consumer.join().unwrap(), vec![0, 1, 2]);
    }
}
