//! Invocation-model benchmarks (issue 5), one run, ratios in the run:
//!
//! 1. Synchronous invoke round trip over the local broker (request envelope
//!    on `ledge/<device>/invoke/echo`, reply on `reply_to`), p50/p99, vs a
//!    plain MQTT request/response echo with no wasm (a rumqttc responder in
//!    this process) through the same mosquitto.
//! 2. Asynchronous throughput: a burst of events through `echo` with
//!    `retries = 2` (enabled, never used) vs `retries = 0`.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench invocation -- --ledge target/release/ledge
//! ```
//!
//! Bounded: 2,000 round trips and 20,000-event bursts, each with a deadline.
//! Prints `result <key> <median> <min> <max> <unit> <note>` lines.

#[path = "mqtt_load/procs.rs"]
#[allow(dead_code)]
mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const ROUND_TRIPS: usize = 2_000;
const BURST: usize = 20_000;
const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ledge = match args.iter().position(|a| a == "--ledge") {
        Some(i) => PathBuf::from(&args[i + 1]),
        None => {
            println!("invocation: pass --ledge target/release/ledge (see the file's header)");
            return;
        }
    };
    if let Err(e) = run(&ledge) {
        eprintln!("invocation bench failed: {e}");
        std::process::exit(1);
    }
}

fn client(port: u16, id: &str) -> (Client, rumqttc::Connection) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    let (client, mut connection) = Client::new(options, 1024);
    connection.eventloop.set_network_options(network);
    (client, connection)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Sends `ROUND_TRIPS` requests one after another on `request`, each
/// waiting for its reply on `reply`; returns the sorted round-trip times.
fn round_trips(
    port: u16,
    request: &str,
    reply: &str,
    envelope: bool,
) -> Result<Vec<Duration>, String> {
    let (client, mut connection) = client(port, &format!("rt-{request}"));
    client
        .subscribe(reply, QoS::AtLeastOnce)
        .map_err(|e| e.to_string())?;
    // Wait for the SUBACK.
    let start = Instant::now();
    loop {
        match connection.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            _ if start.elapsed() > Duration::from_secs(10) => return Err("no SUBACK".into()),
            _ => {}
        }
    }
    let deadline = Instant::now() + DEADLINE;
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS {
        let body = if envelope {
            format!("{{\"reply_to\":\"{reply}\",\"correlation_id\":\"{i}\",\"payload\":\"{i}\"}}")
        } else {
            format!("{i}")
        };
        let sent = Instant::now();
        client
            .publish(request, QoS::AtLeastOnce, false, body)
            .map_err(|e| e.to_string())?;
        loop {
            if Instant::now() > deadline {
                return Err(format!("round trips did not finish within {DEADLINE:?}"));
            }
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                connection.recv_timeout(Duration::from_secs(5))
            {
                if p.topic == reply {
                    times.push(sent.elapsed());
                    break;
                }
            }
        }
    }
    times.sort();
    Ok(times)
}

/// A plain MQTT echo: whatever arrives on `request` goes back on `reply`.
fn plain_responder(port: u16, request: &'static str, reply: &'static str) {
    let (client, mut connection) = client(port, "plain-responder");
    let _ = client.subscribe(request, QoS::AtLeastOnce);
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = client.try_publish(reply, QoS::AtLeastOnce, false, p.payload.to_vec());
                }
                Err(rumqttc::ConnectionError::Io(_)) => return,
                _ => {}
            }
        }
    });
}

/// Publishes `BURST` events on echo/in and times until all echo/out came.
fn burst(port: u16, label: &str) -> Result<f64, String> {
    let (client, mut connection) = client(port, &format!("burst-{label}"));
    client
        .subscribe("echo/out", QoS::AtMostOnce)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let publisher = client.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        for i in 0..BURST {
            let _ = publisher.publish("echo/in", QoS::AtLeastOnce, false, format!("{i}"));
        }
    });
    let mut got = 0;
    let deadline = started + DEADLINE;
    while got < BURST && Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::Publish(_)))) =
            connection.recv_timeout(Duration::from_secs(1))
        {
            got += 1;
        }
    }
    if got < BURST {
        return Err(format!(
            "{label}: {got} of {BURST} echoes within {DEADLINE:?}"
        ));
    }
    Ok(BURST as f64 / started.elapsed().as_secs_f64())
}

/// `ledge run` on benches/configs/invocation.toml; killed when dropped.
struct LedgeProcess(std::process::Child);

