//! A number read from a file, such as
//! `/sys/class/thermal/thermal_zone0/temp` (millidegrees), scaled.

use std::path::PathBuf;

use super::{Sample, Sensor, SensorError};

pub struct SysfsSensor {
    path: PathBuf,
    scale: f64,
    offset: f64,
}

impl SysfsSensor {
    pub fn new(path: PathBuf, scale: f64, offset: f64) -> Self {
        Self {
            path,
            scale,
            offset,
        }
    }
}

impl Sensor for SysfsSensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            SensorError::Unavailable(format!("cannot read {}: {e}", self.path.display()))
        })?;
        let raw: f64 = text.trim().parse().map_err(|_| {
            SensorError::Garbage(format!(
                "{} holds `{}`, not a number",
                self.path.display(),
                text.trim().chars().take(40).collect::<String>()
            ))
        })?;
        Ok(Sample {
            value: raw * self.scale + self.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_value_is_scaled_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("temp");
        std::fs::write(&path, "48312\n").unwrap();
        let mut sensor = SysfsSensor::new(path, 0.001, -1.0);
        let value = sensor.sample().unwrap().value;
        assert!((value - 47.312).abs() < 1e-9, "{value}");
    }

    #[test]
    fn a_missing_file_or_garbage_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("temp");
        let mut sensor = SysfsSensor::new(path.clone(), 1.0, 0.0);
        assert!(matches!(sensor.sample(), Err(SensorError::Unavailable(m)) if m.contains("temp")));
        std::fs::write(&path, "not-a-number").unwrap();
        assert!(
            matches!(sensor.sample(), Err(SensorError::Garbage(m)) if m.contains("not-a-number"))
        );
    }
}
