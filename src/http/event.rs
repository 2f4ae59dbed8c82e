//! The event an HTTP route's function receives: API Gateway's HTTP API
//! payload format 2.0, so a handler written for API Gateway ports over.
//!
//! As API Gateway: header names are lower case and repeated headers are
//! joined with `,`; cookies move from the `cookie` header to `cookies`;
//! repeated query parameters are joined with `,`; `body` is the body as
//! text, or base64 with `isBase64Encoded` when it is not UTF-8. ledge's
//! choices where API Gateway has no equivalent: `accountId` is the device
//! id, `apiId` is `ledge`, `stage` is `$default`; an `api_key` route adds
//! `requestContext.authorizer.apiKey.name`, an `aws_iam` route
//! `requestContext.authorizer.iam.accessKey`.

use std::borrow::Cow;
use std::collections::btree_map::{BTreeMap, Entry};
use std::net::SocketAddr;

use hyper::header::{self, HeaderMap};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::config::http::percent_decode;

/// What the event is made from.
pub struct Request<'a> {
    pub route_key: &'a str,
    pub method: &'a str,
    /// Path and query as sent (percent-encoded).
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub peer: SocketAddr,
    pub request_id: &'a str,
    pub params: &'a [(String, String)],
    pub body: &'a [u8],
    pub device: &'a str,
    /// `requestContext.authorizer`, if the route checked a credential.
    pub authorizer: Option<Value>,
}

/// The event, as JSON bytes. Written straight from the request with a
/// borrowing serializer: building a `serde_json::Value` tree first, then
/// printing and dropping it, was a third of the server thread's time per
/// request under load.
pub fn build(r: &Request<'_>) -> Vec<u8> {
    let now_ms = crate::event::unix_ms();
    let text = |name: header::HeaderName| {
        r.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default()
    };
    let host = text(header::HOST);
    let domain = host.rsplit_once(':').map_or(&*host, |(h, _)| h);
    let user_agent = text(header::USER_AGENT);
    let mut cookies = Vec::new();
    for value in r.headers.get_all(header::COOKIE) {
        let value = String::from_utf8_lossy(value.as_bytes());
        cookies.extend(
            value
                .split(';')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
        );
    }
    let body = match std::str::from_utf8(r.body) {
        _ if r.body.is_empty() => None,
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => Some(Cow::Owned(super::base64::encode(r.body))),
    };
    let event = Event {
        version: "2.0",
        route_key: r.route_key,
        raw_path: r.path,
        raw_query_string: r.query,
        cookies,
        headers: Headers(r.headers),
        query_string_parameters: (!r.query.is_empty()).then(|| query_parameters(r.query)),
        path_parameters: (!r.params.is_empty()).then_some(Params(r.params)),
        request_context: Context {
            account_id: r.device,
            api_id: "ledge",
            domain_name: domain,
            domain_prefix: domain.split('.').next().unwrap_or(""),
            http: HttpContext {
                method: r.method,
                path: percent_decode(r.path),
                protocol: "HTTP/1.1",
                source_ip: Shown(r.peer.ip()),
                user_agent: &user_agent,
            },
            request_id: r.request_id,
            route_key: r.route_key,
            stage: "$default",
            time: clf_time(now_ms),
            time_epoch: now_ms,
            authorizer: r.authorizer.as_ref(),
        },
        is_base64_encoded: matches!(body, Some(Cow::Owned(_))),
        body,
    };
    let headers_len: usize = r
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 6)
        .sum();
    let mut out = Vec::with_capacity(640 + headers_len + r.path.len() * 2 + r.body.len() * 4 / 3);
    // Serializing borrowed strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &event);
    out
}

/// Format 2.0's top level, in API Gateway's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<String>,
    headers: Headers<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<BTreeMap<String, String>>,
    request_context: Context<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_parameters: Option<Params<'a>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Context<'a> {
    account_id: &'a str,
    api_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a Value>,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: HttpContext<'a>,
    request_id: &'a str,
    route_key: &'a str,
    stage: &'static str,
    time: String,
    time_epoch: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpContext<'a> {
    method: &'a str,
    path: String,
    protocol: &'static str,
    source_ip: Shown<std::net::IpAddr>,
    user_agent: &'a str,
}

