//! Synchronous (request/response) invocations over the local broker.
//!
//! A client publishes a request on `ledge/<device>/invoke/<function>`: over
//! MQTT 5 the event itself with a response topic (`sources::invoke`), or
//! (any client) a JSON envelope:
//!
//! ```json
//! {"reply_to": "clients/c1/reply", "correlation_id": "42", "payload": {"value": 31.5}}
//! ```
//!
//! `payload` is the event: a JSON string is passed as its text, any other
//! JSON value as its serialisation (`payload_hex` carries raw bytes). The
//! function runs on its own workers like any event, but once and without
//! retries (the caller decides, as with Lambda's RequestResponse), and the
//! response document goes to `reply_to`:
//!
//! ```json
//! {"status": "ok", "request_id": "...", "correlation_id": "42",
//!  "function": "echo", "version": "$LATEST", "duration_ms": 0.21, "response": "..."}
//! ```
//!
//! `status` is `ok`, `error` (with `error` and `error_kind`), `throttled`
//! (the function's queue is full: retry later, like HTTP 429),
//! `not_found`, `disabled` or `bad_request`.
//!
//! A caller inside ledge (the HTTP server) waits on a [`Waiter`] instead:
//! the same outcome, as an [`Answer`] rather than a document, with the
//! invocation's log lines when it asked for them (Lambda's `Tail` logs).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::runtime::{InvokeError, LogLine};
use crate::sinks::{OutgoingMessage, PublishSink, Qos};

/// Where the response to one synchronous request goes.
pub struct Reply {
    pub topic: String,
    pub correlation_id: Option<String>,
    pub via: ReplyPath,
}

/// How a reply leaves: through ledge's local publisher (envelope requests),
/// or on the MQTT 5 link the request came in on, with the request's
/// correlation data as a packet property.
pub enum ReplyPath {
    Local(Arc<dyn PublishSink>),
    Mqtt5 {
        client: rumqttc::v5::AsyncClient,
        correlation_data: Option<bytes::Bytes>,
    },
    /// A task in this process waits for the answer.
    Waiter(Waiter),
}

/// The sending half of an in-process request: answered once, by the
/// worker that ran it or by the dispatcher that refused it. Dropped
/// unanswered (ledge stopping), the receiver sees the channel closed.
pub struct Waiter {
    sender: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Answer>>>,
    /// Keep the invocation's log lines for the caller.
    tail: bool,
}

/// What an in-process caller gets back.
#[derive(Debug)]
pub enum Answer {
    /// The function did not run: `status` as in the reply documents
    /// (`not_found`, `disabled`, `throttled`, `unavailable`).
    Refused { status: String, message: String },
    /// It ran, successfully or not.
    Ran(Box<Ran>),
}

/// One finished synchronous invocation.
#[derive(Debug)]
pub struct Ran {
    pub function: String,
    pub version: String,
    pub request_id: String,
    pub result: Result<Vec<u8>, InvokeError>,
    pub duration: Duration,
    /// With `tail`: the lines it logged and its `REPORT` line.
    pub logs: Vec<LogLine>,
    pub report: Option<String>,
}

/// What a worker hands back besides the result, when the caller asked
/// for the invocation's logs.
pub struct Tail {
    pub logs: Vec<LogLine>,
    pub report: String,
}

impl Reply {
    /// A reply to a waiting task in this process, and the receiver it
    /// waits on. `tail`: also return the invocation's log lines.
    pub fn waiter(tail: bool) -> (Self, tokio::sync::oneshot::Receiver<Answer>) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let reply = Self {
            topic: String::new(),
            correlation_id: None,
            via: ReplyPath::Waiter(Waiter {
                sender: std::sync::Mutex::new(Some(sender)),
                tail,
            }),
        };
        (reply, receiver)
    }

    /// True if the caller wants the invocation's log lines.
    pub fn wants_logs(&self) -> bool {
        matches!(&self.via, ReplyPath::Waiter(w) if w.tail)
    }
}

impl Waiter {
    fn answer(&self, answer: Answer) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The caller may have gone (client disconnected): nothing to do.
        if let Some(sender) = sender {
            let _ = sender.send(answer);
        }
    }
}

