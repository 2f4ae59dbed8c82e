//! Durable delivery upstream: `forward` calls and `[[forward]]` rules become
//! event records in the uplink spool; log lines go to the telemetry stream
//! beside it, so no rate of logging can displace an event (see "Record
//! classes" in the spool docs).

use std::sync::Arc;
use std::time::Duration;

use super::{DeadLetterSink, ForwardRefused, ForwardSink, LogSink};
use crate::spool::body::{self, DeadLetterBody, EventBody, LogBody};
use crate::spool::{Kind, Spool};

pub struct SpoolSink {
    /// The event stream: forwards, dead letters, reports.
    spool: Arc<Spool>,
    /// The telemetry stream: log lines (and metrics, see `telemetry.rs`).
    telemetry: Arc<Spool>,
    /// `<prefix>/events/` for relative topics.
    events_prefix: String,
    /// Lowest level of log lines shipped; `None` ships none.
    ship_logs: Option<log::Level>,
}

impl SpoolSink {
    pub fn new(
        spool: Arc<Spool>,
        telemetry: Arc<Spool>,
        topic_prefix: &str,
        ship_logs: Option<log::Level>,
    ) -> Self {
        Self {
            spool,
            telemetry,
            events_prefix: format!("{topic_prefix}/events/"),
            ship_logs,
        }
    }

    /// Appends a log line record to the telemetry stream. Never logs about
    /// its own failure (the spool counts refusals), so shipping can not
    /// feed on itself.
    pub fn log_line(
        &self,
        level: log::Level,
        source: &str,
        version: &str,
        request_id: &str,
        message: &str,
    ) {
        let record = body::encode(&LogBody::V1 {
            level: level as u8,
            source: source.to_owned(),
            version: version.to_owned(),
            request_id: request_id.to_owned(),
            message: message.to_owned(),
        });
        let _ = self.telemetry.append(Kind::Log, &record);
    }

    /// The upstream topic for a local one: `<prefix>/events/<topic>`.
    pub fn upstream_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.events_prefix)
    }

    /// Appends an event for `upstream_topic` as is.
    pub fn append(
        &self,
        upstream_topic: String,
        payload: &[u8],
        origin: &str,
    ) -> Result<u64, ForwardRefused> {
        self.append_event(upstream_topic, payload, origin)
            .map_err(|e| ForwardRefused::Spool(e.to_string()))
    }

    /// [`Self::append`], with the spool's own reason for a refusal (so a
    /// caller can tell "full, try later" from "failed for good").
    pub fn append_event(
        &self,
        upstream_topic: String,
        payload: &[u8],
        origin: &str,
    ) -> Result<u64, crate::spool::AppendError> {
        let record = body::encode(&EventBody::V1 {
            topic: upstream_topic,
            payload: payload.to_vec(),
            origin: origin.to_owned(),
        });
        self.spool.append(Kind::Event, &record)
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }
}

impl ForwardSink for SpoolSink {
    fn forward(
        &self,
        topic: &str,
        payload: &[u8],
        origin: &str,
    ) -> Result<Option<u64>, ForwardRefused> {
        self.append(self.upstream_topic(topic), payload, origin)
            .map(Some)
    }

    fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<bool, String> {
        self.spool
            .wait_durable(seq, timeout)
            .map_err(|e| e.to_string())
    }
}

impl DeadLetterSink for SpoolSink {
    fn dead_letter(&self, letter: &DeadLetterBody) -> Result<u64, String> {
        self.spool
            .append(Kind::DeadLetter, &body::encode(letter))
            .map_err(|e| e.to_string())
    }
}

impl LogSink for SpoolSink {
    fn ships(&self, level: log::Level) -> bool {
        self.ship_logs.is_some_and(|lowest| level <= lowest)
    }

    fn function_line(
        &self,
        level: log::Level,
        function: &str,
        version: &str,
        request_id: &str,
        message: &str,
    ) {
        if self.ships(level) {
            self.log_line(
                level,
                &format!("fn:{function}"),
                version,
                request_id,
                message,
            );
        }
    }
}