/// A value serialized as its `Display` text, without a `String` between.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The request's headers as API Gateway gives them: lower-case names (as
/// hyper keeps them), repeated values joined with `,`, `cookie` left out
/// (it is `cookies`).
struct Headers<'a>(&'a HeaderMap);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for name in self.0.keys() {
            if name == header::COOKIE {
                continue;
            }
            let mut values = self.0.get_all(name).iter();
            let Some(first) = values.next() else {
                continue;
            };
            let mut text = String::from_utf8_lossy(first.as_bytes());
            for more in values {
                let joined = text.to_mut();
                joined.push(',');
                joined.push_str(&String::from_utf8_lossy(more.as_bytes()));
            }
            map.serialize_entry(name.as_str(), &*text)?;
        }
        map.end()
    }
}

/// Path parameters (name, decoded value) as a JSON object.
struct Params<'a>(&'a [(String, String)]);

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `queryStringParameters`: decoded, a repeated name's values joined with
/// `,`.
fn query_parameters(query: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = form_decode(value);
        match pairs.entry(form_decode(key)) {
            Entry::Occupied(mut existing) => {
                let existing: &mut String = existing.get_mut();
                existing.push(',');
                existing.push_str(&value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    pairs
}

/// A query component: `+` is a space, then percent-decoding.
fn form_decode(text: &str) -> String {
    percent_decode(&text.replace('+', " "))
}

/// API Gateway's `requestContext.time`: `12/Mar/2020:19:03:58 +0000`.
/// It changes once a second, so the server thread keeps the last one.
fn clf_time(unix_ms: u64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = unix_ms / 1000;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let (year, month, day) = crate::logging::civil_from_days((secs / 86_400) as i64);
            let month = MONTHS[(month as usize).clamp(1, 12) - 1];
            let rem = secs % 86_400;
            *last = (
                secs,
                format!(
                    "{day:02}/{month}/{year}:{:02}:{:02}:{:02} +0000",
                    rem / 3600,
                    rem % 3600 / 60,
                    rem % 60
                ),
            );
        }
        last.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_event_has_format_2_0_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "gw.local:8080".parse().unwrap());
        headers.insert("user-agent", "curl/8".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.insert("cookie", "c1=v1; c2=v2".parse().unwrap());
        let params = vec![("id".to_owned(), "t 1".to_owned())];
        let bytes = build(&Request {
            route_key: "POST /r/{id}",
            method: "POST",
            path: "/r/t%201",
            query: "a=1&a=2&b=x+y",
            headers: &headers,
            peer: "127.0.0.1:5000".parse().unwrap(),
            request_id: "abc",
            params: &params,
            body: b"{\"v\":1}",
            device: "gw7",
            authorizer: None,
        });
        let e: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "POST /r/{id}");
        assert_eq!(e["rawPath"], "/r/t%201");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x+y");
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e["pathParameters"], json!({"id": "t 1"}));
        assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["body"], "{\"v\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        let c = &e["requestContext"];
        assert_eq!(c["http"]["method"], "POST");
        assert_eq!(c["http"]["path"], "/r/t 1");
        assert_eq!(c["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(c["http"]["userAgent"], "curl/8");
        assert_eq!(c["domainName"], "gw.local");
        assert_eq!(c["domainPrefix"], "gw");
        assert_eq!(c["accountId"], "gw7");
        assert_eq!(c["requestId"], "abc");
        assert_eq!(c["stage"], "$default");
        assert!(c["timeEpoch"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn binary_bodies_are_base64() {
        let headers = HeaderMap::new();
        let bytes = build(&Request {
            route_key: "ANY /x",
            method: "PUT",
            path: "/x",
            query: "",
            headers: &headers,
            peer: "[::1]:1".parse().unwrap(),
            request_id: "r",
            params: &[],
            body: &[0xff, 0x00],
            device: "d",
            authorizer: None,
        });
        let e: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (e["body"].as_str(), &e["isBase64Encoded"]),
            (Some("/wA="), &json!(true))
        );
        assert!(e.get("queryStringParameters").is_none());
    }

    #[test]
    fn time_is_in_common_log_format() {
        assert_eq!(clf_time(1_584_039_838_000), "12/Mar/2020:19:03:58 +0000");
        // The same second again, the next one, and across a year.
        assert_eq!(clf_time(1_584_039_838_999), "12/Mar/2020:19:03:58 +0000");
        assert_eq!(clf_time(1_584_039_839_000), "12/Mar/2020:19:03:59 +0000");
        assert_eq!(clf_time(1_704_067_199_500), "31/Dec/2023:23:59:59 +0000");
        assert_eq!(clf_time(1_704_067_200_000), "01/Jan/2024:00:00:00 +0000");
    }
}