impl Reply {
    /// Sends a response document. A reply that cannot be sent (local queue
    /// full, broker gone) is logged: the caller times out and retries.
    pub fn send(&self, mut document: Value) {
        if let Some(id) = &self.correlation_id {
            document["correlation_id"] = id.clone().into();
        }
        let payload: bytes::Bytes = document.to_string().into();
        let sent = match &self.via {
            ReplyPath::Local(publisher) => publisher
                .publish(OutgoingMessage {
                    topic: self.topic.clone(),
                    payload,
                    qos: Qos::AtLeastOnce,
                    depth: 0,
                    retain: false,
                })
                .map_err(|e| e.to_string()),
            ReplyPath::Waiter(_) => Ok(()),
            ReplyPath::Mqtt5 {
                client,
                correlation_data,
            } => {
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    correlation_data: correlation_data.clone(),
                    content_type: Some("application/json".to_owned()),
                    ..Default::default()
                };
                client
                    .try_publish_with_properties(
                        self.topic.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        payload,
                        properties,
                    )
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = sent {
            log::warn!(target: "ledge::invoke", "reply to `{}` not sent: {e}", self.topic);
        }
    }

    /// A refusal before any function ran.
    pub fn refuse(&self, function: &str, status: &str, error: &str) {
        if let ReplyPath::Waiter(waiter) = &self.via {
            waiter.answer(Answer::Refused {
                status: status.to_owned(),
                message: error.to_owned(),
            });
            return;
        }
        self.send(json!({ "status": status, "function": function, "error": error }));
    }

    /// The outcome of the invocation; `tail` when [`Self::wants_logs`].
    pub fn outcome(
        &self,
        function: &str,
        version: &str,
        request_id: &str,
        result: Result<Vec<u8>, InvokeError>,
        duration: Duration,
        tail: Option<Tail>,
    ) {
        if let ReplyPath::Waiter(waiter) = &self.via {
            let (logs, report) = tail.map_or((Vec::new(), None), |t| (t.logs, Some(t.report)));
            waiter.answer(Answer::Ran(Box::new(Ran {
                function: function.to_owned(),
                version: version.to_owned(),
                request_id: request_id.to_owned(),
                result,
                duration,
                logs,
                report,
            })));
            return;
        }
        let mut document = json!({
            "function": function,
            "version": version,
            "request_id": request_id,
            "duration_ms": duration.as_secs_f64() * 1000.0,
        });
        match result {
            Ok(response) => {
                document["status"] = "ok".into();
                document["response"] = String::from_utf8_lossy(&response).into_owned().into();
            }
            Err(e) => {
                document["status"] = "error".into();
                document["error_kind"] = e.kind().into();
                document["error"] = e.to_string().into();
            }
        }
        self.send(document);
    }
}

/// A parsed request envelope.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub reply_to: String,
    pub correlation_id: Option<String>,
    pub payload: Vec<u8>,
}

/// Parses an envelope; the error says what is wrong with it.
pub fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the request is not a JSON envelope: {e}"))?;
    let reply_to = value
        .get("reply_to")
        .and_then(Value::as_str)
        .ok_or("the request has no `reply_to` topic")?;
    crate::topic::validate_topic_name(reply_to)
        .map_err(|e| format!("`reply_to` is not a topic a reply can go to: {e}"))?;
    let correlation_id = match value.get("correlation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let payload = match (value.get("payload"), value.get("payload_hex")) {
        (_, Some(Value::String(hex))) => {
            crate::hex::decode(hex).ok_or("`payload_hex` is not hex")?
        }
        (Some(Value::String(text)), _) => text.clone().into_bytes(),
        (Some(other), _) => other.to_string().into_bytes(),
        (None, _) => Vec::new(),
    };
    Ok(Request {
        reply_to: reply_to.to_owned(),
        correlation_id,
        payload,
    })
}

/// The envelope a client sends; used by `ledge invoke --remote`.
pub fn request_envelope(reply_to: &str, correlation_id: &str, payload: &[u8]) -> Value {
    match std::str::from_utf8(payload) {
        Ok(text) => {
            json!({ "reply_to": reply_to, "correlation_id": correlation_id, "payload": text })
        }
        Err(_) => {
            let hex = crate::hex::encode(payload);
            json!({ "reply_to": reply_to, "correlation_id": correlation_id, "payload_hex": hex })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_text_json_or_hex_payloads() {
        let r = parse_request(br#"{"reply_to":"a/b","correlation_id":7,"payload":{"value":1}}"#)
            .unwrap();
        assert_eq!(r.reply_to, "a/b");
        assert_eq!(r.correlation_id.as_deref(), Some("7"));
        assert_eq!(r.payload, br#"{"value":1}"#);
        let r = parse_request(br#"{"reply_to":"a","payload":"plain"}"#).unwrap();
        assert_eq!(
            (r.payload.as_slice(), r.correlation_id),
            (&b"plain"[..], None)
        );
        let r = parse_request(br#"{"reply_to":"a","payload_hex":"ff00"}"#).unwrap();
        assert_eq!(r.payload, vec![0xff, 0x00]);
        let round = request_envelope("r", "c", &[0xff, 1]);
        let parsed = parse_request(round.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.payload, vec![0xff, 1]);
    }

    #[test]
    fn bad_envelopes_say_what_is_wrong() {
        assert!(parse_request(b"not json")
            .unwrap_err()
            .contains("not a JSON envelope"));
        assert!(parse_request(br#"{"payload":1}"#)
            .unwrap_err()
            .contains("reply_to"));
        assert!(parse_request(br#"{"reply_to":"a/#"}"#)
            .unwrap_err()
            .contains("reply_to"));
        assert!(parse_request(br#"{"reply_to":"a","payload_hex":"f"}"#)
            .unwrap_err()
            .contains("hex"));
    }
}
