//! The paths the server answers itself: `/metrics` (Prometheus text:
//! ledge's families, then the HTTP server's) and `/healthz` (ready, or not
//! ready with the reasons).
//!
//! Both close the connection after answering, as the hand-written endpoint
//! they replace did: scrapes come seconds apart, and scrapers written for
//! it read to the end of the stream.

use std::sync::atomic::Ordering;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::app::App;
use super::body::Full;
use super::response;

pub fn metrics(app: &App) -> Response<Full> {
    let mut text = crate::telemetry::prometheus(&app.status.status());
    text.push_str(&app.stats.prometheus(&app.status.device));
    let mut answer = Response::new(Full::new(text));
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// Ready when ledge's link to its local broker is up and subscribed, no
/// spool has failed or filled its disk, and every function loaded. The
/// uplink is not a reason: a gateway works offline by design.
pub fn healthz(app: &App) -> Response<Full> {
    let status = &app.status;
    let mut reasons = Vec::new();
    if !status.link.connected.load(Ordering::Acquire) {
        reasons.push("the link to the local broker is down".to_owned());
    } else if !status.link.subscribed.load(Ordering::Acquire) {
        reasons.push("ledge is not yet subscribed to its triggers".to_owned());
    }
    for spool in status.spool.iter().chain(&status.telemetry) {
        if let Some(failure) = spool.failure() {
            reasons.push(format!("spool {}: {failure}", spool.dir().display()));
        } else if spool.disk_full() {
            reasons.push(format!("spool {}: the disk is full", spool.dir().display()));
        }
    }
    let dispatcher = status.routing.current();
    for (spec, enabled) in dispatcher.functions() {
        if !enabled {
            reasons.push(format!(
                "function {} is disabled: its module failed to load",
                spec.qualified_name()
            ));
        }
    }
    let (code, body) = if reasons.is_empty() {
        (StatusCode::OK, json!({ "status": "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "reasons": reasons }),
        )
    };
    let mut answer = response::json(code, body.to_string());
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}
