//! The no-wasm relay baseline: subscribe to an input filter, republish each
//! message's bytes to an output topic. Nothing is parsed and nothing runs in
//! between, so this is the most any MQTT-in/MQTT-out runtime built on
//! rumqttc can do on this machine with this load generator.
//!
//! It is built like ledge's own link, so the comparison isolates ledge's
//! work (dispatch, worker thread, wasm) rather than a different client: one
//! current-thread tokio runtime, one rumqttc connection subscribed at QoS 1
//! with rumqttc's default in-flight window, and a channel from the poll loop
//! to a task that awaits `publish` (the poll loop must never await the
//! client it drives). The channel is unbounded, so the relay itself never
//! drops anything.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::sync::mpsc;

/// The same request channel capacity ledge uses for its link.
const REQUEST_CHANNEL: usize = 256;

pub struct RelayArgs {
    pub port: u16,
    pub input: String,
    pub output: String,
    /// Sets TCP_NODELAY on the relay's socket. rumqttc's default (and
    /// ledge's link today) leaves Nagle's algorithm on.
    pub nodelay: bool,
    /// The relay exits by itself after this long, in case nobody stops it.
    pub max_lifetime: Duration,
}

/// Runs the relay until the connection fails or `max_lifetime` passes.
pub fn run(args: &RelayArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(args.max_lifetime, relay(args))
            .await
            .unwrap_or(Ok(()))
    })
}

async fn relay(args: &RelayArgs) -> Result<(), String> {
    let mut options = MqttOptions::new(
        format!("bench-relay-{}", std::process::id()),
        "127.0.0.1",
        args.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(args.nodelay);
    eventloop.set_network_options(network);
    client
        .subscribe(args.input.clone(), QoS::AtLeastOnce)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let (forward, outgoing) = mpsc::unbounded_channel();
    tokio::spawn(republish(client, args.output.clone(), outgoing));
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(message))) => {
                // The receiver lives as long as this loop; a send cannot fail.
                let _ = forward.send(message.payload);
            }
            Ok(_) => failures = 0,
            // rumqttc reconnects when polled again; give up after a few tries
            // (the broker went away: the run is over).
            Err(e) if failures < 20 => {
                failures += 1;
                eprintln!("relay: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("relay connection: {e}")),
        }
    }
}

async fn republish(
    client: AsyncClient,
    topic: String,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
) {
    let started = Instant::now();
    let mut relayed = 0u64;
    while let Some(payload) = outgoing.recv().await {
        if let Err(e) = client
            .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
        {
            eprintln!("relay publish: {e}");
            return;
        }
        relayed += 1;
    }
    eprintln!("relay: {relayed} messages in {:?}", started.elapsed());
}
