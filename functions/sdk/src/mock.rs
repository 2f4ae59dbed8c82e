//! An in-process stand-in for the ledge host, compiled only off wasm32, so
//! `cargo test` can run handlers on the build machine.
//!
//! Set the env and the event, call [`invoke`], then look at what the handler
//! [`published`] and [`logs`]. The state is per thread and the test harness
//! runs each test on its own thread, so tests never see each other's host.
//! It implements the same raw calls as the real imports (see `sys`), so the
//! SDK's pointer-and-length code runs in tests exactly as it does in wasm.
//!
//! ```
//! use ledge_sdk::{mock, Context, Event};
//!
//! fn shout(event: &Event, _ctx: &Context) -> Result<String, String> {
//!     Ok(event.payload_str().map_err(|e| e.to_string())?.to_uppercase())
//! }
//!
//! mock::set_event("mqtt", "greetings/en");
//! assert_eq!(mock::invoke(shout, b"hi"), Ok(b"HI".to_vec()));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::log::Level;
use crate::sys::{self, OK};
use crate::{Context, Event};

/// One message a handler published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic, as the handler passed it.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The QoS number (0, 1 or 2).
    pub qos: i32,
    /// Published with [`publish_retained`](crate::publish_retained).
    pub retain: bool,
}

/// The mock's defaults stand for a function loaded from config and invoked
/// directly, 1 s from its deadline.
struct Host {
    env: BTreeMap<String, String>,
    /// `context` string fields, indexed by field number.
    strings: [String; 6],
    /// `context_int` fields, indexed by field number.
    ints: [i64; 5],
    /// What the next `publish` returns when the message is acceptable.
    publish_result: i32,
    published: Vec<Published>,
    forwarded: Vec<Published>,
    logs: Vec<(Level, String)>,
    response: Vec<u8>,
    /// The status the last [`invoke`] returned.
    status: i32,
    /// State of the mock's random bytes: deterministic, so tests are.
    random: u64,
    /// GPIO lines the function may use: name → (value, is an output).
    gpio: BTreeMap<String, (bool, bool)>,
}

/// The host's default `max_payload` (256 KiB), so size errors can be tested.
const MAX_PAYLOAD: usize = 256 * 1024;
/// The clock the mock reports: fixed, so tests are deterministic.
const NOW_MS: i64 = 1_700_000_000_000;

impl Default for Host {
    fn default() -> Self {
        Host {
            env: BTreeMap::new(),
            strings: [
                "00000000000000a1".into(),
                "test-function".into(),
                "$LATEST".into(),
                "invoke".into(),
                String::new(),
                "test-gateway".into(),
            ],
            ints: [1_000, 16 << 20, NOW_MS, 1, NOW_MS + 1_000],
            publish_result: OK,
            published: Vec::new(),
            forwarded: Vec::new(),
            logs: Vec::new(),
            response: Vec::new(),
            status: 0,
            random: 0x9e37_79b9_7f4a_7c15,
            gpio: BTreeMap::new(),
        }
    }
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

fn with<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    HOST.with_borrow_mut(f)
}

/// Forgets everything: env, event, published messages, logs, failures.
pub fn reset() {
    with(|host| *host = Host::default());
}

/// Sets the function's env entry `key`.
pub fn set_env(key: &str, value: &str) {
    with(|host| host.env.insert(key.into(), value.into()));
}

/// Sets the event's source (`mqtt`, `sensor`, ...) and subject (topic, sensor name).
pub fn set_event(source: &str, subject: &str) {
    with(|host| {
        host.strings[sys::field::EVENT_SOURCE as usize] = source.into();
        host.strings[sys::field::EVENT_SUBJECT as usize] = subject.into();
    });
}

/// Makes later publishes return `code` (one of the ABI's negative codes), or
/// succeed again with `0`.
pub fn set_publish_result(code: i32) {
    with(|host| host.publish_result = code);
}

/// Everything forwarded upstream so far, oldest first (`qos` is 1: the
/// spool delivers at least once).
pub fn forwarded() -> Vec<Published> {
    with(|host| host.forwarded.clone())
}

