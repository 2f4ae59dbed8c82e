//! The host side of guest ABI v1 (docs/abi.md): the `ledge_v1` imports and
//! the per-store state they read and write.
//!
//! Host calls never trap for a *policy* problem (a denied topic, an oversized
//! payload): those are negative return codes the guest can handle, plus a
//! warning in the log. They trap only for a guest *bug*: a pointer/length
//! pair outside the guest's memory.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmi::{Caller, Linker, Memory, StoreLimits};

use crate::config::FunctionSpec;
use crate::event::{unix_ms, Event};
use crate::hw::gpio::LineError;
use crate::sinks::{ForwardRefused, OutgoingMessage, PublishRefused, Qos, Sinks};
use crate::topic::{any_matches, validate_topic_name};

/// Name of the import module; the ABI version lives in it.
pub const IMPORT_MODULE: &str = "ledge_v1";

pub const OK: i32 = 0;
pub const ERR_DENIED: i32 = -1;
pub const ERR_INVALID: i32 = -2;
pub const ERR_TOO_LARGE: i32 = -3;
pub const ERR_UNAVAILABLE: i32 = -4;
pub const ERR_LIMIT: i32 = -5;
pub const ERR_NOT_FOUND: i32 = -6;

/// `context` string fields.
pub const FIELD_REQUEST_ID: i32 = 0;
pub const FIELD_FUNCTION_NAME: i32 = 1;
pub const FIELD_FUNCTION_VERSION: i32 = 2;
pub const FIELD_EVENT_SOURCE: i32 = 3;
pub const FIELD_EVENT_SUBJECT: i32 = 4;

/// `context_int` fields.
pub const FIELD_REMAINING_MS: i32 = 0;
pub const FIELD_MEMORY_LIMIT: i32 = 1;
pub const FIELD_RECEIVED_AT_MS: i32 = 2;
pub const FIELD_ATTEMPT: i32 = 3;
pub const FIELD_DEADLINE_MS: i32 = 4;

/// A log line longer than this is cut: one runaway `log` call must not fill
/// the journal (or the spool, once logs ship upstream).
pub const MAX_LOG_LINE: usize = 8 << 10;
/// Log lines kept per invocation; the rest are counted and reported once.
pub const MAX_LOG_LINES: u32 = 256;
/// Publishes accepted per invocation.
pub const MAX_PUBLISHES: u32 = 1000;
/// GPIO writes accepted per invocation: a relay is not a PWM channel, and a
/// function toggling a line in a loop is a bug.
pub const MAX_GPIO_WRITES: u32 = 1000;

/// One line a function logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: log::Level,
    pub message: String,
}

/// State of one wasm store: the function's settings and where its output
/// goes, plus the invocation currently running (if any).
pub struct HostState {
    pub(crate) limits: StoreLimits,
    pub(crate) spec: Arc<FunctionSpec>,
    /// `log` target for this function's lines (`fn::<name>`).
    pub(crate) log_target: String,
    pub(crate) sinks: Sinks,
    pub(crate) max_payload: usize,
    /// Set once the instance exists; host calls before that (from a start
    /// function) find no memory and fail.
    pub(crate) memory: Option<Memory>,
    /// Keep log lines in `call.logs` instead of writing them to the log.
    pub(crate) capture_logs: bool,
    pub(crate) call: CallState,
}

/// What the host knows about the invocation in progress.
#[derive(Default)]
pub struct CallState {
    pub request_id: String,
    pub event: Option<Arc<Event>>,
    pub attempt: u32,
    pub deadline: Option<Instant>,
    pub deadline_unix_ms: u64,
    pub response: Vec<u8>,
    pub log_lines: u32,
    pub logs_dropped: u32,
    pub publishes: u32,
    pub gpio_writes: u32,
    pub logs: Vec<LogLine>,
    /// Highest spool seq this invocation forwarded; the invocation is not
    /// done until it is durable.
    pub forward_seq: Option<u64>,
}

