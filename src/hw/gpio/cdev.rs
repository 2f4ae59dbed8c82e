//! The real driver: the GPIO character device, uAPI v2.
//!
//! A line is requested with `GPIO_V2_GET_LINE_IOCTL` on the chip; the kernel
//! returns a file descriptor for the request, on which values are read and
//! written with `GPIO_V2_LINE_{GET,SET}_VALUES_IOCTL` and edge events are
//! read() as `gpio_v2_line_event`s. Closing that descriptor releases the
//! line. Debounce, bias and active-low are requested from the kernel, which
//! debounces in software where the hardware cannot.
//!
//! Chips are found by path, by device name, or by label: the label is stable
//! where the number is not (the Raspberry Pi 5's header is `pinctrl-rp1`,
//! `gpiochip4` on older kernels and `gpiochip0` on newer ones).

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::uapi::{self, LineAttribute, LineConfigAttribute, LineEvent, LineRequest, LineValues};
use super::OutputLine;
use super::{Bias, Edge, GpioChip, GpioError, InputConfig, InputLine, OutputConfig};

/// Events read per read() call.
const EVENT_BATCH: usize = 16;

pub struct CdevChip {
    path: PathBuf,
}

impl CdevChip {
    pub fn open(chip: &str) -> Result<Self, GpioError> {
        let path = if chip.starts_with('/') {
            PathBuf::from(chip)
        } else if chip.starts_with("gpiochip") {
            Path::new("/dev").join(chip)
        } else {
            find_by_label(chip)?
        };
        if !path.exists() {
            return Err(GpioError::Unavailable(format!(
                "GPIO chip {} does not exist",
                path.display()
            )));
        }
        Ok(Self { path })
    }

    fn request(
        &self,
        line: u32,
        consumer: &str,
        config: uapi::LineConfig,
    ) -> Result<OwnedFd, GpioError> {
        let chip = open_rw(&self.path)?;
        let mut request = LineRequest::default();
        request.offsets[0] = line;
        request.num_lines = 1;
        let name = consumer.as_bytes();
        let n = name.len().min(uapi::MAX_NAME_SIZE - 1);
        request.consumer[..n].copy_from_slice(&name[..n]);
        request.config = config;
        // SAFETY: `request` is a valid gpio_v2_line_request the kernel reads
        // and writes (it sets `fd`); the chip fd is open.
        let rc = unsafe {
            libc::ioctl(
                chip.as_raw_fd(),
                uapi::GPIO_V2_GET_LINE_IOCTL as _,
                &mut request as *mut LineRequest,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            let what = format!("{} line {line}", self.path.display());
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    GpioError::Unavailable(format!("{what} is in use by another program"))
                }
                Some(libc::EINVAL) => GpioError::Unavailable(format!(
                    "{what}: no such line, or a setting the chip does not support ({e})"
                )),
                _ => GpioError::Io(format!("cannot request {what}: {e}")),
            });
        }
        // SAFETY: the kernel returned a new descriptor we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(request.fd) })
    }
}

fn open_rw(path: &Path) -> Result<File, GpioError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| GpioError::Unavailable(format!("cannot open {}: {e}", path.display())))
}

/// The label of the chip at `path`.
fn chip_label(path: &Path) -> Result<String, GpioError> {
    let chip = open_rw(path)?;
    // SAFETY: ChipInfo is plain old data; the kernel fills it in.
    let mut info: uapi::ChipInfo = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::ioctl(
            chip.as_raw_fd(),
            uapi::GPIO_GET_CHIPINFO_IOCTL as _,
            &mut info as *mut uapi::ChipInfo,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(GpioError::Io(format!("{}: chip info: {e}", path.display())));
    }
    Ok(uapi::c_name(&info.label))
}

