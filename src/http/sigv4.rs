//! AWS Signature Version 4, verified: requests signed by the AWS CLI,
//! boto3 or any SDK with a key pair from `[http] credentials_file`.
//!
//! The signature is recomputed from the request (method, path, query,
//! the headers it names, the body's SHA-256) and compared in constant time
//! (ring's HMAC verify). The scope's region and service are whatever the
//! client signed for: they are part of what is signed. A request more
//! than 15 minutes from this gateway's clock is refused, as AWS does.
//! Presigned URLs (signature in the query) are not supported.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderMap;
use ring::hmac;

use crate::config::http::Credentials;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `X-Amz-Date` may be from this clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a signature was refused. Messages name what is wrong, never a
/// secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the request is not signed (no Authorization header)")]
    Missing,
    #[error("the access key id is not one of this gateway's")]
    UnknownKey,
    #[error("{0}")]
    Malformed(String),
    #[error("the signature does not match the request (check the secret access key and the signing method)")]
    Mismatch,
    #[error("signature expired or not yet valid: {0}")]
    Clock(String),
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

/// What was signed, as it came over the wire.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Reads the Authorization header, before the body arrives: a request
/// with none, or with an unknown key, is refused without reading on.
pub fn parse(headers: &HeaderMap, credentials: &Credentials) -> Result<Signature, SigError> {
    let header = headers
        .get(hyper::header::AUTHORIZATION)
        .ok_or(SigError::Missing)?
        .to_str()
        .map_err(|_| SigError::Malformed("the Authorization header is not ASCII".into()))?;
    let Some(fields) = header.strip_prefix(ALGORITHM).map(str::trim_start) else {
        return Err(SigError::Malformed(format!(
            "the Authorization header is not {ALGORITHM}"
        )));
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let malformed =
        |what: &str| SigError::Malformed(format!("the Authorization header has no valid {what}"));
    let scope: Vec<&str> = credential
        .ok_or_else(|| malformed("Credential"))?
        .split('/')
        .collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed(
            "Credential (key/date/region/service/aws4_request)",
        ));
    };
    if credentials.secret(access_key_id).is_none() {
        return Err(SigError::UnknownKey);
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| malformed("SignedHeaders"))?
        .split(';')
        .map(str::to_owned)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    let signature = signature
        .and_then(crate::hex::decode)
        .filter(|s| s.len() == 32)
        .ok_or_else(|| malformed("Signature (64 hex digits)"))?;
    Ok(Signature {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature,
    })
}

/// Checks `signature` against the request and the clock `now`.
pub fn verify(
    signature: &Signature,
    credentials: &Credentials,
    request: &Request<'_>,
    now: SystemTime,
) -> Result<(), SigError> {
    let secret = credentials
        .secret(&signature.access_key_id)
        .ok_or(SigError::UnknownKey)?;
    let amz_date = header(request.headers, "x-amz-date")
        .ok_or_else(|| SigError::Malformed("X-Amz-Date is missing".into()))?;
    check_clock(amz_date, &signature.date, now)?;
    let body_hash =
        crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, request.body).as_ref());
    if let Some(claimed) = header(request.headers, "x-amz-content-sha256") {
        if claimed != body_hash {
            return Err(SigError::Malformed(
                "x-amz-content-sha256 does not match the body".into(),
            ));
        }
    }
    let canonical = canonical_request(request, &signature.signed_headers, &body_hash)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        signature.date, signature.region, signature.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        crate::hex::encode(
            ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref()
        )
    );
    let mut key = hmac::sign(
        &hmac::Key::new(
            hmac::HMAC_SHA256,
            format!("AWS4{}", secret.expose()).as_bytes(),
        ),
        signature.date.as_bytes(),
    );
    for part in [&signature.region, &signature.service, "aws4_request"] {
        key = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            part.as_bytes(),
        );
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_ref());
    hmac::verify(&key, to_sign.as_bytes(), &signature.signature).map_err(|_| SigError::Mismatch)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `X-Amz-Date` must agree with the scope's date and be within
