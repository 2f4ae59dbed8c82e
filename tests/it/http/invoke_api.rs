//! Lambda's Invoke API, driven by the real AWS CLI and boto3 with
//! `--endpoint-url`: RequestResponse, Tail logs, Event (the asynchronous
//! path: retries, then the failure destination), DryRun, function errors,
//! Lambda's error codes, ListFunctions and GetFunction; SigV4 with the
//! configured key pairs, wrong keys refused.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::{curl, http_gateway, start};
use crate::common::gateway::Module;

const KEY_ID: &str = "AKIDLEDGETEST0001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYLEDGETEST";

/// `aws lambda <args>` against the gateway, with dummy (or given)
/// credentials in the environment and no config files.
fn aws(port: u16, dir: &Path, credentials: (&str, &str), args: &[&str]) -> Output {
    let mut command = Command::new("aws");
    command
        .args([
            "lambda",
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(args);
    // Version 2 reads blobs as base64 unless told; version 1 (pip's
    // awscli) sends them raw and does not know the option.
    if args.contains(&"--payload") && aws_cli_v2() {
        command.args(["--cli-binary-format", "raw-in-base64-out"]);
    }
    command
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", credentials.0)
        .env("AWS_SECRET_ACCESS_KEY", credentials.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .output()
        .expect("run the AWS CLI (tests/run.sh installs it)")
}

fn aws_cli_v2() -> bool {
    Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("aws-cli/2"))
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "aws failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "aws printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn the_aws_cli_invokes_lists_and_describes_functions() {
    let gateway = http_gateway("lambda-cli", "max_body = \"64KiB\"\n");
    let gateway = gateway
        .function(
            "threshold-alert",
            Module::Example("threshold-alert"),
            "allow_publish = [\"alerts/#\"]",
        )
        .function(
            "fails",
            Module::Fixture("always_fails"),
            "retries = 1\nretry_backoff = \"50ms\"\non_failure = \"topic:dead/fails\"\nallow_publish = [\"fails/attempts\"]",
        );
    let (_ledge, port) = start(&gateway);
    let dir = gateway.dir();
    let dummy = ("AKIDDUMMY", "dummy-secret-key-0000");

    let output = aws(
        port,
        dir,
        dummy,
        &[
            "invoke",
            "--function-name",
            "threshold-alert",
            "--payload",
            "{\"value\":31.5}",
            "out.json",
        ],
    );
    let printed = stdout_json(&output);
    assert_eq!(printed["StatusCode"], 200);
    assert_eq!(printed["ExecutedVersion"], "$LATEST");
    assert!(printed.get("FunctionError").is_none(), "{printed}");
    let response: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.json")).unwrap()).unwrap();
    assert_eq!(response["alert"], true, "{response}");
    assert_eq!(response["value"], 31.5);

    // --log-type Tail: the invocation's log, START to REPORT, base64.
    let output = aws(
        port,
        dir,
        dummy,
        &[
            "invoke",
            "--function-name",
            "echo",
            "--payload",
            "{\"hello\":1}",
            "--log-type",
            "Tail",
            "tail.json",
        ],
    );
    let printed = stdout_json(&output);
    let log = decode_base64(printed["LogResult"].as_str().expect("a LogResult"));
    assert!(log.starts_with("START RequestId: "), "{log}");
    assert!(log.contains("echo called"), "{log}");
    assert!(log.contains("REPORT RequestId: "), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("tail.json")).unwrap(),
        "{\"hello\":1}"
    );

    // A failing function: the CLI reports Lambda's FunctionError.
    let output = aws(
        port,
        dir,
        dummy,
        &[
            "invoke",
            "--function-name",
            "fails",
            "--payload",
            "{}",
            "err.json",
        ],
    );
    let printed = stdout_json(&output);
    assert_eq!(printed["FunctionError"], "Unhandled");
    let error: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("err.json")).unwrap()).unwrap();
    assert!(
        error["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("sensor offline")),
        "{error}"
    );
    assert_eq!(error["errorType"], "HandlerError");

    // Event: 202 at once; the asynchronous path retries (2 attempts) and
    // then hands the event to the failure destination (attempts count from 1).
    let client = gateway.client("lambda-dead", &["dead/fails", "fails/attempts"]);
    let output = aws(
        port,
        dir,
        dummy,
        &[
            "invoke",
            "--function-name",
            "fails",
            "--invocation-type",
            "Event",
            "--payload",
            "{\"event\":1}",
            "event.json",
        ],
    );
    assert_eq!(stdout_json(&output)["StatusCode"], 202);
    let messages = client.collect(3, Duration::from_secs(15));
    let attempts: Vec<String> = messages
        .iter()
        .filter(|m| m.topic == "fails/attempts")
        .map(|m| m.text())
        .collect();
    assert_eq!(attempts, ["1", "2"], "{messages:?}");
    let dead = messages
        .iter()
        .find(|m| m.topic == "dead/fails")
        .unwrap_or_else(|| panic!("the event at the failure destination: {messages:?}"));
    assert!(dead.text().contains("sensor offline"), "{}", dead.text());

    // DryRun: 204, nothing runs.
    let output = aws(
        port,
        dir,
        dummy,
        &[
            "invoke",
            "--function-name",
            "echo",
            "--invocation-type",
            "DryRun",
            "dry.json",
        ],
    );
    assert_eq!(stdout_json(&output)["StatusCode"], 204);

    // An unknown function: ResourceNotFoundException.
    let output = aws(
        port,
        dir,
        dummy,
        &["invoke", "--function-name", "nope", "no.json"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");

    // ListFunctions and GetFunction.
    let listed = stdout_json(&aws(port, dir, dummy, &["list-functions"]));
    let names: Vec<&str> = listed["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["FunctionName"].as_str())
        .collect();
    assert_eq!(names, ["echo", "fails", "threshold-alert"]);
    let got = stdout_json(&aws(
        port,
        dir,
        dummy,
        &["get-function", "--function-name", "threshold-alert"],
    ));
    assert_eq!(got["Configuration"]["FunctionName"], "threshold-alert");
    assert_eq!(got["Configuration"]["Version"], "$LATEST");
    assert_eq!(got["Configuration"]["State"], "Active");
}

#[test]
fn lambda_errors_over_http_too_large_and_too_many_requests() {
    let gateway = http_gateway("lambda-limits", "max_body = \"1KiB\"\n");
    let gateway = gateway.function(
        "busy",
        Module::Fixture("loop"),
        "timeout = \"1500ms\"\nqueue_size = 1",
    );
    let (_ledge, port) = start(&gateway);
    let url =
        |name: &str| format!("http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations");

    let big = "x".repeat(2048);
    let answer = curl(&["-X", "POST", &url("echo"), "--data-binary", &big]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(
        answer.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );

    // One running, one queued; the rest are throttled at once.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let url = url("busy");
            std::thread::spawn(move || curl(&["-X", "POST", &url, "--data-binary", "{}"]))
        })
        .collect();
    let answers: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let throttled: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(
        throttled.len() >= 2,
        "statuses: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in throttled {
        assert_eq!(
            answer.header("x-amzn-errortype"),
            Some("TooManyRequestsException")
        );
        assert!(answer.header("retry-after").is_some());
    }
}

#[test]
fn boto3_signs_with_the_configured_keys_and_wrong_keys_are_refused() {
    let gateway = http_gateway("lambda-sigv4", "credentials_file = \"aws.keys\"\n");
    std::fs::write(
        gateway.dir().join("aws.keys"),
        format!("# the HMI's key pair\n{KEY_ID}:{SECRET}\n"),
    )
    .unwrap();
    let (_ledge, port) = start(&gateway);
    let script = r#"
import json, sys, boto3, botocore
port, key, secret = sys.argv[1], sys.argv[2], sys.argv[3]
client = boto3.client("lambda", endpoint_url="http://127.0.0.1:" + port,
    region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret,
    config=botocore.config.Config(retries={"max_attempts": 1}))
try:
    r = client.invoke(FunctionName="echo", Payload=b'{"signed":true}')
    print(json.dumps({"status": r["StatusCode"], "payload": r["Payload"].read().decode()}))
except botocore.exceptions.ClientError as e:
    print(json.dumps({"error": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}))
"#;
    let run = |key: &str, secret: &str| -> serde_json::Value {
        let output = Command::new("python3")
            .args(["-c", script, &port.to_string(), key, secret])
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("python3 with boto3 (tests/run.sh installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let ok = run(KEY_ID, SECRET);
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["payload"], "{\"signed\":true}");
    let wrong_secret = run(KEY_ID, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY");
    assert_eq!(wrong_secret["status"], 403, "{wrong_secret}");
    assert_eq!(wrong_secret["error"], "InvalidSignatureException");
    let unknown = run("AKIDSOMEONEELSE", SECRET);
    assert_eq!(unknown["status"], 403, "{unknown}");
    assert_eq!(unknown["error"], "UnrecognizedClientException");
    // Unsigned: 401, and the secret is in no answer and no log line.
    let answer = curl(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{port}/2015-03-31/functions/echo/invocations"),
        "--data-binary",
        "{}",
    ]);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(!_ledge.log_text().contains(SECRET));
}

fn decode_base64(text: &str) -> String {
    let output = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 -d");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
