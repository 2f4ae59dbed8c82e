//! What a record's body holds, per kind. **Frozen format**: bodies are
//! postcard-encoded enums whose variant index is the body version; new
//! fields mean a new variant, and old variants stay decodable.

use serde::{Deserialize, Serialize};

/// An event for upstream (`Kind::Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    V1 {
        /// Topic under the upstream prefix (`events/...`) or absolute.
        topic: String,
        payload: Vec<u8>,
        /// The function that forwarded it, or the local topic a bridge
        /// rule copied it from.
        origin: String,
    },
}

/// A log line for upstream (`Kind::Log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogBody {
    V1 {
        level: u8,
        /// `fn:<name>` for a function's own lines, else the ledge target.
        source: String,
        version: String,
        request_id: String,
        message: String,
    },
}

/// A metrics snapshot (`Kind::Metric`): a JSON document, so upstream needs
/// no schema to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricBody {
    V1 { json: String },
}

/// An event a function failed on after its last attempt (`Kind::DeadLetter`),
/// synced upstream to `<prefix>/dlq/<function>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterBody {
    V1 {
        function: String,
        version: String,
        /// The request id of the last attempt.
        request_id: String,
        /// `InvokeError::kind()` of the last attempt: `error`, `timeout`...
        error_kind: String,
        error: String,
        attempts: u32,
        /// The original event, as the function received it.
        source: String,
        subject: String,
        payload: Vec<u8>,
        received_at_ms: u64,
    },
}

impl DeadLetterBody {
    /// The JSON document sent upstream or published locally.
    pub fn to_json(&self, device: Option<&str>) -> serde_json::Value {
        let DeadLetterBody::V1 {
            function,
            version,
            request_id,
            error_kind,
            error,
            attempts,
            source,
            subject,
            payload,
            received_at_ms,
        } = self;
        let mut event = serde_json::json!({
            "source": source,
            "subject": subject,
            "received_at_ms": received_at_ms,
        });
        // The payload as text when it is text, else as hex: either way the
        // backend gets the exact bytes back.
        match std::str::from_utf8(payload) {
            Ok(text) => event["payload"] = text.into(),
            Err(_) => event["payload_hex"] = crate::hex::encode(payload).into(),
        }
        let mut document = serde_json::json!({
            "function": function,
            "version": version,
            "request_id": request_id,
            "error_kind": error_kind,
            "error": error,
            "attempts": attempts,
            "event": event,
        });
        if let Some(device) = device {
            document["device"] = device.into();
        }
        document
    }
}

/// An event waiting for a function behind a `durable = true` trigger
/// (`Kind::Event` in that function's own spool stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerBody {
    V1 {
        /// `EventSource` as a number: 0 mqtt, 1 sensor, 2 schedule, 3 invoke,
        /// 4 http (a later source an older ledge reads as a schedule).
        source: u8,
        subject: String,
        payload: Vec<u8>,
        received_at_ms: u64,
    },
}

/// Encodes a body; bodies are plain data, so this cannot fail short of
/// running out of memory.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    postcard::to_stdvec(body).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_stay_compact() {
        let body = EventBody::V1 {
            topic: "events/sensors/t1".into(),
            payload: vec![1, 2, 3],
            origin: "fn:threshold-alert".into(),
        };
        let bytes = encode(&body);
        assert_eq!(decode::<EventBody>(&bytes).unwrap(), body);
        // variant + 3 length prefixes + contents: no padding, no field names.
        assert_eq!(bytes.len(), 1 + 1 + 17 + 1 + 3 + 1 + 18);
    }

    #[test]
    fn the_v1_event_layout_is_frozen() {
        let bytes = encode(&EventBody::V1 {
            topic: "t".into(),
            payload: vec![9],
            origin: "o".into(),
        });
        assert_eq!(bytes, vec![0, 1, b't', 1, 9, 1, b'o']);
    }
}
