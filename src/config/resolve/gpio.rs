//! GPIO: `[device] gpio_fake` (which driver serves the lines),
//! `kind = "gpio"` sensors, `[[gpio_output]]` and `allow_gpio`. A line is
//! named by a board pin (`pin`, through the board profile) or by `chip` and
//! `line`; names are one namespace and each line is used once.
//!
//! Files read: none (lines are opened when ledge runs, by `hw::gpio`).

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::Resolver;
use crate::board::Board;
use crate::config::plan::{
    is_identifier, GpioInputSpec, GpioOutputSpec, LineAddress, SensorKind, SensorSpec,
};
use crate::config::raw::{RawDevice, RawGpioOutput, RawSensor};
use crate::config::Location;
use crate::hw::gpio::{Backend, Bias, EdgeKind, InputConfig};
use crate::units::parse_duration;

impl Resolver<'_> {
    pub(super) fn gpio_backend(&self, raw: &RawDevice) -> Backend {
        match &raw.gpio_fake {
            Some(dir) => Backend::Fake(self.path(dir.get_ref())),
            None => Backend::Cdev,
        }
    }

    /// A line given by `pin` (a board pin name) or by `chip` and `line`.
    fn line_address(
        &mut self,
        anchor: Range<usize>,
        pin: &Option<Spanned<String>>,
        chip: &Option<Spanned<String>>,
        line: &Option<Spanned<i64>>,
    ) -> Option<LineAddress> {
        let chip_or_line = chip
            .as_ref()
            .map(Spanned::span)
            .or(line.as_ref().map(Spanned::span));
        if let (Some(_), Some(span)) = (pin, chip_or_line) {
            self.fail(span, "give either `pin` or `chip` and `line`, not both");
            return None;
        }
        if let Some(pin) = pin {
            return self.pin(pin);
        }
        let Some(line) = line else {
            self.fail(anchor, "a GPIO line needs `pin` (a board pin name such as \"GPIO17\") or `line` (with `chip`)");
            return None;
        };
        let Ok(offset) = u32::try_from(*line.get_ref()) else {
            self.fail(line.span(), "line must be a line offset, 0 or more");
            return None;
        };
        let chip = match chip {
            Some(chip) if chip.get_ref().is_empty() => {
                self.fail(chip.span(), "chip must not be empty");
                return None;
            }
            Some(chip) => chip.get_ref().clone(),
            None => self
                .board
                .as_ref()
                .map_or_else(|| "gpiochip0".to_owned(), |b| b.gpio_chip().to_owned()),
        };
        Some(LineAddress {
            chip,
            line: offset,
            pin: None,
        })
    }

    fn pin(&mut self, pin: &Spanned<String>) -> Option<LineAddress> {
        let name = pin.get_ref();
        let Some(board) = self.board.clone() else {
            self.fail(
                pin.span(),
                format!("pin `{name}` needs a board profile to name lines: set [device] board (or --board), or give `chip` and `line`"),
            );
            return None;
        };
        match board.pin(name) {
            Some(line) => Some(LineAddress {
                chip: board.gpio_chip().to_owned(),
                line,
                pin: Some(name.to_ascii_uppercase()),
            }),
            None => {
                self.fail(
                    pin.span(),
                    format!(
                        "pin `{name}` does not exist on board {} ({})",
                        board.name,
                        pin_summary(&board)
                    ),
                );
                None
            }
        }
    }

    /// GPIO keys on a sensor of another kind, and sampling keys on a gpio
    /// sensor, are errors rather than silently ignored.
    pub(super) fn check_sensor_keys(&mut self, s: &RawSensor) {
        let is_gpio = s.kind.get_ref() == "gpio";
        let gpio_keys = [
            ("pin", s.pin.as_ref().map(Spanned::span)),
            ("chip", s.chip.as_ref().map(Spanned::span)),
            ("line", s.line.as_ref().map(Spanned::span)),
            ("edge", s.edge.as_ref().map(Spanned::span)),
            ("debounce", s.debounce.as_ref().map(Spanned::span)),
            ("bias", s.bias.as_ref().map(Spanned::span)),
        ];
        let sampling_keys = [
            ("interval", s.interval.as_ref().map(Spanned::span)),
            ("report", s.report.as_ref().map(Spanned::span)),
        ];
        let (keys, message): (&[_], &str) = if is_gpio {
            (
                &sampling_keys,
                "does not apply to a gpio sensor: it sends one event per edge",
            )
        } else {
            (&gpio_keys, "applies only to gpio sensors")
        };
        for (key, span) in keys {
            if let Some(span) = span {
                self.fail(span.clone(), format!("`{key}` {message}"));
            }
        }
    }

    /// `kind = "gpio"`.
    pub(super) fn gpio_input(&mut self, s: &RawSensor) -> Option<SensorKind> {
        let address = self.line_address(s.kind.span(), &s.pin, &s.chip, &s.line)?;
        let edge = match s.edge.as_ref().map(|e| (e.get_ref().as_str(), e.span())) {
            None | Some(("both", _)) => EdgeKind::Both,
            Some(("rising", _)) => EdgeKind::Rising,
            Some(("falling", _)) => EdgeKind::Falling,
            Some((other, span)) => {
                self.fail(
                    span,
                    format!("unknown edge `{other}` (known: rising, falling, both)"),
                );
                EdgeKind::Both
            }
        };
        let bias = match s.bias.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
            None => Bias::AsIs,
            Some(("pull-up", _)) => Bias::PullUp,
            Some(("pull-down", _)) => Bias::PullDown,
            Some(("disabled", _)) => Bias::Disabled,
            Some((other, span)) => {
                self.fail(
                    span,
                    format!("unknown bias `{other}` (known: pull-up, pull-down, disabled)"),
                );
                Bias::AsIs
            }
        };
        let debounce = match &s.debounce {
            None => Duration::ZERO,
            Some(d) => match parse_duration(d.get_ref()) {
                Ok(d) if d <= Duration::from_secs(1) => d,
                Ok(_) => {
                    self.fail(d.span(), "debounce must be at most 1s");
                    Duration::ZERO
                }
                Err(e) => {
                    self.fail(d.span(), e);
                    Duration::ZERO
                }
            },
        };
        Some(SensorKind::Gpio(GpioInputSpec {
            address,
            config: InputConfig {
                edge,
                debounce,
                bias,
                active_low: s.active_low.unwrap_or(false),
            },
        }))
    }

    pub(super) fn gpio_outputs(&mut self, raw: Vec<Spanned<RawGpioOutput>>) -> Vec<GpioOutputSpec> {
        let mut outputs: Vec<GpioOutputSpec> = Vec::with_capacity(raw.len());
        let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
        // Each line once: (chip, offset) -> the output that has it, and where.
        let mut lines: HashMap<(String, u32), (String, Location)> = HashMap::new();
        for entry in raw {
            let o = entry.into_inner();
            let name = o.name.get_ref().clone();
            if !is_identifier(&name, "") {
                self.fail(
                    o.name.span(),
                    "gpio_output name must be 1-64 letters, digits, `-` or `_`",
                );
            }
            if !names.insert(name.clone()) {
                self.fail(
                    o.name.span(),
                    format!("duplicate gpio_output name `{name}`"),
                );
            }
            let default = match &o.default {
                None => false,
                Some(v) if matches!(v.get_ref(), 0 | 1) => *v.get_ref() == 1,
                Some(v) => {
                    self.fail(v.span(), "default (the safe state) must be 0 or 1");
                    false
                }
            };
            let Some(address) = self.line_address(o.name.span(), &o.pin, &o.chip, &o.line) else {
                continue;
            };
            let span = o
                .pin
                .as_ref()
                .map(Spanned::span)
                .or(o.line.as_ref().map(Spanned::span))
                .unwrap_or(o.name.span());
            let key = (address.chip.clone(), address.line);
            if let Some((other, place)) = lines.get(&key) {
                let message = format!(
                    "gpio_output `{name}`: {address} is already used by gpio_output `{other}` (at {place}); a line can drive one output"
                );
                self.fail(span, message);
            } else {
                lines.insert(key, (name.clone(), self.locate(span)));
            }
            outputs.push(GpioOutputSpec {
                name,
                address,
                default,
                active_low: o.active_low.unwrap_or(false),
                restore_on_crash: o.restore_on_crash.unwrap_or(true),
            });
        }
        outputs
    }

    /// GPIO names are one namespace (outputs and gpio sensors), each line is
    /// used once, and `allow_gpio` names only lines that exist.
    pub(super) fn check_gpio(
        &mut self,
        grants: &[Vec<Spanned<String>>],
        outputs: &[GpioOutputSpec],
        sensors: &[SensorSpec],
        sensor_spans: &HashMap<String, Range<usize>>,
    ) {
        let inputs: Vec<(&str, &LineAddress)> = sensors
            .iter()
            .filter_map(|s| match &s.kind {
                SensorKind::Gpio(input) => Some((s.name.as_str(), &input.address)),
                _ => None,
            })
            .collect();
        let mut lines: HashMap<(&str, u32), &str> = outputs
            .iter()
            .map(|o| ((o.address.chip.as_str(), o.address.line), o.name.as_str()))
            .collect();
        let output_names: std::collections::HashSet<&str> =
            outputs.iter().map(|o| o.name.as_str()).collect();
        for (name, address) in &inputs {
            let span = sensor_spans.get(*name).cloned().unwrap_or(0..0);
            if output_names.contains(name) {
                self.fail(span.clone(), format!("`{name}` is both a gpio sensor and a gpio_output; GPIO names must be unique"));
            }
            match lines.get(&(address.chip.as_str(), address.line)) {
                Some(other) => self.fail(span, format!("{address} is already used by `{other}`")),
                None => {
                    lines.insert((address.chip.as_str(), address.line), name);
                }
            }
        }
        let known: Vec<&str> = outputs
            .iter()
            .map(|o| o.name.as_str())
            .chain(inputs.iter().map(|(n, _)| *n))
            .collect();
        let known_set: std::collections::HashSet<&str> = known.iter().copied().collect();
        for grant in grants.iter().flatten() {
            if !known_set.contains(grant.get_ref().as_str()) {
                self.fail(
                    grant.span(),
                    format!(
                        "allow_gpio names unknown GPIO line `{}` (defined: {})",
                        grant.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
}

/// "GPIO2..GPIO27, PIN3..PIN40": a board's pin names, compactly.
fn pin_summary(board: &Board) -> String {
    let names = board.pin_names();
    if names.is_empty() {
        return "it names no pins: give `chip` and `line`".to_owned();
    }
    let prefix = |n: &str| n.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
    let mut groups: Vec<(String, &str, &str)> = Vec::new();
    for name in names {
        match groups.last_mut() {
            Some((p, _, last)) if *p == prefix(name) => *last = name,
            _ => groups.push((prefix(name), name, name)),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(_, first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}..{last}")
            }
        })
        .collect();
    format!("pins: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::resolve::plan_on as plan;
    use crate::config::SensorKind;
    use crate::hw::gpio::{Backend, Bias, EdgeKind};

    #[test]
    fn pins_resolve_through_the_board_to_its_chip_and_line() {
        let text = "[device]\nboard = \"rpi5\"\n[[sensor]]\nname = \"door\"\nkind = \"gpio\"\npin = \"PIN11\"\nedge = \"falling\"\ndebounce = \"20ms\"\nbias = \"pull-up\"\nactive_low = true\n";
        let plan = plan(text, None).unwrap();
        let SensorKind::Gpio(input) = &plan.sensors[0].kind else {
            panic!("not a gpio sensor");
        };
        assert_eq!(input.address.to_string(), "pinctrl-rp1 line 17 (PIN11)");
        assert_eq!(input.config.edge, EdgeKind::Falling);
        assert_eq!(input.config.debounce, Duration::from_millis(20));
        assert_eq!(input.config.bias, Bias::PullUp);
        assert!(input.config.active_low);
    }

    #[test]
    fn an_unknown_pin_is_an_error_at_its_place_naming_the_board() {
        let text =
            "[device]\nboard = \"rpi4\"\n[[gpio_output]]\nname = \"relay\"\npin = \"GPIO40\"\n";
        let err = plan(text, None).unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:5:7: pin `GPIO40` does not exist on board rpi4"),
            "{err}"
        );
        assert!(err.contains("GPIO2..GPIO27, PIN3..PIN40"), "{err}");
        let err = plan(
            "[[gpio_output]]\nname = \"relay\"\npin = \"GPIO17\"\n",
            None,
        )
        .unwrap_err();
        assert!(err.contains("needs a board profile"), "{err}");
    }

    #[test]
    fn keys_of_the_wrong_kind_of_sensor_are_errors() {
        let err = plan(
            "[[sensor]]\nname = \"t\"\nkind = \"thermal\"\nedge = \"both\"\n",
            None,
        )
        .unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:4:8: `edge` applies only to gpio sensors"),
            "{err}"
        );
        let err = plan(
            "[[sensor]]\nname = \"b\"\nkind = \"gpio\"\nline = 3\nreport = \"change\"\n",
            None,
        )
        .unwrap_err();
        assert!(
            err.contains(":5:10: `report` does not apply to a gpio sensor"),
            "{err}"
        );
    }

    #[test]
    fn chip_and_line_work_without_a_board() {
        let text = "[[gpio_output]]\nname = \"relay\"\nchip = \"gpiochip2\"\nline = 5\ndefault = 1\nrestore_on_crash = false\n";
        let plan = plan(text, None).unwrap();
        let relay = &plan.gpio.outputs[0];
        assert_eq!(relay.address.to_string(), "gpiochip2 line 5");
        assert!(relay.default && !relay.restore_on_crash);
        assert_eq!(plan.gpio.backend, Backend::Cdev);
    }

    #[test]
    fn allow_gpio_must_name_a_known_line() {
        let text = "[[gpio_output]]\nname = \"relay\"\nline = 5\n[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nallow_gpio = [\"relay\", \"pump\"]\n";
        let err = plan(text, None).unwrap_err();
        assert!(
            err.starts_with(
                "/cfg/ledge.toml:7:24: allow_gpio names unknown GPIO line `pump` (defined: relay)"
            ),
            "{err}"
        );
    }

    #[test]
    fn one_line_cannot_be_used_twice_and_names_are_shared() {
        let text = "[[gpio_output]]\nname = \"relay\"\nline = 5\n[[sensor]]\nname = \"relay\"\nkind = \"gpio\"\nline = 5\n";
        let err = plan(text, None).unwrap_err();
        assert!(
            err.contains("both a gpio sensor and a gpio_output"),
            "{err}"
        );
        assert!(
            err.contains("gpiochip0 line 5 is already used by `relay`"),
            "{err}"
        );
    }
}
