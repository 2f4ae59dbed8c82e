//! One request, from head to response: CORS preflights, the built-in
//! paths, Lambda's API, and the config's routes (auth, throttling, the
//! body, the event, the function's answer). Every response carries the
//! request id (`apigw-requestid`) and, for an allowed origin, CORS headers;
//! every one is counted by route and status class.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use super::auth::{self, Check, Denied, Required};
use super::body::{self, BodyError, Full};
use super::router::{self, Match};
use super::stats::Stats;
use super::{builtin, cors, event, invoke_api, response, sigv4};
use crate::config::http::{HttpPlan, LAMBDA_API_PREFIX};
use crate::dispatch::sync::{Answer, Reply};
use crate::dispatch::Routing;
use crate::event::{Event, EventSource};
use crate::runtime::InvokeError;
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

/// The service hyper calls for each request.
pub async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full>, Infallible> {
    let request_id = crate::dispatch::request_id::next();
    let (parts, body) = request.into_parts();
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let mut label = String::from("(no route)");
    let mut answer = route(&app, peer, &request_id, parts, body, &mut label).await;
    let state = app.stats.route(&label);
    state.count(answer.status().as_u16());
    let headers = answer.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("apigw-requestid", id);
    }
    if let (Some(cors), Some(origin)) = (&app.plan.cors, &origin) {
        cors::decorate(cors, origin, headers);
    }
    Ok(answer)
}

async fn route(
    app: &App,
    peer: SocketAddr,
    request_id: &str,
    parts: Parts,
    body: Incoming,
    label: &mut String,
) -> Response<Full> {
    if let Some(cors) = &app.plan.cors {
        if cors::is_preflight(&parts.method, &parts.headers) {
            "(CORS preflight)".clone_into(label);
            return cors::preflight(cors, &parts.headers);
        }
    }
    let path = parts.uri.path();
    if path == "/metrics" || path == "/healthz" {
        format!("GET {path}").clone_into(label);
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return not_allowed(&["GET", "HEAD"]);
        }
        if let Err(refused) = authorize(app, Required::Builtin, &parts, body, label, false).await {
            return refused;
        }
        return if path == "/metrics" {
            builtin::metrics(app)
        } else {
            builtin::healthz(app)
        };
    }
    if !app.api {
        return response::message(StatusCode::NOT_FOUND, "Not Found");
    }
    let lambda_api = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(LAMBDA_API_PREFIX))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if lambda_api {
        return invoke_api::handle(app, request_id, parts, body, label).await;
    }
    trigger(app, peer, request_id, parts, body, label).await
}

/// A request to one of the config's routes.
async fn trigger(
    app: &App,
    peer: SocketAddr,
    request_id: &str,
    parts: Parts,
    body: Incoming,
    label: &mut String,
) -> Response<Full> {
    let found = {
        let dispatcher = app.routing.current();
        router::find(
            dispatcher.http_routes(),
            parts.method.as_str(),
            parts.uri.path(),
        )
    };
    let (route, params) = match found {
        Match::Found { route, params } => (route, params),
        Match::WrongMethod(allowed) => {
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return not_allowed(&allowed);
        }
        Match::None => return response::message(StatusCode::NOT_FOUND, "Not Found"),
    };
    *label = route.key();
    let check = match auth::before_body(Required::Route(route.auth), &app.plan, &parts.headers) {
        Ok(check) => check,
        Err(denied) => return refuse(app, label, denied, false),
    };
    if let Err(wait) = app.stats.route(label).admit(route.throttle) {
        let mut answer = response::message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        retry_after(&mut answer, wait);
        return answer;
    }
    let bytes = match read_body(app, body, false).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let authorizer = match check {
        Check::Passed(authorizer) => authorizer,
        Check::Signed(signature) => match verify(app, &signature, &parts, &bytes) {
            Ok(authorizer) => Some(authorizer),
            Err(denied) => return refuse(app, label, denied, false),
        },
    };
    let payload = event::build(&event::Request {
        route_key: label,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        peer,
        request_id,
        params: &params,
        body: &bytes,
        device: &app.status.device,
        authorizer,
    });
    let event = Event::new(EventSource::Http, label.clone(), payload);
    let (reply, answer) = Reply::waiter(false);
    app.routing.submit_sync(&route.function, event, reply);
    let answer = match tokio::time::timeout(ANSWER_WAIT, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            return response::message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(_) => return response::message(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
    };
    match answer {
        Answer::Refused { status, message } => {
            let (code, text) = match status.as_str() {
                "throttled" => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                "disabled" | "unavailable" => {
                    (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
                }
                _ => (StatusCode::BAD_GATEWAY, "Internal Server Error"),
            };
            log::warn!(target: "ledge::http", "{label} {request_id}: `{}` not run: {message}", route.function);
            let mut answer = response::message(code, text);
            if code == StatusCode::TOO_MANY_REQUESTS {
                retry_after(&mut answer, Duration::from_secs(1));
            }
            answer
        }
        Answer::Ran(ran) => {
            let mut answer = match ran.result {
                Ok(bytes) => response::from_function(bytes).unwrap_or_else(|why| {
                    log::warn!(
                        target: "ledge::http",
                        "{label} {request_id}: {} {} {}: the response is not a valid API Gateway response ({why}); answered 502",
                        ran.function, ran.version, ran.request_id
                    );
                    response::message(StatusCode::BAD_GATEWAY, "Internal Server Error")
                }),
                Err(InvokeError::Timeout(_)) => {
                    response::message(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
                }
                Err(_) => response::message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
            };
            if let Ok(id) = HeaderValue::from_str(&ran.request_id) {
                answer.headers_mut().insert("x-amzn-requestid", id);
            }
            answer
        }
    }
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

fn verify(
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

fn not_allowed(allowed: &[&str]) -> Response<Full> {
    let mut answer = response::message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        answer.headers_mut().insert(header::ALLOW, value);
    }
    answer
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after(answer: &mut Response<Full>, wait: Duration) {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}
