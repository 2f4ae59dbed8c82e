//! The FFI boundary: the `ledge_v1` imports, their constants, and the
//! length protocol around them.
//!
//! Every call into the host goes through this module, so the `unsafe` needed
//! to hand it pointers is in one place and the rest of the crate works with
//! slices. Off wasm32 the raw functions come from [`crate::mock`] with the same
//! signatures, which means host-side tests exercise this safe layer too,
//! including the "buffer too small, ask again" path.
//!
//! Pointers and lengths are declared as `*const u8` / `usize`: on wasm32 both
//! lower to the ABI's `i32`, and on a 64-bit test host they stay real pointers
//! the mock can follow.

/// Return codes shared by the host calls (docs/abi.md, "Return codes").
pub(crate) const OK: i32 = 0;
pub(crate) const ERR_DENIED: i32 = -1;
pub(crate) const ERR_INVALID: i32 = -2;
pub(crate) const ERR_TOO_LARGE: i32 = -3;
pub(crate) const ERR_UNAVAILABLE: i32 = -4;
pub(crate) const ERR_LIMIT: i32 = -5;
/// `read_sized` takes any negative as "no value"; `gpio` names this one.
pub(crate) const ERR_NOT_FOUND: i32 = -6;
/// `publish` over the function's `publish_rate`.
pub(crate) const ERR_THROTTLED: i32 = -7;

/// String fields of `context` (docs/abi.md, "Context and event fields").
pub(crate) mod field {
    pub(crate) const REQUEST_ID: i32 = 0;
    pub(crate) const FUNCTION_NAME: i32 = 1;
    pub(crate) const FUNCTION_VERSION: i32 = 2;
    pub(crate) const EVENT_SOURCE: i32 = 3;
    pub(crate) const EVENT_SUBJECT: i32 = 4;
    pub(crate) const DEVICE_ID: i32 = 5;
}

/// `publish_flags` flag: the broker keeps the message for new subscribers.
pub(crate) const PUBLISH_RETAIN: i32 = 1;
/// Most bytes one `random` call fills.
pub(crate) const MAX_RANDOM: usize = 65536;

/// Integer fields of `context_int`.
pub(crate) mod int_field {
    pub(crate) const REMAINING_MS: i32 = 0;
    pub(crate) const MEMORY_LIMIT: i32 = 1;
    pub(crate) const RECEIVED_AT_MS: i32 = 2;
    pub(crate) const ATTEMPT: i32 = 3;
    pub(crate) const DEADLINE_MS: i32 = 4;
}

#[cfg(target_arch = "wasm32")]
mod raw {
    #[link(wasm_import_module = "ledge_v1")]
    unsafe extern "C" {
        pub(crate) fn log(level: i32, ptr: *const u8, len: usize);
        pub(crate) fn publish(
            topic_ptr: *const u8,
            topic_len: usize,
            payload_ptr: *const u8,
            payload_len: usize,
            qos: i32,
        ) -> i32;
        pub(crate) fn publish_flags(
            topic_ptr: *const u8,
            topic_len: usize,
            payload_ptr: *const u8,
            payload_len: usize,
            qos: i32,
            flags: i32,
        ) -> i32;
        pub(crate) fn random(buf_ptr: *mut u8, buf_len: usize) -> i32;
        pub(crate) fn forward(
            topic_ptr: *const u8,
            topic_len: usize,
            payload_ptr: *const u8,
            payload_len: usize,
        ) -> i32;
        pub(crate) fn env(
            key_ptr: *const u8,
            key_len: usize,
            buf_ptr: *mut u8,
            buf_len: usize,
        ) -> i32;
        pub(crate) fn context(field: i32, buf_ptr: *mut u8, buf_len: usize) -> i32;
        pub(crate) fn context_int(field: i32) -> i64;
        pub(crate) fn now_ms() -> i64;
        pub(crate) fn respond(ptr: *const u8, len: usize) -> i32;
        pub(crate) fn gpio_write(name_ptr: *const u8, name_len: usize, value: i32) -> i32;
        pub(crate) fn gpio_read(name_ptr: *const u8, name_len: usize) -> i32;
    }
}

#[cfg(not(target_arch = "wasm32"))]
use crate::mock::raw;

