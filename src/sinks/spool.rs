//! Durable delivery upstream: `forward` calls and `[[forward]]` rules become
//! event records in the uplink spool.

use std::sync::Arc;
use std::time::Duration;

use super::{ForwardRefused, ForwardSink};
use crate::spool::body::{self, EventBody};
use crate::spool::{Kind, Spool};

pub struct SpoolSink {
    spool: Arc<Spool>,
    /// `<prefix>/events/` for relative topics.
    events_prefix: String,
}

impl SpoolSink {
    pub fn new(spool: Arc<Spool>, topic_prefix: &str) -> Self {
        Self {
            spool,
            events_prefix: format!("{topic_prefix}/events/"),
        }
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
        let record = body::encode(&EventBody::V1 {
            topic: upstream_topic,
            payload: payload.to_vec(),
            origin: origin.to_owned(),
        });
        self.spool
            .append(Kind::Event, &record)
            .map_err(|e| ForwardRefused::Spool(e.to_string()))
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