/// Declares output line `name`, in `allow_gpio`, holding `value`.
pub fn set_gpio_output(name: &str, value: bool) {
    with(|host| host.gpio.insert(name.into(), (value, true)));
}

/// Declares input line `name`, in `allow_gpio`, reading `value`.
pub fn set_gpio_input(name: &str, value: bool) {
    with(|host| host.gpio.insert(name.into(), (value, false)));
}

/// The value of a declared line (what the handler last wrote to an output).
pub fn gpio(name: &str) -> Option<bool> {
    with(|host| host.gpio.get(name).map(|(value, _)| *value))
}

/// The status the last [`invoke`] returned: 0 success, 1 failure, 2
/// permanent failure (a [`Failure::Permanent`](crate::Failure)).
pub fn last_status() -> i32 {
    with(|host| host.status)
}

/// Everything published so far, oldest first.
pub fn published() -> Vec<Published> {
    with(|host| host.published.clone())
}

/// Every log line so far, oldest first.
pub fn logs() -> Vec<(Level, String)> {
    with(|host| host.logs.clone())
}

/// Runs `handler` on `payload` the way `ledge_handle` does and reads the
/// result the way the host does: `Ok(response)` for status 0, else
/// `Err(message)`.
pub fn invoke<F, O, E>(handler: F, payload: &[u8]) -> Result<Vec<u8>, String>
where
    F: FnOnce(&Event, &Context) -> Result<O, E>,
    O: Into<Vec<u8>>,
    E: crate::HandlerError,
{
    with(|host| host.response.clear());
    let status = crate::handler::run(payload.to_vec(), handler);
    let response = with(|host| {
        host.status = status;
        std::mem::take(&mut host.response)
    });
    match status {
        0 => Ok(response),
        _ if response.is_empty() => Err(format!("handler returned status {status}")),
        _ => Err(String::from_utf8_lossy(&response).into_owned()),
    }
}

/// The raw calls, with the signatures of the wasm imports in `sys`.
pub(crate) mod raw {
    use super::*;

    /// # Safety
    /// `ptr..ptr+len` must be readable (the SDK passes live slices).
    unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// Copies `value` the way the host does: all of it if it fits, else a
    /// prefix, and returns the full length.
    unsafe fn copy_out(value: &[u8], buf: *mut u8, buf_len: usize) -> i32 {
        let n = value.len().min(buf_len);
        // SAFETY: the SDK passes a buffer writable for `buf_len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf, n) };
        value.len() as i32
    }

    pub(crate) unsafe fn log(level: i32, ptr: *const u8, len: usize) {
        let line = String::from_utf8_lossy(unsafe { bytes(ptr, len) }).into_owned();
        with(|host| host.logs.push((Level::from_abi(level), line)));
    }

    pub(crate) unsafe fn forward(
        topic_ptr: *const u8,
        topic_len: usize,
        payload_ptr: *const u8,
        payload_len: usize,
    ) -> i32 {
        let (topic, payload) =
            unsafe { (bytes(topic_ptr, topic_len), bytes(payload_ptr, payload_len)) };
        let Ok(topic) = std::str::from_utf8(topic) else {
            return sys::ERR_INVALID;
        };
        if topic.is_empty() || topic.contains(['+', '#']) {
            return sys::ERR_INVALID;
        }
        if payload.len() > MAX_PAYLOAD {
            return sys::ERR_TOO_LARGE;
        }
        with(|host| {
            if host.publish_result == OK {
                host.forwarded.push(Published {
                    topic: topic.into(),
                    payload: payload.into(),
                    qos: 1,
                    retain: false,
                });
            }
            host.publish_result
        })
    }

    pub(crate) unsafe fn publish(
        topic_ptr: *const u8,
        topic_len: usize,
        payload_ptr: *const u8,
        payload_len: usize,
        qos: i32,
    ) -> i32 {
        unsafe { publish_flags(topic_ptr, topic_len, payload_ptr, payload_len, qos, 0) }
    }

