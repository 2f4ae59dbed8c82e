//! GPIO lines: the traits the rest of ledge uses, and two drivers.
//!
//! - `cdev`: the Linux GPIO character device, uAPI v2 (`/dev/gpiochipN`,
//!   `GPIO_V2_GET_LINE_IOCTL`; edge events read from the line request fd;
//!   debounce, bias and active-low done by the kernel). Never sysfs GPIO,
//!   which is deprecated and gone from current Raspberry Pi kernels.
//! - `fake`: a folder with one file per line holding `0` or `1` (the
//!   *physical* level), polled for inputs and written for outputs. It exists
//!   for tests and development on a machine without GPIO (`[device]
//!   gpio_fake`); it synthesizes edges and applies `debounce` and
//!   `active_low` in software, with the same [`Debouncer`] semantics as the
//!   kernel's.
//!
//! Values crossing these traits are *logical*: 1 means active, so with
//! `active_low` a line held low reads 1.

mod cdev;
mod fake;
mod lines;
mod spec;
pub mod uapi;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use lines::{GpioLines, LineError, UNKNOWN};
pub use spec::{GpioOutputSpec, LineAddress};

/// Which transitions of an input become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    Rising,
    Falling,
    Both,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rising => "rising",
            Self::Falling => "falling",
            Self::Both => "both",
        }
    }

    /// True if a change to logical `value` is an event of this kind.
    pub fn admits(self, value: bool) -> bool {
        match self {
            Self::Rising => value,
            Self::Falling => !value,
            Self::Both => true,
        }
    }
}

/// The pull resistor of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// Leave it as the board or device tree set it.
    AsIs,
    PullUp,
    PullDown,
    Disabled,
}

/// How an input line is requested.
#[derive(Debug, Clone, PartialEq)]
pub struct InputConfig {
    pub edge: EdgeKind,
    pub debounce: Duration,
    pub bias: Bias,
    pub active_low: bool,
}

/// How an output line is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputConfig {
    /// Logical value driven from the moment the line is requested.
    pub initial: bool,
    pub active_low: bool,
}

/// One edge: the input's new logical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub value: bool,
}

impl Edge {
    pub fn name(self) -> &'static str {
        if self.value {
            "rising"
        } else {
            "falling"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// The chip or line does not exist, or is held by another program.
    #[error("{0}")]
    Unavailable(String),
    /// The chip refused a request or an operation.
    #[error("{0}")]
    Io(String),
}

/// A GPIO controller (`/dev/gpiochipN`, or a fake folder).
pub trait GpioChip: Send + Sync {
    fn request_input(
        &self,
        line: u32,
        consumer: &str,
        config: &InputConfig,
    ) -> Result<Box<dyn InputLine>, GpioError>;

    fn request_output(
        &self,
        line: u32,
        consumer: &str,
        config: OutputConfig,
    ) -> Result<Box<dyn OutputLine>, GpioError>;
}

/// A requested input. Implementations may block in `next_edge`.
pub trait InputLine: Send {
    /// The current logical value.
    fn value(&mut self) -> Result<bool, GpioError>;
    /// Waits up to `timeout` for the next (debounced) edge, in either
    /// direction: drivers report both, and the sensor keeps those its
    /// `edge` admits (its view of the level stays right for `gpio_read`).
    fn next_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError>;
}

/// A requested output. Dropping it releases the line.
pub trait OutputLine: Send {
    fn set(&mut self, value: bool) -> Result<(), GpioError>;
    fn get(&mut self) -> Result<bool, GpioError>;
}

/// Which driver serves the GPIO chips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The kernel's GPIO character device.
    Cdev,
    /// Files under this folder: `<dir>/<chip>/<line>` (tests, development).
    Fake(PathBuf),
}

/// Opens `chip`: a path (`/dev/gpiochip0`), a device name (`gpiochip0`) or,
/// on the character device, a chip label (`pinctrl-rp1`).
pub fn open_chip(backend: &Backend, chip: &str) -> Result<Box<dyn GpioChip>, GpioError> {
    match backend {
        Backend::Cdev => Ok(Box::new(cdev::CdevChip::open(chip)?)),
        Backend::Fake(dir) => Ok(Box::new(fake::FakeChip::open(dir, chip)?)),
    }
}

/// Turns raw level changes into debounced edges, the way the kernel's
/// software debounce does: a new level counts once it has held for the whole
/// debounce period; a bounce back within the period cancels it. No IO and no
/// clock of its own: the caller feeds it levels and instants.
#[derive(Debug)]
pub struct Debouncer {
    period: Duration,
    /// The last level reported (or the initial one).
    stable: bool,
    /// A different level seen, and since when.
    pending: Option<(bool, Instant)>,
}

impl Debouncer {
    pub fn new(initial: bool, period: Duration) -> Self {
        Self {
            period,
            stable: initial,
            pending: None,
        }
    }

    /// The debounced level.
    pub fn stable(&self) -> bool {
        self.stable
    }

    /// Feeds the level seen at `now`; returns the new stable level if it
    /// just changed.
    pub fn observe(&mut self, level: bool, now: Instant) -> Option<bool> {
        if level == self.stable {
            self.pending = None;
            return None;
        }
        let since = match self.pending {
            Some((pending, since)) if pending == level => since,
            _ => {
                self.pending = Some((level, now));
                now
            }
        };
        if now.duration_since(since) >= self.period {
            self.stable = level;
            self.pending = None;
            return Some(level);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bounce_within_the_period_yields_one_edge() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(false, ms(50));
        // 0 -> 1, bounces 0, 1 within 50 ms, then holds.
        assert_eq!(d.observe(true, t0), None);
        assert_eq!(d.observe(false, t0 + ms(10)), None);
        assert_eq!(d.observe(true, t0 + ms(20)), None);
        assert_eq!(d.observe(true, t0 + ms(60)), None, "held 40 ms only");
        assert_eq!(d.observe(true, t0 + ms(70)), Some(true));
        assert_eq!(d.observe(true, t0 + ms(200)), None);
        assert!(d.stable());
    }

    #[test]
    fn a_glitch_shorter_than_the_period_is_no_edge() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(true, ms(30));
        assert_eq!(d.observe(false, t0), None);
        assert_eq!(d.observe(true, t0 + ms(5)), None);
        assert_eq!(d.observe(true, t0 + ms(100)), None);
    }

    #[test]
    fn without_a_period_every_change_is_an_edge() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(false, Duration::ZERO);
        assert_eq!(d.observe(true, t0), Some(true));
        assert_eq!(d.observe(false, t0), Some(false));
        assert_eq!(d.observe(false, t0), None);
    }

    #[test]
    fn edge_kinds_admit_their_transitions() {
        assert!(EdgeKind::Rising.admits(true) && !EdgeKind::Rising.admits(false));
        assert!(EdgeKind::Falling.admits(false) && !EdgeKind::Falling.admits(true));
        assert!(EdgeKind::Both.admits(true) && EdgeKind::Both.admits(false));
    }
}
