//! Sensors: sampled every `interval`; each sample becomes an event routed by
//! `source = "sensor"` triggers and, if configured, a message on the local
//! broker.
//!
//! A kind of sensor is one implementation of [`Sensor`]. Sampling may block
//! (a DS18B20 conversion takes 750 ms), so samples are taken on tokio's
//! blocking pool, never on the reactor; one slow or failing sensor never
//! delays another. GPIO inputs are the exception: they are not sampled but
//! watched for edges (`gpio`).

pub mod bme280;
pub mod gpio;
pub mod i2c;
mod iio;
mod onewire;
mod replay;
mod simulated;
mod sysfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::{Report, SensorKind, SensorSpec};
use crate::dispatch::Dispatcher;
use crate::event::{unix_ms, Event, EventSource};
use crate::sinks::{OutgoingMessage, PublishSink, Qos};

pub use bme280::Bme280Sensor;
pub use iio::IioSensor;
pub use onewire::OneWireSensor;
pub use replay::ReplaySensor;
pub use simulated::SimulatedSensor;
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
        SensorKind::OneWire { path } => Box::new(OneWireSensor::new(path.clone())),
        SensorKind::Iio { dir, channel } => Box::new(IioSensor::new(dir.clone(), channel.clone())),
        SensorKind::Bme280 {
            bus,
            address,
            measure,
        } => Box::new(Bme280Sensor::new(i2c::open(bus), *address, *measure)),
        SensorKind::Simulated {
            waveform,
            min,
            max,
            period,
            noise,
        } => Box::new(SimulatedSensor::new(*waveform, *min, *max, *period, *noise)),
        SensorKind::Gpio(_) => {
            return Err(SensorError::Unavailable(
                "a gpio sensor is event-driven: start it with sensor::gpio::run".to_owned(),
            ))
        }
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
    let mut filter = ReportFilter::new(spec.report);
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if failures > 0 {
            // A sensor that keeps failing is retried less and less often
            // (up to 64 intervals, at most 5 minutes), not hammered.
            let backoff = spec
                .interval
                .saturating_mul(1 << failures.min(6))
                .min(MAX_RETRY_DELAY.max(spec.interval));
            tokio::select! {
                _ = tokio::time::sleep(backoff.saturating_sub(spec.interval)) => {}
                _ = shutdown.changed() => return,
            }
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
            Ok(sample) => {
                if failures > 0 {
                    log::info!(target: "ledge::sensor", "sensor {}: reading again after {failures} failures", spec.name);
                }
                failures = 0;
                if filter.admit(sample.value) {
                    let payload =
                        reading_json(&spec.name, sample.value, spec.unit.as_deref(), unix_ms());
                    deliver(&spec, payload, &dispatcher, publisher.as_ref());
                }
            }
            Err(SensorError::Finished) => {
                log::info!(target: "ledge::sensor", "sensor {}: replay finished", spec.name);
                return;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // An error event when the sensor starts failing and then at
                // the log's rate: functions can react (an alarm, a safe
                // state) without being flooded.
                if errors.record(&spec.name, &e) {
                    deliver(
                        &spec,
                        error_json(&spec.name, &e, unix_ms()),
                        &dispatcher,
                        publisher.as_ref(),
                    );
                }
            }
        }
    }
}

/// The longest wait between attempts at a failing sensor.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Decides which samples become events (`report` in the config).
struct ReportFilter {
    report: Report,
    last: Option<f64>,
    /// For `Threshold`: true while above the threshold.
    above: Option<bool>,
}

impl ReportFilter {
    fn new(report: Report) -> Self {
        Self {
            report,
            last: None,
            above: None,
        }
    }

    fn admit(&mut self, value: f64) -> bool {
        match self.report {
            Report::Every => true,
            Report::Change { deadband } => {
                let changed = self.last.is_none_or(|last| (value - last).abs() > deadband);
                if changed {
                    self.last = Some(value);
                }
                changed
            }
            Report::Threshold {
                threshold,
                hysteresis,
            } => {
                let now_above = match self.above {
                    // The first sample reports where we are.
                    None => value >= threshold,
                    Some(true) => value >= threshold - hysteresis,
                    Some(false) => value >= threshold,
                };
                let changed = self.above != Some(now_above);
                self.above = Some(now_above);
                changed
            }
        }
    }
}

fn deliver(
    spec: &SensorSpec,
    payload: String,
    dispatcher: &Dispatcher,
    publisher: &dyn PublishSink,
) {
    log::debug!(target: "ledge::sensor", "sensor {}: {payload}", spec.name);
    let event = Event::new(EventSource::Sensor, spec.name.clone(), payload.clone());
    dispatcher.submit(event, crate::dispatch::Overflow::Spill);
    if let Some(topic) = &spec.publish_topic {
        let message = OutgoingMessage {
            topic: topic.clone(),
            payload: payload.into(),
            qos: Qos::AtLeastOnce,
            depth: 0,
            retain: false,
        };
        if let Err(e) = publisher.publish(message) {
            log::debug!(target: "ledge::sensor", "sensor {}: reading not published: {e}", spec.name);
        }
    }
}

/// The event payload when a sensor fails: quality `error` and the reason.
pub fn error_json(sensor: &str, error: &SensorError, ts_ms: u64) -> String {
    serde_json::json!({
        "sensor": sensor,
        "value": null,
        "ts": ts_ms,
        "quality": "error",
        "error": error.to_string(),
    })
    .to_string()
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
    /// Counts the failure and logs it if one is due; true if it was.
    fn record(&mut self, sensor: &str, error: &SensorError) -> bool {
        crate::metrics::sensor_failed(sensor);
        let due = self.last.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return false;
        }
        log::warn!(
            target: "ledge::sensor",
            "sensor {sensor}: {error} ({} similar failures not shown)",
            self.suppressed
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_reports_only_moves_beyond_the_deadband() {
        let mut filter = ReportFilter::new(Report::Change { deadband: 0.5 });
        let admitted: Vec<f64> = [20.0, 20.2, 20.5, 20.6, 20.0, 19.9, 25.0]
            .into_iter()
            .filter(|v| filter.admit(*v))
            .collect();
        assert_eq!(admitted, vec![20.0, 20.6, 20.0, 25.0]);
    }

    #[test]
    fn threshold_reports_crossings_with_hysteresis() {
        let mut filter = ReportFilter::new(Report::Threshold {
            threshold: 30.0,
            hysteresis: 1.0,
        });
        let admitted: Vec<f64> = [25.0, 29.9, 30.0, 29.5, 30.4, 29.0, 28.9, 31.0]
            .into_iter()
            .filter(|v| filter.admit(*v))
            .collect();
        // 25 (first: below), 30.0 (up), 28.9 (below 29 = down), 31 (up).
        assert_eq!(admitted, vec![25.0, 30.0, 28.9, 31.0]);
    }

    #[test]
    fn an_error_event_says_quality_error_and_why() {
        let json = error_json("t1", &SensorError::Unavailable("gone".into()), 5);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["quality"], "error");
        assert_eq!(value["error"], "gone");
        assert!(value["value"].is_null());
    }

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
