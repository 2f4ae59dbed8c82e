//! The event a function is invoked for: its payload and where it came from.

use crate::sys::{self, field, int_field};

/// What triggered an invocation (docs/abi.md, `EVENT_SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A message on a subscribed MQTT topic; the subject is the topic.
    Mqtt,
    /// A sensor reading; the subject is the sensor's name.
    Sensor,
    /// A schedule; the subject is the schedule (`every 5m`).
    Schedule,
    /// A direct `ledge invoke`; the subject is empty.
    Invoke,
    /// A source this SDK does not know (from a newer host), by name.
    Other(String),
}

impl Source {
    /// The source as the host names it.
    pub fn as_str(&self) -> &str {
        match self {
            Source::Mqtt => "mqtt",
            Source::Sensor => "sensor",
            Source::Schedule => "schedule",
            Source::Invoke => "invoke",
            Source::Other(name) => name,
        }
    }
}

impl From<&str> for Source {
    fn from(name: &str) -> Source {
        match name {
            "mqtt" => Source::Mqtt,
            "sensor" => Source::Sensor,
            "schedule" => Source::Schedule,
            "invoke" => Source::Invoke,
            other => Source::Other(other.into()),
        }
    }
}

impl core::fmt::Display for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event: the payload the host wrote into guest memory, plus accessors
/// that ask the host about the event's origin.
#[derive(Debug)]
pub struct Event {
    payload: Vec<u8>,
}

impl Event {
    pub(crate) fn new(payload: Vec<u8>) -> Event {
        Event { payload }
    }

    /// The payload bytes (possibly empty).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text.
    pub fn payload_str(&self) -> Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(&self.payload)
    }

    /// The payload decoded from JSON.
    #[cfg(feature = "json")]
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// What triggered this event.
    pub fn source(&self) -> Source {
        let name = sys::context(field::EVENT_SOURCE).map(sys::lossy);
        Source::from(name.as_deref().unwrap_or(""))
    }

    /// The MQTT topic, sensor name or schedule; empty for a direct invoke.
    pub fn subject(&self) -> String {
        sys::context(field::EVENT_SUBJECT)
            .map(sys::lossy)
            .unwrap_or_default()
    }

    /// When ledge received the event, in UNIX milliseconds.
    pub fn received_at_ms(&self) -> u64 {
        crate::non_negative(sys::context_int(int_field::RECEIVED_AT_MS))
    }
}
