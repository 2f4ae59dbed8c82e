//! Spool benchmarks (issue 3), each against a baseline measured in the same
//! run on the same disk:
//!
//! 1. append throughput of 256-byte records per fsync policy, vs raw
//!    `write` + one `fdatasync` of the same bytes;
//! 2. write amplification: bytes this process sent to storage
//!    (`/proc/self/io` write_bytes) ÷ payload bytes;
//! 3. recovery (open) time of a 64 MiB spool, vs reading the same bytes;
//! 4. drain throughput to a loopback mosquitto, vs a plain rumqttc QoS 1
//!    publisher with the same in-flight window.
//!
//! 5. producers waiting for durability (the acknowledged-ingestion
//!    pattern) under `batch` and the default `interval:50ms`.
//!
//!   cargo bench --bench spool            # writes under target/bench-spool
//!   cargo bench --bench spool -- waiting # only the sections named so
//!
//! Every loop is bounded in count; the run takes about a minute.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledge::config::UpstreamPlan;
use ledge::spool::body::{self, EventBody};
use ledge::spool::{AppendError, FsyncPolicy, Kind, OnFull, Spool, SpoolOptions};
use ledge::uplink::{Uplink, UplinkStatus, CURSOR};

const RECORD: usize = 256;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-spool");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    println!(
        "# spool benchmark, {} (records of {RECORD} bytes)",
        root.display()
    );
    // Section names given on the command line (cargo passes `--bench`).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|o| section.contains(o.as_str()));
    if run("append") {
        baseline_write(&root);
        for (policy, n) in [
            (FsyncPolicy::Always, 2_000u64),
            (FsyncPolicy::Batch, 300_000),
            (FsyncPolicy::Interval(Duration::from_millis(50)), 300_000),
        ] {
            append_throughput(&root, policy, n);
        }
    }
    if run("waiting") {
        waiting_producers(&root, FsyncPolicy::Batch, 8, 2_000);
        // A broker's in-flight window of 20 acknowledged [[forward]]
        // messages: before group commit on demand each waited for the
        // next 50 ms tick (~400 msg/s).
        waiting_producers(
            &root,
            FsyncPolicy::Interval(Duration::from_millis(50)),
            20,
            250,
        );
        waiting_producers(
            &root,
            FsyncPolicy::Interval(Duration::from_millis(50)),
            1,
            200,
        );
    }
    if run("recovery") {
        recovery(&root);
    }
    if run("drain") {
        drain(&root);
    }
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn options(policy: FsyncPolicy) -> SpoolOptions {
    SpoolOptions {
        fsync: policy,
        segment_size: 8 << 20,
        max_bytes: 1 << 30,
        on_full: OnFull::Reject,
        max_pending: 16 << 20,
        ..SpoolOptions::default()
    }
}

/// The device ceiling: the same framed bytes in one write and one fdatasync.
fn baseline_write(root: &Path) {
    let n = 300_000usize;
    let bytes = vec![0x5a_u8; n * (RECORD + ledge::spool::frame::HEADER_LEN)];
    let path = root.join("baseline.bin");
    let before = write_bytes();
    let start = Instant::now();
    let mut file = std::fs::File::create(&path).expect("baseline file");
    file.write_all(&bytes).expect("write");
    file.sync_data().expect("fdatasync");
    let elapsed = start.elapsed();
    let written = write_bytes() - before;
    println!(
        "baseline  raw write+fdatasync of {n} framed records: {:.0} records/s, {:.1} MB/s, write amplification {:.3}",
        n as f64 / elapsed.as_secs_f64(),
        bytes.len() as f64 / elapsed.as_secs_f64() / 1e6,
        written as f64 / (n * RECORD) as f64
    );
}

/// Appends `n` records as fast as the spool takes them, then waits for the
/// last to be durable.
fn append_throughput(root: &Path, policy: FsyncPolicy, n: u64) {
    let dir = root.join(format!("append-{}", policy.to_string().replace(':', "-")));
    let spool = Spool::open(&dir, options(policy)).expect("open spool");
    let body = vec![0x42_u8; RECORD];
    let before = write_bytes();
    let start = Instant::now();
    let mut last = 0;
    let mut backlog_waits = 0u64;
    for _ in 0..n {
        loop {
            match spool.append(Kind::Event, &body) {
                Ok(seq) => {
                    last = seq;
                    break;
                }
                Err(AppendError::Backlog) => {
                    backlog_waits += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("append failed: {e}"),
            }
        }
    }
    assert!(spool
        .wait_durable(last, Duration::from_secs(300))
        .expect("durable"));
    let elapsed = start.elapsed();
    let written = write_bytes() - before;
    let fsyncs = spool
        .counters()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "append    fsync={policy:<14} {n:>7} records: {:>9.0} appends/s durable, {fsyncs} fdatasyncs, write amplification {:.3} (backlog waits {backlog_waits})",
        n as f64 / elapsed.as_secs_f64(),
        written as f64 / (n as usize * RECORD) as f64
    );
}

