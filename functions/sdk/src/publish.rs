//! Publishing to the gateway's local MQTT broker.
//!
//! A publish is best-effort and checked against the function's
//! `allow_publish`; the host's negative codes become [`PublishError`] so a
//! handler can `?` them into its error response.

use core::fmt;

use crate::sys;

/// MQTT quality of service for a [`publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: the broker acknowledges; duplicates are possible.
    AtLeastOnce = 1,
    /// QoS 2: exactly once between the gateway and the broker.
    ExactlyOnce = 2,
}

/// Why the host did not queue a publish. Nothing was sent in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The topic is not in the function's `allow_publish`.
    Denied,
    /// The topic is empty, not UTF-8 or has wildcards.
    Invalid,
    /// The payload is larger than the function's `max_payload`.
    TooLarge,
    /// The local broker is not connected or its queue is full.
    Unavailable,
    /// This invocation has used up its publishes.
    Limit,
    /// The function is over its `publish_rate`; a later publish may go.
    Throttled,
    /// A code this SDK does not know (from a newer host).
    Other(i32),
}

impl PublishError {
    pub(crate) fn from_code(code: i32) -> PublishError {
        match code {
            sys::ERR_DENIED => PublishError::Denied,
            sys::ERR_INVALID => PublishError::Invalid,
            sys::ERR_TOO_LARGE => PublishError::TooLarge,
            sys::ERR_UNAVAILABLE => PublishError::Unavailable,
            sys::ERR_LIMIT => PublishError::Limit,
            sys::ERR_THROTTLED => PublishError::Throttled,
            other => PublishError::Other(other),
        }
    }

    /// Whether the same publish may succeed later (the broker was busy or
    /// disconnected, or the function's publish rate refills); every other
    /// error repeats until the function changes.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PublishError::Unavailable | PublishError::Throttled)
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Denied => f.write_str("publish denied: topic is not in allow_publish"),
            PublishError::Invalid => {
                f.write_str("publish invalid: topic is empty, not UTF-8 or has wildcards")
            }
            PublishError::TooLarge => f.write_str("publish too large: payload exceeds max_payload"),
            PublishError::Unavailable => {
                f.write_str("publish unavailable: local broker disconnected or its queue is full")
            }
            PublishError::Limit => f.write_str("publish limit: this invocation's budget is spent"),
            PublishError::Throttled => {
                f.write_str("publish throttled: the function is over its publish_rate")
            }
            PublishError::Other(code) => write!(f, "publish failed with host code {code}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Publishes `payload` to `topic` on the local broker.
///
/// `Ok` means the message is queued for the broker, not that it was delivered.
pub fn publish(topic: &str, payload: impl AsRef<[u8]>, qos: Qos) -> Result<(), PublishError> {
    match sys::publish(topic.as_bytes(), payload.as_ref(), qos as i32) {
        code if code >= sys::OK => Ok(()),
        code => Err(PublishError::from_code(code)),
    }
}

/// Like [`publish`], but retained: the broker keeps the message and hands
/// it to every later subscriber of `topic` (the last known state of a
/// door, a relay, a setting). An empty payload clears the retained message.
pub fn publish_retained(
    topic: &str,
    payload: impl AsRef<[u8]>,
    qos: Qos,
) -> Result<(), PublishError> {
    let flags = sys::PUBLISH_RETAIN;
    match sys::publish_flags(topic.as_bytes(), payload.as_ref(), qos as i32, flags) {
        code if code >= sys::OK => Ok(()),
        code => Err(PublishError::from_code(code)),
    }
}

/// Forwards `payload` upstream durably: ledge stores it in its on-flash spool
/// and delivers it to `<prefix>/events/<topic>` on the upstream broker when
/// the link is up, at least once, in order. Checked against the function's
/// `allow_forward`; `Unavailable` if no upstream is configured or the spool
/// refused it. The invocation completes only once the record is durable.
pub fn forward(topic: &str, payload: impl AsRef<[u8]>) -> Result<(), PublishError> {
    match sys::forward(topic.as_bytes(), payload.as_ref()) {
        code if code >= sys::OK => Ok(()),
        code => Err(PublishError::from_code(code)),
    }
}
