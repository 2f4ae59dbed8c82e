//! MQTT messages from the local broker → events, and `[[forward]]` rules →
//! spool records.
//!
//! The connection itself lives in `crate::mqtt`; this is what ledge does
//! with each message that arrives on it. When forward rules exist the link
//! runs with a persistent session and manual acknowledgements: a message a
//! rule matches is acknowledged to the broker only once its spool record is
//! durable, so a kill -9 between receipt and append loses nothing (the
//! broker redelivers).
//!
//! MQTT 3.1.1 §4.6 requires QoS 1 acknowledgements in the order the
//! messages arrived (rumqttd disconnects a client that breaks it), so every
//! acknowledgement goes through one FIFO task: a message waits for its own
//! record and for every message before it. Records become durable in seq
//! order, so this costs no extra waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::mpsc;

use crate::config::{ForwardRule, Plan, TriggerSource};
use crate::dispatch::{sync, Durable, Routing};
use crate::event::{Event, EventSource};
use crate::sinks::spool::SpoolSink;
use crate::sinks::PublishSink;

/// Turns incoming publishes into events and forwarded records.
pub struct MqttSource {
    pub max_payload: usize,
    pub forwards: Vec<ForwardRule>,
    pub spool: Option<Arc<SpoolSink>>,
    /// Set when the link acknowledges messages itself (forward rules or
    /// durable triggers exist): messages in arrival order, with the spool
    /// records each must wait for.
    pub acks: Option<mpsc::UnboundedSender<(Publish, Vec<Durable>)>>,
    /// Messages rejected for size, for the log and for tests.
    pub oversized: AtomicU64,
    /// `ledge/<device>/invoke/`: requests for synchronous invocations.
    pub invoke_prefix: String,
    /// Where synchronous replies go (the local broker). Weak, so that this
    /// source, which lives as long as the link, does not keep the publisher
    /// (and so the shutdown's publish drain) alive.
    pub replies: Option<std::sync::Weak<dyn PublishSink>>,
}

impl MqttSource {
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            forwards: Vec::new(),
            spool: None,
            acks: None,
            oversized: AtomicU64::new(0),
            invoke_prefix: String::new(),
            replies: None,
        }
    }

    /// The filter synchronous requests arrive on.
    pub fn invoke_filter(device: &str) -> String {
        format!("ledge/{device}/invoke/+")
    }

    /// A request on `ledge/<device>/invoke/<function>`: runs the function
    /// once and replies to the envelope's `reply_to`.
    fn incoming_request(&self, routing: &Routing, publish: &Publish, function: &str) {
        let Some(publisher) = self.replies.as_ref().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let request = match sync::parse_request(&publish.payload) {
            Ok(request) => request,
            Err(e) => {
                // Without a valid envelope there is nowhere to answer.
                log::warn!(target: "ledge::invoke", "synchronous request on `{}` ignored: {e}", publish.topic);
                return;
            }
        };
        let reply = sync::Reply {
            topic: request.reply_to,
            correlation_id: request.correlation_id,
            via: sync::ReplyPath::Local(publisher),
        };
        let event = Event::new(EventSource::Invoke, publish.topic.clone(), request.payload);
        routing.submit_sync(function, event, reply);
    }

    /// True if the link must use a persistent session and manual acks.
    pub fn needs_manual_acks(plan: &Plan) -> bool {
        !plan.forwards.is_empty()
            || plan
                .routes
                .iter()
                .any(|r| r.durable && matches!(r.source, TriggerSource::Mqtt { .. }))
    }

    /// Routes one message; oversized ones are logged and dropped before any
    /// function sees them.
    pub fn incoming_publish(&self, routing: &Routing, publish: Publish) {
        if publish.payload.len() > self.max_payload {
            let total = self.oversized.fetch_add(1, Ordering::Relaxed) + 1;
            log::warn!(
                target: "ledge::mqtt",
                "message on `{}` rejected: {} bytes is over max_payload ({} bytes); {total} rejected so far",
                publish.topic,
                publish.payload.len(),
                self.max_payload
            );
            self.ack_now(&publish);
            return;
        }
        if !self.invoke_prefix.is_empty() {
            if let Some(function) = publish.topic.strip_prefix(self.invoke_prefix.as_str()) {
                let function = function.to_owned();
                self.incoming_request(routing, &publish, &function);
                self.ack_now(&publish);
                return;
            }
        }
        let mut waits = self.forward(&publish);
        let event = Event::new(
            EventSource::Mqtt,
            publish.topic.clone(),
            publish.payload.clone(),
        );
        waits.extend(routing.submit(event));
        self.ack(publish, waits);
    }

    /// Appends the message for every matching forward rule; returns the
    /// record to wait for.
    fn forward(&self, publish: &Publish) -> Vec<Durable> {
        let Some(sink) = self.spool.as_ref() else {
            return Vec::new();
        };
        let mut last = None;
        for rule in self
            .forwards
            .iter()
            .filter(|r| r.filter.matches(&publish.topic))
        {
            let topic = rule
                .to
                .clone()
                .unwrap_or_else(|| sink.upstream_topic(&publish.topic));
            let origin = format!("bridge:{}", publish.topic);
            match sink.append(topic, &publish.payload, &origin) {
                Ok(seq) => last = Some(seq),
                // The spool counted and logged the refusal; the message is
                // acknowledged so the local link does not stall on it.
                Err(e) => {
                    log::debug!(target: "ledge::mqtt", "message on `{}` not forwarded: {e}", publish.topic)
                }
            }
        }
        last.map(|seq| Durable {
            spool: Arc::clone(sink.spool()),
            seq,
        })
        .into_iter()
        .collect()
    }

    fn ack_now(&self, publish: &Publish) {
        self.ack(publish.clone(), Vec::new());
    }

    fn ack(&self, publish: Publish, waits: Vec<Durable>) {
        if publish.qos == QoS::AtMostOnce {
            return;
        }
        if let Some(acks) = &self.acks {
            let _ = acks.send((publish, waits));
        }
    }
}

/// Acknowledges messages in arrival order, each once its record (if any) is
/// durable. Ends when the source is dropped. If the spool fails, the
/// remaining messages stay unacknowledged and the broker redelivers them
/// after the next reconnect.
pub async fn acknowledge_in_order(
    client: AsyncClient,
    mut queue: mpsc::UnboundedReceiver<(Publish, Vec<Durable>)>,
) {
    while let Some((publish, waits)) = queue.recv().await {
        for wait in waits {
            if wait.spool.durable(wait.seq).await.is_err() {
                return;
            }
        }
        if client.ack(&publish).await.is_err() {
            return;
        }
    }
}
