//! A message as the broker holds it: shared by every session it is queued
//! for, so fan-out to many subscribers copies no bytes.

use bytes::Bytes;
use rumqttc::QoS;

/// One published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was published with; each subscriber gets at most its
    /// subscription's QoS.
    pub qos: QoS,
    /// Set when the publisher asked the broker to retain it.
    pub retain: bool,
    /// Function-to-function hops behind it (`Event::depth`); 0 for a
    /// client's message. Kept in-process only: clients never see it.
    pub depth: u8,
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            depth: 0,
        }
    }

    /// Bytes this message holds in a queue (what per-client limits count).
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + 32
    }
}

/// The lower of two QoS levels: what a subscriber receives.
pub fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}
