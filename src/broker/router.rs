//! Who receives a message: the sessions and their subscriptions, the
//! retained messages, and ledge's own filters. State only; connections and
//! the local link call in, nothing here touches a socket.
//!
//! Each message is delivered at most once per session and at most once to
//! ledge, however many of their filters match it (MQTT 3.1.1 §3.3.5 allows
//! either; one copy per message is what ledge's docs promise and what
//! mosquitto does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::message::{min_qos, Message};
use super::session::{QueueLimits, Session};
use crate::topic::TopicFilter;

/// Bounds on what the router keeps.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    pub queue: QueueLimits,
    /// Retained messages kept, by count and by bytes; a retain beyond
    /// either is refused (the message is still delivered).
    pub max_retained: usize,
    pub max_retained_bytes: usize,
}

/// What a connection should do when a CONNECT names a client id.
pub struct Attached {
    pub session: Arc<Session>,
    /// True if an earlier session was resumed (CONNACK session present).
    pub resumed: bool,
}

pub struct Router {
    sessions: HashMap<String, Arc<Session>>,
    retained: BTreeMap<String, Arc<Message>>,
    retained_bytes: usize,
    /// Filters ledge itself subscribes to (its triggers, forward rules and
    /// synchronous invokes).
    local_filters: Vec<TopicFilter>,
    limits: RouterLimits,
    /// Retains refused for the limits, for the log and metrics.
    pub retained_refused: u64,
}

impl Router {
    pub fn new(limits: RouterLimits) -> Self {
        Self {
            sessions: HashMap::new(),
            retained: BTreeMap::new(),
            retained_bytes: 0,
            local_filters: Vec::new(),
            limits,
            retained_refused: 0,
        }
    }

    #[cfg(test)]
    fn limits(&self) -> &RouterLimits {
        &self.limits
    }

    /// Delivers `message` to every session with a matching subscription;
    /// returns true if ledge's own filters match it too (the caller hands
    /// it to ledge, outside the router's lock). Stores or clears the
    /// retained copy when the publisher asked.
    pub fn route(&mut self, message: &Arc<Message>) -> bool {
        if message.retain {
            self.retain(message);
        }
        // Subscribers receive live messages with RETAIN cleared (§3.3.1.3).
        let live = if message.retain {
            Arc::new(Message {
                retain: false,
                ..Message::clone(message)
            })
        } else {
            Arc::clone(message)
        };
        for session in self.sessions.values() {
            let qos = {
                let state = session.lock();
                Session::matching_qos(&state, &message.topic)
            };
            if let Some(qos) = qos {
                session.enqueue(
                    Arc::clone(&live),
                    min_qos(qos, message.qos),
                    &self.limits.queue,
                );
            }
        }
        self.local_matches(&message.topic)
    }

    /// True if ledge subscribes to `topic`.
    pub fn local_matches(&self, topic: &str) -> bool {
        self.local_filters.iter().any(|f| f.matches(topic))
    }

    /// Replaces ledge's filters; returns the retained messages the added
    /// filters match (a new subscription receives them, as any client's
    /// would).
    pub fn set_local_filters(&mut self, filters: Vec<TopicFilter>) -> Vec<Arc<Message>> {
        let added: Vec<&TopicFilter> = filters
            .iter()
            .filter(|f| !self.local_filters.contains(f))
            .collect();
        let retained = self
            .retained
            .values()
            .filter(|m| added.iter().any(|f| f.matches(&m.topic)))
            .cloned()
            .collect();
        self.local_filters = filters;
        retained
    }

    /// Attaches a connection to the session named `client_id`, creating,
    /// resuming or replacing it. A session another connection owns is taken
    /// over: that connection is woken and closes itself.
    pub fn attach(&mut self, client_id: &str, clean: bool, connection: u64) -> Attached {
        if let Some(existing) = self.sessions.get(client_id) {
            let mut state = existing.lock();
            let taken_over = state.owner.is_some();
            state.owner = Some(connection);
            if clean || !state.persistent {
                state.clear();
            }
            let resumed = !clean && state.persistent;
            state.persistent = !clean;
            drop(state);
            if taken_over {
                existing.wake.notify_one();
            }
            return Attached {
                session: Arc::clone(existing),
                resumed,
            };
        }
        let session = Arc::new(Session::new(client_id.to_owned(), !clean));
        session.lock().owner = Some(connection);
        self.sessions
            .insert(client_id.to_owned(), Arc::clone(&session));
        Attached {
            session,
            resumed: false,
        }
    }

    /// The connection `connection` is gone: a clean session is forgotten, a
    /// persistent one waits for the client. Nothing happens if another
    /// connection took the session over meanwhile.
    pub fn detach(&mut self, client_id: &str, connection: u64) {
        let Some(session) = self.sessions.get(client_id) else {
            return;
        };
        let mut state = session.lock();
        if state.owner != Some(connection) {
            return;
        }
        state.owner = None;
        let keep = state.persistent;
        drop(state);
        if !keep {
            self.sessions.remove(client_id);
        }
    }

