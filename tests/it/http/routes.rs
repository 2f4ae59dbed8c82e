//! Routes: method and path with `{param}` and `{proxy+}`, the payload 2.0
//! event a function gets, the 2.0 response mapping, API Gateway's error
//! answers, per-route throttling, and `ledge check` refusing a server
//! beyond loopback without auth.

use super::{curl, http_gateway, route, start};
use crate::common::gateway::Module;
use crate::common::process::ledge;

#[test]
fn a_route_gets_an_api_gateway_2_0_event_and_its_response_is_mapped() {
    let gateway = http_gateway("http-routes", "max_body = \"2KiB\"\n");
    let gateway = gateway
        .function("made", Module::Fixture("respond_http"), "")
        .function("fails", Module::Fixture("always_fails"), "retries = 0")
        .function("slow", Module::Fixture("loop"), "timeout = \"300ms\"")
        .append(&route("POST", "/readings/{sensor}", "echo", ""))
        .append(&route("ANY", "/files/{proxy+}", "echo", ""))
        .append(&route("GET", "/made", "made", ""))
        .append(&route("GET", "/fails", "fails", ""))
        .append(&route("GET", "/slow", "slow", ""));
    let (_ledge, port) = start(&gateway);
    let base = format!("http://127.0.0.1:{port}");

    let answer = curl(&[
        "-X",
        "POST",
        &format!("{base}/readings/t%201?a=1&b=2&a=3"),
        "-H",
        "cookie: c1=x; c2=y",
        "-H",
        "content-type: application/json",
        "-H",
        "user-agent: plc/1.0",
        "--data-binary",
        "{\"v\":1}",
    ]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let event = answer.json();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "POST /readings/{sensor}");
    // rawPath as sent; http.path decoded, as API Gateway gives them.
    assert_eq!(event["rawPath"], "/readings/t%201");
    assert_eq!(event["rawQueryString"], "a=1&b=2&a=3");
    assert_eq!(event["queryStringParameters"]["a"], "1,3");
    assert_eq!(event["queryStringParameters"]["b"], "2");
    assert_eq!(event["pathParameters"]["sensor"], "t 1");
    assert_eq!(event["cookies"], serde_json::json!(["c1=x", "c2=y"]));
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(event["headers"].get("cookie").is_none(), "{event}");
    assert_eq!(event["body"], "{\"v\":1}");
    assert_eq!(event["isBase64Encoded"], false);
    let context = &event["requestContext"];
    assert_eq!(context["http"]["method"], "POST");
    assert_eq!(context["http"]["path"], "/readings/t 1");
    assert_eq!(context["http"]["protocol"], "HTTP/1.1");
    assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["http"]["userAgent"], "plc/1.0");
    assert_eq!(context["routeKey"], "POST /readings/{sensor}");
    assert_eq!(context["stage"], "$default");
    assert!(context["timeEpoch"].as_u64().is_some(), "{context}");
    assert_eq!(
        answer.header("apigw-requestid"),
        context["requestId"].as_str(),
        "the request id header names the event's request"
    );

    // A greedy path parameter keeps its slashes; ANY takes every method.
    let answer = curl(&["-X", "DELETE", &format!("{base}/files/a/b/c.txt")]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let event = answer.json();
    assert_eq!(event["pathParameters"]["proxy"], "a/b/c.txt");
    assert_eq!(event["routeKey"], "ANY /files/{proxy+}");
    assert_eq!(event["requestContext"]["http"]["method"], "DELETE");

    // A body that is not UTF-8 arrives base64-encoded.
    let blob = gateway.dir().join("blob.bin");
    std::fs::write(&blob, [0xff, 0xfe, 0x00]).unwrap();
    let answer = curl(&[
        "-X",
        "PUT",
        &format!("{base}/files/blob"),
        "-H",
        "content-type: application/octet-stream",
        "--data-binary",
        &format!("@{}", blob.display()),
    ]);
    let event = answer.json();
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "//4A");

    // A structured response: status, headers, cookies, a base64 body.
    let answer = curl(&[&format!("{base}/made")]);
    assert_eq!(answer.status, 201);
    assert_eq!(answer.header("x-made-by"), Some("wat"));
    assert_eq!(answer.headers("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(answer.body, "created");

    // API Gateway's errors: JSON {"message"} with the request id.
    for (method, path, status, message) in [
        ("GET", "/fails", 502, "Internal Server Error"),
        ("GET", "/slow", 504, "Gateway Timeout"),
        ("GET", "/nowhere", 404, "Not Found"),
        ("DELETE", "/made", 405, "Method Not Allowed"),
    ] {
        let answer = curl(&["-X", method, &format!("{base}{path}")]);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        assert_eq!(answer.json()["message"], message, "{method} {path}");
        assert!(
            answer
                .header("apigw-requestid")
                .is_some_and(|id| !id.is_empty()),
            "{method} {path}: no request id"
        );
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("GET"));
        }
    }

    // Over max_body: 413, and the server keeps serving.
    let big = "x".repeat(4096);
    let answer = curl(&[
        "-X",
        "POST",
        &format!("{base}/readings/t"),
        "--data-binary",
        &big,
    ]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("Request Entity Too Large")));
    assert_eq!(curl(&[&format!("{base}/made")]).status, 201);
}

