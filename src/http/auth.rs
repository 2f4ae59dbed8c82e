//! Who may call: API keys (`x-api-key`, as API Gateway usage plans) and
//! SigV4 signatures (`aws_iam`), checked per route, and for the built-in
//! paths whichever credentials `[http]` configures.
//!
//! A credential that can be judged from the headers is judged before the
//! body is read; a signature covers the body, so it is verified after.
//! Keys and secrets never reach a log line, a response or a metric: only
//! a key's name or an access key id does.

use std::time::SystemTime;

use hyper::header::HeaderMap;
use serde_json::{json, Value};

use super::sigv4::{self, SigError};
use crate::config::http::{HttpPlan, RouteAuth};

/// What a request must present.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Route(RouteAuth),
    /// Lambda's API, /metrics, /healthz: any configured credential, or
    /// none if none is configured.
    Builtin,
}

/// The outcome of the check before the body.
pub enum Check {
    /// Nothing to check, or a valid API key: the authorizer context.
    Passed(Option<Value>),
    /// A signature to verify once the body is in.
    Signed(sigv4::Signature),
}

/// Why a request was refused: 401 when nothing was presented, 403 when
/// what was presented is wrong.
#[derive(Debug)]
pub enum Denied {
    Missing(&'static str),
    Invalid(String),
    /// A signature the AWS SDKs report as their own error code.
    Signature(SigError),
}

pub fn before_body(
    required: Required,
    plan: &HttpPlan,
    headers: &HeaderMap,
) -> Result<Check, Denied> {
    let api_key = headers.get("x-api-key");
    let signed = headers.contains_key(hyper::header::AUTHORIZATION);
    match required {
        Required::Route(RouteAuth::None) => Ok(Check::Passed(None)),
        Required::Route(RouteAuth::ApiKey) => api_key_check(plan, api_key),
        Required::Route(RouteAuth::AwsIam) => signature_check(plan, headers),
        Required::Builtin if !plan.guards_builtins() => Ok(Check::Passed(None)),
        Required::Builtin => match (api_key, &plan.api_keys, signed, &plan.credentials) {
            (Some(_), Some(_), _, _) => api_key_check(plan, api_key),
            (_, _, true, Some(_)) => signature_check(plan, headers),
            _ => Err(Denied::Missing(
                "this path needs a credential: an x-api-key header or a SigV4 signature",
            )),
        },
    }
}

/// Verifies a signature against the whole request.
pub fn after_body(
    plan: &HttpPlan,
    signature: &sigv4::Signature,
    request: &sigv4::Request<'_>,
) -> Result<Value, Denied> {
    let Some(credentials) = &plan.credentials else {
        return Err(Denied::Missing("no credentials_file is configured"));
    };
    sigv4::verify(signature, credentials, request, SystemTime::now()).map_err(Denied::Signature)?;
    Ok(
        json!({ "iam": { "accessKey": signature.access_key_id, "userId": signature.access_key_id } }),
    )
}

fn api_key_check(
    plan: &HttpPlan,
    presented: Option<&hyper::header::HeaderValue>,
) -> Result<Check, Denied> {
    let Some(presented) = presented else {
        return Err(Denied::Missing("this route needs an x-api-key header"));
    };
    let name = plan
        .api_keys
        .as_ref()
        .and_then(|keys| keys.name_of(presented.to_str().ok()?))
        .ok_or_else(|| Denied::Invalid("the x-api-key is not valid".to_owned()))?;
    Ok(Check::Passed(Some(json!({ "apiKey": { "name": name } }))))
}

fn signature_check(plan: &HttpPlan, headers: &HeaderMap) -> Result<Check, Denied> {
    let Some(credentials) = &plan.credentials else {
        return Err(Denied::Missing("no credentials_file is configured"));
    };
    match sigv4::parse(headers, credentials) {
        Ok(signature) => Ok(Check::Signed(signature)),
        Err(SigError::Missing) => Err(Denied::Missing(
            "this route needs a SigV4-signed request (Authorization: AWS4-HMAC-SHA256 ...)",
        )),
        Err(e) => Err(Denied::Signature(e)),
    }
}