/// `/dev/gpiochipN` whose label is `label`.
fn find_by_label(label: &str) -> Result<PathBuf, GpioError> {
    let mut seen = Vec::new();
    let mut chips: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map_err(|e| GpioError::Unavailable(format!("cannot list /dev: {e}")))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gpiochip"))
        })
        .collect();
    chips.sort();
    for path in chips {
        match chip_label(&path) {
            Ok(found) if found == label => return Ok(path),
            Ok(found) => seen.push(format!("{} [{found}]", path.display())),
            Err(e) => seen.push(e.to_string()),
        }
    }
    Err(GpioError::Unavailable(format!(
        "no GPIO chip labelled `{label}` (found: {})",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    )))
}

impl GpioChip for CdevChip {
    fn request_input(
        &self,
        line: u32,
        consumer: &str,
        config: &InputConfig,
    ) -> Result<Box<dyn InputLine>, GpioError> {
        let fd = self.request(line, consumer, input_config(config))?;
        Ok(Box::new(CdevInput {
            fd,
            queued: VecDeque::new(),
        }))
    }

    fn request_output(
        &self,
        line: u32,
        consumer: &str,
        config: OutputConfig,
    ) -> Result<Box<dyn OutputLine>, GpioError> {
        let fd = self.request(line, consumer, output_config(config))?;
        Ok(Box::new(CdevOutput { fd }))
    }
}

/// The kernel's line config for an input. Both edges are always watched,
/// whatever `edge` says: the sensor filters, and keeps its view of the level
/// (for `gpio_read`) right in both directions.
fn input_config(config: &InputConfig) -> uapi::LineConfig {
    let mut flags = uapi::FLAG_INPUT | uapi::FLAG_EDGE_RISING | uapi::FLAG_EDGE_FALLING;
    flags |= match config.bias {
        Bias::AsIs => 0,
        Bias::PullUp => uapi::FLAG_BIAS_PULL_UP,
        Bias::PullDown => uapi::FLAG_BIAS_PULL_DOWN,
        Bias::Disabled => uapi::FLAG_BIAS_DISABLED,
    };
    if config.active_low {
        flags |= uapi::FLAG_ACTIVE_LOW;
    }
    let mut line_config = uapi::LineConfig {
        flags,
        ..Default::default()
    };
    let debounce_us = u32::try_from(config.debounce.as_micros()).unwrap_or(u32::MAX);
    if debounce_us > 0 {
        line_config.attrs[0] = LineConfigAttribute {
            attr: LineAttribute::debounce(debounce_us),
            mask: 1,
        };
        line_config.num_attrs = 1;
    }
    line_config
}

/// The kernel's line config for an output. The initial value is part of the
/// request: the line never drives anything but it, not even for an instant.
fn output_config(config: OutputConfig) -> uapi::LineConfig {
    let mut flags = uapi::FLAG_OUTPUT;
    if config.active_low {
        flags |= uapi::FLAG_ACTIVE_LOW;
    }
    let mut line_config = uapi::LineConfig {
        flags,
        num_attrs: 1,
        ..Default::default()
    };
    line_config.attrs[0] = LineConfigAttribute {
        attr: LineAttribute {
            id: uapi::ATTR_ID_OUTPUT_VALUES,
            padding: 0,
            value: u64::from(config.initial),
        },
        mask: 1,
    };
    line_config
}

fn get_value(fd: RawFd) -> Result<bool, GpioError> {
    let mut values = LineValues { bits: 0, mask: 1 };
    // SAFETY: a valid gpio_v2_line_values on a line request fd.
    let rc = unsafe {
        libc::ioctl(
            fd,
            uapi::GPIO_V2_LINE_GET_VALUES_IOCTL as _,
            &mut values as *mut LineValues,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(GpioError::Io(format!("cannot read the line: {e}")));
    }
    Ok(values.bits & 1 == 1)
}

struct CdevInput {
    fd: OwnedFd,
    /// Events read but not yet handed out.
    queued: VecDeque<Edge>,
}

impl CdevInput {
    fn read_events(&mut self) -> Result<(), GpioError> {
        let mut events = [LineEvent::default(); EVENT_BATCH];
        let size = std::mem::size_of_val(&events);
        // SAFETY: reading into a buffer of `size` bytes we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), events.as_mut_ptr().cast(), size) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return Err(GpioError::Io(format!("cannot read line events: {e}")));
        }
        let count = n as usize / std::mem::size_of::<LineEvent>();
        for event in &events[..count] {
            let value = match event.id {
                uapi::EVENT_RISING_EDGE => true,
                uapi::EVENT_FALLING_EDGE => false,
                _ => continue,
            };
            self.queued.push_back(Edge { value });
        }
        Ok(())
    }
}