impl Drop for LedgeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ledge_with(binary: &Path, dir: &Path, port: u16, retries: u32) -> Result<LedgeProcess, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let template = std::fs::read_to_string(repo.join("benches/configs/invocation.toml"))
        .map_err(|e| e.to_string())?;
    let data = dir.join(format!("data-{retries}-{}", procs::free_port()?));
    let text = template
        .replace("@RETRIES@", &retries.to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@REPO@", &repo.display().to_string())
        .replace("@DATA@", &data.display().to_string());
    let config = dir.join(format!("invocation-{retries}.toml"));
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let child = std::process::Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env_remove("LEDGE_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut process = LedgeProcess(child);
    // Subscribed well within this on this machine (start to READY ~16 ms).
    std::thread::sleep(Duration::from_millis(700));
    if let Ok(Some(status)) = process.0.try_wait() {
        return Err(format!("ledge exited at start: {status}"));
    }
    Ok(process)
}

fn result(key: &str, value: f64, unit: &str, note: &str) {
    println!("result\t{key}\t{value:.3}\t{value:.3}\t{value:.3}\t{unit}\t{note}");
}

/// What the built-in metrics add to each invocation on the worker: the
/// counters, the duration and event-age histograms and the concurrency
/// gauge, measured in-process over 2,000,000 calls.
fn metrics_cost_ns() -> f64 {
    use std::sync::atomic::Ordering;
    let metrics = ledge::metrics::FunctionMetrics::default();
    let calls = 2_000_000u64;
    let started = Instant::now();
    for i in 0..calls {
        metrics.event_ages.record(std::hint::black_box(i % 5000));
        metrics.concurrent.fetch_add(1, Ordering::Relaxed);
        metrics.record_invocation(
            Duration::from_micros(std::hint::black_box(i % 900)),
            false,
            false,
        );
        metrics.concurrent.fetch_sub(1, Ordering::Relaxed);
    }
    std::hint::black_box(&metrics);
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn run(binary: &Path) -> Result<(), String> {
    let cost = metrics_cost_ns();
    result(
        "metrics_ns_per_invocation",
        cost,
        "ns",
        "metrics work per invocation (counters, 2 histograms, gauge)",
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_mosquitto, port) = procs::mosquitto(dir.path(), true)?;

    // 1. Round trips: plain echo first, then ledge, same broker.
    plain_responder(port, "plain/req", "plain/rep");
    std::thread::sleep(Duration::from_millis(300));
    let plain = round_trips(port, "plain/req", "plain/rep", false)?;
    let ledge = ledge_with(binary, dir.path(), port, 2)?;
    let sync = round_trips(port, "ledge/bench-inv/invoke/echo", "bench/reply", true)?;
    for (name, times) in [("plain", &plain), ("ledge_sync", &sync)] {
        eprintln!(
            "{name}: p50 {:.3} ms p99 {:.3} ms max {:.3} ms over {}",
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 1.0),
            times.len()
        );
        result(
            &format!("rtt_{name}_p50"),
            percentile(times, 0.5),
            "ms",
            "request/response round trip, p50",
        );
        result(
            &format!("rtt_{name}_p99"),
            percentile(times, 0.99),
            "ms",
            "request/response round trip, p99",
        );
    }
    result(
        "rtt_ratio_p50",
        percentile(&sync, 0.5) / percentile(&plain, 0.5),
        "x",
        "ledge sync invoke / plain MQTT echo, p50",
    );

    // 2. Async bursts, alternating to spread the noise: retries 2, 0, 2, 0.
    let with_retries = burst(port, "retries2-a")?;
    drop(ledge);
    let ledge = ledge_with(binary, dir.path(), port, 0)?;
    let without = burst(port, "retries0-a")?;
    drop(ledge);
    let ledge = ledge_with(binary, dir.path(), port, 2)?;
    let with_retries_b = burst(port, "retries2-b")?;
    drop(ledge);
    let _ledge = ledge_with(binary, dir.path(), port, 0)?;
    let without_b = burst(port, "retries0-b")?;
    let on = (with_retries + with_retries_b) / 2.0;
    let off = (without + without_b) / 2.0;
    eprintln!("async burst: retries on {with_retries:.0}/{with_retries_b:.0}/s, off {without:.0}/{without_b:.0}/s");
    result(
        "async_retries_on",
        on,
        "msg/s",
        "burst of 20000 through echo, retries = 2 (unused), mean of 2",
    );
    result(
        "async_retries_off",
        off,
        "msg/s",
        "burst of 20000 through echo, retries = 0, mean of 2",
    );
    result("async_retries_ratio", on / off, "x", "retries on / off");
    // The share of the per-event CPU the metrics take, at the rate measured.
    let per_event_ns = 1e9 / off;
    result(
        "metrics_share",
        cost / per_event_ns,
        "x",
        "metrics ns per invocation / wall ns per event at the burst rate (floor 0.03)",
    );
    Ok(())
}