    pub(crate) unsafe fn random(buf: *mut u8, buf_len: usize) -> i32 {
        if buf_len > sys::MAX_RANDOM {
            return sys::ERR_TOO_LARGE;
        }
        // SAFETY: the SDK passes a buffer writable for `buf_len` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf, buf_len) };
        with(|host| {
            for byte in buf {
                // xorshift64: varied bytes, the same sequence every test.
                host.random ^= host.random << 13;
                host.random ^= host.random >> 7;
                host.random ^= host.random << 17;
                *byte = host.random as u8;
            }
        });
        OK
    }

    pub(crate) unsafe fn publish_flags(
        topic_ptr: *const u8,
        topic_len: usize,
        payload_ptr: *const u8,
        payload_len: usize,
        qos: i32,
        flags: i32,
    ) -> i32 {
        if flags & !sys::PUBLISH_RETAIN != 0 {
            return sys::ERR_INVALID;
        }
        let retain = flags & sys::PUBLISH_RETAIN != 0;
        let (topic, payload) =
            unsafe { (bytes(topic_ptr, topic_len), bytes(payload_ptr, payload_len)) };
        let Ok(topic) = std::str::from_utf8(topic) else {
            return sys::ERR_INVALID;
        };
        if topic.is_empty() || topic.contains(['+', '#']) || !(0..=2).contains(&qos) {
            return sys::ERR_INVALID;
        }
        if payload.len() > MAX_PAYLOAD {
            return sys::ERR_TOO_LARGE;
        }
        with(|host| {
            if host.publish_result == OK {
                host.published.push(Published {
                    topic: topic.into(),
                    payload: payload.into(),
                    qos,
                    retain,
                });
            }
            host.publish_result
        })
    }

    pub(crate) unsafe fn env(
        key_ptr: *const u8,
        key_len: usize,
        buf: *mut u8,
        buf_len: usize,
    ) -> i32 {
        let key = String::from_utf8_lossy(unsafe { bytes(key_ptr, key_len) }).into_owned();
        match with(|host| host.env.get(&key).cloned()) {
            Some(value) => unsafe { copy_out(value.as_bytes(), buf, buf_len) },
            None => sys::ERR_NOT_FOUND,
        }
    }

    pub(crate) unsafe fn context(field: i32, buf: *mut u8, buf_len: usize) -> i32 {
        let value = with(|host| {
            usize::try_from(field)
                .ok()
                .and_then(|f| host.strings.get(f).cloned())
        });
        match value {
            Some(value) => unsafe { copy_out(value.as_bytes(), buf, buf_len) },
            None => sys::ERR_NOT_FOUND,
        }
    }

    pub(crate) unsafe fn context_int(field: i32) -> i64 {
        let value = with(|host| {
            usize::try_from(field)
                .ok()
                .and_then(|f| host.ints.get(f).copied())
        });
        value.unwrap_or(sys::ERR_NOT_FOUND.into())
    }

    pub(crate) unsafe fn gpio_write(name_ptr: *const u8, name_len: usize, value: i32) -> i32 {
        let name = String::from_utf8_lossy(unsafe { bytes(name_ptr, name_len) }).into_owned();
        if !(0..=1).contains(&value) {
            return sys::ERR_INVALID;
        }
        with(|host| match host.gpio.get_mut(&name) {
            // Not declared: as if it were not in allow_gpio.
            None => sys::ERR_DENIED,
            Some((_, false)) => sys::ERR_INVALID,
            Some((line, true)) => {
                *line = value == 1;
                OK
            }
        })
    }

    pub(crate) unsafe fn gpio_read(name_ptr: *const u8, name_len: usize) -> i32 {
        let name = String::from_utf8_lossy(unsafe { bytes(name_ptr, name_len) }).into_owned();
        with(|host| match host.gpio.get(&name) {
            None => sys::ERR_DENIED,
            Some((value, _)) => i32::from(*value),
        })
    }

    pub(crate) unsafe fn now_ms() -> i64 {
        NOW_MS
    }

    pub(crate) unsafe fn respond(ptr: *const u8, len: usize) -> i32 {
        if len > MAX_PAYLOAD {
            return sys::ERR_TOO_LARGE;
        }
        let response = unsafe { bytes(ptr, len) }.to_vec();
        with(|host| host.response = response);
        OK
    }
}