    /// The retained messages `filter` matches, for a new subscription.
    pub fn retained_for(&self, filter: &TopicFilter) -> Vec<Arc<Message>> {
        self.retained
            .values()
            .filter(|m| filter.matches(&m.topic))
            .cloned()
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    #[cfg(test)]
    fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Messages dropped for full client queues, over all sessions now known.
    pub fn dropped(&self) -> u64 {
        self.sessions
            .values()
            .map(|s| s.dropped.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    fn retain(&mut self, message: &Arc<Message>) {
        if let Some(old) = self.retained.remove(&message.topic) {
            self.retained_bytes -= old.weight();
        }
        // An empty retained message clears the topic (§3.3.1.3).
        if message.payload.is_empty() {
            return;
        }
        let weight = message.weight();
        if self.retained.len() >= self.limits.max_retained
            || self.retained_bytes + weight > self.limits.max_retained_bytes
        {
            self.retained_refused += 1;
            return;
        }
        self.retained_bytes += weight;
        self.retained
            .insert(message.topic.clone(), Arc::clone(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::session::Outgoing;
    use rumqttc::QoS;

    fn router() -> Router {
        Router::new(RouterLimits {
            queue: QueueLimits {
                max_inflight: 10,
                max_queued: 10,
                max_queued_bytes: 1 << 20,
            },
            max_retained: 2,
            max_retained_bytes: 1 << 20,
        })
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::new(text).unwrap()
    }

    fn queued(session: &Session, limits: &QueueLimits) -> Vec<(String, QoS, bool)> {
        let mut state = session.lock();
        let mut out = Vec::new();
        while let Some(Outgoing::Publish { message, qos, .. }) = state.take_next(limits) {
            out.push((message.topic.clone(), qos, message.retain));
        }
        out
    }

    #[test]
    fn a_message_reaches_each_session_once_and_ledge_once() {
        let mut router = router();
        let a = router.attach("a", true, 1).session;
        a.lock().subscribe(filter("a/+"), QoS::AtLeastOnce);
        a.lock().subscribe(filter("a/#"), QoS::AtLeastOnce);
        router.set_local_filters(vec![filter("a/+"), filter("a/#"), filter("a/b")]);
        let message = Arc::new(Message::new("a/b", "x", QoS::AtLeastOnce));
        assert!(router.route(&message));
        let limits = router.limits().queue;
        assert_eq!(queued(&a, &limits).len(), 1);
        assert!(!router.route(&Arc::new(Message::new("b", "x", QoS::AtMostOnce))));
    }

    #[test]
    fn subscribers_get_the_lower_qos_and_live_messages_lose_retain() {
        let mut router = router();
        let a = router.attach("a", true, 1).session;
        a.lock().subscribe(filter("t"), QoS::AtMostOnce);
        let mut message = Message::new("t", "x", QoS::AtLeastOnce);
        message.retain = true;
        router.route(&Arc::new(message));
        let limits = router.limits().queue;
        assert_eq!(
            queued(&a, &limits),
            vec![("t".to_owned(), QoS::AtMostOnce, false)]
        );
        let kept = router.retained_for(&filter("#"));
        assert_eq!(kept.len(), 1);
        assert!(kept[0].retain, "a new subscription sees RETAIN set");
    }

    #[test]
    fn retained_messages_are_replaced_cleared_and_bounded() {
        let mut router = router();
        let retained = |topic: &str, payload: &'static str| {
            let mut m = Message::new(topic, payload, QoS::AtMostOnce);
            m.retain = true;
            Arc::new(m)
        };
        router.route(&retained("a", "1"));
        router.route(&retained("a", "2"));
        assert_eq!(router.retained_for(&filter("a"))[0].payload, "2");
        router.route(&retained("a", ""));
        assert_eq!(router.retained_count(), 0);
        router.route(&retained("a", "1"));
        router.route(&retained("b", "1"));
        router.route(&retained("c", "1"));
        assert_eq!(router.retained_count(), 2);
        assert_eq!(router.retained_refused, 1);
    }

    #[test]
    fn a_takeover_moves_the_session_and_the_old_owner_cannot_detach_it() {
        let mut router = router();
        let first = router.attach("c", false, 1).session;
        first.lock().subscribe(filter("t"), QoS::AtLeastOnce);
        let second = router.attach("c", false, 2);
        assert!(second.resumed);
        assert_eq!(second.session.lock().subscriptions.len(), 1);
        router.detach("c", 1);
        assert_eq!(second.session.lock().owner, Some(2));
        router.detach("c", 2);
        assert_eq!(router.session_count(), 1, "persistent sessions wait");
        let clean = router.attach("c", true, 3);
        assert!(!clean.resumed);
        assert!(clean.session.lock().subscriptions.is_empty());
        router.detach("c", 3);
        assert_eq!(router.session_count(), 0);
    }

    #[test]
    fn new_local_filters_receive_matching_retained_messages() {
        let mut router = router();
        let mut m = Message::new("cfg/x", "on", QoS::AtMostOnce);
        m.retain = true;
        router.route(&Arc::new(m));
        assert_eq!(router.set_local_filters(vec![filter("cfg/#")]).len(), 1);
        assert!(router.set_local_filters(vec![filter("cfg/#")]).is_empty());
    }
}
