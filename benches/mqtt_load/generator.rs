//! The load generator: one MQTT publisher and one subscriber in one process.
//!
//! Each input message is a 31-byte sensor reading whose `value` carries a
//! sequence number (`{"value":1000042,"sensor":"t1"}`, always above
//! threshold-alert's threshold, so every reading yields an alert). Whatever
//! comes back on the output filter (the same bytes through a broker or the
//! relay; threshold-alert's alert, which repeats the value) is matched to its
//! input by that number. Send and receive times are taken in this process,
//! so latency is "output received − input handed to the client", with no
//! clock skew.
//!
//! Every run is bounded: publishing stops at `count` messages or
//! `MAX_PUBLISH_TIME`, and the subscriber stops when everything arrived,
//! after `IDLE_GRACE` without a message once publishing is done, or at a hard
//! deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::sync::watch;

/// Sequence numbers are offset so that every value is a 7-digit number above
/// any threshold, and warm-up probes (below the offset) are told apart.
const SEQ_BASE: u64 = 1_000_000;
const PROBE_BASE: u64 = 500_000;
/// Warm-up: a probe every `PROBE_EVERY` until one comes back.
const PROBE_EVERY: Duration = Duration::from_millis(200);
const WARMUP_LIMIT: Duration = Duration::from_secs(20);
/// Publishing never takes longer than this, whatever the offer.
const MAX_PUBLISH_TIME: Duration = Duration::from_secs(90);
/// Once publishing is done, the subscriber gives up after this long
/// without a new message...
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// ...and in any case this long after publishing ended.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// A burst far beyond the system's rate drains for longer, and its overflow
/// (a function's spool stream) may pause between fsyncs.
const BURST_IDLE_GRACE: Duration = Duration::from_secs(3);
const BURST_DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// rumqttc's request channel for the generator's clients.
const REQUEST_CHANNEL: usize = 64;

/// Where to send and where the results come back.
#[derive(Clone, Debug)]
pub struct Target {
    pub port: u16,
    pub input_topic: String,
    pub output_filter: String,
    /// QoS of the generator's publishes and of its subscription.
    pub qos: QoS,
}

/// How to offer the load.
#[derive(Clone, Copy, Debug)]
pub enum Offer {
    /// `count` messages as fast as the publisher's client accepts them
    /// (for QoS 1, as fast as the broker acknowledges them).
    Burst { count: u64 },
    /// `rate` messages a second for `secs` seconds.
    Paced { rate: f64, secs: f64 },
}

impl Offer {
    pub fn count(self) -> u64 {
        match self {
            Offer::Burst { count } => count,
            Offer::Paced { rate, secs } => (rate * secs).round().max(1.0) as u64,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub sent: u64,
    /// Distinct sequence numbers that came back.
    pub received: u64,
    pub duplicates: u64,
    /// First send to last send.
    pub publish_secs: f64,
    /// First send to last receipt.
    pub completion_secs: f64,
    /// Last send to last receipt: how far behind the output was at the end.
    pub lag_secs: f64,
    /// Per-message latency in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadResult {
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }

    /// Messages a second the publisher actually offered.
    pub fn offered_rate(&self) -> f64 {
        rate(self.sent, self.publish_secs)
    }

    /// Messages a second that made it through, first send to last receipt.
    pub fn completion_rate(&self) -> f64 {
        rate(self.received, self.completion_secs)
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn latency_us(&self, q: f64) -> u64 {
        match self.latencies_us.len() {
            0 => 0,
            n => self.latencies_us[((n - 1) as f64 * q).round() as usize],
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "sent {} at {:.0}/s, received {} ({} lost, {} dup), through {:.0}/s, lag {:.0} ms, \
             latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.sent,
            self.offered_rate(),
            self.received,
            self.lost(),
            self.duplicates,
            self.completion_rate(),
            self.lag_secs * 1e3,
            self.latency_us(0.5) as f64 / 1e3,
            self.latency_us(0.99) as f64 / 1e3,
            self.latency_us(1.0) as f64 / 1e3,
        )
    }
}

fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Subscribes to `filter` at QoS 1 (acknowledging each message on receipt,
/// as a plain subscriber does) and counts arrivals until `count` came or
/// nothing came for `IDLE_GRACE` after the first: (received, seconds from
/// the first to the last).
pub fn count_arrivals(port: u16, filter: &str, count: u64) -> Result<(u64, f64), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async {
        let (client, mut eventloop) = client(port, &format!("bench-count-{}", unique_suffix()));
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        let (mut received, mut first, mut last) = (0u64, None, Instant::now());
        let started = Instant::now();
        while received < count {
            let wait = if first.is_some() {
                IDLE_GRACE
            } else {
                Duration::from_secs(30)
            };
            match tokio::time::timeout(wait, eventloop.poll()).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(format!("counting subscriber: {e}")),
                Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    received += 1;
                }
                Ok(Ok(_)) => {}
            }
            if started.elapsed() > MAX_PUBLISH_TIME {
                break;
            }
        }
        let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
        Ok((received, secs))
    })
}

