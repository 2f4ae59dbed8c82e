//! `[[sensor]]`: what each sensor reads (replay file, sysfs, 1-wire,
//! IIO, thermal zone, simulated waveform, BME280 on I2C, GPIO input), how
//! often, and which samples become events.
//!
//! Files read: none. A replay `file` must exist (the sensor reads it when it
//! runs); sysfs, 1-wire, IIO and I2C paths are only composed here (from
//! `sysfs_root`, or the board profile's paths, or `/sys` and `/dev`).
//! GPIO sensors are resolved by [`super::gpio`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Resolver;
use crate::config::plan::{is_identifier, Report, SensorKind, SensorSpec, Waveform};
use crate::config::raw::{RawBus, RawSensor};
use crate::hw::bme280::Quantity;
use crate::topic::validate_topic_name;

impl Resolver<'_> {
    pub(super) fn sensors(&mut self, raw: Vec<Spanned<RawSensor>>) -> Vec<SensorSpec> {
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut sensors = Vec::with_capacity(raw.len());
        for entry in raw {
            let s = entry.into_inner();
            let name = s.name.get_ref().clone();
            if !is_identifier(&name, "") {
                self.fail(
                    s.name.span(),
                    "sensor name must be 1-64 letters, digits, `-` or `_`",
                );
            }
            if seen.insert(name.clone(), ()).is_some() {
                self.fail(s.name.span(), format!("duplicate sensor name `{name}`"));
            }
            self.check_sensor_keys(&s);
            if let Some(kind) = self.sensor_kind(&s) {
                let publish_topic = self.sensor_topic(&s, &name);
                let report = self.report(&s);
                let unit = match &kind {
                    SensorKind::Bme280 { measure, .. } if s.unit.is_none() => {
                        Some(measure.unit().to_owned())
                    }
                    _ => s.unit,
                };
                sensors.push(SensorSpec {
                    report,
                    interval: self.duration(&s.interval, Duration::from_secs(1)),
                    unit,
                    publish_topic,
                    kind,
                    name,
                });
            }
        }
        sensors
    }

    fn report(&mut self, s: &RawSensor) -> Report {
        let Some(report) = &s.report else {
            return Report::Every;
        };
        match report.get_ref().as_str() {
            "every" => Report::Every,
            "change" => Report::Change {
                deadband: s.deadband.unwrap_or(0.0).abs(),
            },
            "threshold" => match s.threshold {
                Some(threshold) => Report::Threshold {
                    threshold,
                    hysteresis: s.hysteresis.unwrap_or(0.0).abs(),
                },
                None => {
                    self.fail(report.span(), "report = \"threshold\" needs `threshold`");
                    Report::Every
                }
            },
            other => {
                self.fail(
                    report.span(),
                    format!("unknown report `{other}` (known: every, change, threshold)"),
                );
                Report::Every
            }
        }
    }

    fn sysfs_root(&self, s: &RawSensor) -> PathBuf {
        s.sysfs_root
            .as_ref()
            .map_or_else(|| PathBuf::from("/sys"), |root| self.path(root.get_ref()))
    }

    fn required<'s>(
        &mut self,
        s: &'s RawSensor,
        value: &'s Option<Spanned<String>>,
        key: &str,
    ) -> Option<&'s str> {
        match value {
            Some(v) => Some(v.get_ref().as_str()),
            None => {
                self.fail(
                    s.kind.span(),
                    format!("a {} sensor needs `{key}`", s.kind.get_ref()),
                );
                None
            }
        }
    }

    fn sensor_kind(&mut self, s: &RawSensor) -> Option<SensorKind> {
        match s.kind.get_ref().as_str() {
            "w1" | "ds18b20" => {
                let device = self.required(s, &s.device, "device")?;
                if !device.starts_with("28-") || device.contains('/') {
                    if let Some(d) = &s.device {
                        self.fail(
                            d.span(),
                            "a DS18B20's id starts with `28-` (see /sys/bus/w1/devices)",
                        );
                    }
                }
                // A board's 1-wire folder, unless sysfs_root moves /sys.
                let devices = match (&s.sysfs_root, &self.board) {
                    (None, Some(board)) => board.paths.w1.clone(),
                    _ => self.sysfs_root(s).join("bus/w1/devices"),
                };
                let path = devices.join(device).join("w1_slave");
                Some(SensorKind::OneWire { path })
            }
            "iio" => {
                let device = self.required(s, &s.device, "device")?.to_owned();
                let channel = self.required(s, &s.channel, "channel")?.to_owned();
                let dir = self.sysfs_root(s).join("bus/iio/devices").join(device);
                Some(SensorKind::Iio { dir, channel })
            }
            "thermal" => {
                let zone = s.zone.as_ref().map_or(0, |z| *z.get_ref());
                // The board's SoC zone, unless a zone or sysfs_root is given.
                let path = match (&s.zone, &s.sysfs_root, &self.board) {
                    (None, None, Some(board)) => board.paths.thermal.clone(),
                    _ => self
                        .sysfs_root(s)
                        .join(format!("class/thermal/thermal_zone{zone}/temp")),
                };
                Some(SensorKind::Sysfs {
                    path,
                    scale: 0.001,
                    offset: 0.0,
                })
            }
            "simulated" => {
                let waveform = match s.waveform.as_ref().map(|w| w.get_ref().as_str()) {
                    None | Some("sine") => Waveform::Sine,
                    Some("square") => Waveform::Square,
                    Some("sawtooth") => Waveform::Sawtooth,
                    Some("random_walk") => Waveform::RandomWalk,
                    Some(other) => {
                        if let Some(w) = &s.waveform {
                            self.fail(w.span(), format!("unknown waveform `{other}` (known: sine, square, sawtooth, random_walk)"));
                        }
                        Waveform::Sine
                    }
                };
                let (min, max) = (s.min.unwrap_or(0.0), s.max.unwrap_or(1.0));
                if max < min {
                    self.fail(s.kind.span(), "a simulated sensor needs min <= max");
                }
                Some(SensorKind::Simulated {
                    waveform,
                    min,
                    max,
                    period: self.duration(&s.period, Duration::from_secs(60)),
                    noise: s.noise.unwrap_or(0.0).abs(),
                })
            }
            "bme280" | "bmp280" => self.bme280(s),
            "replay" => {
                let Some(file) = &s.file else {
                    self.fail(s.kind.span(), "a replay sensor needs `file` (CSV or JSONL)");
                    return None;
                };
                let path = self.path(file.get_ref());
                if !path.is_file() {
                    self.fail(
                        file.span(),
                        format!("replay file {} does not exist", path.display()),
                    );
                }
                Some(SensorKind::Replay {
                    file: path,
                    looped: s.looped.unwrap_or(true),
                })
            }
            "sysfs" => {
                let Some(path) = &s.path else {
                    self.fail(s.kind.span(), "a sysfs sensor needs `path`");
                    return None;
                };
                Some(SensorKind::Sysfs {
                    path: self.path(path.get_ref()),
                    scale: s.scale.unwrap_or(1.0),
                    offset: s.offset.unwrap_or(0.0),
                })
            }
            "gpio" => self.gpio_input(s),
            other => {
                self.fail(
                    s.kind.span(),
                    format!("unknown sensor kind `{other}` (known: replay, sysfs, w1, iio, thermal, simulated, gpio, bme280)"),
                );
                None
            }
        }
    }

    fn bme280(&mut self, s: &RawSensor) -> Option<SensorKind> {
        let bus = match s.bus.as_ref().map(|b| (b.get_ref(), b.span())) {
            None => PathBuf::from("/dev/i2c-1"),
            Some((RawBus::Number(n), span)) => {
                if !(0..=255).contains(n) {
                    self.fail(span, "an I2C bus number is 0-255 (/dev/i2c-N)");
                }
                PathBuf::from(format!("/dev/i2c-{n}"))
            }
            Some((RawBus::Path(path), _)) => self.path(path),
        };
        let address = match &s.address {
            None => 0x76,
            Some(a) if (0x03..=0x77).contains(a.get_ref()) => *a.get_ref() as u8,
            Some(a) => {
                self.fail(
                    a.span(),
                    "an I2C address is 0x03-0x77 (a BME280 is at 0x76 or 0x77)",
                );
                0x76
            }
        };
        let measure = match s.measure.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("temperature") => Quantity::Temperature,
            Some("pressure") => Quantity::Pressure,
            Some("humidity") => Quantity::Humidity,
            Some(other) => {
                if let Some(m) = &s.measure {
                    self.fail(
                        m.span(),
                        format!(
                            "unknown measure `{other}` (known: temperature, pressure, humidity)"
                        ),
                    );
                }
                Quantity::Temperature
            }
        };
        Some(SensorKind::Bme280 {
            bus,
            address,
            measure,
        })
    }

    fn sensor_topic(&mut self, s: &RawSensor, name: &str) -> Option<String> {
        match (&s.topic, s.publish) {
            (_, Some(false)) => None,
            (Some(topic), _) => {
                if let Err(e) = validate_topic_name(topic.get_ref()) {
                    self.fail(topic.span(), format!("invalid topic: {e}"));
                }
                Some(topic.get_ref().clone())
            }
            (None, Some(true)) => Some(format!("sensors/{name}/reading")),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::resolve::{plan, plan_on};
    use crate::config::SensorKind;

    #[test]
    fn sensors_need_their_kind_specific_keys() {
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"sysfs\"\n").unwrap_err();
        assert!(err.contains("needs `path`"), "{err}");
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"spi\"\n").unwrap_err();
        assert!(err.contains("unknown sensor kind `spi`"), "{err}");
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"gpio\"\n").unwrap_err();
        assert!(err.contains("needs `pin`"), "{err}");
    }

    #[test]
    fn the_boards_sensor_paths_apply_unless_sysfs_root_is_given() {
        let text = "[device]\nboard = \"rpi3\"\n[[sensor]]\nname = \"t\"\nkind = \"w1\"\ndevice = \"28-01\"\n[[sensor]]\nname = \"soc\"\nkind = \"thermal\"\n";
        let on_board = plan_on(text, None).unwrap();
        let paths: Vec<String> = on_board
            .sensors
            .iter()
            .map(|s| match &s.kind {
                SensorKind::OneWire { path } | SensorKind::Sysfs { path, .. } => {
                    path.display().to_string()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/sys/bus/w1/devices/28-01/w1_slave",
                "/sys/class/thermal/thermal_zone0/temp"
            ]
        );
        let moved = plan_on(
            &text.replace("kind = \"w1\"", "kind = \"w1\"\nsysfs_root = \"fake\""),
            None,
        )
        .unwrap();
        let SensorKind::OneWire { path } = &moved.sensors[0].kind else {
            panic!()
        };
        assert_eq!(
            path.display().to_string(),
            "/cfg/fake/bus/w1/devices/28-01/w1_slave"
        );
    }
}
