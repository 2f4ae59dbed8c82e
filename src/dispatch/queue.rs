//! A function's event queue: bounded, multi-producer, multi-consumer, and
//! cheap at high rates.
//!
//! Producers (the MQTT link, sensors, schedules, feeders) never block: a
//! full queue refuses the event and the caller spills or holds its source
//! back. Consumers (the function's worker threads) take events in batches,
//! one lock per batch, and block only when the queue is empty; a producer
//! wakes a consumer only if one is asleep, so a busy queue costs no system
//! call per event. When a refused producer is waiting for room, the first
//! batch taken after that signals `room`.
//!
//! The bound is a count and a number of bytes (an item's [`Weighted::weight`]),
//! whichever is reached first: a queue of small readings may hold thousands,
//! one of 256 KiB payloads a few dozen.
//!
//! Closing lets workers drain what is queued; abandoning makes them stop at
//! once and reports how many events were left.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

/// What an item costs a queue's byte bound.
pub trait Weighted {
    fn weight(&self) -> usize;
}

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
    /// Signalled when an item arrives (and a consumer sleeps) or the queue
    /// closes.
    available: Condvar,
    capacity: usize,
    max_bytes: usize,
    /// Set when a push was refused for lack of room; cleared (and `room`
    /// notified) by the next batch a consumer takes.
    wanted: AtomicBool,
    /// Shared by every queue of a node: "some queue has room again".
    room: Arc<Notify>,
}

struct State<T> {
    items: VecDeque<T>,
    /// Sum of the items' weights.
    bytes: usize,
    /// Consumers blocked in `pop_batch`.
    sleeping: usize,
    /// No more pushes; pops drain what is left.
    closed: bool,
    /// Pops return nothing even if items are left.
    abandoned: bool,
}