/// Publishes to each of `topics` in turn, about 100 messages a second in
/// all, until `stop`; returns how many it sent. The hostile neighbours'
/// triggers in the hostile benchmark.
pub fn keep_publishing(port: u16, topics: &[&str], stop: &std::sync::atomic::AtomicBool) -> u64 {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0;
    };
    runtime.block_on(async {
        let (client, eventloop) = client(port, &format!("bench-hostile-{}", unique_suffix()));
        let driver = tokio::spawn(drive(eventloop));
        let mut sent = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && sent < 100_000 {
            let topic = topics[sent as usize % topics.len()];
            if client
                .publish(topic, QoS::AtMostOnce, false, "attack")
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        driver.abort();
        sent
    })
}

/// Runs one load against `target` on a fresh single-threaded runtime.
pub fn run(target: &Target, offer: Offer) -> Result<LoadResult, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(run_async(target, offer))
}

async fn run_async(target: &Target, offer: Offer) -> Result<LoadResult, String> {
    let id = unique_suffix();
    let (subscriber, sub_loop) = client(target.port, &format!("bench-sub-{id}"));
    subscriber
        .subscribe(target.output_filter.clone(), target.qos)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let count = offer.count();
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(None);
    let limits = match offer {
        Offer::Burst { .. } => (BURST_IDLE_GRACE, BURST_DRAIN_LIMIT),
        Offer::Paced { .. } => (IDLE_GRACE, DRAIN_LIMIT),
    };
    let collector = tokio::spawn(collect(sub_loop, count, ready_tx, done_rx, limits));

    let (publisher, pub_loop) = client(target.port, &format!("bench-pub-{id}"));
    let driver = tokio::spawn(drive(pub_loop));
    warm_up(&publisher, target, &mut ready_rx).await?;
    let sends = publish(&publisher, target, offer).await;
    let _ = done_tx.send(Some(Instant::now()));
    let receipts = collector
        .await
        .map_err(|e| format!("subscriber task: {e}"))??;
    let _ = publisher.disconnect().await;
    let _ = subscriber.disconnect().await;
    driver.abort();
    Ok(measure(&sends, &receipts))
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn client(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
    // Nagle's algorithm on the generator's own sockets would add its delays
    // to every system's latency; each of its connections only writes one
    // kind of packet, but there is no reason to measure that.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Polls the publisher's event loop (sends, acknowledgements) until aborted.
async fn drive(mut eventloop: EventLoop) {
    loop {
        if let Err(e) = eventloop.poll().await {
            eprintln!("  publisher connection: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Publishes probes until one comes back, so connections, subscriptions and
/// the system under test are up before anything is timed.
async fn warm_up(
    publisher: &AsyncClient,
    target: &Target,
    ready: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let started = Instant::now();
    for probe in 0.. {
        if started.elapsed() > WARMUP_LIMIT {
            return Err(format!(
                "nothing came back on `{}` within {WARMUP_LIMIT:?}",
                target.output_filter
            ));
        }
        publish_one(publisher, target, PROBE_BASE + probe).await?;
        let _ = tokio::time::timeout(PROBE_EVERY, ready.wait_for(|seen| *seen)).await;
        if *ready.borrow() {
            return Ok(());
        }
    }
    Ok(())
}

fn reading(value: u64) -> Bytes {
    Bytes::from(format!("{{\"value\":{value},\"sensor\":\"t1\"}}"))
}

async fn publish_one(publisher: &AsyncClient, target: &Target, value: u64) -> Result<(), String> {
    publisher
        .publish_bytes(
            target.input_topic.clone(),
            target.qos,
            false,
            reading(value),
        )
        .await
        .map_err(|e| format!("publish: {e}"))
}

/// Publishes the offer; returns each message's send time, by sequence number.
async fn publish(publisher: &AsyncClient, target: &Target, offer: Offer) -> Vec<Instant> {
    let count = offer.count();
    let mut sends = Vec::with_capacity(count as usize);
    let started = Instant::now();
    while (sends.len() as u64) < count && started.elapsed() < MAX_PUBLISH_TIME {
        if let Offer::Paced { rate, .. } = offer {
            let due = started + Duration::from_secs_f64(sends.len() as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let seq = sends.len() as u64;
        sends.push(Instant::now());
        if let Err(e) = publish_one(publisher, target, SEQ_BASE + seq).await {
            eprintln!("  {e}; stopping this run");
            sends.pop();
            break;
        }
    }
    sends
}

/// What the subscriber saw: receipt time by sequence number, and duplicates.
struct Receipts {
    times: Vec<Option<Instant>>,
    duplicates: u64,
}

/// Receives outputs until all `count` arrived or the grace periods run out.
async fn collect(
    mut eventloop: EventLoop,
    count: u64,
    ready: watch::Sender<bool>,
    done: watch::Receiver<Option<Instant>>,
    (idle_grace, drain_limit): (Duration, Duration),
) -> Result<Receipts, String> {
    let mut receipts = Receipts {
        times: vec![None; count as usize],
        duplicates: 0,
    };
    let (mut received, mut last_message) = (0u64, Instant::now());
    while received < count {
        let now = Instant::now();
        if let Some(done_at) = *done.borrow() {
            let idle_from = last_message.max(done_at);
            if now > idle_from + idle_grace || now > done_at + drain_limit {
                break;
            }
        }
        let event = match tokio::time::timeout(Duration::from_millis(50), eventloop.poll()).await {
            Err(_) => continue,
            Ok(Err(e)) => return Err(format!("subscriber connection: {e}")),
            Ok(Ok(event)) => event,
        };
        let Event::Incoming(Packet::Publish(message)) = event else {
            continue;
        };
        let at = Instant::now();
        last_message = at;
        match sequence_of(&message.payload) {
            Some(Value::Probe) => {
                let _ = ready.send(true);
            }
            Some(Value::Seq(seq)) if seq < count => match &mut receipts.times[seq as usize] {
                Some(_) => receipts.duplicates += 1,
                slot @ None => {
                    *slot = Some(at);
                    received += 1;
                }
            },
            _ => {}
        }
    }
    Ok(receipts)
}

enum Value {
    Probe,
    Seq(u64),
}

/// The sequence number in a payload's `"value":` field (`1000042` or
/// `1000042.0`); a hand-rolled scan, so the generator stays cheap.
fn sequence_of(payload: &[u8]) -> Option<Value> {
    const KEY: &[u8] = b"\"value\":";
    let start = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = payload[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    match digits {
        n if n >= SEQ_BASE => Some(Value::Seq(n - SEQ_BASE)),
        n if n >= PROBE_BASE => Some(Value::Probe),
        _ => None,
    }
}

fn measure(sends: &[Instant], receipts: &Receipts) -> LoadResult {
    let (first, last) = match (sends.first(), sends.last()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => {
            let now = Instant::now();
            (now, now)
        }
    };
    let mut latencies_us = Vec::with_capacity(sends.len());
    let mut last_receipt = first;
    for (sent, received) in sends.iter().zip(&receipts.times) {
        if let Some(received) = received {
            latencies_us.push(received.saturating_duration_since(*sent).as_micros() as u64);
            last_receipt = last_receipt.max(*received);
        }
    }
    latencies_us.sort_unstable();
    LoadResult {
        sent: sends.len() as u64,
        received: latencies_us.len() as u64,
        duplicates: receipts.duplicates,
        publish_secs: (last - first).as_secs_f64(),
        completion_secs: (last_receipt - first).as_secs_f64(),
        lag_secs: last_receipt.saturating_duration_since(last).as_secs_f64(),
        latencies_us,
    }
}
