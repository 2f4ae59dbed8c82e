//! One request, from head to response: CORS preflights, the built-in
//! paths, Lambda's API, and the config's routes (auth, throttling, the
//! body, the event, the function's answer). Every response carries the
//! request id (`apigw-requestid`) and, for an allowed origin, CORS headers;
//! every one is counted by route and status class.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};

use super::app::{authorize, read_body, refuse, retry_after, verify, App, ANSWER_WAIT};
use super::auth::{self, Check, Required};
use super::body::Full;
use super::router::{self, Match};
use super::{builtin, cors, event, invoke_api, response};
use crate::config::http::LAMBDA_API_PREFIX;
use crate::dispatch::sync::{Answer, Reply};
use crate::event::{Event, EventSource};
use crate::runtime::InvokeError;

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

fn not_allowed(allowed: &[&str]) -> Response<Full> {
    let mut answer = response::message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        answer.headers_mut().insert(header::ALLOW, value);
    }
    answer
}
