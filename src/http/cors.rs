//! CORS, as API Gateway HTTP APIs do it from `[http.cors]`: preflight
//! requests are answered by the server (before routes and auth, since a
//! browser sends no credentials with them), and every other response to an
//! allowed origin carries the headers that let the browser read it.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::body::Full;
use super::response;
use crate::config::http::CorsPlan;

/// True for a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight: 204 with what the origin may do, or 403 if
/// the origin (or the method) is not allowed.
pub fn preflight(cors: &CorsPlan, headers: &HeaderMap) -> Response<Full> {
    let origin = headers.get(header::ORIGIN);
    let method = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    let method_allowed = cors
        .allow_methods
        .iter()
        .any(|m| m == "*" || m.eq_ignore_ascii_case(method));
    let Some(origin) = origin.filter(|o| allowed(cors, o) && method_allowed) else {
        return response::message(
            StatusCode::FORBIDDEN,
            "CORS preflight refused: the origin or method is not in [http.cors]",
        );
    };
    let mut answer = Response::new(Full::empty());
    *answer.status_mut() = StatusCode::NO_CONTENT;
    let out = answer.headers_mut();
    allow_origin(cors, origin, out);
    let methods = if cors.allow_methods.iter().any(|m| m == "*") {
        method.to_owned()
    } else {
        cors.allow_methods.join(", ")
    };
    set(out, header::ACCESS_CONTROL_ALLOW_METHODS, &methods);
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok());
    let allow_headers = if cors.allow_headers.iter().any(|h| h == "*") {
        requested.map(str::to_owned)
    } else {
        Some(cors.allow_headers.join(", ")).filter(|h| !h.is_empty())
    };
    if let Some(list) = allow_headers {
        set(out, header::ACCESS_CONTROL_ALLOW_HEADERS, &list);
    }
    if let Some(max_age) = cors.max_age {
        set(
            out,
            header::ACCESS_CONTROL_MAX_AGE,
            &max_age.as_secs().to_string(),
        );
    }
    answer
}

/// Adds the CORS headers for a response to a request from `origin`.
pub fn decorate(cors: &CorsPlan, origin: &HeaderValue, out: &mut HeaderMap) {
    if !allowed(cors, origin) {
        return;
    }
    allow_origin(cors, origin, out);
    if !cors.expose_headers.is_empty() {
        set(
            out,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &cors.expose_headers.join(", "),
        );
    }
}

fn allowed(cors: &CorsPlan, origin: &HeaderValue) -> bool {
    cors.allow_origins
        .iter()
        .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
}

fn allow_origin(cors: &CorsPlan, origin: &HeaderValue, out: &mut HeaderMap) {
    let any = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    let value = if any {
        HeaderValue::from_static("*")
    } else {
        origin.clone()
    };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if cors.allow_credentials {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !any {
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn set(out: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        out.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CorsPlan {
        CorsPlan {
            allow_origins: vec!["https://hmi.local".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into(), "x-api-key".into()],
            expose_headers: vec!["apigw-requestid".into()],
            max_age: Some(std::time::Duration::from_secs(600)),
            allow_credentials: false,
        }
    }

    fn request(origin: &str, method: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            method.parse().unwrap(),
        );
        h
    }

    #[test]
    fn preflights_from_allowed_origins_get_the_configured_lists() {
        let answer = preflight(&plan(), &request("https://hmi.local", "POST"));
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let h = answer.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://hmi.local");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-api-key"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn other_origins_and_methods_are_refused() {
        let evil = preflight(&plan(), &request("https://evil.example", "POST"));
        assert_eq!(evil.status(), StatusCode::FORBIDDEN);
        let delete = preflight(&plan(), &request("https://hmi.local", "DELETE"));
        assert_eq!(delete.status(), StatusCode::FORBIDDEN);
        let mut out = HeaderMap::new();
        decorate(&plan(), &"https://evil.example".parse().unwrap(), &mut out);
        assert!(out.is_empty());
        decorate(&plan(), &"https://hmi.local".parse().unwrap(), &mut out);
        assert_eq!(
            out[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "apigw-requestid"
        );
    }
}
