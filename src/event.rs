//! The event: what a trigger hands to the dispatcher and a function receives.
//!
//! One `Event` is shared (behind an `Arc`) by every function a message
//! triggers, so fan-out to several functions copies no payload bytes.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    Mqtt,
    Sensor,
    Schedule,
    /// A direct invocation: `ledge invoke`, a synchronous request over
    /// MQTT, or Lambda's Invoke API.
    Invoke,
    /// A request to an HTTP route (`source = "http"` triggers).
    Http,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Sensor => "sensor",
            Self::Schedule => "schedule",
            Self::Invoke => "invoke",
            Self::Http => "http",
        }
    }
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened, ready to be routed to functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub source: EventSource,
    /// The MQTT topic, the sensor name, the schedule (`every 5m`), or the
    /// HTTP route key (`POST /readings/{sensor}`).
    pub subject: String,
    pub payload: Bytes,
    /// When ledge received or produced the event, UNIX milliseconds.
    pub received_at_ms: u64,
    /// How many function publishes in a row led to this event: 0 for a
    /// client's message, a sensor reading or a schedule; one more than the
    /// publishing invocation's event for a function's publish. A chain
    /// longer than [`MAX_CHAIN`] is a loop and is stopped.
    pub depth: u8,
}

/// Function-to-function hops after which a chain of events is taken for a
/// recursive loop (a function publishing to its own trigger, or two
/// functions feeding each other) and stopped, as Lambda does after 16.
pub const MAX_CHAIN: u8 = 16;

impl Event {
    pub fn new(source: EventSource, subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            source,
            subject: subject.into(),
            payload: payload.into(),
            received_at_ms: unix_ms(),
            depth: 0,
        }
    }
}

/// Wall-clock time in UNIX milliseconds (0 if the clock is before 1970,
/// which a gateway without RTC can report at boot).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