impl HostState {
    pub(crate) fn new(
        spec: Arc<FunctionSpec>,
        sinks: Sinks,
        max_payload: usize,
        capture_logs: bool,
    ) -> Self {
        let limits = wasmi::StoreLimitsBuilder::new()
            .memory_size(spec.memory_limit)
            .instances(1)
            .memories(1)
            .tables(4)
            .table_elements(100_000)
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            log_target: format!("fn::{}", spec.name),
            spec,
            sinks,
            max_payload,
            memory: None,
            capture_logs,
            call: CallState::default(),
        }
    }

    fn log(&mut self, level: i32, bytes: &[u8]) {
        self.call.log_lines += 1;
        if self.call.log_lines > MAX_LOG_LINES {
            self.call.logs_dropped += 1;
            return;
        }
        let level = match level {
            i32::MIN..=1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        let message = truncated_text(bytes, MAX_LOG_LINE);
        let message = match self.spec.redact(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(redacted) => redacted,
        };
        if self.capture_logs {
            self.call.logs.push(LogLine { level, message });
            return;
        }
        log::log!(target: &self.log_target, level, "[{}] {}", self.call.request_id, message);
        if let Some(ship) = &self.sinks.logs {
            let spec = &self.spec;
            ship.function_line(
                level,
                &spec.name,
                &spec.version,
                &self.call.request_id,
                &message,
            );
        }
    }

    fn publish(&mut self, topic: &[u8], payload: &[u8], qos: i32) -> i32 {
        let Ok(topic) = std::str::from_utf8(topic) else {
            return self.refuse(ERR_INVALID, "publish topic is not valid UTF-8");
        };
        if let Err(e) = validate_topic_name(topic) {
            let reason = format!("publish to `{topic}` refused: {e}");
            return self.refuse(ERR_INVALID, &reason);
        }
        let Some(qos) = Qos::from_i32(qos) else {
            return self.refuse(ERR_INVALID, &format!("publish with unknown QoS {qos}"));
        };
        if !any_matches(&self.spec.allow_publish, topic) {
            let reason = format!("publish to `{topic}` denied: not in allow_publish");
            return self.refuse(ERR_DENIED, &reason);
        }
        if payload.len() > self.max_payload {
            let reason = format!(
                "publish to `{topic}` refused: {} bytes is over max_payload ({})",
                payload.len(),
                self.max_payload
            );
            return self.refuse(ERR_TOO_LARGE, &reason);
        }
        self.call.publishes += 1;
        if self.call.publishes > MAX_PUBLISHES {
            return self.refuse(ERR_LIMIT, "more than 1000 publishes in one invocation");
        }
        let message = OutgoingMessage {
            topic: topic.to_owned(),
            payload: Bytes::copy_from_slice(payload),
            qos,
        };
        match self
            .sinks
            .publish
            .publish_until(message, self.call.deadline)
        {
            Ok(()) => OK,
            Err(e @ (PublishRefused::NotConnected | PublishRefused::Backlog)) => self.refuse(
                ERR_UNAVAILABLE,
                &format!("publish to `{topic}` dropped: {e}"),
            ),
        }
    }

    fn forward(&mut self, topic: &[u8], payload: &[u8]) -> i32 {
        let Ok(topic) = std::str::from_utf8(topic) else {
            return self.refuse(ERR_INVALID, "forward topic is not valid UTF-8");
        };
        if let Err(e) = validate_topic_name(topic) {
            return self.refuse(ERR_INVALID, &format!("forward to `{topic}` refused: {e}"));
        }
        if !any_matches(&self.spec.allow_forward, topic) {
            let reason = format!("forward to `{topic}` denied: not in allow_forward");
            return self.refuse(ERR_DENIED, &reason);
        }
        if payload.len() > self.max_payload {
            let reason = format!(
                "forward to `{topic}` refused: {} bytes is over max_payload ({})",
                payload.len(),
                self.max_payload
            );
            return self.refuse(ERR_TOO_LARGE, &reason);
        }
        self.call.publishes += 1;
        if self.call.publishes > MAX_PUBLISHES {
            return self.refuse(
                ERR_LIMIT,
                "more than 1000 publishes and forwards in one invocation",
            );
        }
        let Some(sink) = self.sinks.forward.clone() else {
            return self.refuse(
                ERR_UNAVAILABLE,
                &format!(
                    "forward to `{topic}` dropped: {}",
                    ForwardRefused::NoUpstream
                ),
            );
        };
        let origin = format!("fn:{}", self.spec.name);
        match sink.forward(topic, payload, &origin) {
            Ok(seq) => {
                self.call.forward_seq = seq.max(self.call.forward_seq);
                OK
            }
            Err(e) => self.refuse(
                ERR_UNAVAILABLE,
                &format!("forward to `{topic}` refused: {e}"),
            ),
        }
    }

    /// `gpio_write`: sets a named output the function is allowed to drive.
    fn gpio_write(&mut self, name: &[u8], value: i32) -> i32 {
        let name = match self.gpio_name(name, "gpio_write") {
            Ok(name) => name,
            Err(code) => return code,
        };
        let value = match value {
            0 => false,
            1 => true,
            other => {
                return self.refuse(
                    ERR_INVALID,
                    &format!("gpio_write({name}, {other}): the value must be 0 or 1"),
                )
            }
        };
        self.call.gpio_writes += 1;
        if self.call.gpio_writes > MAX_GPIO_WRITES {
            return self.refuse(ERR_LIMIT, "more than 1000 gpio_writes in one invocation");
        }
        let Some(gpio) = self.sinks.gpio.clone() else {
            return self.refuse(
                ERR_UNAVAILABLE,
                &format!("gpio_write({name}): no GPIO here (ledge invoke runs without hardware)"),
            );
        };
        match gpio.write(&self.spec.name, &name, value) {
            Ok(()) => OK,
            Err(e @ LineError::NotOutput(_)) => {
                self.refuse(ERR_INVALID, &format!("gpio_write refused: {e}"))
            }
            Err(e @ LineError::Unknown(_)) => {
                self.refuse(ERR_NOT_FOUND, &format!("gpio_write refused: {e}"))
            }
            Err(e) => self.refuse(ERR_UNAVAILABLE, &format!("gpio_write failed: {e}")),
        }
    }

    /// `gpio_read`: the logical value (0 or 1) of a named line the function
    /// is allowed to use, or an error code.
    fn gpio_read(&mut self, name: &[u8]) -> i32 {
        let name = match self.gpio_name(name, "gpio_read") {
            Ok(name) => name,
            Err(code) => return code,
        };
        let Some(gpio) = self.sinks.gpio.clone() else {
            return self.refuse(
                ERR_UNAVAILABLE,
                &format!("gpio_read({name}): no GPIO here (ledge invoke runs without hardware)"),
            );
        };
        match gpio.read(&name) {
            Ok(value) => i32::from(value),
            Err(e @ LineError::Unknown(_)) => {
                self.refuse(ERR_NOT_FOUND, &format!("gpio_read refused: {e}"))
            }
            Err(e) => self.refuse(ERR_UNAVAILABLE, &format!("gpio_read failed: {e}")),
        }
    }

    /// The line name, if it is text and in the function's `allow_gpio`.
    fn gpio_name(&self, name: &[u8], call: &str) -> Result<String, i32> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(self.refuse(
                ERR_INVALID,
                &format!("{call}: line name is not valid UTF-8"),
            ));
        };
        if !self.spec.allow_gpio.iter().any(|allowed| allowed == name) {
            let reason = format!("{call}({name}) denied: not in allow_gpio");
            return Err(self.refuse(ERR_DENIED, &reason));
        }
        Ok(name.to_owned())
    }

    /// Logs why a host call was refused and returns its code.
    fn refuse(&self, code: i32, reason: &str) -> i32 {
        log::warn!(
            "function {} request {}: {reason}",
            self.spec.name,
            self.call.request_id
        );
        code
    }

    fn string_field(&self, field: i32) -> Option<&str> {
        let event = self.call.event.as_deref();
        match field {
            FIELD_REQUEST_ID => Some(&self.call.request_id),
            FIELD_FUNCTION_NAME => Some(&self.spec.name),
            FIELD_FUNCTION_VERSION => Some(&self.spec.version),
            FIELD_EVENT_SOURCE => event.map(|e| e.source.as_str()),
            FIELD_EVENT_SUBJECT => event.map(|e| e.subject.as_str()),
            _ => None,
        }
    }

    fn int_field(&self, field: i32) -> i64 {
        match field {
            FIELD_REMAINING_MS => self
                .call
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as i64)
                .unwrap_or(0),
            FIELD_MEMORY_LIMIT => self.spec.memory_limit as i64,
            FIELD_RECEIVED_AT_MS => self
                .call
                .event
                .as_ref()
                .map(|e| e.received_at_ms as i64)
                .unwrap_or(0),
            FIELD_ATTEMPT => i64::from(self.call.attempt),
            FIELD_DEADLINE_MS => self.call.deadline_unix_ms as i64,
            _ => i64::from(ERR_NOT_FOUND),
        }
    }
}