#[test]
fn a_route_over_its_rate_gets_429_with_retry_after_and_the_metrics_count_it() {
    let gateway = http_gateway("http-throttle", "");
    let gateway = gateway
        .append(&route("GET", "/limited", "echo", "rate = 0.01\nburst = 2"))
        .append(&route("GET", "/free", "echo", ""));
    let (_ledge, port) = start(&gateway);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(curl(&[&format!("{base}/limited")]).status, 200);
    assert_eq!(curl(&[&format!("{base}/limited")]).status, 200);
    let answer = curl(&[&format!("{base}/limited")]);
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.json()["message"], "Too Many Requests");
    let wait: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=100).contains(&wait), "Retry-After {wait}");
    // Another route has its own bucket.
    assert_eq!(curl(&[&format!("{base}/free")]).status, 200);
    let metrics = curl(&[&format!("{base}/metrics")]);
    assert_eq!(metrics.status, 200);
    let line = metrics
        .body
        .lines()
        .find(|l| l.starts_with("ledge_http_throttles_total") && l.contains("GET /limited"))
        .unwrap_or_else(|| panic!("no throttled series for the route in:\n{}", metrics.body));
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn ledge_check_refuses_a_server_beyond_loopback_without_auth_on_every_route() {
    let gateway = http_gateway("http-exposed", "");
    let gateway = gateway.append(&route("GET", "/open", "echo", ""));
    let text = gateway
        .text()
        .replace("\"127.0.0.1:0\"", "\"0.0.0.0:8080\"");
    let config = crate::common::write_config(gateway.dir(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check passed:\n{stderr}");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let listen_line = line_of("0.0.0.0");
    let error_line = |needle: &str| -> usize {
        let line = stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no error containing {needle:?}:\n{stderr}"));
        line.split("ledge.toml:")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no file:line:col in {line:?}"))
    };
    assert_eq!(error_line("no credentials are configured"), listen_line);
    let route = error_line("route `GET /open` is served on 0.0.0.0");
    assert!(
        (line_of("[[trigger]]")..=line_of("/open")).contains(&route),
        "the route's error points at its table (line {route}):\n{stderr}"
    );
}

#[test]
fn routes_reload_with_the_triggers_and_http_changes_need_a_restart() {
    let gateway = http_gateway("http-reload", "");
    let first = gateway.append(&route("GET", "/before", "echo", ""));
    let (mut ledge, port) = start(&first);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(curl(&[&format!("{base}/before")]).status, 200);
    assert_eq!(curl(&[&format!("{base}/after")]).status, 404);

    // A new route, the old one gone: SIGHUP swaps them in.
    let text = first.text().replace("/before", "/after");
    crate::common::write_config(first.dir(), &text);
    crate::common::process::signal(ledge.pid(), "HUP");
    ledge.wait_for_line("reloaded:", std::time::Duration::from_secs(10));
    assert_eq!(curl(&[&format!("{base}/after")]).status, 200);
    assert_eq!(curl(&[&format!("{base}/before")]).status, 404);

    // [http] itself is not reloaded: the reload is refused and says why.
    let text = text.replace("[http]\n", "[http]\nmax_body = \"2KiB\"\n");
    crate::common::write_config(first.dir(), &text);
    crate::common::process::signal(ledge.pid(), "HUP");
    let line = ledge.wait_for_line("reload failed", std::time::Duration::from_secs(10));
    assert!(line.contains("[http]"), "{line}");
    assert_eq!(curl(&[&format!("{base}/after")]).status, 200);
}
