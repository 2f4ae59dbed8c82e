//! One client's session: its subscriptions, the messages waiting for it,
//! and the QoS 1 messages it has not acknowledged yet.
//!
//! A session outlives its connection when the client asked for a
//! persistent one (`clean_session = false`): messages of QoS 1 keep
//! queueing (up to the per-client limits) and unacknowledged ones are sent
//! again, with DUP set, when the client comes back. Sessions live in memory
//! only; a broker restart forgets them, as rumqttd's did.
//!
//! The state here does no I/O: the router queues into it, the connection
//! task takes from it and writes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rumqttc::QoS;
use tokio::sync::Notify;

use super::message::Message;
use crate::topic::TopicFilter;

/// How many messages one session may hold, queued or in flight.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// QoS 1 messages sent and not yet acknowledged.
    pub max_inflight: usize,
    /// Messages waiting to be sent, and their bytes.
    pub max_queued: usize,
    pub max_queued_bytes: usize,
}

/// A session, shared by the router (which queues) and the connection that
/// owns it (which sends).
pub struct Session {
    pub client_id: String,
    state: Mutex<SessionState>,
    /// Wakes the owning connection: a message was queued, or the session
    /// was taken over by a newer connection.
    pub wake: Notify,
    /// Messages dropped because this client's queue was full.
    pub dropped: AtomicU64,
}

pub struct SessionState {
    pub subscriptions: Vec<(TopicFilter, QoS)>,
    /// Waiting to be written, with the QoS each is delivered at.
    queue: VecDeque<(Arc<Message>, QoS)>,
    queued_bytes: usize,
    /// Sent at QoS 1 and not acknowledged, in the order they were sent.
    inflight: VecDeque<(u16, Arc<Message>)>,
    next_pkid: u16,
    pub persistent: bool,
    /// The connection that owns the session (a number the listener hands
    /// out); `None` while the client is away.
    pub owner: Option<u64>,
}

/// What `take_next` found for the connection to write.
pub enum Outgoing {
    /// A QoS 0 message, or a QoS 1 message with its packet id.
    Publish {
        message: Arc<Message>,
        qos: QoS,
        pkid: u16,
    },
}

