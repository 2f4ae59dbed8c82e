//! A simulated sensor for development and demos: a waveform between `min`
//! and `max` with period `period`, plus uniform noise. Deterministic for a
//! given start (the noise comes from a fixed-seed generator), so demos and
//! tests repeat.

use std::time::{Duration, Instant};

use super::{Sample, Sensor, SensorError};
use crate::config::Waveform;

pub struct SimulatedSensor {
    waveform: Waveform,
    min: f64,
    max: f64,
    period: Duration,
    noise: f64,
    started: Instant,
    /// xorshift state.
    state: u64,
    walk: f64,
}

impl SimulatedSensor {
    pub fn new(waveform: Waveform, min: f64, max: f64, period: Duration, noise: f64) -> Self {
        Self {
            waveform,
            min,
            max,
            period,
            noise,
            started: Instant::now(),
            state: 0x9E37_79B9_7F4A_7C15,
            walk: 0.5,
        }
    }

    /// Uniform in [-1, 1).
    fn random(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// The value at `elapsed` into the run.
    pub fn value_at(&mut self, elapsed: Duration) -> f64 {
        let phase = if self.period.is_zero() {
            0.0
        } else {
            (elapsed.as_secs_f64() / self.period.as_secs_f64()).fract()
        };
        let unit = match self.waveform {
            Waveform::Sine => 0.5 + 0.5 * (phase * std::f64::consts::TAU).sin(),
            Waveform::Square => {
                if phase < 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Waveform::Sawtooth => phase,
            Waveform::RandomWalk => {
                self.walk = (self.walk + 0.05 * self.random()).clamp(0.0, 1.0);
                self.walk
            }
        };
        let noise = self.noise * self.random();
        self.min + unit * (self.max - self.min) + noise
    }
}

impl Sensor for SimulatedSensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        let elapsed = self.started.elapsed();
        Ok(Sample {
            value: self.value_at(elapsed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waveforms_span_min_to_max() {
        let period = Duration::from_secs(4);
        let mut sine = SimulatedSensor::new(Waveform::Sine, 10.0, 20.0, period, 0.0);
        assert!((sine.value_at(Duration::from_secs(0)) - 15.0).abs() < 1e-9);
        assert!((sine.value_at(Duration::from_secs(1)) - 20.0).abs() < 1e-9);
        assert!((sine.value_at(Duration::from_secs(3)) - 10.0).abs() < 1e-9);
        let mut square = SimulatedSensor::new(Waveform::Square, 0.0, 1.0, period, 0.0);
        assert_eq!(square.value_at(Duration::from_secs(1)), 1.0);
        assert_eq!(square.value_at(Duration::from_secs(3)), 0.0);
        let mut saw = SimulatedSensor::new(Waveform::Sawtooth, 0.0, 8.0, period, 0.0);
        assert_eq!(saw.value_at(Duration::from_secs(2)), 4.0);
        let mut walk = SimulatedSensor::new(Waveform::RandomWalk, -5.0, 5.0, period, 0.5);
        for _ in 0..1000 {
            let v = walk.value_at(Duration::ZERO);
            assert!((-5.5..=5.5).contains(&v), "{v}");
        }
    }
}
