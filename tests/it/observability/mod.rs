//! An operator can see what a running ledge does: the Prometheus endpoint
//! (checked by `promtool`) and `ledge metrics` equal what happened; the
//! retained online/offline status, outage and drain lines, and functions'
//! logs and metrics reach upstream; alias moves say who moved them; `ledge
//! logs` follows and filters; the status, metrics and functions tables line
//! up. Real binary, real mosquitto (local and upstream), real promtool.

mod counts;
mod logs;
mod prometheus;
mod tables;
mod upstream;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::ledge;

const WAIT: Duration = Duration::from_secs(30);

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Scrapes until `series` satisfies `ok`; fails with the last body.
fn scrape_until(port: u16, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = scrape(port);
        if sample(&body, series).is_some_and(&ok) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached the expected value:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool_check(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n--- exposition ---\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn cli(config: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let output = ledge(&all);
    assert!(
        output.status.success(),
        "ledge {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
