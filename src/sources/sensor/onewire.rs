//! A DS18B20 temperature sensor on the 1-wire bus, through the kernel's
//! w1-therm driver: `/sys/bus/w1/devices/28-.../w1_slave`.
//!
//! The file has two lines: the scratchpad bytes ending in `crc=.. YES` (or
//! `NO` when the CRC failed), then `t=<millidegrees>`. A failed CRC and the
//! power-on value 85 °C (a conversion that never ran) are errors, not
//! readings.

use std::path::PathBuf;

use super::{Sample, Sensor, SensorError};

pub struct OneWireSensor {
    path: PathBuf,
}

impl OneWireSensor {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Sensor for OneWireSensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        // Reading w1_slave starts a conversion: this blocks ~750 ms, which is
        // why sensors sample on the blocking pool.
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            SensorError::Unavailable(format!(
                "DS18B20 {} not readable ({e}): unplugged, or the w1-gpio overlay is not enabled",
                self.path.display()
            ))
        })?;
        parse(&text).map_err(|e| SensorError::Garbage(format!("{}: {e}", self.path.display())))
    }
}

/// Parses the contents of `w1_slave`.
pub fn parse(text: &str) -> Result<Sample, String> {
    let mut lines = text.lines();
    let crc = lines.next().ok_or("empty w1_slave")?;
    if !crc.trim_end().ends_with("YES") {
        return Err("CRC check failed (bad wiring or a long bus)".to_owned());
    }
    let data = lines.next().ok_or("no temperature line")?;
    let millidegrees: i64 = data
        .rsplit_once("t=")
        .and_then(|(_, t)| t.trim().parse().ok())
        .ok_or_else(|| format!("no `t=` value in `{}`", data.trim()))?;
    if millidegrees == 85_000 {
        return Err(
            "85 °C is the power-on value: the conversion did not run (power supply?)".to_owned(),
        );
    }
    Ok(Sample {
        value: millidegrees as f64 / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n";

    #[test]
    fn a_good_reading_is_degrees() {
        assert_eq!(parse(GOOD).unwrap().value, 23.125);
        let negative = GOOD.replace("t=23125", "t=-10062");
        assert_eq!(parse(&negative).unwrap().value, -10.062);
    }

    #[test]
    fn crc_failures_power_on_values_and_garbage_are_errors() {
        assert!(parse(&GOOD.replace("YES", "NO"))
            .unwrap_err()
            .contains("CRC"));
        assert!(parse(&GOOD.replace("t=23125", "t=85000"))
            .unwrap_err()
            .contains("power-on"));
        assert!(parse("").is_err());
        assert!(parse("crc=00 YES\nnothing\n").unwrap_err().contains("t="));
    }
}
