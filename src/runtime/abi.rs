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
use wasmi::{Caller, Linker, Memory};

use super::contract;
use super::limits::GuestLimits;
use super::log_budget::{LogBudget, MAX_ECHO, MAX_LOG_BYTES};
pub use super::log_budget::{MAX_LOG_LINE, MAX_LOG_LINES};

use crate::config::FunctionSpec;
use crate::event::{unix_ms, Event};
use crate::hw::gpio::LineError;
use crate::sinks::{ForwardRefused, OutgoingMessage, PublishRefused, Qos, Sinks};
use crate::topic::{any_matches, validate_topic_name};

/// Name of the import module; the ABI version lives in it.
pub const IMPORT_MODULE: &str = contract::IMPORT_MODULE;

pub const OK: i32 = contract::constant("OK");
pub const ERR_DENIED: i32 = contract::constant("ERR_DENIED");
pub const ERR_INVALID: i32 = contract::constant("ERR_INVALID");
pub const ERR_TOO_LARGE: i32 = contract::constant("ERR_TOO_LARGE");
pub const ERR_UNAVAILABLE: i32 = contract::constant("ERR_UNAVAILABLE");
pub const ERR_LIMIT: i32 = contract::constant("ERR_LIMIT");
pub const ERR_NOT_FOUND: i32 = contract::constant("ERR_NOT_FOUND");

/// `context` string fields.
pub const FIELD_REQUEST_ID: i32 = contract::constant("FIELD_REQUEST_ID");
pub const FIELD_FUNCTION_NAME: i32 = contract::constant("FIELD_FUNCTION_NAME");
pub const FIELD_FUNCTION_VERSION: i32 = contract::constant("FIELD_FUNCTION_VERSION");
pub const FIELD_EVENT_SOURCE: i32 = contract::constant("FIELD_EVENT_SOURCE");
pub const FIELD_EVENT_SUBJECT: i32 = contract::constant("FIELD_EVENT_SUBJECT");
pub const FIELD_DEVICE_ID: i32 = contract::constant("FIELD_DEVICE_ID");

/// `context_int` fields.
pub const FIELD_REMAINING_MS: i32 = contract::constant("INT_FIELD_REMAINING_MS");
pub const FIELD_MEMORY_LIMIT: i32 = contract::constant("INT_FIELD_MEMORY_LIMIT");
pub const FIELD_RECEIVED_AT_MS: i32 = contract::constant("INT_FIELD_RECEIVED_AT_MS");
pub const FIELD_ATTEMPT: i32 = contract::constant("INT_FIELD_ATTEMPT");
pub const FIELD_DEADLINE_MS: i32 = contract::constant("INT_FIELD_DEADLINE_MS");

/// `publish_flags` flags.
pub const PUBLISH_RETAIN: i32 = contract::constant("PUBLISH_RETAIN");
/// Most bytes one `random` call fills.
pub const MAX_RANDOM: usize = contract::constant("MAX_RANDOM") as usize;

/// Publishes accepted per invocation.
pub const MAX_PUBLISHES: u32 = 1000;
/// GPIO writes accepted per invocation: a relay is not a PWM channel, and a
/// function toggling a line in a loop is a bug.
pub const MAX_GPIO_WRITES: u32 = 1000;

/// Fuel every host call costs on top of its `call` instruction, and the
/// bytes of host work one more unit of fuel pays for: a guest's fuel (and
/// so its slices and its `max_fuel`) reflects the work it makes the host do.
const HOST_CALL_FUEL: u64 = 100;
const HOST_BYTES_PER_FUEL: u64 = 16;

/// The host error that stops a guest whose deadline passed during a host
/// call; the invocation loop turns it into a timeout.
#[derive(Debug)]
pub struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the invocation's deadline passed during a host call")
    }
}

impl wasmi::errors::HostError for DeadlinePassed {}

/// One line a function logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: log::Level,
    pub message: String,
}

