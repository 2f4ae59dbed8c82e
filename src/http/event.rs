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

use std::net::SocketAddr;

use hyper::header::{self, HeaderMap};
use serde_json::{json, Map, Value};

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

/// The event, as JSON bytes.
pub fn build(r: &Request<'_>) -> Vec<u8> {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in r.headers.keys() {
        let values = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        if name == header::COOKIE {
            for value in values {
                cookies.extend(
                    value
                        .split(';')
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty()),
                );
            }
            continue;
        }
        let joined: Vec<_> = values.collect();
        headers.insert(name.as_str().to_owned(), joined.join(",").into());
    }
    let now_ms = crate::event::unix_ms();
    let user_agent = r
        .headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let host = r
        .headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let domain = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let mut context = json!({
        "accountId": r.device,
        "apiId": "ledge",
        "domainName": domain,
        "domainPrefix": domain.split('.').next().unwrap_or(""),
        "http": {
            "method": r.method,
            "path": percent_decode(r.path),
            "protocol": "HTTP/1.1",
            "sourceIp": r.peer.ip().to_string(),
            "userAgent": user_agent,
        },
        "requestId": r.request_id,
        "routeKey": r.route_key,
        "stage": "$default",
        "time": clf_time(now_ms),
        "timeEpoch": now_ms,
    });
    if let Some(authorizer) = &r.authorizer {
        context["authorizer"] = authorizer.clone();
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": r.route_key,
        "rawPath": r.path,
        "rawQueryString": r.query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = cookies.into();
    }
    if !r.query.is_empty() {
        let mut query: Map<String, Value> = Map::new();
        for pair in r.query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (form_decode(key), form_decode(value));
            match query.get_mut(&key) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&value);
                }
                _ => {
                    query.insert(key, value.into());
                }
            }
        }
        event["queryStringParameters"] = query.into();
    }
    if !r.params.is_empty() {
        let params: Map<String, Value> = r
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        event["pathParameters"] = params.into();
    }
    if !r.body.is_empty() {
        match std::str::from_utf8(r.body) {
            Ok(text) => event["body"] = text.into(),
            Err(_) => {
                event["body"] = super::base64::encode(r.body).into();
                event["isBase64Encoded"] = true.into();
            }
        }
    }
    event.to_string().into_bytes()
}

/// A query component: `+` is a space, then percent-decoding.
fn form_decode(text: &str) -> String {
    percent_decode(&text.replace('+', " "))
}

/// API Gateway's `requestContext.time`: `12/Mar/2020:19:03:58 +0000`.
fn clf_time(unix_ms: u64) -> String {
    // `2020-03-12T19:03:58.123Z`
    let iso = crate::logging::utc_timestamp(unix_ms);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        iso.get(8..10).unwrap_or("01"),
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