/// [`MAX_SKEW`] of `now`.
fn check_clock(amz_date: &str, scope_date: &str, now: SystemTime) -> Result<(), SigError> {
    let bad = || {
        SigError::Malformed(format!(
            "X-Amz-Date `{amz_date}` is not like 20260101T120000Z"
        ))
    };
    let b = amz_date.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !amz_date.starts_with(scope_date) {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, SigError> {
        amz_date
            .get(range)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let days = days_from_civil(number(0..4)?, number(4..6)?, number(6..8)?);
    let signed = days * 86_400 + number(9..11)? * 3600 + number(11..13)? * 60 + number(13..15)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if signed.abs_diff(now) > MAX_SKEW.as_secs() {
        return Err(SigError::Clock(format!(
            "the request was signed at {amz_date}, {} s from this gateway's clock (at most {} s allowed)",
            signed - now,
            MAX_SKEW.as_secs()
        )));
    }
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn canonical_request(
    request: &Request<'_>,
    signed_headers: &[String],
    body_hash: &str,
) -> Result<String, SigError> {
    let mut out = String::with_capacity(256);
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&uri_encode(&remove_dot_segments(request.path), true));
    out.push('\n');
    let mut pairs: Vec<(String, String)> = request
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| crate::config::http::percent_decode(&s.replace('+', "%20"));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&query.join("&"));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                let text = String::from_utf8_lossy(v.as_bytes());
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed(format!(
                "signed header `{name}` is not in the request"
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(body_hash);
    Ok(out)
}

/// RFC 3986 dot-segment removal, with empty segments dropped, as the AWS
/// SDKs normalise a path before signing.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let mut out = String::from("/");
    out.push_str(&kept.join("/"));
    if path.ends_with('/') && !kept.is_empty() {
        out.push('/');
    }
    out
}

/// Percent-encodes all but the unreserved characters (and `/` if `path`).
fn uri_encode(text: &str, path: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || (path && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's SigV4 test suite (get-vanilla, get-vanilla-query-order-key-case).
    const SECRET: &str = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn check(query: &str, signature: &str) -> Result<(), SigError> {
        let credentials = Credentials::parse(SECRET).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}")
                .parse()
                .unwrap(),
        );
        let parsed = parse(&headers, &credentials)?;
        let request = Request {
            method: "GET",
            path: "/",
            query,
            headers: &headers,
            body: b"",
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160 + 60);
        verify(&parsed, &credentials, &request, now)
    }

    #[test]
    fn aws_test_vectors_verify_and_a_changed_byte_does_not() {
        let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert_eq!(check("", vanilla), Ok(()));
        let ordered = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        assert_eq!(check("Param2=value2&Param1=value1", ordered), Ok(()));
        assert_eq!(
            check("Param2=value3&Param1=value1", ordered),
            Err(SigError::Mismatch)
        );
        let wrong = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf32";
        assert_eq!(check("", wrong), Err(SigError::Mismatch));
    }

    #[test]
    fn stale_unknown_and_unsigned_requests_are_refused() {
        let credentials = Credentials::parse(SECRET).unwrap();
        assert_eq!(
            parse(&HeaderMap::new(), &credentials),
            Err(SigError::Missing)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=OTHERKEY/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert_eq!(parse(&headers, &credentials), Err(SigError::UnknownKey));
        let late = UNIX_EPOCH + Duration::from_secs(1_440_938_160 + 3600);
        assert!(matches!(
            check_clock("20150830T123600Z", "20150830", late),
            Err(SigError::Clock(_))
        ));
    }

    #[test]
    fn paths_are_normalised_and_encoded_like_the_sdks() {
        assert_eq!(remove_dot_segments("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(remove_dot_segments(""), "/");
        assert_eq!(uri_encode("/f/a%3Ab", true), "/f/a%253Ab");
        assert_eq!(uri_encode("$LATEST", false), "%24LATEST");
        assert_eq!(days_from_civil(2015, 8, 30), 16_677);
    }
}
