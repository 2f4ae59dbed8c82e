//! An acknowledgement means stored: a burst of QoS 1 messages published at
//! once into a `[[forward]]` rule, with the upstream down, all reaches
//! upstream in order once it is back — through a stock mosquitto (its
//! default 20 messages in flight and 1,000 queued per client) and through
//! the embedded broker, whose PUBACK waits for the spool's fsync, so a
//! kill -9 loses nothing the publisher saw acknowledged.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::broker::{DurableSubscriber, Message, Mosquitto};
use common::process::Ledge;

const WAIT: Duration = Duration::from_secs(90);
const BURST: u64 = 10_000;

/// A gateway forwarding `data/#` upstream; `broker` is its `[broker]` body.
fn config(dir: &Path, broker: &str, upstream: u16) -> std::path::PathBuf {
    let text = format!(
        "[device]\nid = \"gw-ack\"\ndata_dir = \"data\"\n[broker]\n{broker}\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{upstream}\"\nkeep_alive = \"5s\"\n\
         [[forward]]\ntopic = \"data/#\"\n"
    );
    common::write_config(dir, &text)
}

fn id_of(message: &Message) -> u64 {
    let text = message.text();
    text.strip_prefix("id:")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("corrupt payload {text:?}"))
}

/// `mosquitto_pub -l -q 1`: one QoS 1 message per stdin line, as fast as
/// the broker acknowledges them (its own in-flight window).
fn mosquitto_pub_burst(port: u16, n: u64) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "data/burst", "-q", "1", "-l", "-i", "burst-pub"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mosquitto_pub (apt-get install mosquitto-clients)");
    let mut lines = String::new();
    for id in 0..n {
        lines.push_str(&format!("id:{id}\n"));
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("feed mosquitto_pub");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for mosquitto_pub") {
            assert!(status.success(), "mosquitto_pub failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "mosquitto_pub never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collects until every id below `n` arrived; asserts none is missing and
/// the first occurrences come in order (a re-send after a reconnect may
/// repeat a suffix, never reorder).
fn assert_all_arrive_in_order(subscriber: &DurableSubscriber, n: u64, log: impl Fn() -> String) {
    let mut seen = HashSet::new();
    let got = subscriber.collect_until(WAIT, |m| {
        seen.insert(id_of(m));
        (0..n).all(|id| seen.contains(&id))
    });
    let missing: Vec<u64> = (0..n).filter(|id| !seen.contains(id)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} arrived; missing {missing:?}…\nlog:\n{}",
        seen.len(),
        log()
    );
    let mut first = HashSet::new();
    let mut last = None;
    for id in got.iter().map(id_of) {
        if first.insert(id) {
            assert!(last.is_none_or(|l| id > l), "{id} arrived after {last:?}");
            last = Some(id);
        }
    }
}

fn burst_reaches_upstream_in_order(local_broker: &str, external: Option<&Mosquitto>) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start_persistent(dir.path(), common::free_port());
    let backend = DurableSubscriber::connect(upstream.port, "backend", "ledge/gw-ack/events/#");
    let upstream_port = upstream.stop();
    let config = config(dir.path(), local_broker, upstream_port);
    let ledge = Ledge::start(&config);
    let port = match external {
        Some(mosquitto) => mosquitto.port,
        None => local_broker
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('"').parse().ok())
            .expect("the embedded broker's port"),
    };
    mosquitto_pub_burst(port, BURST);
    let _upstream = Mosquitto::start_persistent(dir.path(), upstream_port);
    assert_all_arrive_in_order(&backend, BURST, || ledge.log_text());
}

#[test]
fn ten_thousand_qos1_forwards_at_once_through_stock_mosquitto_all_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Stock settings: max_inflight_messages 20, max_queued_messages 1000.
    let local = Mosquitto::start(dir.path());
    let broker = format!(
        "url = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"5s\"",
        local.port
    );
    burst_reaches_upstream_in_order(&broker, Some(&local));
}

#[test]
fn ten_thousand_qos1_forwards_at_once_through_the_embedded_broker_all_arrive_in_order() {
    let broker = format!("listen = \"127.0.0.1:{}\"", common::free_port());
    burst_reaches_upstream_in_order(&broker, None);
}

#[test]
fn kill_9_during_a_burst_into_the_embedded_broker_loses_nothing_acknowledged() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start_persistent(dir.path(), common::free_port());
    let backend = DurableSubscriber::connect(upstream.port, "backend", "ledge/gw-ack/events/#");
    let upstream_port = upstream.stop();
    let local = common::free_port();
    let config = config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{local}\""),
        upstream_port,
    );
    let mut ledge = Ledge::start(&config);

    // A publisher that counts PUBACKs: the embedded broker acknowledges in
    // the order messages came, so `acked` acknowledgements cover ids 0..acked.
    let acked = Arc::new(AtomicU64::new(0));
    let mut options = MqttOptions::new("burst-counter", "127.0.0.1", local);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_inflight(100);
    let (client, mut connection) = Client::new(options, 1024);
    let counter = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    // ledge is gone: nothing more will be acknowledged.
                    Err(_) => return,
                }
            }
        })
    };
    let publisher = std::thread::spawn(move || {
        for id in 0..BURST {
            if client
                .publish("data/burst", QoS::AtLeastOnce, false, format!("id:{id}"))
                .is_err()
            {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    common::process::signal(ledge.pid(), "KILL");
    ledge.wait(Duration::from_secs(10));
    counter.join().expect("ack counter");
    let _ = publisher.join();
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0, "nothing was acknowledged before the kill");

    // Recovery on restart, then upstream: everything acknowledged arrives.
    let ledge = Ledge::start(&config);
    let _upstream = Mosquitto::start_persistent(dir.path(), upstream_port);
    assert_all_arrive_in_order(&backend, acked, || ledge.log_text());
}
