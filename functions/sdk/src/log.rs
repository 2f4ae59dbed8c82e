//! Log lines, written to ledge's log under the function's name and request id.
//!
//! The host caps lines at 8 KiB and 256 per invocation (docs/abi.md,
//! "Limits"), so logging cannot fail from the guest's point of view: these
//! functions return nothing. The macros ([`info!`](crate::info) and friends)
//! take `format!` arguments.

/// How important a log line is; the numbers are the ABI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something looks wrong but the function carries on.
    Warn = 2,
    /// What the function did.
    Info = 3,
    /// Detail for whoever is debugging the function.
    Debug = 4,
    /// Even more detail.
    Trace = 5,
}

impl Level {
    /// The level for an ABI number, clamped the way the host clamps it.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_abi(level: i32) -> Level {
        match level {
            i32::MIN..=1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// Writes one log line at `level`.
pub fn log(level: Level, message: &str) {
    crate::sys::log(level as i32, message.as_bytes());
}

/// Writes one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs a `format!`-style line at error level: `error!("bad reading {v}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style line at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style line at info level: `info!("x={}", x)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style line at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style line at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}
