//! HTTP responses: a function's answer mapped by API Gateway's payload
//! format 2.0 rules, and the server's own answers (`{"message": ...}` as
//! API Gateway gives them; Lambda's API errors with `x-amzn-ErrorType`).

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::body::Full;

/// `{"message": "..."}` with `status`.
pub fn message(status: StatusCode, message: &str) -> Response<Full> {
    let body = serde_json::json!({ "message": message }).to_string();
    json(status, body)
}

/// A JSON body with `status`.
pub fn json(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Full> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error of Lambda's API: `x-amzn-ErrorType: <code>` and
/// `{"Type": "User", "message": ...}`, which the AWS SDKs turn into
/// `<code>` exceptions.
pub fn lambda_error(status: StatusCode, code: &'static str, message: &str) -> Response<Full> {
    let kind = if status.is_server_error() {
        "Service"
    } else {
        "User"
    };
    let body = serde_json::json!({ "Type": kind, "message": message }).to_string();
    let mut response = json(status, body);
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(code));
    response
}

/// A function's response as API Gateway (payload format 2.0) sends it: a
/// JSON object with `statusCode` is the response's status, `headers`,
/// `cookies` and `body` (base64-decoded if `isBase64Encoded`); any other
/// JSON is a 200 `application/json` body as it is; bytes that are not
/// JSON are a 200 body too (text/plain if UTF-8, else octet-stream). `Err`
/// says why a structured response is malformed (the caller gets a 502).
pub fn from_function(bytes: Vec<u8>) -> Result<Response<Full>, String> {
    let starts_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // Building a JSON tree costs more than the rest of the answer: only an
    // object that names `statusCode` can be a structured response.
    let names_status = bytes.windows(12).any(|w| w == b"\"statusCode\"");
    if starts_object && names_status {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&bytes) {
            if object.contains_key("statusCode") {
                return structured(&object);
            }
        }
    }
    if bytes.is_empty() {
        return Ok(plain(StatusCode::OK, None, Full::empty()));
    }
    let kind = if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
        "application/json"
    } else if std::str::from_utf8(&bytes).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    Ok(plain(StatusCode::OK, Some(kind), Full::new(bytes)))
}

fn plain(status: StatusCode, kind: Option<&'static str>, body: Full) -> Response<Full> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(kind) = kind {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    response
}

fn structured(object: &serde_json::Map<String, Value>) -> Result<Response<Full>, String> {
    let status = object["statusCode"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|code| code.as_u16() >= 200)
        .ok_or("statusCode is not an HTTP status (200-599)")?;
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            if object.get("isBase64Encoded") == Some(&Value::Bool(true)) {
                super::base64::decode(text)
                    .ok_or("isBase64Encoded is true but body is not base64")?
            } else {
                text.clone().into_bytes()
            }
        }
        Some(other) => other.to_string().into_bytes(),
    };
    let mut response = plain(status, None, Full::new(body));
    let out = response.headers_mut();
    if let Some(headers) = object.get("headers") {
        let headers = headers.as_object().ok_or("headers is not an object")?;
        for (name, value) in headers {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(format!("header `{name}` is not a string")),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let value = HeaderValue::from_str(&text)
                .map_err(|_| format!("header `{name}` has a value HTTP cannot carry"))?;
            out.insert(name, value);
        }
    }
    if let Some(cookies) = object.get("cookies") {
        let cookies = cookies.as_array().ok_or("cookies is not an array")?;
        for cookie in cookies {
            let value = cookie
                .as_str()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .ok_or("a cookie is not a string HTTP can carry")?;
            out.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_structured_response_sets_status_headers_cookies_and_body() {
        let r = from_function(
            br#"{"statusCode":201,"headers":{"x-a":"1","x-n":2},"cookies":["a=1","b=2"],"body":"aGk=","isBase64Encoded":true}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["x-n"], "2");
        let cookies: Vec<_> = r.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(hyper::body::Body::size_hint(r.body()).exact(), Some(2));
    }

    #[test]
    fn any_other_value_is_a_200_body() {
        let r = from_function(br#"{"alert":true}"#.to_vec()).unwrap();
        assert_eq!(
            (r.status(), &r.headers()[header::CONTENT_TYPE]),
            (
                StatusCode::OK,
                &HeaderValue::from_static("application/json")
            )
        );
        let r = from_function(b"31.5".to_vec()).unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = from_function(b"hello".to_vec()).unwrap();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let r = from_function(vec![0xff, 0]).unwrap();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
    }

    #[test]
    fn malformed_structured_responses_say_why() {
        for (bytes, needle) in [
            (&br#"{"statusCode":"x"}"#[..], "statusCode"),
            (br#"{"statusCode":99}"#, "statusCode"),
            (br#"{"statusCode":200,"headers":[]}"#, "headers"),
            (
                br#"{"statusCode":200,"headers":{"a b":"1"}}"#,
                "header name",
            ),
            (
                br#"{"statusCode":200,"body":"!","isBase64Encoded":true}"#,
                "base64",
            ),
            (br#"{"statusCode":200,"cookies":[1]}"#, "cookie"),
        ] {
            let e = from_function(bytes.to_vec()).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
