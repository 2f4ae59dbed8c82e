//! Best-effort publishing to the local broker: from worker threads to the
//! task that owns the link, in batches, fairly between functions.
//!
//! Each function gets its own bounded outbox (and ledge's own publishes —
//! sensors, replies — share one more). A worker pushes without a system
//! call unless the link's drain task is asleep; the drain task takes up to
//! `TURN` messages from each outbox in turn, so a function publishing in a
//! loop cannot take the link from the others. A full outbox makes the
//! publishing function wait (until its invocation's deadline at most):
//! backpressure, not loss. When the broker is not connected a publish is
//! refused at once (the guest sees `ERR_UNAVAILABLE`): durable delivery is
//! the spool's job, not this sink's.
//!
//! Waking the drain task costs a system call on both threads. A worker
//! running a batch of events holds its wake-ups ([`hold_wakes`]) and gives
//! them once every few invocations, at the end of the batch, and between
//! fuel slices of a long invocation ([`flush_wakes`]), so under load one
//! wake-up carries many messages and at low rates nothing waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::{OutgoingMessage, PublishRefused, PublishSink};

/// Messages one outbox holds before its producers wait.
const OUTBOX_CAPACITY: usize = 4096;
/// Messages the drain task takes from one outbox before the next one's turn.
const TURN: usize = 256;

thread_local! {
    /// Set while this thread holds its wake-ups back (see the module doc).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// The drain task this thread owes a wake-up, if any.
    static OWED: RefCell<Option<Arc<Notify>>> = const { RefCell::new(None) };
}

/// This thread's publishes stop waking the drain task until
/// [`release_wakes`]; [`flush_wakes`] gives the wake-up owed so far.
pub fn hold_wakes() {
    HOLDING.set(true);
}

/// Gives the owed wake-up, and wakes at once again from now on.
pub fn release_wakes() {
    HOLDING.set(false);
    flush_wakes();
}

/// Wakes the drain task if this thread's publishes owe it a wake-up.
pub fn flush_wakes() {
    if let Some(ready) = OWED.with(|owed| owed.borrow_mut().take()) {
        ready.notify_one();
    }
}

/// Wakes the drain task behind `ready` now, or later if this thread holds
/// its wake-ups.
fn wake(ready: &Arc<Notify>) {
    if !HOLDING.get() {
        ready.notify_one();
        return;
    }
    let earlier = OWED.with(|owed| {
        let mut owed = owed.borrow_mut();
        match owed.as_ref() {
            Some(pending) if Arc::ptr_eq(pending, ready) => None,
            _ => owed.replace(Arc::clone(ready)),
        }
    });
    // A second link (external broker and uplink) owes its own wake-up.
    if let Some(earlier) = earlier {
        earlier.notify_one();
    }
}

/// Is the link to the local broker up? Shared with whoever drives it.
#[derive(Debug, Default)]
pub struct LinkState {
    /// True between a CONNACK and the next connection error (always true
    /// with the embedded broker).
    pub connected: AtomicBool,
    /// True once ledge receives every message its triggers name.
    pub subscribed: AtomicBool,
    /// The external broker's Receive Maximum: how many QoS 1 publishes
    /// ledge may have unacknowledged (0: none announced, or embedded).
    pub receive_maximum: AtomicU32,
}

/// Every outbox of a link, and the signal that wakes its drain task.
pub struct Outboxes {
    /// Held strongly, so messages outlive their producer (a reload ends a
    /// function's workers; what they published still goes out). An outbox
    /// leaves the list once it is empty and only the list holds it.
    list: Mutex<Vec<Arc<Outbox>>>,
    /// Notified when an outbox goes from empty to not empty.
    ready: Arc<Notify>,
    link: Arc<LinkState>,
    closed: AtomicBool,
}

/// One producer's queue of messages for the link.
pub struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when the drain task made room.
    space: Condvar,
    ready: Arc<Notify>,
    link: Arc<LinkState>,
}

struct OutboxState {
    items: VecDeque<OutgoingMessage>,
    /// Producers waiting in `publish_until`.
    waiting: usize,
    closed: bool,
}

impl Outboxes {
    pub fn new(link: Arc<LinkState>) -> Arc<Self> {
        Arc::new(Self {
            list: Mutex::new(Vec::new()),
            ready: Arc::new(Notify::new()),
            link,
            closed: AtomicBool::new(false),
        })
    }

    /// A new outbox; it is drained as long as someone holds it or it has
    /// messages left.
    pub fn open(&self) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(OutboxState {
                items: VecDeque::new(),
                waiting: 0,
                closed: self.closed.load(Ordering::Acquire),
            }),
            space: Condvar::new(),
            ready: Arc::clone(&self.ready),
            link: Arc::clone(&self.link),
        });
        lock(&self.list).push(Arc::clone(&outbox));
        outbox
    }

    pub fn link(&self) -> &Arc<LinkState> {
        &self.link
    }

    /// Takes the next round of messages (up to `TURN` per outbox) into
    /// `batch`, waiting until there is one. Returns false once every
    /// outbox is closed or dropped and all are empty.
    pub async fn next_round(&self, batch: &mut Vec<OutgoingMessage>) -> bool {
        loop {
            // Register interest before looking, so a push between the look
            // and the wait is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (open, took) = self.take_round(batch);
            if took {
                return true;
            }
            if !open {
                return false;
            }
            notified.await;
        }
    }

    /// One pass over the outboxes: (any still open, anything taken).
    fn take_round(&self, batch: &mut Vec<OutgoingMessage>) -> (bool, bool) {
        let outboxes: Vec<Arc<Outbox>> = {
            let mut list = lock(&self.list);
            // Producers gone and nothing left to send.
            list.retain(|outbox| {
                Arc::strong_count(outbox) > 1 || !lock(&outbox.state).items.is_empty()
            });
            list.clone()
        };
        let mut open = false;
        let before = batch.len();
        for outbox in &outboxes {
            let mut state = lock(&outbox.state);
            let n = state.items.len().min(TURN);
            batch.extend(state.items.drain(..n));
            // Held only by the list and this snapshot: its producers are gone.
            let abandoned = Arc::strong_count(outbox) <= 2;
            open |= !(state.closed || abandoned) || !state.items.is_empty();
            let wake = n > 0 && state.waiting > 0;
            drop(state);
            if wake {
                outbox.space.notify_all();
            }
        }
        (open, batch.len() > before)
    }

    /// No more publishes: producers are refused, the drain task finishes
    /// what is queued and then ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for outbox in lock(&self.list).iter() {
            lock(&outbox.state).closed = true;
            outbox.space.notify_all();
        }
        self.ready.notify_one();
    }
}

