//! The invocation context: who is running, with what budget and settings.

use crate::sys::{self, field, int_field};

/// The current invocation. Every accessor asks the host, so values such as
/// [`remaining_ms`](Context::remaining_ms) are current when called.
#[derive(Debug)]
pub struct Context {
    /// Only the SDK creates contexts: they are valid during an invocation.
    _private: (),
}

impl Context {
    pub(crate) fn new() -> Context {
        Context { _private: () }
    }

    /// This invocation's id (16 hex digits), as in ledge's log lines about it.
    pub fn request_id(&self) -> String {
        string(field::REQUEST_ID)
    }

    /// The function's `name` from ledge's config.
    pub fn function_name(&self) -> String {
        string(field::FUNCTION_NAME)
    }

    /// The function's version (`$LATEST` for a function loaded from config).
    pub fn function_version(&self) -> String {
        string(field::FUNCTION_VERSION)
    }

    /// The gateway's `[device] id` (empty if the host does not say).
    pub fn device_id(&self) -> String {
        string(field::DEVICE_ID)
    }

    /// Milliseconds left before the invocation times out.
    pub fn remaining_ms(&self) -> u64 {
        int(int_field::REMAINING_MS)
    }

    /// The invocation's deadline, in UNIX milliseconds.
    pub fn deadline_ms(&self) -> u64 {
        int(int_field::DEADLINE_MS)
    }

    /// The cap on this instance's linear memory, in bytes.
    pub fn memory_limit(&self) -> u64 {
        int(int_field::MEMORY_LIMIT)
    }

    /// Which attempt this is at handling the event: 1 for the first.
    pub fn attempt(&self) -> u32 {
        u32::try_from(int(int_field::ATTEMPT)).unwrap_or(u32::MAX)
    }

    /// The function's `env` entry `key` from ledge's config, if set.
    pub fn env(&self, key: &str) -> Option<String> {
        sys::env(key.as_bytes()).map(sys::lossy)
    }
}

fn string(field: i32) -> String {
    sys::context(field).map(sys::lossy).unwrap_or_default()
}

fn int(field: i32) -> u64 {
    crate::non_negative(sys::context_int(field))
}
