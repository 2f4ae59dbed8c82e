//! MQTT messages from the local broker → events, and `[[forward]]` rules →
//! spool records.
//!
//! The connection itself lives in `crate::mqtt` (an external broker) or
//! `crate::broker` (the embedded one); this is what ledge does with each
//! message that arrives, once per message however many filters match it.
//!
//! A message is acknowledged (QoS 1) only once everything ledge promised to
//! keep of it is stored: the records of forward rules and durable triggers
//! are durable ([`Wait::Durable`]). A forward the spool refuses for lack of
//! room (`on_full = "reject"`, a full disk) is not dropped: its record is
//! appended again until the spool takes it ([`Wait::Append`]) and the
//! acknowledgement waits, so the broker (or the publishing client) keeps
//! the message meanwhile; later forwards queue behind it, in order. MQTT
//! 3.1.1 §4.6 requires acknowledgements in arrival order, so each waits for
//! its own records and for every message before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{ForwardRule, Plan, TriggerSource};
use crate::dispatch::{sync, Durable, Overflow, Routing};
use crate::event::{Event, EventSource};
use crate::sinks::spool::SpoolSink;
use crate::sinks::PublishSink;
use crate::spool::AppendError;

/// How soon a forward the spool refused for room is tried again; the wait
/// doubles up to `APPEND_RETRY_MAX` while the spool stays full.
const APPEND_RETRY: Duration = Duration::from_millis(50);
const APPEND_RETRY_MAX: Duration = Duration::from_secs(1);

/// Turns incoming messages into events and forwarded records.
pub struct MqttSource {
    pub max_payload: usize,
    pub forwards: Vec<ForwardRule>,
    pub spool: Option<Arc<SpoolSink>>,
    /// Messages rejected for size, for the log and for tests.
    pub oversized: AtomicU64,
    /// `ledge/<device>/invoke/`: requests for synchronous invocations
    /// (empty when another link serves them).
    pub invoke_prefix: String,
    /// Where synchronous replies go (the local broker). Weak, so that this
    /// source, which lives as long as the link, does not keep the publisher
    /// (and so the shutdown's publish drain) alive.
    pub replies: Option<Weak<dyn PublishSink>>,
    /// Forwards waiting for the spool to take them: while any are, later
    /// ones wait too, so records keep the order the messages came in.
    deferred: Arc<AtomicU64>,
}

/// Something a message's acknowledgement must wait for.
pub enum Wait {
    /// A record appended; acknowledge once it is durable.
    Durable(Durable),
    /// A forward record the spool had no room for (or that must follow
    /// one): append it when there is room, then wait until it is durable.
    Append {
        sink: Arc<SpoolSink>,
        topic: String,
        payload: Bytes,
        origin: String,
        deferred: Arc<AtomicU64>,
    },
}

/// What became of one message.
#[derive(Default)]
pub struct Taken {
    /// What the acknowledgement waits for, in order.
    pub waits: Vec<Wait>,
    /// A function is over capacity: hold the source back if it can be.
    pub hold_back: bool,
}

impl MqttSource {
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            forwards: Vec::new(),
            spool: None,
            oversized: AtomicU64::new(0),
            invoke_prefix: String::new(),
            replies: None,
            deferred: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The filter synchronous requests arrive on.
    pub fn invoke_filter(device: &str) -> String {
        format!("ledge/{device}/invoke/+")
    }

    /// True if messages must be acknowledged by ledge (not on receipt by
    /// the client library): forward rules or durable triggers exist.
    pub fn needs_manual_acks(plan: &Plan) -> bool {
        !plan.forwards.is_empty()
            || plan
                .routes
                .iter()
                .any(|r| r.durable && matches!(r.source, TriggerSource::Mqtt { .. }))
    }

    /// Routes one message; oversized ones are logged and dropped before any
    /// function sees them.
    pub fn incoming(
        &self,
        routing: &Routing,
        topic: &str,
        payload: &Bytes,
        depth: u8,
        overflow: Overflow,
    ) -> Taken {
        if payload.len() > self.max_payload {
            let total = self.oversized.fetch_add(1, Ordering::Relaxed) + 1;
            log::warn!(
                target: "ledge::mqtt",
                "message on `{}` rejected: {} bytes is over max_payload ({} bytes); {total} rejected so far",
                crate::logging::shorten(topic, 256),
                payload.len(),
                self.max_payload
            );
            return Taken::default();
        }
        if !self.invoke_prefix.is_empty() {
            if let Some(function) = topic.strip_prefix(self.invoke_prefix.as_str()) {
                self.incoming_request(routing, topic, payload, function);
                return Taken::default();
            }
        }
        let mut taken = Taken::default();
        self.forward(topic, payload, &mut taken.waits);
        let mut event = Event::new(EventSource::Mqtt, topic, payload.clone());
        event.depth = depth;
        let submitted = routing.submit(event, overflow);
        taken
            .waits
            .extend(submitted.waits.into_iter().map(Wait::Durable));
        taken.hold_back = submitted.hold_back;
        taken
    }

