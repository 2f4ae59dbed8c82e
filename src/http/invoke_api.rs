//! Lambda's own API, the part that maps onto a gateway, so the AWS CLI,
//! boto3 and the SDKs work against ledge unchanged (`--endpoint-url`):
//!
//! - `POST /2015-03-31/functions/{name}/invocations` (Invoke), with
//!   `Qualifier`, `X-Amz-Invocation-Type: RequestResponse | Event | DryRun`
//!   and `X-Amz-Log-Type: Tail`. RequestResponse runs the function once,
//!   like a synchronous invoke over MQTT; Event takes the asynchronous path
//!   (queue or spool, retries, the failure destination) and answers 202;
//!   DryRun checks the function can run and answers 204.
//! - `GET /2015-03-31/functions/` (ListFunctions; `FunctionVersion=ALL`
//!   lists published versions too), `GET .../functions/{name}`
//!   (GetFunction) and `.../configuration` (GetFunctionConfiguration).
//!
//! A function error is Lambda's: 200, `X-Amz-Function-Error: Unhandled`
//! and `{"errorMessage", "errorType"}`. Other errors carry the SDKs' codes
//! in `x-amzn-ErrorType`.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::app::{authorize, retry_after, App, ANSWER_WAIT};
use super::auth::Required;
use super::body::Full;
use super::response::{self, lambda_error};
use crate::config::http::percent_decode;
use crate::config::FunctionSpec;
use crate::dispatch::sync::{Answer, Ran, Reply};
use crate::event::{Event, EventSource};
use crate::runtime::InvokeError;

/// How much of an invocation's log `X-Amz-Log-Result` carries, as Lambda.
const TAIL_BYTES: usize = 4096;

enum Operation {
    List,
    Get { configuration_only: bool },
    Invoke,
}

pub async fn handle(
    app: &App,
    request_id: &str,
    parts: Parts,
    body: Incoming,
    label: &mut String,
) -> Response<Full> {
    let path = parts.uri.path();
    let rest = path
        .get(1 + crate::config::http::LAMBDA_API_PREFIX.len()..)
        .unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (operation, name) = match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["functions"]) => (Operation::List, None),
        (&Method::GET, ["functions", name]) => (
            Operation::Get {
                configuration_only: false,
            },
            Some(*name),
        ),
        (&Method::GET, ["functions", name, "configuration"]) => (
            Operation::Get {
                configuration_only: true,
            },
            Some(*name),
        ),
        (&Method::POST, ["functions", name, "invocations"]) => (Operation::Invoke, Some(*name)),
        _ => {
            "lambda:unknown".clone_into(label);
            return lambda_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &format!(
                    "{} {path} is not an operation of ledge's Lambda API (Invoke, ListFunctions, GetFunction, GetFunctionConfiguration)",
                    parts.method
                ),
            );
        }
    };
    *label = match operation {
        Operation::List => "lambda:ListFunctions",
        Operation::Get { .. } => "lambda:GetFunction",
        Operation::Invoke => "lambda:Invoke",
    }
    .to_owned();
    let (bytes, _) = match authorize(app, Required::Builtin, &parts, body, label, true).await {
        Ok(authorized) => authorized,
        Err(refused) => return refused,
    };
    let query = Query(parts.uri.query().unwrap_or(""));
    let target = match name.map(|n| target(n, query.get("Qualifier"))) {
        None => None,
        Some(Ok(target)) => Some(target),
        Some(Err(message)) => {
            return lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &message,
            )
        }
    };
    match (operation, target) {
        (Operation::List, _) => list(app, query.get("FunctionVersion").as_deref() == Some("ALL")),
        (Operation::Get { configuration_only }, Some(target)) => {
            get(app, &target, configuration_only)
        }
        (Operation::Invoke, Some(target)) => invoke(app, request_id, &parts, &target, bytes).await,
        _ => lambda_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "no function named",
        ),
    }
}

/// A function as a request names it.
struct Target {
    name: String,
    qualifier: Option<String>,
}

