//! Who may call: API keys (`x-api-key`) and SigV4 (`aws_iam`, signed by
//! curl's own `--aws-sigv4`) per route, the built-in paths guarded once
//! credentials exist, CORS preflights answered from `[http.cors]`, and
//! HTTPS with `cert_file`/`key_file`. Keys never reach the log.

use std::process::Command;

use super::{curl, http_gateway, route, start};

const API_KEY: &str = "hmi-key-0123456789abcdefXYZ";
const KEY_ID: &str = "AKIDROUTE0001";
const SECRET: &str = "routeSecretKey/0123456789abcdefXYZ";

#[test]
fn api_keys_and_sigv4_guard_their_routes_and_the_builtin_paths() {
    let gateway = http_gateway(
        "http-auth",
        "api_keys_file = \"api.keys\"\ncredentials_file = \"aws.keys\"\n",
    );
    let gateway = gateway
        .append(&route("GET", "/keyed", "echo", "auth = \"api_key\""))
        .append(&route("POST", "/signed", "echo", "auth = \"aws_iam\""))
        .append(&route("GET", "/open", "echo", ""));
    std::fs::write(gateway.dir().join("api.keys"), format!("hmi:{API_KEY}\n")).unwrap();
    std::fs::write(
        gateway.dir().join("aws.keys"),
        format!("{KEY_ID}:{SECRET}\n"),
    )
    .unwrap();
    let (ledge, port) = start(&gateway);
    let base = format!("http://127.0.0.1:{port}");

    let answer = curl(&[&format!("{base}/keyed")]);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(answer.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Unauthorized"));
    let answer = curl(&[
        "-H",
        "x-api-key: not-a-key-of-ours-000000",
        &format!("{base}/keyed"),
    ]);
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = curl(&[
        "-H",
        &format!("x-api-key: {API_KEY}"),
        &format!("{base}/keyed"),
    ]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The function learns which key called, never the key.
    let event = answer.json();
    assert!(event.to_string().contains("hmi"), "{event}");
    assert!(
        !event["requestContext"].to_string().contains(API_KEY),
        "{event}"
    );

    let signed = |user: &str| {
        curl(&[
            "--aws-sigv4",
            "aws:amz:us-east-1:execute-api",
            "--user",
            user,
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "{\"signed\":1}",
            &format!("{base}/signed"),
        ])
    };
    let answer = signed(&format!("{KEY_ID}:{SECRET}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["body"], "{\"signed\":1}");
    let answer = signed(&format!("{KEY_ID}:wrongSecretKey/0123456789abcdefXYZ"));
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = curl(&["-X", "POST", &format!("{base}/signed")]);
    assert_eq!(answer.status, 401, "{}", answer.body);

    // An open route stays open; the built-in paths need a credential now.
    assert_eq!(curl(&[&format!("{base}/open")]).status, 200);
    assert_eq!(curl(&[&format!("{base}/metrics")]).status, 401);
    let answer = curl(&[
        "-H",
        &format!("x-api-key: {API_KEY}"),
        &format!("{base}/metrics"),
    ]);
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .lines()
            .any(|l| l.starts_with("ledge_http_auth_failures_total") && l.contains("GET /keyed")),
        "auth failures are counted per route:\n{}",
        answer.body
    );
    assert!(!answer.body.contains(API_KEY) && !answer.body.contains(SECRET));
    let log = ledge.log_text();
    assert!(
        !log.contains(API_KEY) && !log.contains(SECRET),
        "a key in the log:\n{log}"
    );
}

#[test]
fn cors_preflights_are_answered_from_the_config() {
    let gateway = http_gateway(
        "http-cors",
        "[http.cors]\nallow_origins = [\"https://hmi.local\"]\nallow_methods = [\"GET\", \"POST\"]\nallow_headers = [\"content-type\"]\nmax_age = \"10m\"\n",
    );
    let gateway = gateway.append(&route("POST", "/readings", "echo", ""));
    let (_ledge, port) = start(&gateway);
    let url = format!("http://127.0.0.1:{port}/readings");
    let preflight = |origin: &str, method: &str| {
        curl(&[
            "-X",
            "OPTIONS",
            "-H",
            &format!("origin: {origin}"),
            "-H",
            &format!("access-control-request-method: {method}"),
            "-H",
            "access-control-request-headers: content-type",
            &url,
        ])
    };
    let answer = preflight("https://hmi.local", "POST");
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://hmi.local")
    );
    assert_eq!(
        answer.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        answer.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(answer.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight("https://evil.example", "POST").status, 403);
    assert_eq!(preflight("https://hmi.local", "DELETE").status, 403);
    // The actual request from the allowed origin may be read by it.
    let answer = curl(&[
        "-X",
        "POST",
        "-H",
        "origin: https://hmi.local",
        "-d",
        "{}",
        &url,
    ]);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://hmi.local")
    );
    let answer = curl(&[
        "-X",
        "POST",
        "-H",
        "origin: https://evil.example",
        "-d",
        "{}",
        &url,
    ]);
    assert!(answer.header("access-control-allow-origin").is_none());
}

#[test]
fn https_serves_with_the_configured_certificate() {
    let gateway = http_gateway(
        "http-tls",
        "cert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
    );
    let gateway = gateway.append(&route("GET", "/ping", "echo", ""));
    let dir = gateway.dir();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("on https://", std::time::Duration::from_secs(10));
    let port = super::port_in(&line);
    let cacert = dir.join("cert.pem");
    let answer = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        &format!("https://127.0.0.1:{port}/ping"),
    ]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["requestContext"]["http"]["method"], "GET");
    // Plain HTTP on the HTTPS port gets no answer, and HTTPS keeps serving.
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/ping"),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("requestContext"));
    let answer = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        &format!("https://127.0.0.1:{port}/ping"),
    ]);
    assert_eq!(answer.status, 200);
}
