//! A burst of QoS 1 messages published at once into a `[[forward]]` rule,
//! with the upstream down, all reaches upstream in order once it is back —
//! through a stock mosquitto (its default 20 messages in flight and 1,000
//! queued per client) and through the embedded broker, whose PUBACK waits
//! for the spool's fsync, so a kill -9 loses nothing the publisher saw
//! acknowledged.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::broker::{DurableSubscriber, Message, Mosquitto};
use crate::common::gateway::Gateway;
use crate::common::{self, process};

const WAIT: Duration = Duration::from_secs(90);
const BURST: u64 = 10_000;

/// `gateway` forwarding `data/#` to the upstream on `upstream`.
fn forwarding(gateway: Gateway, upstream: u16) -> Gateway {
    gateway
        .upstream_at(upstream)
        .upstream("keep_alive = \"5s\"")
        .append("[[forward]]\ntopic = \"data/#\"")
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

/// Bursts into `gateway`'s local broker while the upstream is down, then
/// brings the upstream back.
fn burst_reaches_upstream_in_order(gateway: Gateway) {
    let upstream = Mosquitto::start_persistent(gateway.dir(), common::free_port());
    let backend = DurableSubscriber::connect(upstream.port, "backend", "ledge/gw-ack/events/#");
    let upstream_port = upstream.stop();
    let gateway = forwarding(gateway, upstream_port);
    let ledge = gateway.start();
    mosquitto_pub_burst(gateway.port, BURST);
    let _upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    assert_all_arrive_in_order(&backend, BURST, || ledge.log_text());
}

#[test]
fn ten_thousand_qos1_forwards_at_once_through_mosquitto_set_up_for_bursts_all_arrive_in_order() {
    // mosquitto as docs/config.md tells a gateway taking bursts to run it:
    // `max_queued_messages 0`. With stock settings (1,000 queued per
    // client) mosquitto itself drops what a subscriber has not read yet
    // when the machine is busy: a plain rumqttc witness subscribed beside
    // ledge lost up to 3,700 of these 10,000 on this 2-core machine under
    // a parallel build, and ledge lost the last 99 once in 12 runs. That
    // loss happens before ledge sees the message, so no test of ledge can
    // promise against it; what ledge promises is that everything the
    // broker hands it arrives upstream.
    let gateway = Gateway::new("gw-ack")
        .with_persistent_mosquitto()
        .broker("keep_alive = \"5s\"");
    burst_reaches_upstream_in_order(gateway);
}

#[test]
fn ten_thousand_qos1_forwards_at_once_through_the_embedded_broker_all_arrive_in_order() {
    burst_reaches_upstream_in_order(Gateway::new("gw-ack"));
}

#[test]
fn kill_9_during_a_burst_into_the_embedded_broker_loses_nothing_acknowledged() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let gateway = Gateway::new("gw-ack");
    let upstream = Mosquitto::start_persistent(gateway.dir(), common::free_port());
    let backend = DurableSubscriber::connect(upstream.port, "backend", "ledge/gw-ack/events/#");
    let upstream_port = upstream.stop();
    let gateway = forwarding(gateway, upstream_port);
    let mut ledge = gateway.start();

    // A publisher that counts PUBACKs: the embedded broker acknowledges in
    // the order messages came, so `acked` acknowledgements cover ids 0..acked.
    let acked = Arc::new(AtomicU64::new(0));
    let mut options = MqttOptions::new("burst-counter", "127.0.0.1", gateway.port);
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
    process::signal(ledge.pid(), "KILL");
    ledge.wait(Duration::from_secs(10));
    counter.join().expect("ack counter");
    let _ = publisher.join();
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0, "nothing was acknowledged before the kill");

    // Recovery on restart, then upstream: everything acknowledged arrives.
    let ledge = gateway.start();
    let _upstream = Mosquitto::start_persistent(gateway.dir(), upstream_port);
    assert_all_arrive_in_order(&backend, acked, || ledge.log_text());
}