impl Session {
    pub fn new(client_id: String, persistent: bool) -> Self {
        Self {
            client_id,
            state: Mutex::new(SessionState {
                subscriptions: Vec::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: VecDeque::new(),
                next_pkid: 1,
                persistent,
                owner: None,
            }),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        // A panic while holding it cannot leave the queue half-updated in a
        // way that matters more than losing the client.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest QoS among this session's subscriptions matching `topic`,
    /// if any: one delivery per message, however many filters match.
    pub fn matching_qos(state: &SessionState, topic: &str) -> Option<QoS> {
        let mut best: Option<QoS> = None;
        for (filter, qos) in &state.subscriptions {
            if filter.matches(topic) && best.is_none_or(|b| (*qos as u8) > (b as u8)) {
                best = Some(*qos);
            }
        }
        best
    }

    /// Queues a message at `qos`; false if it was dropped (queue full, or a
    /// QoS 0 message for a client that is away).
    pub fn enqueue(&self, message: Arc<Message>, qos: QoS, limits: &QueueLimits) -> bool {
        let mut state = self.lock();
        if state.owner.is_none() && (qos == QoS::AtMostOnce || !state.persistent) {
            return false;
        }
        let weight = message.weight();
        if state.queue.len() >= limits.max_queued
            || state.queued_bytes + weight > limits.max_queued_bytes
        {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let was_empty = state.queue.is_empty();
        state.queued_bytes += weight;
        state.queue.push_back((message, qos));
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }
}

impl SessionState {
    /// The next message the connection may write now: QoS 0 ones always,
    /// QoS 1 ones while fewer than `max_inflight` await acknowledgement.
    pub fn take_next(&mut self, limits: &QueueLimits) -> Option<Outgoing> {
        let (_, qos) = self.queue.front()?;
        if *qos != QoS::AtMostOnce && self.inflight.len() >= limits.max_inflight {
            return None;
        }
        let (message, qos) = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(message.weight());
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            let pkid = self.allocate_pkid();
            self.inflight.push_back((pkid, Arc::clone(&message)));
            pkid
        };
        Some(Outgoing::Publish { message, qos, pkid })
    }

    /// Releases an acknowledged message; false if `pkid` was not in flight.
    pub fn acknowledge(&mut self, pkid: u16) -> bool {
        match self.inflight.iter().position(|(p, _)| *p == pkid) {
            Some(index) => {
                self.inflight.remove(index);
                true
            }
            None => false,
        }
    }

    /// Messages sent before a reconnect and never acknowledged, to send
    /// again (with DUP set) in their original order.
    pub fn unacknowledged(&self) -> Vec<(u16, Arc<Message>)> {
        self.inflight.iter().cloned().collect()
    }

    /// Forgets everything a clean session must not carry over.
    pub fn clear(&mut self) {
        self.subscriptions.clear();
        self.queue.clear();
        self.queued_bytes = 0;
        self.inflight.clear();
    }

    /// Adds or replaces a subscription (same filter: new QoS).
    pub fn subscribe(&mut self, filter: TopicFilter, qos: QoS) {
        match self.subscriptions.iter_mut().find(|(f, _)| *f == filter) {
            Some(existing) => existing.1 = qos,
            None => self.subscriptions.push((filter, qos)),
        }
    }

    pub fn unsubscribe(&mut self, filter: &str) {
        self.subscriptions.retain(|(f, _)| f.as_str() != filter);
    }

    /// A packet id not in flight. With `max_inflight` far below 65,535
    /// there is always one.
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(p, _)| *p == pkid) {
                return pkid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits {
        max_inflight: 2,
        max_queued: 3,
        max_queued_bytes: 1 << 20,
    };

    fn message(n: u8) -> Arc<Message> {
        Arc::new(Message::new("t", vec![n], QoS::AtLeastOnce))
    }

    fn online() -> Session {
        let session = Session::new("c".to_owned(), false);
        session.lock().owner = Some(1);
        session
    }

    #[test]
    fn qos1_messages_wait_while_the_inflight_window_is_full() {
        let session = online();
        for n in 0..3 {
            assert!(session.enqueue(message(n), QoS::AtLeastOnce, &LIMITS));
        }
        let mut state = session.lock();
        let Some(Outgoing::Publish { pkid: first, .. }) = state.take_next(&LIMITS) else {
            panic!("first message")
        };
        assert!(state.take_next(&LIMITS).is_some());
        assert!(state.take_next(&LIMITS).is_none(), "window of 2 is full");
        assert!(state.acknowledge(first));
        assert!(!state.acknowledge(first), "acknowledged twice");
        assert!(state.take_next(&LIMITS).is_some());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let session = online();
        for n in 0..3 {
            assert!(session.enqueue(message(n), QoS::AtLeastOnce, &LIMITS));
        }
        assert!(!session.enqueue(message(9), QoS::AtLeastOnce, &LIMITS));
        assert_eq!(session.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_absent_client_keeps_only_qos1_and_only_with_a_persistent_session() {
        let clean = Session::new("a".to_owned(), false);
        assert!(!clean.enqueue(message(1), QoS::AtLeastOnce, &LIMITS));
        let persistent = Session::new("b".to_owned(), true);
        assert!(!persistent.enqueue(message(1), QoS::AtMostOnce, &LIMITS));
        assert!(persistent.enqueue(message(1), QoS::AtLeastOnce, &LIMITS));
    }

    #[test]
    fn overlapping_filters_deliver_once_at_the_highest_qos() {
        let session = online();
        let mut state = session.lock();
        state.subscribe(TopicFilter::new("a/+").unwrap(), QoS::AtMostOnce);
        state.subscribe(TopicFilter::new("a/#").unwrap(), QoS::AtLeastOnce);
        assert_eq!(Session::matching_qos(&state, "a/b"), Some(QoS::AtLeastOnce));
        assert_eq!(Session::matching_qos(&state, "b"), None);
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_never_use_zero() {
        let session = online();
        let mut state = session.lock();
        state.next_pkid = u16::MAX;
        state.inflight.push_back((1, message(0)));
        assert_eq!(state.allocate_pkid(), u16::MAX);
        assert_eq!(state.allocate_pkid(), 2);
    }
}
