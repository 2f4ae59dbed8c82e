//! What every request on one server shares (`App`), and the gate every
//! authenticated path goes through: the credential check, the body read
//! within `max_body` and `read_timeout`, and the 401/403/408/413 answers.
//! The route handler and Lambda's API both use it; neither imports the
//! other.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::auth::{self, Check, Denied, Required};
use super::body::{self, BodyError, Full};
use super::stats::Stats;
use super::{response, sigv4};
use crate::config::http::HttpPlan;
use crate::dispatch::Routing;
use crate::telemetry::StatusSources;

/// How long a caller waits for a function's answer, whatever is queued
/// before it: API Gateway's own integration limit.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What every request on one server shares.
pub struct App {
    pub plan: HttpPlan,
    /// Serve the config's routes and Lambda's API; false on the plain
    /// server `[metrics] listen` starts (only /metrics and /healthz).
    pub api: bool,
    pub routing: Routing,
    pub status: Arc<StatusSources>,
    pub stats: Arc<Stats>,
}

/// Checks a request's credential (reading its body, which a signature
/// covers); the body and the authorizer context, or the refusal.
pub async fn authorize(
    app: &App,
    required: Required,
    parts: &Parts,
    body: Incoming,
    label: &str,
    lambda: bool,
) -> Result<(Bytes, Option<Value>), Response<Full>> {
    let check = auth::before_body(required, &app.plan, &parts.headers)
        .map_err(|denied| refuse(app, label, denied, lambda))?;
    let bytes = read_body(app, body, lambda).await?;
    match check {
        Check::Passed(authorizer) => Ok((bytes, authorizer)),
        Check::Signed(signature) => match verify(app, &signature, parts, &bytes) {
            Ok(authorizer) => Ok((bytes, Some(authorizer))),
            Err(denied) => Err(refuse(app, label, denied, lambda)),
        },
    }
}

pub(super) fn verify(
    app: &App,
    signature: &sigv4::Signature,
    parts: &Parts,
    body: &[u8],
) -> Result<Value, Denied> {
    let request = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    auth::after_body(&app.plan, signature, &request)
}

/// The body, within `max_body` and `read_timeout`; otherwise the 413 or
/// 408 that closes the connection (Lambda's error shapes for `lambda`).
pub async fn read_body(app: &App, body: Incoming, lambda: bool) -> Result<Bytes, Response<Full>> {
    let fail = |status: StatusCode, code: &'static str, message: &str| {
        let mut answer = if lambda {
            response::lambda_error(status, code, message)
        } else {
            response::message(status, message)
        };
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        answer
    };
    match tokio::time::timeout(app.plan.read_timeout, body::read(body, app.plan.max_body)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyError::TooLarge(max))) => Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("Request Entity Too Large: the body is over {max} bytes (max_body)"),
        )),
        Ok(Err(BodyError::Broken(_))) => Err(fail(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Bad Request: the body could not be read",
        )),
        Err(_) => {
            app.stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
            Err(fail(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                "Request Timeout: the body did not arrive within read_timeout",
            ))
        }
    }
}

/// 401 or 403, counted; Lambda's API gets the SDKs' error codes.
pub fn refuse(app: &App, label: &str, denied: Denied, lambda: bool) -> Response<Full> {
    app.stats
        .route(label)
        .auth_failures
        .fetch_add(1, Ordering::Relaxed);
    let (status, code, text) = match &denied {
        Denied::Missing(why) => (
            StatusCode::UNAUTHORIZED,
            "MissingAuthenticationTokenException",
            (*why).to_owned(),
        ),
        Denied::Invalid(why) => (
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            why.clone(),
        ),
        Denied::Signature(e @ sigv4::SigError::UnknownKey) => (
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            e.to_string(),
        ),
        Denied::Signature(e) => (
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            e.to_string(),
        ),
    };
    if lambda {
        return response::lambda_error(status, code, &text);
    }
    let prefix = if status == StatusCode::UNAUTHORIZED {
        "Unauthorized"
    } else {
        "Forbidden"
    };
    response::message(status, &format!("{prefix}: {text}"))
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after(answer: &mut Response<Full>, wait: Duration) {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}