impl Target {
    /// The name the dispatcher resolves: `f`, `f:live`, `f:7`, `f:$LATEST`.
    fn dispatch_name(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The function from a path segment (a name, `name:qualifier`, a partial
/// `account:function:name` or a full ARN) and the `Qualifier` parameter.
/// Errors are `InvalidParameterValueException` messages.
fn target(segment: &str, qualifier: Option<String>) -> Result<Target, String> {
    let text = percent_decode(segment);
    let fields: Vec<&str> = text.split(':').collect();
    let (name, from_name) = match fields.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => (*name, None),
        ["arn", _, "lambda", _, _, "function", name, q] => (*name, Some(*q)),
        [_, "function", name] => (*name, None),
        [_, "function", name, q] => (*name, Some(*q)),
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        _ => ("", None),
    };
    let valid = |s: &str| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid(name) {
        return Err(format!("`{text}` is not a function name or ARN"));
    }
    let qualifier = match (from_name, qualifier) {
        (Some(a), Some(b)) if a != b => return Err(
            "The derived qualifier from the function name does not match the specified qualifier."
                .to_owned(),
        ),
        (Some(q), _) => Some(q.to_owned()),
        (None, q) => q,
    };
    if let Some(q) = &qualifier {
        if q != "$LATEST" && !valid(q) {
            return Err(format!("`{q}` is not a version or alias"));
        }
    }
    Ok(Target {
        name: name.to_owned(),
        qualifier,
    })
}

fn not_found(app: &App, target: &Target) -> Response<Full> {
    lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!(
            "Function not found: {}",
            arn(app, &target.name, target.qualifier.as_deref())
        ),
    )
}

fn arn(app: &App, name: &str, qualifier: Option<&str>) -> String {
    let mut arn = format!("arn:aws:lambda:ledge:{}:function:{name}", app.status.device);
    if let Some(q) = qualifier {
        arn.push(':');
        arn.push_str(q);
    }
    arn
}

async fn invoke(
    app: &App,
    request_id: &str,
    parts: &Parts,
    target: &Target,
    payload: bytes::Bytes,
) -> Response<Full> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let tail = header("x-amz-log-type") == Some("Tail");
    let name = target.dispatch_name();
    match header("x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => {}
        "DryRun" => {
            let dispatcher = app.routing.current();
            return match dispatcher
                .find(&name)
                .and_then(|id| dispatcher.function(id))
            {
                None => not_found(app, target),
                Some((_, false)) => disabled(app, target),
                Some((_, true)) => {
                    let mut answer = Response::new(Full::empty());
                    *answer.status_mut() = StatusCode::NO_CONTENT;
                    answer
                }
            };
        }
        "Event" => {
            let event = Event::new(
                EventSource::Invoke,
                format!("lambda invoke {name}"),
                payload,
            );
            return match app.routing.submit_async(&name, event) {
                Ok(()) => {
                    let mut answer = Response::new(Full::empty());
                    *answer.status_mut() = StatusCode::ACCEPTED;
                    if let Ok(id) = HeaderValue::from_str(request_id) {
                        answer.headers_mut().insert("x-amzn-requestid", id);
                    }
                    answer
                }
                Err(refused) if refused.status == "not_found" => not_found(app, target),
                Err(refused) if refused.status == "disabled" => disabled(app, target),
                Err(refused) => lambda_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceException",
                    &refused.message,
                ),
            };
        }
        other => {
            return lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("X-Amz-Invocation-Type `{other}` is not RequestResponse, Event or DryRun"),
            )
        }
    }
    let event = Event::new(
        EventSource::Invoke,
        format!("lambda invoke {name}"),
        payload,
    );
    let (reply, answer) = Reply::waiter(tail);
    app.routing.submit_sync(&name, event, reply);
    let answer = match tokio::time::timeout(ANSWER_WAIT, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            return lambda_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                "ledge is stopping",
            )
        }
        Err(_) => {
            return lambda_error(
                StatusCode::GATEWAY_TIMEOUT,
                "ServiceException",
                &format!("no answer within {} s", ANSWER_WAIT.as_secs()),
            )
        }
    };
    match answer {
        Answer::Refused { status, message } => match status.as_str() {
            "not_found" => not_found(app, target),
            "disabled" => disabled(app, target),
            "throttled" => {
                let mut answer = lambda_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    &format!("Rate Exceeded: {message}"),
                );
                retry_after(&mut answer, Duration::from_secs(1));
                answer
            }
            _ => lambda_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                &message,
            ),
        },
        Answer::Ran(ran) => ran_response(*ran),
    }
}