/// Decodes guest bytes as lossy UTF-8, cut at `max` bytes with a marker.
pub fn truncated_text(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..max]).into_owned();
    text.push_str(&format!("…[truncated {} bytes]", bytes.len() - max));
    text
}

type HostResult<T> = Result<T, wasmi::Error>;

/// The guest's bytes at `ptr..ptr+len`, or a trap naming the host call.
fn guest_slice<'m>(memory: &'m [u8], ptr: i32, len: i32, call: &str) -> HostResult<&'m [u8]> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    start
        .checked_add(len)
        .and_then(|end| memory.get(start..end))
        .ok_or_else(|| out_of_bounds(call, start, len, memory.len()))
}

fn guest_slice_mut<'m>(
    memory: &'m mut [u8],
    ptr: i32,
    len: i32,
    call: &str,
) -> HostResult<&'m mut [u8]> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let size = memory.len();
    start
        .checked_add(len)
        .and_then(|end| memory.get_mut(start..end))
        .ok_or_else(|| out_of_bounds(call, start, len, size))
}

fn out_of_bounds(call: &str, start: usize, len: usize, size: usize) -> wasmi::Error {
    wasmi::Error::new(format!(
        "{IMPORT_MODULE}.{call}: bytes {start}..{} are outside guest memory ({size} bytes)",
        start.saturating_add(len)
    ))
}

