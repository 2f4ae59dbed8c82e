//! Sinks: where a function's output goes.
//!
//! For now that is the local broker (`local`), best effort, and a capturing
//! sink for `ledge invoke` and tests (`capture`). The durable path upstream
//! (the spool) is a sink of its own kind, added with the spool.

pub mod capture;
pub mod local;

use bytes::Bytes;

/// MQTT quality of service, as a function asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl Qos {
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A message on its way to the local broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
}

/// Why a publish was not accepted. Nothing was sent in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("the local broker is not connected")]
    NotConnected,
    #[error("the outgoing queue to the local broker is full")]
    Backlog,
}

/// Accepts messages for the local broker without blocking the caller (wasm
/// runs on worker threads that must never wait on the network).
pub trait PublishSink: Send + Sync {
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused>;
}
