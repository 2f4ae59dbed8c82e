//! Named GPIO lines: switch an actuator (`[[gpio_output]]`), read an output
//! or a `kind = "gpio"` sensor.
//!
//! Lines are named in the host's config, not by chip or pin, and a function
//! reaches only those in its `allow_gpio`. Values are logical: `true` is
//! active, whatever the wiring (`active_low` is the host's business).
//!
//! ```
//! use ledge_sdk::{gpio, mock};
//!
//! mock::set_gpio_output("relay", false);
//! gpio::write("relay", true).unwrap();
//! assert_eq!(gpio::read("relay"), Ok(true));
//! assert_eq!(gpio::write("pump", true), Err(gpio::GpioError::Denied));
//! ```

use core::fmt;

use crate::sys;

/// Why a GPIO call failed. A failed write changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpioError {
    /// The line is not in the function's `allow_gpio`.
    Denied,
    /// The value is not 0/1, or the line is an input (for a write).
    Invalid,
    /// No line has this name.
    NotFound,
    /// The line exists but cannot be used now (not requested, not read yet,
    /// or no GPIO at all, as under `ledge invoke`).
    Unavailable,
    /// This invocation has used up its writes.
    Limit,
    /// A code this SDK does not know (from a newer host).
    Other(i32),
}

impl GpioError {
    fn from_code(code: i32) -> GpioError {
        match code {
            sys::ERR_DENIED => GpioError::Denied,
            sys::ERR_INVALID => GpioError::Invalid,
            sys::ERR_NOT_FOUND => GpioError::NotFound,
            sys::ERR_UNAVAILABLE => GpioError::Unavailable,
            sys::ERR_LIMIT => GpioError::Limit,
            other => GpioError::Other(other),
        }
    }
}

impl fmt::Display for GpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpioError::Denied => f.write_str("gpio denied: line is not in allow_gpio"),
            GpioError::Invalid => {
                f.write_str("gpio invalid: not an output, or a value other than 0/1")
            }
            GpioError::NotFound => f.write_str("gpio: no line of that name"),
            GpioError::Unavailable => f.write_str("gpio unavailable: the line cannot be used now"),
            GpioError::Limit => f.write_str("gpio limit: this invocation's writes are spent"),
            GpioError::Other(code) => write!(f, "gpio failed with host code {code}"),
        }
    }
}

impl std::error::Error for GpioError {}

/// Sets output line `name` to `active` (logical).
pub fn write(name: &str, active: bool) -> Result<(), GpioError> {
    match sys::gpio_write(name.as_bytes(), i32::from(active)) {
        code if code >= sys::OK => Ok(()),
        code => Err(GpioError::from_code(code)),
    }
}

/// The logical value of line `name`: an output's current value, or an
/// input's debounced level.
pub fn read(name: &str) -> Result<bool, GpioError> {
    match sys::gpio_read(name.as_bytes()) {
        0 => Ok(false),
        1 => Ok(true),
        code => Err(GpioError::from_code(code)),
    }
}