impl InputLine for CdevInput {
    fn value(&mut self) -> Result<bool, GpioError> {
        get_value(self.fd.as_raw_fd())
    }

    fn next_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError> {
        if let Some(edge) = self.queued.pop_front() {
            return Ok(Some(edge));
        }
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one pollfd we own.
        let rc = unsafe { libc::poll(&mut poll, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(GpioError::Io(format!("poll on the line failed: {e}")));
        }
        if rc > 0 && poll.revents & libc::POLLIN != 0 {
            self.read_events()?;
        }
        Ok(self.queued.pop_front())
    }
}

struct CdevOutput {
    fd: OwnedFd,
}

impl OutputLine for CdevOutput {
    fn set(&mut self, value: bool) -> Result<(), GpioError> {
        let mut values = LineValues {
            bits: u64::from(value),
            mask: 1,
        };
        // SAFETY: a valid gpio_v2_line_values on a line request fd.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                uapi::GPIO_V2_LINE_SET_VALUES_IOCTL as _,
                &mut values as *mut LineValues,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return Err(GpioError::Io(format!("cannot set the line: {e}")));
        }
        Ok(())
    }

    fn get(&mut self) -> Result<bool, GpioError> {
        get_value(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::gpio::EdgeKind;

    #[test]
    fn an_input_request_carries_edges_bias_polarity_and_debounce() {
        let config = InputConfig {
            edge: EdgeKind::Both,
            debounce: Duration::from_millis(20),
            bias: Bias::PullUp,
            active_low: true,
        };
        let c = input_config(&config);
        let want = uapi::FLAG_INPUT
            | uapi::FLAG_EDGE_RISING
            | uapi::FLAG_EDGE_FALLING
            | uapi::FLAG_BIAS_PULL_UP
            | uapi::FLAG_ACTIVE_LOW;
        assert_eq!(c.flags, want);
        assert_eq!(c.num_attrs, 1);
        assert_eq!(c.attrs[0].attr.id, uapi::ATTR_ID_DEBOUNCE);
        assert_eq!(c.attrs[0].attr.value & 0xffff_ffff, 20_000, "microseconds");
        assert_eq!(c.attrs[0].mask, 1);

        let plain = InputConfig {
            edge: EdgeKind::Falling,
            debounce: Duration::ZERO,
            bias: Bias::AsIs,
            active_low: false,
        };
        let c = input_config(&plain);
        let both = uapi::FLAG_EDGE_RISING | uapi::FLAG_EDGE_FALLING;
        assert_eq!(
            c.flags,
            uapi::FLAG_INPUT | both,
            "both edges, filtered by the sensor"
        );
        assert_eq!(c.num_attrs, 0, "no debounce attribute without a period");
    }

    #[test]
    fn an_output_request_starts_at_its_initial_value() {
        let c = output_config(OutputConfig {
            initial: true,
            active_low: true,
        });
        assert_eq!(c.flags, uapi::FLAG_OUTPUT | uapi::FLAG_ACTIVE_LOW);
        assert_eq!(c.num_attrs, 1);
        assert_eq!(c.attrs[0].attr.id, uapi::ATTR_ID_OUTPUT_VALUES);
        assert_eq!((c.attrs[0].attr.value, c.attrs[0].mask), (1, 1));
        let off = output_config(OutputConfig {
            initial: false,
            active_low: false,
        });
        assert_eq!(off.attrs[0].attr.value, 0);
    }

    #[test]
    fn a_missing_chip_is_unavailable_not_a_panic() {
        assert!(matches!(
            CdevChip::open("/nonexistent/gpiochip9"),
            Err(GpioError::Unavailable(_))
        ));
        assert!(matches!(
            CdevChip::open("no-such-label"),
            Err(GpioError::Unavailable(_))
        ));
    }
}
