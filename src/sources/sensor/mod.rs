//! Sensors: sampled every `interval`; each sample becomes an event routed by
//! `source = "sensor"` triggers and, if configured, a message on the local
//! broker.
//!
//! A kind of sensor is one implementation of [`Sensor`]. Sampling may block
//! (a DS18B20 conversion takes 750 ms), so samples are taken on tokio's
//! blocking pool, never on the reactor; one slow or failing sensor never
//! delays another.

mod replay;
mod sysfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::{SensorKind, SensorSpec};
use crate::dispatch::Dispatcher;
use crate::event::{unix_ms, Event, EventSource};
use crate::sinks::{OutgoingMessage, PublishSink, Qos};

pub use replay::ReplaySensor;
pub use sysfs::SysfsSensor;

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SensorError {
    /// The device or file is not there (unplugged, wrong path).
    #[error("{0}")]
    Unavailable(String),
    /// It answered, but not with a reading.
    #[error("{0}")]
    Garbage(String),
    /// A replay without `loop` reached its end; the sensor stops.
    #[error("no more readings")]
    Finished,
}

/// A source of samples. Implementations may block in `sample`.
pub trait Sensor: Send {
    fn sample(&mut self) -> Result<Sample, SensorError>;
}

/// Builds the sensor a spec describes.
pub fn open(spec: &SensorSpec) -> Result<Box<dyn Sensor>, SensorError> {
    Ok(match &spec.kind {
        SensorKind::Replay { file, looped } => Box::new(ReplaySensor::open(file, *looped)?),
        SensorKind::Sysfs {
            path,
            scale,
            offset,
        } => Box::new(SysfsSensor::new(path.clone(), *scale, *offset)),
    })
}

/// A failure is logged at most this often per sensor; the rest are counted.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Samples one sensor until `shutdown` changes.
pub async fn run(
    spec: SensorSpec,
    sensor: Box<dyn Sensor>,
    dispatcher: Arc<Dispatcher>,
    publisher: Arc<dyn PublishSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sensor = Some(sensor);
    let mut errors = ErrorLog::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(mut taken) = sensor.take() else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || {
            let sample = taken.sample();
            (taken, sample)
        })
        .await;
        let Ok((returned, sample)) = joined else {
            log::error!(target: "ledge::sensor", "sensor {}: sampling panicked; sensor stopped", spec.name);
            return;
        };
        sensor = Some(returned);
        match sample {
            Ok(sample) => deliver(&spec, sample, &dispatcher, publisher.as_ref()),
            Err(SensorError::Finished) => {
                log::info!(target: "ledge::sensor", "sensor {}: replay finished", spec.name);
                return;
            }
            Err(e) => errors.record(&spec.name, &e),
        }
    }
}

fn deliver(
    spec: &SensorSpec,
    sample: Sample,
    dispatcher: &Dispatcher,
    publisher: &dyn PublishSink,
) {
    let payload = reading_json(&spec.name, sample.value, spec.unit.as_deref(), unix_ms());
    log::debug!(target: "ledge::sensor", "sensor {}: {payload}", spec.name);
    let event = Event::new(EventSource::Sensor, spec.name.clone(), payload.clone());
    dispatcher.submit(event);
    if let Some(topic) = &spec.publish_topic {
        let message = OutgoingMessage {
            topic: topic.clone(),
            payload: payload.into(),
            qos: Qos::AtLeastOnce,
        };
        if let Err(e) = publisher.publish(message) {
            log::debug!(target: "ledge::sensor", "sensor {}: reading not published: {e}", spec.name);
        }
    }
}

/// The event payload of a reading.
pub fn reading_json(sensor: &str, value: f64, unit: Option<&str>, ts_ms: u64) -> String {
    let mut object = serde_json::Map::new();
    object.insert("sensor".into(), sensor.into());
    object.insert("value".into(), value.into());
    if let Some(unit) = unit {
        object.insert("unit".into(), unit.into());
    }
    object.insert("ts".into(), ts_ms.into());
    object.insert("quality".into(), "ok".into());
    serde_json::Value::Object(object).to_string()
}

/// Rate-limits failure logs: the first failure, then one line a minute with
/// the count since the last line.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn record(&mut self, sensor: &str, error: &SensorError) {
        let due = self.last.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return;
        }
        log::warn!(
            target: "ledge::sensor",
            "sensor {sensor}: {error} ({} similar failures not shown)",
            self.suppressed
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_a_json_object_with_name_value_unit_and_time() {
        let json = reading_json("t1", 21.5, Some("C"), 1_700_000_000_000);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["sensor"], "t1");
        assert_eq!(value["value"], 21.5);
        assert_eq!(value["unit"], "C");
        assert_eq!(value["ts"], 1_700_000_000_000u64);
        assert_eq!(value["quality"], "ok");
    }
}