impl<T: Weighted> EventQueue<T> {
    pub fn new(capacity: usize, max_bytes: usize, room: Arc<Notify>) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                bytes: 0,
                sleeping: 0,
                closed: false,
                abandoned: false,
            }),
            available: Condvar::new(),
            capacity,
            max_bytes,
            wanted: AtomicBool::new(false),
            room,
        }
    }

    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        let state = self.lock();
        if state.closed {
            return Err(PushError::Closed(item));
        }
        if self.over(&state, item.weight()) {
            drop(state);
            self.wanted.store(true, Ordering::Release);
            return Err(PushError::Full(item));
        }
        self.enqueue(state, item);
        Ok(())
    }

    /// True if adding `weight` would pass either bound (an empty queue
    /// takes any one item, however heavy).
    fn over(&self, state: &State<T>, weight: usize) -> bool {
        !state.items.is_empty()
            && (state.items.len() >= self.capacity || state.bytes + weight > self.max_bytes)
    }

    /// Queues an item even over capacity (the caller holds its source back
    /// until there is room); refuses only when closed.
    pub fn push_over(&self, item: T) -> Result<(), PushError<T>> {
        let state = self.lock();
        if state.closed {
            return Err(PushError::Closed(item));
        }
        self.wanted.store(true, Ordering::Release);
        self.enqueue(state, item);
        Ok(())
    }

    fn enqueue(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        state.bytes += item.weight();
        state.items.push_back(item);
        let wake = state.sleeping > 0;
        drop(state);
        if wake {
            self.available.notify_one();
        }
    }

    /// True if a push of a light item would be refused for lack of room.
    pub fn is_full(&self) -> bool {
        self.over(&self.lock(), 0)
    }

    /// Waits for items and moves up to `max` of them into `batch` (which
    /// the caller passes empty); false once closed and drained, or
    /// abandoned.
    pub fn pop_batch(&self, batch: &mut Vec<T>, max: usize) -> bool {
        let mut state = self.lock();
        loop {
            if state.abandoned {
                return false;
            }
            if !state.items.is_empty() {
                let n = state.items.len().min(max.max(1));
                let taken: usize = state.items.iter().take(n).map(Weighted::weight).sum();
                state.bytes -= taken;
                batch.extend(state.items.drain(..n));
                let more = !state.items.is_empty() && state.sleeping > 0;
                drop(state);
                if more {
                    // Another worker of this function can start on the rest.
                    self.available.notify_one();
                }
                if self.wanted.swap(false, Ordering::AcqRel) {
                    self.room.notify_waiters();
                }
                return true;
            }
            if state.closed {
                return false;
            }
            state.sleeping += 1;
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.sleeping -= 1;
        }
    }

    /// Waits for the next item; `None` once closed and drained, or abandoned.
    pub fn pop(&self) -> Option<T> {
        let mut batch = Vec::with_capacity(1);
        self.pop_batch(&mut batch, 1);
        batch.pop()
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
        state.bytes = 0;
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

    impl Weighted for i32 {
        fn weight(&self) -> usize {
            (*self).max(0) as usize
        }
    }

    impl Weighted for &str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    fn queue<T: Weighted>(capacity: usize) -> EventQueue<T> {
        EventQueue::new(capacity, usize::MAX, Arc::new(Notify::new()))
    }

    #[test]
    fn the_byte_bound_refuses_heavy_items_but_never_the_first() {
        let queue = EventQueue::new(100, 10, Arc::new(Notify::new()));
        assert_eq!(queue.push(50), Ok(()), "an empty queue takes anything");
        assert_eq!(queue.push(1), Err(PushError::Full(1)));
        assert_eq!(queue.pop(), Some(50));
        assert_eq!(queue.push(6), Ok(()));
        assert_eq!(queue.push(4), Ok(()));
        assert_eq!(queue.push(1), Err(PushError::Full(1)));
        let mut batch = Vec::new();
        queue.pop_batch(&mut batch, 1);
        assert_eq!(queue.push(1), Ok(()), "taking frees its bytes");
    }

    #[test]
    fn a_full_queue_refuses_and_returns_the_item() {
        let queue = queue(2);
        assert_eq!(queue.push(1), Ok(()));
        assert_eq!(queue.push(2), Ok(()));
        assert_eq!(queue.push(3), Err(PushError::Full(3)));
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.push(3), Ok(()));
    }

    #[test]
    fn push_over_ignores_capacity_but_not_closing() {
        let queue = queue(1);
        queue.push(1).unwrap();
        assert_eq!(queue.push_over(2), Ok(()));
        assert_eq!(queue.len(), 2);
        queue.close();
        assert_eq!(queue.push_over(3), Err(PushError::Closed(3)));
    }

    #[test]
    fn a_batch_takes_up_to_max_in_order() {
        let queue = queue(10);
        for i in 0..5 {
            queue.push(i).unwrap();
        }
        let mut batch = Vec::new();
        assert!(queue.pop_batch(&mut batch, 3));
        assert_eq!(batch, vec![0, 1, 2]);
        batch.clear();
        assert!(queue.pop_batch(&mut batch, 3));
        assert_eq!(batch, vec![3, 4]);
    }

    #[test]
    fn taking_a_batch_after_a_refusal_signals_room() {
        let room = Arc::new(Notify::new());
        let queue = EventQueue::new(1, usize::MAX, Arc::clone(&room));
        queue.push(1).unwrap();
        assert!(queue.push(2).is_err());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let waiter = room.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            let mut batch = Vec::new();
            queue.pop_batch(&mut batch, 8);
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("room was signalled");
        });
    }

    #[test]
    fn closing_lets_consumers_drain_then_stop() {
        let queue = queue(4);
        queue.push("a").unwrap();
        queue.close();
        assert_eq!(queue.push("b"), Err(PushError::Closed("b")));
        assert_eq!(queue.pop(), Some("a"));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn abandoning_reports_what_was_left() {
        let queue = queue(4);
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.abandon(), 2);
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn a_blocked_consumer_wakes_on_push_and_on_close() {
        let queue = Arc::new(queue(4));
        let consumer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut batch = Vec::new();
                while queue.pop_batch(&mut batch, 2) {
                    seen.append(&mut batch);
                }
                seen
            })
        };
        for i in 0..100 {
            while queue.push(i).is_err() {
                std::thread::yield_now();
            }
        }
        queue.close();
        assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
