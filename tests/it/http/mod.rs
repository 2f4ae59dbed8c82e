//! The HTTP server (issue 16): API Gateway HTTP API routes with payload
//! 2.0 events and responses, Lambda's Invoke API driven by the real AWS
//! CLI and boto3, and the limits that keep slow or hostile clients from
//! taking the gateway, all against the real `ledge` binary on 127.0.0.1
//! with real curl.

mod auth;
mod invoke_api;
mod limits;
mod metrics_listen;
mod routes;

use std::process::Command;
use std::time::Duration;

use crate::common::gateway::{Gateway, Module};
use crate::common::process::Ledge;

/// One HTTP response as curl saw it.
pub struct Answer {
    pub status: u16,
    /// Lower-cased names, in order (a name may repeat: `set-cookie`).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Runs curl with `args` (plus `-sS -i` and a 20 s cap) and parses what it
/// printed.
pub fn curl(args: &[&str]) -> Answer {
    let output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&String::from_utf8_lossy(&output.stdout))
}

fn parse(mut text: &str) -> Answer {
    // curl prints the interim `100 Continue` of a large body first.
    while text.starts_with("HTTP/1.1 100") {
        text = text.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
    }
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A gateway with an `[http]` section on port 0 (the kernel picks; `start`
/// reads the port from the log, so no other test can take it first),
/// `extra` keys in it, and the echo function `echo` (responds with its
/// event).
pub fn http_gateway(id: &str, extra: &str) -> Gateway {
    Gateway::new(id)
        .append(&format!("[http]\nlisten = \"127.0.0.1:0\"\n{extra}"))
        .function("echo", Module::Fixture("respond_echo"), "")
}

/// A `source = "http"` trigger.
pub fn route(method: &str, path: &str, function: &str, extra: &str) -> String {
    format!(
        "[[trigger]]\nsource = \"http\"\nmethod = \"{method}\"\npath = \"{path}\"\nfunction = \"{function}\"\n{extra}\n"
    )
}

/// Starts ledge and waits until its HTTP server listens: ledge, and the
/// server's port.
pub fn start(gateway: &Gateway) -> (Ledge, u16) {
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("HTTP routes, Lambda's API", Duration::from_secs(10));
    let port = port_in(&line);
    (ledge, port)
}

/// The port of the `://127.0.0.1:PORT` address in a log line.
pub fn port_in(line: &str) -> u16 {
    line.split("://127.0.0.1:")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no ://127.0.0.1:PORT in {line:?}"))
}