/// State of one wasm store: the function's settings and where its output
/// goes, plus the invocation currently running (if any).
pub struct HostState {
    pub(crate) limits: GuestLimits,
    /// The function's share of the log, shared with its other instances.
    pub(crate) log_budget: Arc<LogBudget>,
    pub(crate) spec: Arc<FunctionSpec>,
    /// The gateway's `[device] id`, if the runtime was told it.
    pub(crate) device_id: Option<Arc<str>>,
    /// `log` target for this function's lines (`fn::<name>`).
    pub(crate) log_target: String,
    pub(crate) sinks: Sinks,
    pub(crate) max_payload: usize,
    /// Set once the instance exists; host calls before that (from a start
    /// function) find no memory and fail.
    pub(crate) memory: Option<Memory>,
    /// Keep log lines in `call.logs` instead of writing them to the log.
    pub(crate) capture_logs: bool,
    /// Keep log lines in `call.logs` as well as writing them to the log
    /// (a caller asked for the invocation's log tail).
    pub(crate) tail_logs: bool,
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
    /// Bytes of log lines kept this invocation.
    pub log_bytes: usize,
    pub logs_dropped: u32,
    /// Fuel host calls charged beyond what was left in the slice; the
    /// invocation loop adds it to what the guest spent.
    pub fuel_debt: u64,
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
        device_id: Option<Arc<str>>,
        sinks: Sinks,
        max_payload: usize,
        capture_logs: bool,
        log_budget: Arc<LogBudget>,
    ) -> Self {
        Self {
            limits: GuestLimits::new(spec.memory_limit),
            log_budget,
            log_target: format!("fn::{}", spec.name),
            spec,
            device_id,
            sinks,
            max_payload,
            memory: None,
            capture_logs,
            tail_logs: false,
            call: CallState::default(),
        }
    }

    fn log(&mut self, level: i32, bytes: &[u8]) {
        let level = match level {
            i32::MIN..=1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        // A line no one would see (below the log level, not shipped) costs
        // nothing and counts against nothing: a function logging every
        // reading at info must not be throttled, or summarised, at warn.
        let wanted = self.capture_logs
            || self.tail_logs
            || log::log_enabled!(target: &self.log_target, level)
            || self
                .sinks
                .logs
                .as_ref()
                .is_some_and(|ship| ship.ships(level));
        if !wanted || !self.admit(bytes.len().min(MAX_LOG_LINE)) {
            return;
        }
        let message = self.spec.redact_and_cut(bytes, MAX_LOG_LINE);
        if self.capture_logs {
            self.call.logs.push(LogLine { level, message });
            return;
        }
        if self.tail_logs {
            self.call.logs.push(LogLine {
                level,
                message: message.clone(),
            });
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

    /// True if a line of about `len` bytes fits this invocation's and this
    /// function's log budget (docs in `log_budget`); a line that does not is
    /// counted, not written.
    fn admit(&mut self, len: usize) -> bool {
        let call = &mut self.call;
        call.log_lines += 1;
        if call.log_lines > MAX_LOG_LINES || call.log_bytes.saturating_add(len) > MAX_LOG_BYTES {
            call.logs_dropped += 1;
            return false;
        }
        if !self.log_budget.admit(&self.spec.name, len) {
            return false;
        }
        call.log_bytes += len;
        true
    }

    /// A guest string for a refusal line: cut short and redacted.
    fn echo(&self, bytes: &[u8]) -> String {
        self.spec.redact_and_cut(bytes, MAX_ECHO)
    }

    fn publish(&mut self, topic: &[u8], payload: &[u8], qos: i32, flags: i32) -> i32 {
        if flags & !PUBLISH_RETAIN != 0 {
            let reason = format!(
                "publish to `{}` refused: unknown flags {flags:#x} (known: PUBLISH_RETAIN = {PUBLISH_RETAIN})",
                self.echo(topic)
            );
            return self.refuse(ERR_INVALID, &reason);
        }
        let Ok(topic) = std::str::from_utf8(topic) else {
            let reason = format!(
                "publish to `{}` refused: the topic is not valid UTF-8",
                self.echo(topic)
            );
            return self.refuse(ERR_INVALID, &reason);
        };
        if let Err(e) = validate_topic_name(topic) {
            let reason = format!("publish to `{}` refused: {e}", self.echo(topic.as_bytes()));
            return self.refuse(ERR_INVALID, &reason);
        }
        let Some(qos) = Qos::from_i32(qos) else {
            return self.refuse(ERR_INVALID, &format!("publish with unknown QoS {qos}"));
        };
        if !any_matches(&self.spec.allow_publish, topic) {
            let reason = format!(
                "publish to `{}` denied: not in allow_publish",
                self.echo(topic.as_bytes())
            );
            return self.refuse(ERR_DENIED, &reason);
        }
        if payload.len() > self.max_payload {
            let reason = format!(
                "publish to `{}` refused: {} bytes is over max_payload ({})",
                self.echo(topic.as_bytes()),
                payload.len(),
                self.max_payload
            );
            return self.refuse(ERR_TOO_LARGE, &reason);
        }
        if let Err(code) = self.check_request(topic, payload) {
            return code;
        }
        self.call.publishes += 1;
        if self.call.publishes > MAX_PUBLISHES {
            return self.refuse(ERR_LIMIT, "more than 1000 publishes in one invocation");
        }
        let depth = self.call.event.as_ref().map_or(0, |e| e.depth);
        let message = OutgoingMessage {
            topic: topic.to_owned(),
            payload: Bytes::copy_from_slice(payload),
            qos,
            depth: depth.saturating_add(1),
            retain: flags & PUBLISH_RETAIN != 0,
        };
        match self
            .sinks
            .publish
            .publish_until(message, self.call.deadline)
        {
            Ok(()) => OK,
            Err(e @ (PublishRefused::NotConnected | PublishRefused::Backlog)) => {
                let reason = format!("publish to `{}` dropped: {e}", self.echo(topic.as_bytes()));
                self.refuse(ERR_UNAVAILABLE, &reason)
            }
        }
    }

    /// A publish on `ledge/<device>/invoke/<function>` is a synchronous
    /// request: ledge itself will publish the reply on the envelope's
    /// `reply_to`. The function may only ask for a reply where it may
    /// publish, or it could make ledge publish anywhere for it.
    fn check_request(&mut self, topic: &str, payload: &[u8]) -> Result<(), i32> {
        if !is_invoke_topic(topic) {
            return Ok(());
        }
        let envelope = serde_json::from_slice::<serde_json::Value>(payload).ok();
        let Some(reply_to) = envelope
            .as_ref()
            .and_then(|e| e.get("reply_to"))
            .and_then(|r| r.as_str())
        else {
            let reason = format!(
                "publish to `{topic}` refused: a request there must be a JSON envelope with `reply_to` (docs/abi.md)"
            );
            return Err(self.refuse(ERR_INVALID, &reason));
        };
        if validate_topic_name(reply_to).is_err()
            || !any_matches(&self.spec.allow_publish, reply_to)
        {
            let reason = format!(
                "publish to `{topic}` denied: its reply_to `{}` is not in allow_publish",
                self.echo(reply_to.as_bytes())
            );
            return Err(self.refuse(ERR_DENIED, &reason));
        }
        Ok(())
    }

    fn forward(&mut self, topic: &[u8], payload: &[u8]) -> i32 {
        let Ok(topic) = std::str::from_utf8(topic) else {
            let reason = format!(
                "forward to `{}` refused: the topic is not valid UTF-8",
                self.echo(topic)
            );
            return self.refuse(ERR_INVALID, &reason);
        };
        if let Err(e) = validate_topic_name(topic) {
            let shown = self.echo(topic.as_bytes());
            return self.refuse(ERR_INVALID, &format!("forward to `{shown}` refused: {e}"));
        }
        if !any_matches(&self.spec.allow_forward, topic) {
            let shown = self.echo(topic.as_bytes());
            let reason = format!("forward to `{shown}` denied: not in allow_forward");
            return self.refuse(ERR_DENIED, &reason);
        }
        if payload.len() > self.max_payload {
            let shown = self.echo(topic.as_bytes());
            let reason = format!(
                "forward to `{shown}` refused: {} bytes is over max_payload ({})",
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
            let shown = self.echo(topic.as_bytes());
            return self.refuse(
                ERR_UNAVAILABLE,
                &format!(
                    "forward to `{shown}` dropped: {}",
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
            Err(e) => {
                let shown = self.echo(topic.as_bytes());
                self.refuse(
                    ERR_UNAVAILABLE,
                    &format!("forward to `{shown}` refused: {e}"),
                )
            }
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
    fn gpio_name(&mut self, name: &[u8], call: &str) -> Result<String, i32> {
        let Ok(text) = std::str::from_utf8(name) else {
            let reason = format!("{call}({}): line name is not valid UTF-8", self.echo(name));
            return Err(self.refuse(ERR_INVALID, &reason));
        };
        if !self.spec.allow_gpio.iter().any(|allowed| allowed == text) {
            let reason = format!("{call}({}) denied: not in allow_gpio", self.echo(name));
            return Err(self.refuse(ERR_DENIED, &reason));
        }
        Ok(text.to_owned())
    }

    /// Logs why a host call was refused (within the log budget) and
    /// returns its code. Guest strings in `reason` are already cut and
    /// redacted ([`Self::echo`]).
    fn refuse(&mut self, code: i32, reason: &str) -> i32 {
        if self.admit(reason.len()) {
            log::warn!(
                target: "ledge::invoke",
                "function {} request {}: {reason}",
                self.spec.name,
                self.call.request_id
            );
        }
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
            FIELD_DEVICE_ID => self.device_id.as_deref(),
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

/// True for `ledge/<device>/invoke/<function>`: a synchronous request
/// (see `dispatch::sync`). Any device: one broker may serve several.
fn is_invoke_topic(topic: &str) -> bool {
    let mut levels = topic.split('/');
    matches!(
        (
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next()
        ),
        (Some("ledge"), Some(_), Some("invoke"), Some(_), None)
    )
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
            "{IMPORT_MODULE}.{call}: called from the module's start function, which cannot call ledge (do it in ledge_init)"
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

/// Stops the guest if its deadline has passed: checked before a host call
/// acts and after it worked, so no host call starts late and a slow one
/// overruns the timeout by at most itself.
fn check_deadline(state: &HostState) -> HostResult<()> {
    match state.call.deadline {
        Some(deadline) if Instant::now() >= deadline => Err(wasmi::Error::host(DeadlinePassed)),
        _ => Ok(()),
    }
}

/// Ends a host call that handled `bytes` bytes of guest data: charges the
/// work to the guest's fuel (what the slice cannot pay becomes debt the
/// invocation loop accounts) and checks the deadline.
fn settle(caller: &mut Caller<'_, HostState>, bytes: usize) -> HostResult<()> {
    let cost = HOST_CALL_FUEL + bytes as u64 / HOST_BYTES_PER_FUEL;
    let left = caller.get_fuel()?;
    if left < cost {
        caller.data_mut().call.fuel_debt += cost - left;
    }
    caller.set_fuel(left.saturating_sub(cost))?;
    check_deadline(caller.data())
}

/// Work of matching `topic` against a function's filters, in bytes.
fn matching_work(topic_len: usize, filters: usize) -> usize {
    topic_len.saturating_mul(filters.max(1))
}

/// Registers every `ledge_v1` import on `linker`.
pub fn define_imports(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> HostResult<()> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "log")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let text = guest_slice(data, ptr, len, "log")?;
            state.log(level, text);
            settle(&mut caller, text_work(len, MAX_LOG_LINE))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish",
        |caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32|
         -> HostResult<i32> {
            let message = (topic_ptr, topic_len, payload_ptr, payload_len);
            publish_call(caller, "publish", message, qos, 0)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish_flags",
        |caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32,
         flags: i32|
         -> HostResult<i32> {
            let message = (topic_ptr, topic_len, payload_ptr, payload_len);
            publish_call(caller, "publish_flags", message, qos, flags)
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
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "forward")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let topic = guest_slice(data, topic_ptr, topic_len, "forward")?;
            let payload = guest_slice(data, payload_ptr, payload_len, "forward")?;
            let work = matching_work(topic.len(), state.spec.allow_forward.len()) + payload.len();
            let code = state.forward(topic, payload);
            settle(&mut caller, work)?;
            Ok(code)
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
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "env")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let key = String::from_utf8_lossy(guest_slice(data, key_ptr, key_len, "env")?);
            let work = key.len();
            let code = match state.spec.env_value(key.as_ref()) {
                None => ERR_NOT_FOUND,
                Some(value) => {
                    let buffer = guest_slice_mut(data, buf_ptr, buf_len, "env")?;
                    copy_out(buffer, value.as_bytes())
                }
            };
            settle(&mut caller, work)?;
            Ok(code)
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
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "context")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let code = match state.string_field(field) {
                None => ERR_NOT_FOUND,
                Some(value) => {
                    let buffer = guest_slice_mut(data, buf_ptr, buf_len, "context")?;
                    copy_out(buffer, value.as_bytes())
                }
            };
            settle(&mut caller, 0)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "context_int",
        |mut caller: Caller<'_, HostState>, field: i32| -> HostResult<i64> {
            memory_of(&caller, "context_int")?;
            let value = caller.data().int_field(field);
            settle(&mut caller, 0)?;
            Ok(value)
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
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "gpio_write")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_write")?;
            let work = matching_work(name.len(), state.spec.allow_gpio.len());
            let code = state.gpio_write(name, value);
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "gpio_read",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "gpio_read")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_read")?;
            let work = matching_work(name.len(), state.spec.allow_gpio.len());
            let code = state.gpio_read(name);
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "now_ms",
        |mut caller: Caller<'_, HostState>| -> HostResult<i64> {
            memory_of(&caller, "now_ms")?;
            settle(&mut caller, 0)?;
            Ok(unix_ms() as i64)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "random",
        |mut caller: Caller<'_, HostState>, buf_ptr: i32, buf_len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "random")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let buffer = guest_slice_mut(data, buf_ptr, buf_len, "random")?;
            let work = buffer.len().min(MAX_RANDOM);
            let code = if buffer.len() > MAX_RANDOM {
                let reason = format!(
                    "random({} bytes) refused: at most {MAX_RANDOM} bytes a call",
                    buffer.len()
                );
                state.refuse(ERR_TOO_LARGE, &reason)
            } else {
                match fill_random(buffer) {
                    Ok(()) => OK,
                    Err(()) => state.refuse(ERR_UNAVAILABLE, "random: the OS gave no random bytes"),
                }
            };
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "respond",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "respond")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let bytes = guest_slice(data, ptr, len, "respond")?;
            let work = bytes.len();
            let code = if bytes.len() > state.max_payload {
                state.refuse(ERR_TOO_LARGE, "response is over max_payload")
            } else {
                state.call.response.clear();
                state.call.response.extend_from_slice(bytes);
                OK
            };
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    define_toolchain_imports(linker)
}

/// The imports AssemblyScript emits on its own (`env.abort`, `env.seed`),
/// so its modules load without `--use abort=...` tricks. They read memory
/// through the caller's export, not [`HostState::memory`], because
/// AssemblyScript runs top-level code (which may abort) as the start
/// function, before the instance is ready.
fn define_toolchain_imports(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "abort",
        |mut caller: Caller<'_, HostState>,
         message: i32,
         file: i32,
         line: i32,
         column: i32|
         -> HostResult<()> {
            let memory = caller
                .get_export("memory")
                .and_then(wasmi::Extern::into_memory);
            let text = |ptr: i32| {
                memory
                    .and_then(|m| as_string(m.data(&caller), ptr))
                    .unwrap_or_default()
            };
            let (message, file) = (text(message), text(file));
            let spec = &caller.data().spec;
            let message = spec.redact_and_cut(message.as_bytes(), MAX_ABORT_TEXT);
            let file = spec.redact_and_cut(file.as_bytes(), MAX_ABORT_TEXT);
            let message = if message.is_empty() {
                "(no message)".to_owned()
            } else {
                message
            };
            let at = if file.is_empty() {
                String::new()
            } else {
                format!(" at {file}:{}:{}", line as u32, column as u32)
            };
            settle(&mut caller, 0)?;
            Err(wasmi::Error::new(format!("abort: {message}{at}")))
        },
    )?;
    linker.func_wrap(
        "env",
        "seed",
        |mut caller: Caller<'_, HostState>| -> HostResult<f64> {
            let mut bits = [0u8; 8];
            fill_random(&mut bits)
                .map_err(|()| wasmi::Error::new("env.seed: the OS gave no random bytes"))?;
            settle(&mut caller, 0)?;
            // A positive integer below 2^53: exact as an f64, never 0 or NaN
            // (AssemblyScript reinterprets the bits as its PRNG's seed).
            Ok((u64::from_le_bytes(bits) >> 12) as f64 + 1.0)
        },
    )?;
    Ok(())
}

/// Most characters of an `abort` message or file name kept.
const MAX_ABORT_TEXT: usize = 1024;

/// An AssemblyScript string: UTF-16LE code units at `ptr`, whose byte
/// length is the u32 just before it (the object header's `rtSize`).
/// `None` for a null or out-of-bounds string.
fn as_string(memory: &[u8], ptr: i32) -> Option<String> {
    let start = ptr as u32 as usize;
    let header = memory.get(start.checked_sub(4)?..start)?;
    let len = u32::from_le_bytes(header.try_into().ok()?) as usize;
    let len = len.min(MAX_ABORT_TEXT * 2) & !1;
    let bytes = memory.get(start..start.checked_add(len)?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// Random bytes from the operating system.
fn fill_random(buffer: &mut [u8]) -> Result<(), ()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(buffer).map_err(|_| ())
}

/// The `publish` and `publish_flags` imports: `message` is (topic ptr,
/// topic len, payload ptr, payload len).
fn publish_call(
    mut caller: Caller<'_, HostState>,
    call: &str,
    (topic_ptr, topic_len, payload_ptr, payload_len): (i32, i32, i32, i32),
    qos: i32,
    flags: i32,
) -> HostResult<i32> {
    check_deadline(caller.data())?;
    let memory = memory_of(&caller, call)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let topic = guest_slice(data, topic_ptr, topic_len, call)?;
    let payload = guest_slice(data, payload_ptr, payload_len, call)?;
    let work = matching_work(topic.len(), state.spec.allow_publish.len()) + payload.len();
    let code = state.publish(topic, payload, qos, flags);
    settle(&mut caller, work)?;
    Ok(code)
}

/// The bytes of a text the host reads at most `max` of (plus a margin for
/// redaction), of `len` the guest passed.
fn text_work(len: i32, max: usize) -> usize {
    (len as u32 as usize).min(max.saturating_mul(2))
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

    /// The linker provides every import of the contract table with the
    /// table's signature (the loader and the bindings trust the table).
    #[test]
    fn the_linker_matches_the_contract_table() {
        use super::super::contract::{self, WasmType};
        let ty = |t: &WasmType| match t {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F64 => "f64",
        };
        let mut imports = String::new();
        let mut all: Vec<(&str, &str, Vec<WasmType>, Option<WasmType>)> = contract::IMPORTS
            .iter()
            .map(|i| (contract::IMPORT_MODULE, i.name, i.param_types(), i.result))
            .collect();
        all.extend(
            contract::TOOLCHAIN_IMPORTS
                .iter()
                .map(|i| (i.module, i.name, i.params.to_vec(), i.result)),
        );
        for (module, name, params, result) in &all {
            let params: Vec<&str> = params.iter().map(ty).collect();
            let result = result.as_ref().map(|r| format!("(result {})", ty(r)));
            imports.push_str(&format!(
                "(import \"{module}\" \"{name}\" (func (param {}) {}))\n",
                params.join(" "),
                result.unwrap_or_default()
            ));
        }
        let text = format!(
            "(module {imports} (memory (export \"memory\") 1)
               (func (export \"ledge_alloc\") (param i32) (result i32) (i32.const 0))
               (func (export \"ledge_handle\") (param i32 i32) (result i32) (i32.const 0)))"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.wasm");
        std::fs::write(&path, wat::parse_str(&text).unwrap()).unwrap();
        let config = dir.path().join("ledge.toml");
        std::fs::write(
            &config,
            format!(
                "[[function]]\nname = \"all\"\nmodule = \"{}\"\n",
                path.display()
            ),
        )
        .unwrap();
        let plan = crate::config::load(&config).unwrap();
        let runtime = crate::runtime::Runtime::new(plan.broker.max_payload).unwrap();
        if let Err(e) = runtime.load(plan.functions[0].clone()) {
            panic!("a module importing the whole contract does not load: {e}");
        }
    }

    #[test]
    fn assemblyscript_strings_decode_from_utf16_with_their_length_header() {
        let mut memory = vec![0u8; 64];
        memory[8..12].copy_from_slice(&6u32.to_le_bytes());
        for (i, unit) in "hé!".encode_utf16().enumerate() {
            memory[12 + 2 * i..14 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(as_string(&memory, 12).as_deref(), Some("hé!"));
        assert_eq!(as_string(&memory, 0), None, "null");
        assert_eq!(as_string(&memory, 2), None, "no room for the header");
        memory[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(
            as_string(&memory, 12),
            None,
            "length past the end of memory"
        );
    }

    #[test]
    fn requests_are_recognised_on_any_device_and_nowhere_else() {
        assert!(is_invoke_topic("ledge/gw7/invoke/echo"));
        assert!(is_invoke_topic("ledge/other/invoke/x"));
        assert!(!is_invoke_topic("ledge/gw7/invoke"));
        assert!(!is_invoke_topic("ledge/gw7/invoke/echo/more"));
        assert!(!is_invoke_topic("ledgex/gw7/invoke/echo"));
    }
}
