//! Sinks: where a function's output goes.
//!
//! - `local`: the local broker, best effort (`publish`).
//! - `spool`: durable delivery upstream through the spool (`forward`).
//! - `capture`: keeps both in memory, for `ledge invoke` and tests.

pub mod capture;
pub mod local;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

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
    /// The chain depth of the event it would become (`Event::depth`): 0
    /// for ledge's own messages, the publishing event's depth + 1 for a
    /// function's.
    pub depth: u8,
    /// MQTT retain: the broker keeps the message for later subscribers
    /// (a function's `publish_flags` with `PUBLISH_RETAIN`; false elsewhere).
    pub retain: bool,
}

/// Why a publish was not accepted. Nothing was sent in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("the local broker is not connected")]
    NotConnected,
    #[error("the outgoing queue to the local broker stayed full until the deadline")]
    Backlog,
}

/// Accepts messages for the local broker. Never waits on the network: at
/// most on room in a bounded queue, and only until a deadline.
pub trait PublishSink: Send + Sync {
    /// Queues a message, or refuses it at once.
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused>;

    /// Queues a message, waiting for room until `deadline` (an
    /// invocation's) if the sink is backed up.
    fn publish_until(
        &self,
        message: OutgoingMessage,
        _deadline: Option<std::time::Instant>,
    ) -> Result<(), PublishRefused> {
        self.publish(message)
    }

    /// A sink of one function's own (its fair share of the link), if this
    /// sink hands those out; `None`: share this one.
    fn for_function(&self, _function: &str) -> Option<Arc<dyn PublishSink>> {
        None
    }
}

/// Why a forward was not accepted. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardRefused {
    #[error("no [upstream] is configured")]
    NoUpstream,
    #[error("{0}")]
    Spool(String),
}

/// Accepts records for durable delivery upstream, without blocking.
pub trait ForwardSink: Send + Sync {
    /// Stores a record; returns the seq to wait on for durability, if any.
    fn forward(
        &self,
        topic: &str,
        payload: &[u8],
        origin: &str,
    ) -> Result<Option<u64>, ForwardRefused>;

    /// Waits until record `seq` is durable (false on timeout).
    fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<bool, String>;
}

/// Ships function log lines upstream (through the spool).
pub trait LogSink: Send + Sync {
    /// True if lines at `level` are shipped at all.
    fn ships(&self, level: log::Level) -> bool;
    fn function_line(
        &self,
        level: log::Level,
        function: &str,
        version: &str,
        request_id: &str,
        message: &str,
    );
}

/// Keeps dead letters: events a function failed on after its last attempt.
pub trait DeadLetterSink: Send + Sync {
    /// Stores one; returns its seq.
    fn dead_letter(&self, letter: &crate::spool::body::DeadLetterBody) -> Result<u64, String>;
}

/// Where one instance's output goes.
#[derive(Clone)]
pub struct Sinks {
    pub publish: Arc<dyn PublishSink>,
    pub forward: Option<Arc<dyn ForwardSink>>,
    pub logs: Option<Arc<dyn LogSink>>,
    /// `None` without an `[upstream]`: dead letters are then only logged.
    pub dead_letters: Option<Arc<dyn DeadLetterSink>>,
    /// The node's named GPIO lines; `None` where there are none to drive
    /// (`ledge invoke`, tests).
    pub gpio: Option<Arc<crate::hw::gpio::GpioLines>>,
}

impl<T: PublishSink + ForwardSink + 'static> From<Arc<T>> for Sinks {
    fn from(sink: Arc<T>) -> Self {
        Self {
            publish: sink.clone(),
            forward: Some(sink),
            logs: None,
            dead_letters: None,
            gpio: None,
        }
    }
}