fn disabled(app: &App, target: &Target) -> Response<Full> {
    lambda_error(
        StatusCode::CONFLICT,
        "ResourceConflictException",
        &format!(
            "The operation cannot be performed at this time. The function is currently in the following state: Failed (its module failed to load; see the log): {}",
            arn(app, &target.name, target.qualifier.as_deref())
        ),
    )
}

/// A finished invocation as Lambda answers it.
fn ran_response(ran: Ran) -> Response<Full> {
    let log = ran.report.as_ref().map(|report| tail_log(&ran, report));
    let mut answer = match ran.result {
        Ok(bytes) => response::json(StatusCode::OK, bytes),
        Err(error) => {
            let body =
                json!({ "errorMessage": error.to_string(), "errorType": error_type(&error) });
            let mut answer = response::json(StatusCode::OK, body.to_string());
            answer.headers_mut().insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            answer
        }
    };
    let headers = answer.headers_mut();
    for (name, value) in [
        ("x-amz-executed-version", Some(ran.version.as_str())),
        ("x-amzn-requestid", Some(ran.request_id.as_str())),
        ("x-amz-log-result", log.as_deref()),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    answer
}

/// Lambda's `errorType` for each way an invocation fails.
fn error_type(error: &InvokeError) -> &'static str {
    match error {
        InvokeError::Handler(_) => "HandlerError",
        InvokeError::Permanent(_) => "PermanentError",
        InvokeError::Timeout(_) => "Sandbox.Timedout",
        InvokeError::FuelExhausted(_) => "Runtime.FuelExhausted",
        InvokeError::MemoryLimit(_) => "Runtime.OutOfMemory",
        InvokeError::Trap(_) => "Runtime.Trap",
        InvokeError::Instantiate(_) => "Runtime.InitError",
        InvokeError::NotDurable(_) => "Runtime.NotDurable",
        InvokeError::Throttled(_) => "Runtime.Throttled",
    }
}

/// The last [`TAIL_BYTES`] of the invocation's log, as Lambda writes it
/// (START, the lines, END, REPORT), base64.
fn tail_log(ran: &Ran, report: &str) -> String {
    let id = &ran.request_id;
    let mut text = format!("START RequestId: {id} Version: {}\n", ran.version);
    for line in &ran.logs {
        text.push_str(line.level.as_str());
        text.push('\t');
        text.push_str(&line.message);
        text.push('\n');
    }
    let report = report.strip_prefix("REPORT ").unwrap_or(report);
    text.push_str(&format!(
        "END RequestId: {id}\nREPORT RequestId: {id}\t{report}\n"
    ));
    let mut start = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    super::base64::encode(&text.as_bytes()[start..])
}

fn list(app: &App, all_versions: bool) -> Response<Full> {
    let dispatcher = app.routing.current();
    let mut functions: Vec<(&std::sync::Arc<FunctionSpec>, bool)> = dispatcher
        .functions()
        .filter(|(spec, _)| all_versions || spec.version == "$LATEST")
        .collect();
    functions.sort_by(|a, b| (&a.0.name, &a.0.version).cmp(&(&b.0.name, &b.0.version)));
    let configurations: Vec<Value> = functions
        .into_iter()
        .map(|(spec, enabled)| configuration(app, spec, enabled, None))
        .collect();
    response::json(
        StatusCode::OK,
        json!({ "Functions": configurations }).to_string(),
    )
}

