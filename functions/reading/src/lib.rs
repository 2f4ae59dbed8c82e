//! The sensor-reading payload shared by `threshold-alert` and
//! `moving-average`, and how a reading's sensor is named.
//!
//! A reading is a JSON object with a number `value` and optionally a
//! `sensor` name and a `unit` (`{"value":31.5,"sensor":"t1","unit":"C"}`),
//! or a bare JSON number (`31.5`). The sensor is the payload's `sensor` field
//! if there is one, else it comes from the event: the `<name>` of an MQTT
//! topic `sensors/<name>/...`, the subject of a `sensor` event, else
//! `unknown`.
//!
//! Sensor names end up as one level of a topic (`alerts/<sensor>`) and as
//! keys of per-sensor state, so a name that could not be one topic level, or
//! that is unreasonably long, is refused rather than published.

use core::fmt;

use ledge_sdk::{Event, Source};
use serde::Deserialize;

/// The sensor name used when neither the payload nor the event names one.
pub const UNKNOWN_SENSOR: &str = "unknown";

/// Longest sensor name accepted, in bytes: plenty for a name, and it bounds
/// what one hostile payload can add to a function's per-sensor state.
pub const MAX_SENSOR_LEN: usize = 64;

/// One decoded reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Which sensor it is from (never empty, a valid topic level).
    pub sensor: String,
    /// The measured value.
    pub value: f64,
    /// The unit, if the payload gave one.
    pub unit: Option<String>,
}

/// Why an event is not a usable reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingError {
    /// The payload is not JSON of the reading format; the text says where.
    NotAReading(String),
    /// The sensor name cannot be used as a topic level.
    BadSensorName(String),
}

impl fmt::Display for ReadingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadingError::NotAReading(why) => write!(f, "payload is not a reading: {why}"),
            ReadingError::BadSensorName(name) => write!(
                f,
                "sensor name {name:?} is not usable: it must be 1 to {MAX_SENSOR_LEN} bytes \
                 without '/', '+', '#' or control characters"
            ),
        }
    }
}

impl std::error::Error for ReadingError {}

/// The reading format on the wire.
#[derive(Deserialize)]
struct Wire {
    value: f64,
    sensor: Option<String>,
    unit: Option<String>,
}

impl Reading {
    /// Decodes the event's payload and names its sensor.
    pub fn from_event(event: &Event) -> Result<Reading, ReadingError> {
        Reading::parse(event.payload(), &event.source(), &event.subject())
    }

    /// Decodes `payload`, naming the sensor from `source` and `subject` when
    /// the payload does not.
    pub fn parse(payload: &[u8], source: &Source, subject: &str) -> Result<Reading, ReadingError> {
        let Wire {
            value,
            sensor,
            unit,
        } = decode(payload)?;
        let sensor = sensor.unwrap_or_else(|| sensor_from_subject(source, subject).into());
        if !is_valid_sensor_name(&sensor) {
            return Err(ReadingError::BadSensorName(sensor));
        }
        Ok(Reading {
            sensor,
            value,
            unit,
        })
    }
}

fn decode(payload: &[u8]) -> Result<Wire, ReadingError> {
    let text = payload.trim_ascii();
    let wire = match text.first() {
        None => return Err(ReadingError::NotAReading("the payload is empty".into())),
        Some(b'{') => serde_json::from_slice::<Wire>(text),
        Some(_) => serde_json::from_slice::<f64>(text).map(|value| Wire {
            value,
            sensor: None,
            unit: None,
        }),
    };
    wire.map_err(|err| ReadingError::NotAReading(err.to_string()))
}

/// The sensor an event is about when its payload does not say.
pub fn sensor_from_subject<'a>(source: &Source, subject: &'a str) -> &'a str {
    let name = match source {
        Source::Mqtt => subject
            .strip_prefix("sensors/")
            .and_then(|rest| rest.split('/').next()),
        Source::Sensor => Some(subject),
        _ => None,
    };
    name.filter(|name| !name.is_empty())
        .unwrap_or(UNKNOWN_SENSOR)
}

/// Whether `name` can be one level of an MQTT topic name.
pub fn is_valid_sensor_name(name: &str) -> bool {
    (1..=MAX_SENSOR_LEN).contains(&name.len())
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
}

#[cfg(test)]
mod tests;