/// Most strings the host hands out (request ids, names, typical env values)
/// fit in this, so the second call of the length protocol is rare.
const FIRST_GUESS: usize = 64;

pub(crate) fn log(level: i32, message: &[u8]) {
    // SAFETY: the pointer and length describe a live slice for the whole call.
    unsafe { raw::log(level, message.as_ptr(), message.len()) }
}

pub(crate) fn forward(topic: &[u8], payload: &[u8]) -> i32 {
    // SAFETY: both pairs describe live slices for the whole call.
    unsafe { raw::forward(topic.as_ptr(), topic.len(), payload.as_ptr(), payload.len()) }
}

pub(crate) fn publish(topic: &[u8], payload: &[u8], qos: i32) -> i32 {
    // SAFETY: both pairs describe live slices for the whole call.
    unsafe {
        raw::publish(
            topic.as_ptr(),
            topic.len(),
            payload.as_ptr(),
            payload.len(),
            qos,
        )
    }
}

pub(crate) fn publish_flags(topic: &[u8], payload: &[u8], qos: i32, flags: i32) -> i32 {
    // SAFETY: both pairs describe live slices for the whole call.
    unsafe {
        raw::publish_flags(
            topic.as_ptr(),
            topic.len(),
            payload.as_ptr(),
            payload.len(),
            qos,
            flags,
        )
    }
}

/// Fills `buf` with random bytes, in calls of at most [`MAX_RANDOM`];
/// the first failing code, if any.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), i32> {
    for chunk in buf.chunks_mut(MAX_RANDOM) {
        // SAFETY: `chunk` is a live, writable slice for the whole call.
        let code = unsafe { raw::random(chunk.as_mut_ptr(), chunk.len()) };
        if code != OK {
            return Err(code);
        }
    }
    Ok(())
}

pub(crate) fn respond(bytes: &[u8]) -> i32 {
    // SAFETY: as for `log`; the host copies the bytes before returning.
    unsafe { raw::respond(bytes.as_ptr(), bytes.len()) }
}

pub(crate) fn gpio_write(name: &[u8], value: i32) -> i32 {
    // SAFETY: `name` is a live slice for the whole call.
    unsafe { raw::gpio_write(name.as_ptr(), name.len(), value) }
}

pub(crate) fn gpio_read(name: &[u8]) -> i32 {
    // SAFETY: `name` is a live slice for the whole call.
    unsafe { raw::gpio_read(name.as_ptr(), name.len()) }
}

pub(crate) fn now_ms() -> i64 {
    // SAFETY: no arguments, no memory shared.
    unsafe { raw::now_ms() }
}

pub(crate) fn context_int(field: i32) -> i64 {
    // SAFETY: no memory shared.
    unsafe { raw::context_int(field) }
}

/// A string field of the context, `None` if the host does not know it.
pub(crate) fn context(field: i32) -> Option<Vec<u8>> {
    // SAFETY: `read_sized` passes a buffer valid for `len` bytes of writes.
    read_sized(|buf, len| unsafe { raw::context(field, buf, len) })
}

/// The function's env entry `key`, `None` if it is unset.
pub(crate) fn env(key: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: `key` is live for the call; the buffer is as for `context`.
    read_sized(|buf, len| unsafe { raw::env(key.as_ptr(), key.len(), buf, len) })
}

/// Runs the ABI's length protocol: the call returns the value's full length
/// and copies what fits, so a result larger than the buffer means "grow to
/// that size and ask again". Any negative result means there is no value.
fn read_sized(mut call: impl FnMut(*mut u8, usize) -> i32) -> Option<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_GUESS);
    loop {
        let full = usize::try_from(call(buf.as_mut_ptr(), buf.capacity())).ok()?;
        if full <= buf.capacity() {
            // SAFETY: the host wrote `full` bytes (all of the value) at the
            // start of the buffer, and `full` is within its capacity.
            unsafe { buf.set_len(full) };
            return Some(buf);
        }
        // The value does not change within an invocation, so the next call
        // fits; looping (not asserting) keeps a misbehaving host from
        // turning into a guest panic.
        buf.reserve_exact(full);
    }
}

/// Decodes host text the way the host decodes guest text: lossily.
pub(crate) fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}
