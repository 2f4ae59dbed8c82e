//! Forwards reach upstream through outages of the upstream broker, the
//! local broker and ledge itself. Real mosquitto brokers on loopback ports,
//! the real binary, real files.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::broker::{DurableSubscriber, Message, Mosquitto};
use crate::common::gateway::Gateway;
use crate::common::process::{self, Ledge};

const WAIT: Duration = Duration::from_secs(60);

/// `gateway` forwarding `data/#` to the upstream on `upstream`.
fn forwarding(gateway: Gateway, upstream: u16) -> Gateway {
    gateway
        .upstream_at(upstream)
        .upstream("keep_alive = \"5s\"")
        .append("[[forward]]\ntopic = \"data/#\"")
}

/// The newest seq in the spool, read with `ledge spool stat`.
fn newest_seq(config: &Path) -> u64 {
    let output = process::ledge(&["spool", "stat", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("seqs      "))
        .and_then(|range| range.split("..=").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for_seq(config: &Path, seq: u64) {
    let deadline = Instant::now() + WAIT;
    while newest_seq(config) < seq {
        assert!(
            Instant::now() < deadline,
            "spool never reached seq {seq} (at {})",
            newest_seq(config)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn id_of(message: &Message) -> u64 {
    let text = message.text();
    text.split(':')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("corrupt payload {text:?}"))
}

/// Payload ids in arrival order.
fn ids(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| {
            let text = m.text();
            let id = text
                .split(':')
                .nth(1)
                .unwrap_or_else(|| panic!("corrupt payload {text:?}"));
            assert_eq!(text, payload(id.parse().unwrap()), "payload intact");
            id.parse().unwrap()
        })
        .collect()
}

fn payload(id: u64) -> String {
    format!("id:{id}:{}", "p".repeat((id % 40) as usize))
}

/// First occurrences must rise: re-sends after a reconnect or crash repeat
/// a suffix, they never reorder.
fn assert_first_occurrences_in_order(ids: &[u64]) {
    let mut seen = HashSet::new();
    let mut last = None;
    for &id in ids {
        if seen.insert(id) {
            assert!(
                last.is_none_or(|l| id > l),
                "{id} arrived first after {last:?}"
            );
            last = Some(id);
        }
    }
}

#[test]
fn ten_thousand_events_spooled_while_upstream_is_down_all_arrive_in_order_once() {
    let gateway = Gateway::new("gw-test");
    let upstream_port = common::free_port();
    // The subscriber's session must outlive the outage: create it, then stop
    // the upstream broker (it saves the session) before ledge starts.
    let upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let subscriber = DurableSubscriber::connect(upstream_port, "backend", "ledge/+/events/#");
    upstream.stop();

    let gateway = forwarding(gateway, upstream_port);
    let ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    let n = 10_000;
    for id in 0..n {
        producer.publish("data/x", payload(id));
    }
    wait_for_seq(&gateway.config(), n);
    assert!(!ledge.log_text().contains("connected to upstream"));

    let _upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let mut count = 0;
    let got = subscriber.collect_until(WAIT, |_| {
        count += 1;
        count >= n
    });
    let ids = ids(&got);
    assert_eq!(ids.len(), n as usize, "all {n} arrived, each once");
    assert!(
        ids.iter().enumerate().all(|(i, id)| *id == i as u64),
        "in order"
    );
    assert!(got.iter().all(|m| m.topic == "ledge/gw-test/events/data/x"));
}

#[test]
fn upstream_messages_carry_device_epoch_and_seq() {
    let gateway = Gateway::new("gw-test");
    let upstream = Mosquitto::start(gateway.dir());
    let gateway = forwarding(gateway, upstream.port);
    let collector = std::thread::spawn({
        let port = upstream.port;
        move || common::broker::collect_v5(port, "ledge/+/events/#", 3, WAIT)
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    for id in 0..3 {
        producer.publish("data/props", payload(id));
    }
    let got = collector.join().unwrap();
    assert_eq!(got.len(), 3);
    for (i, (topic, body, properties)) in got.iter().enumerate() {
        assert_eq!(topic, "ledge/gw-test/events/data/props");
        assert_eq!(body, payload(i as u64).as_bytes());
        let get = |k: &str| {
            properties
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("device").as_deref(), Some("gw-test"));
        assert_eq!(get("seq"), Some((i + 1).to_string()));
        assert!(
            get("epoch").unwrap().parse::<u64>().is_ok(),
            "epoch is a number"
        );
        assert_eq!(get("origin").as_deref(), Some("bridge:data/props"));
    }
}

#[test]
fn nothing_is_lost_while_the_upstream_broker_flaps() {
    let gateway = Gateway::new("gw-test");
    let upstream_port = common::free_port();
    let upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    let subscriber = DurableSubscriber::connect(upstream_port, "backend", "ledge/+/events/#");
    let gateway = forwarding(gateway, upstream_port);
    let _ledge = gateway.start();
    let producer = gateway.client("producer", &[]);
    let n = 3_000u64;
    let mut upstream = Some(upstream);
    for id in 0..n {
        producer.publish("data/flap", payload(id));
        if id % 750 == 375 {
            // Stop and restart the upstream broker mid-stream.
            upstream.take().unwrap().stop();
            std::thread::sleep(Duration::from_millis(300));
            upstream = Some(Mosquitto::start_persistent(gateway.dir(), upstream_port));
        }
        if id % 100 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut unique = HashSet::new();
    let got = subscriber.collect_until(WAIT, |m| {
        unique.insert(id_of(m));
        unique.len() >= n as usize
    });
    let ids = ids(&got);
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), n as usize, "every event arrived");
    assert_first_occurrences_in_order(&ids);
}

/// Publishes `payload(id)` for rising ids to `port` until stopped; counts the
/// broker's acknowledgements (mosquitto acks QoS 1 in order, so ids below the
/// count are exactly the acknowledged ones).
struct Producer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Producer {
    fn start(port: u16, topic: &'static str, max: u64) -> Self {
        use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let mut options = MqttOptions::new("producer", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_inflight(20);
        let (client, mut connection) = Client::new(options, 16);
        {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut id = 0;
                while !stop.load(Ordering::SeqCst) && id < max {
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, payload(id))
                        .is_err()
                    {
                        break;
                    }
                    id += 1;
                    std::thread::sleep(Duration::from_micros(500));
                }
                // Give the last acks time to arrive before disconnecting.
                std::thread::sleep(Duration::from_millis(500));
                let _ = client.disconnect();
                id
            })
        };
        Self {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// Stops publishing; returns (published, acknowledged).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let published = self.thread.take().unwrap().join().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (published, self.acked.load(Ordering::SeqCst))
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_an_acknowledged_event() {
    let iterations: u32 = std::env::var("LEDGE_KILL_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    // An external local broker keeps ledge's persistent session while ledge
    // is dead and redelivers what ledge had not acknowledged (durable).
    let gateway = Gateway::new("gw-test")
        .with_persistent_mosquitto()
        .broker("keep_alive = \"5s\"");
    let upstream = Mosquitto::start_persistent(gateway.dir(), common::free_port());
    let subscriber = DurableSubscriber::connect(upstream.port, "backend", "ledge/+/events/#");
    let gateway = forwarding(gateway, upstream.port)
        .append("[spool]\nsegment_size = \"64KiB\"\nmax_bytes = \"64MiB\"");
    let config = gateway.write();
    // Create ledge's session on the local broker before the producer starts.
    Ledge::start(&config).terminate();
    let producer = Producer::start(gateway.port, "data/kill", 1_000_000);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    for i in 0..iterations {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut ledge = Ledge::spawn(&config, &[]);
        // One kill in ten lands during start-up and recovery itself.
        let delay = if i % 10 == 0 {
            seed % 15
        } else {
            20 + seed % 400
        };
        std::thread::sleep(Duration::from_millis(delay));
        common::process::signal(ledge.pid(), "KILL");
        ledge.wait(Duration::from_secs(10));
    }
    let (published, acked) = producer.finish();
    assert!(
        acked > 1000,
        "the producer made progress ({acked} acked of {published})"
    );
    let mut ledge = Ledge::start(&config);
    let mut below = HashSet::new();
    let got = subscriber.collect_until(WAIT, |m| {
        let id = id_of(m);
        if id < acked {
            below.insert(id);
        }
        below.len() as u64 >= acked
    });
    let ids = ids(&got);
    let unique: HashSet<u64> = ids.iter().copied().collect();
    let missing: Vec<u64> = (0..acked)
        .filter(|id| !unique.contains(id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged events lost: {missing:?}… log:\n{}",
        ledge.log_text()
    );
    assert_first_occurrences_in_order(&ids);
    assert_eq!(ledge.terminate().code(), Some(0));
    let verify = process::ledge(&["spool", "verify", "--config", config.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_torn_active_segment_is_detected_by_verify_and_repaired_at_start() {
    let upstream_port = common::free_port(); // never started: records stay
    let gateway = forwarding(Gateway::new("gw-test"), upstream_port);
    let config = gateway.write();
    let mut ledge = Ledge::start(&config);
    let producer = gateway.client("producer", &[]);
    for id in 0..50 {
        producer.publish("data/t", payload(id));
    }
    wait_for_seq(&config, 50);
    assert_eq!(ledge.terminate().code(), Some(0));

    let spool = gateway.dir().join("data/spool/uplink");
    let mut segments: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let active = segments.pop().unwrap();
    let whole = std::fs::metadata(&active).unwrap().len();
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.truncate(bytes.len() - 5); // the last record loses its end
    std::fs::write(&active, &bytes).unwrap();

    let verify = process::ledge(&["spool", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("torn tail"));

    let mut ledge = Ledge::start(&config);
    let log = ledge.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("truncating torn or damaged tail"))
        .unwrap_or_else(|| panic!("recovery not logged:\n{log}"));
    let last_record_start = {
        let scan = ledge::spool::segment::scan(&bytes, 1);
        scan.valid_end
    };
    assert!(
        line.contains(&format!("at offset {last_record_start}")),
        "{line}"
    );
    assert!(last_record_start < whole as usize);
    assert_eq!(
        newest_seq(&config),
        49,
        "everything before the torn record is kept"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
    let verify = process::ledge(&["spool", "verify", "--config", config.to_str().unwrap()]);
    assert!(verify.status.success());
}