impl Outbox {
    fn push(
        &self,
        message: OutgoingMessage,
        deadline: Option<Instant>,
    ) -> Result<(), PublishRefused> {
        if !self.link.connected.load(Ordering::Acquire) {
            return Err(PublishRefused::NotConnected);
        }
        let mut state = lock(&self.state);
        while state.items.len() >= OUTBOX_CAPACITY && !state.closed {
            // Only the drain task makes room: it must not be waiting for
            // a wake-up this thread holds back.
            flush_wakes();
            let Some(left) = deadline.and_then(|d| d.checked_duration_since(Instant::now())) else {
                return Err(PublishRefused::Backlog);
            };
            state.waiting += 1;
            state = self
                .space
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
            state.waiting -= 1;
        }
        if state.closed {
            return Err(PublishRefused::NotConnected);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(message);
        drop(state);
        if was_empty {
            wake(&self.ready);
        }
        Ok(())
    }
}

/// A producer's handle: publishes go to its own outbox.
pub struct LocalPublisher {
    outbox: Arc<Outbox>,
    outboxes: Arc<Outboxes>,
}

impl LocalPublisher {
    pub fn new(outboxes: &Arc<Outboxes>) -> Self {
        Self {
            outbox: outboxes.open(),
            outboxes: Arc::clone(outboxes),
        }
    }
}

impl PublishSink for LocalPublisher {
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused> {
        self.outbox.push(message, None)
    }

    fn publish_until(
        &self,
        message: OutgoingMessage,
        deadline: Option<Instant>,
    ) -> Result<(), PublishRefused> {
        self.outbox.push(message, deadline)
    }

    fn for_function(&self, _function: &str) -> Option<Arc<dyn PublishSink>> {
        Some(Arc::new(LocalPublisher::new(&self.outboxes)))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Qos;
    use std::time::Duration;

    fn message(n: usize) -> OutgoingMessage {
        OutgoingMessage {
            topic: format!("t/{n}"),
            payload: bytes::Bytes::new(),
            qos: Qos::AtMostOnce,
            depth: 0,
            retain: false,
        }
    }

    fn connected() -> Arc<Outboxes> {
        let link = Arc::new(LinkState::default());
        link.connected.store(true, Ordering::Release);
        Outboxes::new(link)
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn rounds_take_turns_between_outboxes() {
        let outboxes = connected();
        let storm = LocalPublisher::new(&outboxes);
        let quiet = LocalPublisher::new(&outboxes);
        for n in 0..(TURN * 3) {
            storm.publish(message(n)).unwrap();
        }
        quiet.publish(message(9999)).unwrap();
        let mut batch = Vec::new();
        assert!(block_on(outboxes.next_round(&mut batch)));
        assert_eq!(batch.len(), TURN + 1, "one turn each");
        assert!(batch.iter().any(|m| m.topic == "t/9999"));
    }

    #[test]
    fn a_full_outbox_waits_until_its_deadline_then_refuses() {
        let outboxes = connected();
        let publisher = LocalPublisher::new(&outboxes);
        for n in 0..OUTBOX_CAPACITY {
            publisher.publish(message(n)).unwrap();
        }
        assert_eq!(publisher.publish(message(0)), Err(PublishRefused::Backlog));
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(50));
        assert_eq!(
            publisher.publish_until(message(0), deadline),
            Err(PublishRefused::Backlog)
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_waiting_publisher_goes_on_once_the_drain_makes_room() {
        let outboxes = connected();
        let publisher = Arc::new(LocalPublisher::new(&outboxes));
        for n in 0..OUTBOX_CAPACITY {
            publisher.publish(message(n)).unwrap();
        }
        let waiter = {
            let publisher = Arc::clone(&publisher);
            std::thread::spawn(move || {
                publisher.publish_until(message(1), Some(Instant::now() + Duration::from_secs(30)))
            })
        };
        let mut batch = Vec::new();
        block_on(outboxes.next_round(&mut batch));
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn a_disconnected_link_refuses_at_once() {
        let outboxes = Outboxes::new(Arc::new(LinkState::default()));
        let publisher = LocalPublisher::new(&outboxes);
        assert_eq!(
            publisher.publish(message(0)),
            Err(PublishRefused::NotConnected)
        );
    }

    #[test]
    fn closing_drains_what_is_queued_then_ends() {
        let outboxes = connected();
        let publisher = LocalPublisher::new(&outboxes);
        publisher.publish(message(1)).unwrap();
        outboxes.close();
        assert_eq!(
            publisher.publish(message(2)),
            Err(PublishRefused::NotConnected)
        );
        let mut batch = Vec::new();
        assert!(block_on(outboxes.next_round(&mut batch)));
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert!(!block_on(outboxes.next_round(&mut batch)));
    }
}
