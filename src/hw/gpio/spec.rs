//! What a configured GPIO line is: its address and, for outputs, its safe
//! state. `config` resolves these from `[[gpio_output]]` and board pin
//! names; they live here, below config, so the driver never imports config.

use std::fmt;

/// Where a line is: a chip (label, device name or path) and an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineAddress {
    pub chip: String,
    pub line: u32,
    /// The board pin name it was given by, if any.
    pub pin: Option<String>,
}

impl fmt::Display for LineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.chip, self.line)?;
        if let Some(pin) = &self.pin {
            write!(f, " ({pin})")?;
        }
        Ok(())
    }
}

/// `[[gpio_output]]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioOutputSpec {
    pub name: String,
    pub address: LineAddress,
    /// The safe state (logical): at start, at stop, after a crash.
    pub default: bool,
    pub active_low: bool,
    /// Restore the safe state when the function that wrote the line last
    /// crashes (trap, timeout, memory or fuel limit).
    pub restore_on_crash: bool,
}
