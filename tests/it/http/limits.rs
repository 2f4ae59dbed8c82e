//! Limits and bad input: a slow request head gets 408, a huge one 431, a
//! malformed request line 400, idle connections beyond `max_connections`
//! make room for new ones; through all of it other requests keep being
//! served. `/healthz` and `/metrics` live on the same server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{curl, http_gateway, route, start};
use crate::common::gateway::{Gateway, Module};

/// Connections from 127.0.0.2 rather than 127.0.0.1: their ephemeral
/// ports are then bound on another address, so thousands of them cannot
/// take a port another test (running at the same time) just picked with
/// `free_port` for 127.0.0.1.
struct Clients(tokio::runtime::Runtime);

impl Clients {
    fn new() -> Self {
        Self(
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap(),
        )
    }

    fn connect(&self, address: &str) -> TcpStream {
        let address: std::net::SocketAddr = address.parse().unwrap();
        let stream = self.0.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind("127.0.0.2:0".parse().unwrap())?;
            socket.connect(address).await
        });
        let stream = stream.expect("connect from 127.0.0.2").into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    }
}

/// Everything the server sends on `stream` until it closes it (or 10 s).
fn read_to_close(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn slow_huge_and_malformed_requests_are_answered_and_others_keep_being_served() {
    let gateway = http_gateway("http-limits", "read_timeout = \"1s\"\n");
    let gateway = gateway.append(&route("GET", "/ping", "echo", ""));
    let (_ledge, port) = start(&gateway);
    let address = format!("127.0.0.1:{port}");
    let ping = format!("http://{address}/ping");

    // Slowloris: a head that never finishes gets 408 after read_timeout,
    // while a well-behaved client is served meanwhile.
    let mut slow = TcpStream::connect(&address).unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for _ in 0..3 {
        assert_eq!(curl(&[&ping]).status, 200);
    }
    let mut dribble = slow.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        // One byte every 300 ms: never a whole head.
        for _ in 0..10 {
            if dribble.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let answer = read_to_close(&mut slow);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "the slow client gets 408: {answer:?}"
    );
    assert!(answer.contains("Request Timeout"), "{answer:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "408 after read_timeout (1 s), not {took:?}"
    );
    let _ = dribbler.join();

    // 100 KB of headers: 431, and the connection closes.
    let mut huge = TcpStream::connect(&address).unwrap();
    let mut head = b"GET /ping HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        head.extend_from_slice(format!("x-filler-{i:04}: {}\r\n", "a".repeat(84)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert!(head.len() > 100_000);
    let _ = huge.write_all(&head);
    let answer = read_to_close(&mut huge);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A malformed request line: 400.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /ping HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ] {
        let mut bad = TcpStream::connect(&address).unwrap();
        bad.write_all(garbage).unwrap();
        let answer = read_to_close(&mut bad);
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 505"),
            "{garbage:?}: {answer:?}"
        );
    }
    assert_eq!(curl(&[&ping]).status, 200);

    let metrics = curl(&[&format!("http://{address}/metrics")]);
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("ledge_http_read_timeouts_total") && l.ends_with(" 1")),
        "the slow client is counted:\n{}",
        metrics.body
    );
}

#[test]
fn idle_connections_beyond_max_connections_make_room_for_new_ones() {
    let gateway = http_gateway("http-conns", "max_connections = 8\n");
    let gateway = gateway.append(&route("GET", "/ping", "echo", ""));
    let (_ledge, port) = start(&gateway);
    let address = format!("127.0.0.1:{port}");
    // 200 idle connections, far over the limit: each new one takes the
    // slot of the oldest idle one, so at most 8 stay open.
    let clients = Clients::new();
    let mut idle: Vec<TcpStream> = (0..200).map(|_| clients.connect(&address)).collect();
    assert_eq!(curl(&[&format!("http://{address}/ping")]).status, 200);
    let mut closed = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 192,
        "the server closed {closed} of 200 idle connections; at most 8 may stay"
    );
    let metrics = curl(&[&format!("http://{address}/metrics")]);
    let evicted: u64 = metrics
        .body
        .lines()
        .find(|l| l.starts_with("ledge_http_evicted_connections_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no eviction count in:\n{}", metrics.body));
    assert!(evicted >= 192, "evicted {evicted}");
}

#[test]
fn healthz_says_ready_or_why_not() {
    let gateway = http_gateway("http-health", "");
    let gateway = gateway.function(
        "broken",
        crate::common::gateway::Module::Fixture("broken_no_memory"),
        "",
    );
    let (_ledge, port) = start(&gateway);
    let answer = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(answer.status, 503, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reasons"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("broken")))),
        "{body}"
    );

    let gateway = http_gateway("http-health-ok", "");
    let (_ledge, port) = start(&gateway);
    let answer = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "ready");
}

#[test]
fn ten_thousand_idle_connections_leave_ledge_with_at_most_max_connections() {
    let gateway = http_gateway("http-10k", "max_connections = 256\n");
    let gateway = gateway.append(&route("GET", "/ping", "echo", ""));
    let (ledge, port) = start(&gateway);
    let address = format!("127.0.0.1:{port}");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", ledge.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let rss = || {
        std::fs::read_to_string(format!("/proc/{}/status", ledge.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let fds_before = fds();
    let rss_before = rss();
    let clients = Clients::new();
    let mut idle = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        idle.push(clients.connect(&address));
    }
    // The server is still reachable, answers, and holds at most 256 of
    // them (each connection is one descriptor in ledge).
    assert_eq!(curl(&[&format!("http://{address}/ping")]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = usize::MAX;
    while Instant::now() < deadline {
        open = fds().saturating_sub(fds_before);
        if open <= 257 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open <= 257,
        "ledge holds {open} more descriptors than before"
    );
    eprintln!(
        "10,000 idle connections: ledge RSS {} before, {} after ({} descriptors more)",
        rss_before.trim(),
        rss().trim(),
        open
    );
    drop(idle);
    assert_eq!(curl(&[&format!("http://{address}/ping")]).status, 200);
}

#[test]
fn a_taken_http_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let gateway = Gateway::new("http-taken")
        .append(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"))
        .function("echo", Module::Fixture("respond_echo"), "")
        .append(&route("POST", "/echo", "echo", ""));
    let config = gateway.write();
    // Bounded: a ledge that ran on without HTTP would never exit (124).
    let output = std::process::Command::new("timeout")
        .arg("20")
        .arg(crate::common::process::ledge_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("LEDGE_LOG")
        .output()
        .expect("run ledge under timeout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("HTTP server: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}