fn memory_of(caller: &Caller<'_, HostState>, call: &str) -> HostResult<Memory> {
    caller.data().memory.ok_or_else(|| {
        wasmi::Error::new(format!(
            "{IMPORT_MODULE}.{call}: called before the instance was ready"
        ))
    })
}

/// Copies `value` into the guest buffer with the "return full length, copy
/// what fits" protocol shared by `env` and `context`.
fn copy_out(buffer: &mut [u8], value: &[u8]) -> i32 {
    let n = value.len().min(buffer.len());
    buffer[..n].copy_from_slice(&value[..n]);
    i32::try_from(value.len()).unwrap_or(i32::MAX)
}

/// Registers every `ledge_v1` import on `linker`.
pub fn define_imports(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> HostResult<()> {
            let memory = memory_of(&caller, "log")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            state.log(level, guest_slice(data, ptr, len, "log")?);
            Ok(())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish",
        |mut caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32|
         -> HostResult<i32> {
            let memory = memory_of(&caller, "publish")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let topic = guest_slice(data, topic_ptr, topic_len, "publish")?;
            let payload = guest_slice(data, payload_ptr, payload_len, "publish")?;
            Ok(state.publish(topic, payload, qos))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "forward",
        |mut caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32|
         -> HostResult<i32> {
            let memory = memory_of(&caller, "forward")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let topic = guest_slice(data, topic_ptr, topic_len, "forward")?;
            let payload = guest_slice(data, payload_ptr, payload_len, "forward")?;
            Ok(state.forward(topic, payload))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "env",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         buf_ptr: i32,
         buf_len: i32|
         -> HostResult<i32> {
            let memory = memory_of(&caller, "env")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let key = String::from_utf8_lossy(guest_slice(data, key_ptr, key_len, "env")?);
            let Some(value) = state.spec.env_value(key.as_ref()) else {
                return Ok(ERR_NOT_FOUND);
            };
            let buffer = guest_slice_mut(data, buf_ptr, buf_len, "env")?;
            Ok(copy_out(buffer, value.as_bytes()))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "context",
        |mut caller: Caller<'_, HostState>,
         field: i32,
         buf_ptr: i32,
         buf_len: i32|
         -> HostResult<i32> {
            let memory = memory_of(&caller, "context")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let Some(value) = state.string_field(field) else {
                return Ok(ERR_NOT_FOUND);
            };
            let buffer = guest_slice_mut(data, buf_ptr, buf_len, "context")?;
            Ok(copy_out(buffer, value.as_bytes()))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "context_int",
        |caller: Caller<'_, HostState>, field: i32| -> HostResult<i64> {
            Ok(caller.data().int_field(field))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "gpio_write",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         value: i32|
         -> HostResult<i32> {
            let memory = memory_of(&caller, "gpio_write")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_write")?;
            Ok(state.gpio_write(name, value))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "gpio_read",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32| -> HostResult<i32> {
            let memory = memory_of(&caller, "gpio_read")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_read")?;
            Ok(state.gpio_read(name))
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, "now_ms", || -> HostResult<i64> {
        Ok(unix_ms() as i64)
    })?;
    linker.func_wrap(
        IMPORT_MODULE,
        "respond",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> HostResult<i32> {
            let memory = memory_of(&caller, "respond")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let bytes = guest_slice(data, ptr, len, "respond")?;
            if bytes.len() > state.max_payload {
                return Ok(state.refuse(ERR_TOO_LARGE, "response is over max_payload"));
            }
            state.call.response.clear();
            state.call.response.extend_from_slice(bytes);
            Ok(OK)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_slices_outside_memory_trap_with_the_call_name() {
        let memory = [0u8; 16];
        assert_eq!(guest_slice(&memory, 4, 4, "log").unwrap(), &[0; 4]);
        let err = guest_slice(&memory, 10, 10, "publish")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ledge_v1.publish") && err.contains("10..20"),
            "{err}"
        );
        // Negative i32s are huge unsigned offsets, never wrap-around reads.
        assert!(guest_slice(&memory, -1, 2, "log").is_err());
    }

    #[test]
    fn copy_out_reports_the_full_length_and_copies_what_fits() {
        let mut buffer = [0u8; 3];
        assert_eq!(copy_out(&mut buffer, b"hello"), 5);
        assert_eq!(&buffer, b"hel");
        assert_eq!(copy_out(&mut [], b"hello"), 5);
    }

    #[test]
    fn long_and_non_utf8_log_text_is_cut_and_replaced() {
        assert_eq!(truncated_text(b"ok", 8), "ok");
        assert_eq!(truncated_text(&[0x66, 0xff, 0x6f], 8), "f\u{fffd}o");
        let cut = truncated_text(&[b'a'; 20], 8);
        assert_eq!(cut, "aaaaaaaa…[truncated 12 bytes]");
    }
}
