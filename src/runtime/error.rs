//! What can go wrong loading a module or running an invocation.

use std::time::Duration;

use crate::config::Location;

/// A module that cannot be used: its function is disabled (at run time) or
/// `ledge check` fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: function `{function}`: {reason}")]
pub struct LoadError {
    pub function: String,
    pub location: Location,
    pub reason: String,
}

/// Why one invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The handler returned non-zero; the message is the guest's own.
    #[error("{0}")]
    Handler(String),
    /// The handler returned `STATUS_PERMANENT` (2): the event itself is
    /// wrong, so retrying it cannot help; the message is the guest's own.
    #[error("{0}")]
    Permanent(String),
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("fuel budget of {0} exhausted")]
    FuelExhausted(u64),
    #[error("memory limit of {0} bytes exceeded")]
    MemoryLimit(usize),
    #[error("trapped: {0}")]
    Trap(String),
    /// A fresh instance could not be created (or `ledge_init` failed).
    #[error("instance failed to start: {0}")]
    Instantiate(String),
    /// The function finished, but what it forwarded did not become durable.
    #[error("{0}")]
    NotDurable(String),
    /// The event never ran: the function's queue was full (or, for a retry,
    /// closed); the message says which.
    #[error("{0}")]
    Throttled(String),
}

impl InvokeError {
    /// True if the instance that produced this error must not run again: it
    /// stopped mid-call, so its heap may be half-updated (docs/abi.md).
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self,
            Self::Handler(_) | Self::Permanent(_) | Self::NotDurable(_) | Self::Throttled(_)
        )
    }

    /// True if retrying the event cannot succeed: the function said so
    /// (`STATUS_PERMANENT`). The event goes straight to `on_failure`.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Handler(_) => "handler_error",
            Self::Permanent(_) => "permanent_error",
            Self::Timeout(_) => "timeout",
            Self::FuelExhausted(_) => "fuel_exhausted",
            Self::MemoryLimit(_) => "memory_limit",
            Self::Trap(_) => "trap",
            Self::Instantiate(_) => "instantiate",
            Self::Throttled(_) => "throttled",
            Self::NotDurable(_) => "not_durable",
        }
    }
}