    /// A request on `ledge/<device>/invoke/<function>`: runs the function
    /// once and replies to the envelope's `reply_to`.
    fn incoming_request(&self, routing: &Routing, topic: &str, payload: &Bytes, function: &str) {
        let Some(publisher) = self.replies.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let request = match sync::parse_request(payload) {
            Ok(request) => request,
            Err(e) => {
                // Without a valid envelope there is nowhere to answer.
                log::warn!(target: "ledge::invoke", "synchronous request on `{}` ignored: {e}", crate::logging::shorten(topic, 256));
                return;
            }
        };
        let reply = sync::Reply {
            topic: request.reply_to,
            correlation_id: request.correlation_id,
            via: sync::ReplyPath::Local(publisher),
        };
        let event = Event::new(EventSource::Invoke, topic, request.payload);
        routing.submit_sync(function, event, reply);
    }

    /// Appends the message for every matching forward rule, or defers the
    /// append when the spool has no room (or an earlier one is deferred).
    fn forward(&self, topic: &str, payload: &Bytes, waits: &mut Vec<Wait>) {
        let Some(sink) = self.spool.as_ref() else {
            return;
        };
        let mut last = None;
        for rule in self.forwards.iter().filter(|r| r.filter.matches(topic)) {
            let upstream = rule
                .to
                .clone()
                .unwrap_or_else(|| sink.upstream_topic(topic));
            let origin = format!("bridge:{topic}");
            if self.deferred.load(Ordering::Acquire) == 0 {
                match sink.append_event(upstream.clone(), payload, &origin) {
                    Ok(seq) => {
                        last = Some(seq);
                        continue;
                    }
                    Err(AppendError::Failed(e)) => {
                        // Nothing will be stored until a restart; the
                        // acknowledgement is withheld for good.
                        log::debug!(target: "ledge::mqtt", "forward of `{topic}` not stored: {e}");
                    }
                    Err(_) => {}
                }
            }
            self.deferred.fetch_add(1, Ordering::AcqRel);
            waits.push(Wait::Append {
                sink: Arc::clone(sink),
                topic: upstream,
                payload: payload.clone(),
                origin,
                deferred: Arc::clone(&self.deferred),
            });
        }
        if let Some(seq) = last {
            waits.insert(
                0,
                Wait::Durable(Durable {
                    spool: Arc::clone(sink.spool()),
                    seq,
                }),
            );
        }
    }
}

/// Resolves once everything a message's acknowledgement waits for is
/// stored; false if storage failed for good (the acknowledgement is then
/// withheld and the broker redelivers after a reconnect).
pub async fn settle(waits: Vec<Wait>) -> bool {
    let mut ok = true;
    for wait in waits {
        // A failure still walks the rest, so deferred counts drop.
        ok &= match wait {
            Wait::Durable(durable) if ok => durable.spool.durable(durable.seq).await.is_ok(),
            Wait::Durable(_) => false,
            Wait::Append {
                sink,
                topic,
                payload,
                origin,
                deferred,
            } => {
                let stored = if ok {
                    append_when_room(&sink, topic, &payload, &origin).await
                } else {
                    false
                };
                deferred.fetch_sub(1, Ordering::AcqRel);
                stored
            }
        };
    }
    ok
}

async fn append_when_room(sink: &SpoolSink, topic: String, payload: &[u8], origin: &str) -> bool {
    let mut wait = APPEND_RETRY;
    loop {
        match sink.append_event(topic.clone(), payload, origin) {
            Ok(seq) => return sink.spool().durable(seq).await.is_ok(),
            // Closed: ledge is stopping; the broker redelivers after the restart.
            Err(AppendError::Failed(_) | AppendError::TooLarge(_) | AppendError::Closed) => {
                return false
            }
            Err(AppendError::Full | AppendError::Backlog) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(APPEND_RETRY_MAX);
            }
        }
    }
}
