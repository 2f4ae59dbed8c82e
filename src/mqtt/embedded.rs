//! ledge plugged into its embedded broker, in-process: the broker hands
//! ledge each message its filters match (once per message) and ledge's
//! publishes enter the broker without a socket.
//!
//! A client's message that triggers a function whose queue is full is taken
//! anyway and the broker holds that client back until the queue has room
//! (TCP backpressure); ledge's own publishes and wills cannot be held back,
//! so for them a full queue spills into the function's stream instead. A
//! QoS 1 message is acknowledged once its forward and durable-trigger
//! records are on flash.

use std::sync::Arc;

use crate::broker::{Admission, Broker, Local, Message, Origin};
use crate::dispatch::{Overflow, Routing};
use crate::sinks::local::Outboxes;
use crate::sinks::Qos;
use crate::sources::mqtt::{settle, MqttSource, Wait};

/// ledge's side of the embedded broker.
pub struct LocalSide {
    pub source: MqttSource,
    pub routing: Routing,
}

impl Local for LocalSide {
    fn incoming(&self, message: &Message, origin: Origin) -> Admission {
        let overflow = match origin {
            Origin::Client => Overflow::HoldBack,
            Origin::Internal => Overflow::Spill,
        };
        let taken = self.source.incoming(
            &self.routing,
            &message.topic,
            &message.payload,
            message.depth,
            overflow,
        );
        let acknowledged = message.qos != rumqttc::QoS::AtMostOnce && origin == Origin::Client;
        let stored = if acknowledged && !taken.waits.is_empty() {
            Some(Box::pin(settle(taken.waits)) as crate::broker::Stored)
        } else {
            if taken.waits.iter().any(|w| matches!(w, Wait::Append { .. })) {
                // No one waits for an acknowledgement, but deferred forwards
                // must still be stored when there is room.
                tokio::spawn(settle(taken.waits));
            }
            None
        };
        Admission {
            stored,
            hold_back: taken.hold_back && origin == Origin::Client,
        }
    }
}

/// Moves what functions publish from their outboxes into the broker, in
/// rounds (fair between functions), until every outbox is closed and empty.
pub async fn pump(outboxes: Arc<Outboxes>, broker: Broker) {
    let mut batch = Vec::new();
    while outboxes.next_round(&mut batch).await {
        for message in batch.drain(..) {
            let qos = match message.qos {
                Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                // The broker grants QoS 1 at most to its subscribers.
                Qos::AtLeastOnce | Qos::ExactlyOnce => rumqttc::QoS::AtLeastOnce,
            };
            let mut out = Message::new(message.topic, message.payload, qos);
            out.depth = message.depth;
            out.retain = message.retain;
            broker.publish(out);
        }
        // Let client connections run between rounds.
        tokio::task::yield_now().await;
    }
}
