//! An Industrial I/O channel: `<device>/<channel>_raw`, scaled by
//! `<channel>_scale` and shifted by `<channel>_offset` as the kernel's IIO
//! ABI defines (value = (raw + offset) × scale). Scale and offset may also
//! be shared by the channel type (`in_voltage_scale` for `in_voltage0`).

use std::path::{Path, PathBuf};

use super::{Sample, Sensor, SensorError};

pub struct IioSensor {
    dir: PathBuf,
    channel: String,
}

impl IioSensor {
    pub fn new(dir: PathBuf, channel: String) -> Self {
        Self { dir, channel }
    }

    /// `<channel>_<what>`, else the shared `<type>_<what>` (channel name
    /// without its index), else `default`.
    fn attribute(&self, what: &str, default: f64) -> Result<f64, SensorError> {
        let shared = self.channel.trim_end_matches(|c: char| c.is_ascii_digit());
        for name in [
            format!("{}_{what}", self.channel),
            format!("{shared}_{what}"),
        ] {
            let path = self.dir.join(&name);
            if path.exists() {
                return read_number(&path);
            }
        }
        Ok(default)
    }
}

fn read_number(path: &Path) -> Result<f64, SensorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SensorError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
    text.trim().parse().map_err(|_| {
        SensorError::Garbage(format!(
            "{} holds `{}`, not a number",
            path.display(),
            text.trim().chars().take(40).collect::<String>()
        ))
    })
}

impl Sensor for IioSensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        let raw = read_number(&self.dir.join(format!("{}_raw", self.channel)))?;
        let offset = self.attribute("offset", 0.0)?;
        let scale = self.attribute("scale", 1.0)?;
        Ok(Sample {
            value: (raw + offset) * scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_offset_and_scale_follow_the_iio_abi() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in_temp_raw"), "1000\n").unwrap();
        std::fs::write(dir.path().join("in_temp_offset"), "-500\n").unwrap();
        std::fs::write(dir.path().join("in_temp_scale"), "0.5\n").unwrap();
        let mut sensor = IioSensor::new(dir.path().to_path_buf(), "in_temp".into());
        assert_eq!(sensor.sample().unwrap().value, 250.0);

        std::fs::write(dir.path().join("in_voltage0_raw"), "2048\n").unwrap();
        std::fs::write(dir.path().join("in_voltage_scale"), "0.805664062\n").unwrap();
        let mut adc = IioSensor::new(dir.path().to_path_buf(), "in_voltage0".into());
        assert!((adc.sample().unwrap().value - 1650.0).abs() < 0.01);

        let mut missing = IioSensor::new(dir.path().to_path_buf(), "in_humidityrelative".into());
        assert!(matches!(missing.sample(), Err(SensorError::Unavailable(_))));
    }
}
