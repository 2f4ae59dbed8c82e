//! What one wasm store knows — the function's settings, where its output
//! goes, the invocation in progress — and what each `ledge_v1` import does
//! with it once the guest's bytes are read (policy checks, limits, sinks).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmi::Memory;

use super::*;
use crate::config::FunctionSpec;
use crate::event::Event;
use crate::hw::gpio::LineError;
use crate::runtime::limits::GuestLimits;
use crate::runtime::log_budget::{LogBudget, MAX_ECHO, MAX_LOG_BYTES};
use crate::runtime::publish_budget::PublishBudget;
use crate::sinks::{ForwardRefused, OutgoingMessage, PublishRefused, Qos, Sinks};
use crate::topic::{any_matches, validate_topic_name};

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
    /// Its `publish_rate` bucket, shared likewise; `None`: unlimited.
    pub(crate) publish_budget: Option<Arc<PublishBudget>>,
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
    /// Publishes refused this invocation for want of `publish_rate` tokens.
    pub publishes_throttled: u32,
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
        publish_budget: Option<Arc<PublishBudget>>,
    ) -> Self {
        Self {
            limits: GuestLimits::new(spec.memory_limit),
            log_budget,
            publish_budget,
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

    pub(super) fn log(&mut self, level: i32, bytes: &[u8]) {
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
    pub(super) fn admit(&mut self, len: usize) -> bool {
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
    pub(super) fn echo(&self, bytes: &[u8]) -> String {
        self.spec.redact_and_cut(bytes, MAX_ECHO)
    }

    pub(super) fn publish(&mut self, topic: &[u8], payload: &[u8], qos: i32, flags: i32) -> i32 {
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
        // Counted, and summarised by the budget at the end of the
        // invocation: no log line per refused publish.
        if self.publish_budget.as_ref().is_some_and(|b| !b.take()) {
            self.call.publishes_throttled += 1;
            return ERR_THROTTLED;
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
    pub(super) fn check_request(&mut self, topic: &str, payload: &[u8]) -> Result<(), i32> {
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

    pub(super) fn forward(&mut self, topic: &[u8], payload: &[u8]) -> i32 {
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
    pub(super) fn gpio_write(&mut self, name: &[u8], value: i32) -> i32 {
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
    pub(super) fn gpio_read(&mut self, name: &[u8]) -> i32 {
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
    pub(super) fn gpio_name(&mut self, name: &[u8], call: &str) -> Result<String, i32> {
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
    pub(super) fn refuse(&mut self, code: i32, reason: &str) -> i32 {
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

    pub(super) fn string_field(&self, field: i32) -> Option<&str> {
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

    pub(super) fn int_field(&self, field: i32) -> i64 {
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
pub(super) fn is_invoke_topic(topic: &str) -> bool {
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