/// Producers that each wait for their record to be durable before the next
/// (the `forward` pattern): group commit shares one fdatasync among them.
fn waiting_producers(root: &Path, policy: FsyncPolicy, producers: usize, each: u64) {
    let dir = root.join(format!(
        "waiting-{}-{producers}",
        policy.to_string().replace(':', "-")
    ));
    let spool = Arc::new(Spool::open(&dir, options(policy)).expect("open"));
    let start = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|_| {
            let spool = Arc::clone(&spool);
            std::thread::spawn(move || {
                let body = vec![7u8; RECORD];
                for _ in 0..each {
                    let seq = spool.append(Kind::Event, &body).expect("append");
                    assert!(spool
                        .wait_durable(seq, Duration::from_secs(60))
                        .expect("durable"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
    let elapsed = start.elapsed();
    let total = producers as u64 * each;
    let fsyncs = spool
        .counters()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "waiting   fsync={policy:<14} {producers:>2} producers each waiting for durability: {:>6.0} appends/s, {:.2} ms per wait, {:.1} records per fdatasync",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / each as f64,
        total as f64 / fsyncs.max(1) as f64
    );
}

/// Open time of a 64 MiB spool whose newest segment is 64 MiB (the worst
/// case: recovery scans the whole active segment), vs reading those bytes.
fn recovery(root: &Path) {
    let dir = root.join("recovery");
    let mut options = options(FsyncPolicy::Batch);
    options.segment_size = 64 << 20;
    options.max_bytes = 512 << 20;
    let body = vec![1u8; RECORD];
    let records = (64 << 20) / (RECORD + ledge::spool::frame::HEADER_LEN);
    {
        let spool = Spool::open(&dir, options.clone()).expect("open");
        let mut last = 0;
        for _ in 0..records {
            loop {
                match spool.append(Kind::Event, &body) {
                    Ok(seq) => {
                        last = seq;
                        break;
                    }
                    Err(AppendError::Backlog) => std::thread::sleep(Duration::from_micros(200)),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        spool
            .wait_durable(last, Duration::from_secs(120))
            .expect("durable");
    }
    let segment = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("segment");
    let size = std::fs::metadata(&segment).expect("stat").len();
    let start = Instant::now();
    let bytes = std::fs::read(&segment).expect("read");
    let read_time = start.elapsed();
    drop(bytes);
    let start = Instant::now();
    let spool = Spool::open(&dir, options).expect("reopen");
    let open_time = start.elapsed();
    assert_eq!(spool.seq_range().1, records as u64 + 1);
    println!(
        "recovery  open of a {:.1} MiB active segment ({records} records): {:.3} s; reading the file alone: {:.3} s (ratio {:.1}×)",
        size as f64 / (1 << 20) as f64,
        open_time.as_secs_f64(),
        read_time.as_secs_f64(),
        open_time.as_secs_f64() / read_time.as_secs_f64().max(1e-9)
    );
}

struct Mosquitto(std::process::Child, u16);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto(root: &Path) -> Mosquitto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let config = root.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n"),
    )
    .expect("conf");
    let child = std::process::Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto(child, port)
}

/// Drains 100,000 spooled events to mosquitto, vs publishing the same
/// messages with a plain rumqttc client and the same window.
fn drain(root: &Path) {
    let broker = mosquitto(root);
    let n = 100_000u64;
    let window = 100;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let baseline = runtime.block_on(plain_publisher(broker.1, n, window));
    let dir = root.join("drain");
    let spool = Arc::new(Spool::open(&dir, options(FsyncPolicy::Batch)).expect("open"));
    let record = body::encode(&EventBody::V1 {
        topic: "ledge/bench/events/data".into(),
        payload: vec![3u8; RECORD],
        origin: "bench".into(),
    });
    let mut last = 0;
    for _ in 0..n {
        loop {
            match spool.append(Kind::Event, &record) {
                Ok(seq) => {
                    last = seq;
                    break;
                }
                Err(AppendError::Backlog) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => panic!("{e}"),
            }
        }
    }
    spool
        .wait_durable(last, Duration::from_secs(60))
        .expect("durable");
    let plan = UpstreamPlan {
        host: "127.0.0.1".into(),
        port: broker.1,
        tls: None,
        client_id: "bench-uplink".into(),
        keep_alive: Duration::from_secs(30),
        username: None,
        password: None,
        topic_prefix: "ledge/bench".into(),
        max_inflight: window,
        ship_logs: None,
        outage_warning: Duration::from_secs(60),
    };
    let uplink = Uplink {
        plan,
        device: "bench".into(),
        spool: Arc::clone(&spool),
        telemetry: None,
        status: Arc::new(UplinkStatus::default()),
        subscriptions: None,
    };
    let elapsed = runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        let task = tokio::spawn(uplink.run(stopped));
        let deadline = Instant::now() + Duration::from_secs(120);
        while spool.cursor(CURSOR).unwrap_or(0) < last {
            assert!(Instant::now() < deadline, "drain did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        let _ = stop.send(true);
        let _ = task.await;
        elapsed
    });
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "drain     {n} spooled events to mosquitto (window {window}): {rate:.0} msg/s; plain rumqttc publisher: {baseline:.0} msg/s (ratio {:.2})",
        rate / baseline
    );
}

/// Messages per second a bare rumqttc v5 client publishes at QoS 1 with
/// `window` in flight, counting PUBACKs.
async fn plain_publisher(port: u16, n: u64, window: usize) -> f64 {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut options = MqttOptions::new("bench-plain", "127.0.0.1", port);
    options.set_outgoing_inflight_upper_limit(window as u16);
    let (client, mut eventloop) = AsyncClient::new(options, window * 2);
    let payload = vec![3u8; RECORD];
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for _ in 0..n {
            if client
                .publish(
                    "ledge/bench/plain",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("plain publisher: {e}"),
        }
    }
    let elapsed = start.elapsed();
    drop(publisher.await);
    n as f64 / elapsed.as_secs_f64()
}
