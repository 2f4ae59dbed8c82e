//! MQTT messages from the local broker → events.
//!
//! The connection itself lives in `crate::mqtt`; this is what ledge does
//! with each message that arrives on it.

use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::Publish;

use crate::dispatch::Dispatcher;
use crate::event::{Event, EventSource};

/// Turns incoming publishes into events, enforcing `max_payload`.
pub struct MqttSource {
    max_payload: usize,
    /// Messages rejected for size, for the log and for tests.
    pub oversized: AtomicU64,
}

impl MqttSource {
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            oversized: AtomicU64::new(0),
        }
    }

    /// Routes one message; oversized ones are logged and dropped before any
    /// function sees them.
    pub fn incoming_publish(&self, dispatcher: &Dispatcher, publish: Publish) {
        if publish.payload.len() > self.max_payload {
            let total = self.oversized.fetch_add(1, Ordering::Relaxed) + 1;
            log::warn!(
                target: "ledge::mqtt",
                "message on `{}` rejected: {} bytes is over max_payload ({} bytes); {total} rejected so far",
                publish.topic,
                publish.payload.len(),
                self.max_payload
            );
            return;
        }
        let event = Event::new(EventSource::Mqtt, publish.topic, publish.payload);
        dispatcher.submit(event);
    }
}