fn get(app: &App, target: &Target, configuration_only: bool) -> Response<Full> {
    let dispatcher = app.routing.current();
    let id = match target.qualifier.as_deref() {
        None | Some("$LATEST") => dispatcher.find(&format!("{}:$LATEST", target.name)),
        Some(q) => {
            let qualified = format!("{}:{q}", target.name);
            match dispatcher.alias(&qualified) {
                // An alias describes its main version, as Lambda's does.
                Some(alias) => Some(alias.function),
                None => dispatcher.find(&qualified),
            }
        }
    };
    let Some((spec, enabled)) = id.and_then(|id| dispatcher.function(id)) else {
        return not_found(app, target);
    };
    let configuration = configuration(app, spec, enabled, target.qualifier.as_deref());
    let body = if configuration_only {
        configuration
    } else {
        json!({
            "Configuration": configuration,
            "Code": { "RepositoryType": "ledge", "Location": spec.module_path.display().to_string() },
            "Tags": {},
        })
    };
    response::json(StatusCode::OK, body.to_string())
}

/// Lambda's FunctionConfiguration, as far as it maps. `env` is left out:
/// Lambda shows it, but on a gateway its values may be site details.
fn configuration(app: &App, spec: &FunctionSpec, enabled: bool, qualifier: Option<&str>) -> Value {
    let code_size = std::fs::metadata(&spec.module_path).map_or(0, |m| m.len());
    let qualifier = qualifier.or((spec.version != "$LATEST").then_some(spec.version.as_str()));
    let mut c = json!({
        "FunctionName": spec.name,
        "FunctionArn": arn(app, &spec.name, qualifier),
        "Runtime": "ledge-wasm",
        "Handler": "ledge_handle",
        "CodeSize": code_size,
        "Description": "",
        "Timeout": spec.timeout.as_secs_f64().ceil() as u64,
        "MemorySize": (spec.memory_limit >> 20).max(1),
        "Version": spec.version,
        "State": if enabled { "Active" } else { "Failed" },
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["wasm32"],
    });
    if !enabled {
        c["StateReason"] = "the module failed to load (see the log)".into();
        c["StateReasonCode"] = "InvalidCode".into();
    }
    c
}

/// Query parameters, decoded on demand.
struct Query<'a>(&'a str);

impl Query<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(&v.replace('+', " ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arns_and_qualifiers_resolve_to_one_target() {
        let t = |segment: &str, q: Option<&str>| {
            target(segment, q.map(str::to_owned))
                .map(|t| t.dispatch_name())
                .ok()
        };
        assert_eq!(t("echo", None).as_deref(), Some("echo"));
        assert_eq!(t("echo", Some("live")).as_deref(), Some("echo:live"));
        assert_eq!(t("echo%3A7", None).as_deref(), Some("echo:7"));
        assert_eq!(
            t(
                "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho%3A%24LATEST",
                None
            )
            .as_deref(),
            Some("echo:$LATEST")
        );
        assert_eq!(
            t("123456789012:function:echo", None).as_deref(),
            Some("echo")
        );
        assert_eq!(t("echo:7", Some("8")), None);
        assert_eq!(t("bad name", None), None);
    }

    #[test]
    fn the_tail_is_the_last_4_kib_of_start_lines_end_report() {
        let ran = Ran {
            function: "f".into(),
            version: "$LATEST".into(),
            request_id: "abc".into(),
            result: Ok(Vec::new()),
            duration: Duration::from_millis(1),
            logs: vec![crate::runtime::LogLine {
                level: log::Level::Info,
                message: "hello".into(),
            }],
            report: None,
        };
        let text =
            super::super::base64::decode(&tail_log(&ran, "REPORT Duration: 1.000 ms")).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text,
            "START RequestId: abc Version: $LATEST\nINFO\thello\nEND RequestId: abc\nREPORT RequestId: abc\tDuration: 1.000 ms\n"
        );
        let long = Ran {
            logs: vec![crate::runtime::LogLine {
                level: log::Level::Info,
                message: "é".repeat(3000),
            }],
            ..ran
        };
        let tail = super::super::base64::decode(&tail_log(&long, "REPORT x")).unwrap();
        assert!(tail.len() <= TAIL_BYTES && tail.len() > TAIL_BYTES - 4);
        assert!(String::from_utf8(tail).unwrap().ends_with("\tx\n"));
    }
}
