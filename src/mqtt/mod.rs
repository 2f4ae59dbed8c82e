//! ledge's link to the local broker.
//!
//! With the embedded broker there is no client: [`embedded`] plugs ledge
//! into the broker in-process. With an external broker (mosquitto) this
//! module is the client, one MQTT 5 connection: one task owns the rumqttc
//! event loop and every await on the socket. It reconnects by itself with
//! capped exponential backoff and jitter (rumqttc has none: polling again
//! after an error reconnects at once), resubscribes after every CONNACK,
//! and reports state changes in the log. rumqttc keeps nothing on disk, so
//! nothing that must survive is ever left only in its queues: publishes
//! through this link are best effort by contract.
//!
//! MQTT 5 because of its Receive Maximum: a 3.1.1 client gets at most the
//! broker's `max_inflight_messages` (mosquitto: 20) QoS 1 messages before
//! it acknowledges, and ledge acknowledges a forwarded message only once
//! its record is on flash, so 20 per fsync capped acknowledged ingestion
//! and a burst overflowed mosquitto's queue (`max_queued_messages`, 1000).
//! With a large receive maximum the broker keeps sending while ledge
//! appends, and one group commit acknowledges hundreds. The same link
//! serves synchronous invokes (MQTT 5 response topics and envelopes).

#[cfg(feature = "local-broker")]
pub mod embedded;
pub mod link;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::watch;

use crate::config::BrokerPlan;
use crate::sinks::local::Outboxes;
use crate::sinks::Qos;
use crate::topic::TopicFilter;

pub use crate::sinks::local::LinkState;

/// First retry delay after a failed connection; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The MQTT 5 user property that carries a function publish's chain depth
/// (`Event::depth`) through an external broker.
pub const DEPTH_PROPERTY: &str = "ledge-depth";
/// A broker Receive Maximum below this paces QoS 1 publishes noticeably:
/// stock mosquitto's 20 held the benchmark's relay job to 44.7k msg/s,
/// 1,000 let it reach 54.3k (BENCHMARKS.md). Said once per connection.
const SMALL_RECEIVE_MAXIMUM: u16 = 100;
/// Capacity of rumqttc's request channel; our own queue sits in front.
const REQUEST_CHANNEL: usize = 256;
/// QoS 1 publishes ledge keeps in flight to the broker.
const OUTGOING_INFLIGHT: u16 = 1024;
/// Unacknowledged messages the broker may send ledge (Receive Maximum).
/// Enough to take a burst of thousands while earlier ones are being stored
/// (mosquitto queues only 1,000 more per client by default and drops the
/// rest). An unacknowledged message costs ledge almost nothing: its event
/// is in a bounded queue, its record in the spool, and the acknowledgement
/// waiting for the fsync keeps only the packet id. Only a forward the spool
/// refuses (full disk under `on_full = "reject"`) keeps its payload until
/// there is room, so that case can hold up to this many payloads.
const RECEIVE_MAXIMUM: u16 = 8192;

/// Options for the local broker connection. With `persistent`, the session
/// survives a disconnect (or a kill -9) and messages are acknowledged by
/// ledge, not by rumqttc, so unacknowledged ones are redelivered.
pub fn options(broker: &BrokerPlan, persistent: bool) -> MqttOptions {
    let (host, port) = broker.mode.client_address();
    let mut options = MqttOptions::new(broker.client_id.clone(), host, port);
    options.set_keep_alive(broker.keep_alive);
    options.set_clean_start(!persistent);
    if persistent {
        // The broker keeps the session (and queues for it) however long
        // ledge is away, as clean_session = false did in MQTT 3.1.1.
        options.set_session_expiry_interval(Some(u32::MAX));
    }
    options.set_manual_acks(persistent);
    // Accept messages larger than max_payload so ledge can reject them with a
    // clear log line; rumqttc would otherwise drop the whole connection.
    let incoming = broker
        .max_payload
        .saturating_mul(4)
        .saturating_add(64 << 10);
    options.set_max_packet_size(Some(u32::try_from(incoming).unwrap_or(u32::MAX)));
    options.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    options.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    options.set_request_channel_capacity(REQUEST_CHANNEL);
    if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
        options.set_credentials(user.clone(), password.expose());
    } else if let Some(user) = &broker.username {
        options.set_credentials(user.clone(), "");
    }
    options
}

/// Creates the client and its event loop.
pub fn connect(broker: &BrokerPlan, persistent: bool) -> (AsyncClient, EventLoop) {
    let mut options = options(broker, persistent);
    // Nagle's algorithm would hold every alert (one small packet) for the
    // ACK of the previous one, up to 40 ms on Linux.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    AsyncClient::new(options, REQUEST_CHANNEL)
}

/// Drives the connection until `shutdown` turns true and the DISCONNECT is
/// sent. `filters` holds the topic filters ledge wants; it subscribes to
/// their disjoint cover (so no broker sends a message twice), and a new
/// value (a config reload) subscribes to what was added and unsubscribes
/// what was removed. `on_publish` gets every incoming message.
pub async fn drive(
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut filters: watch::Receiver<Vec<TopicFilter>>,
    state: Arc<LinkState>,
    mut shutdown: watch::Receiver<bool>,
    mut on_publish: impl FnMut(Publish),
) {
    let address = format!(
        "{}:{}",
        eventloop.options.broker_address().0,
        eventloop.options.broker_address().1
    );
    let mut backoff = Backoff::default();
    let mut shutting_down = false;
    let mut filters_open = true;
    // What this connection has subscribed to, and the SUBSCRIBEs not yet
    // acknowledged, oldest first (brokers answer them in order).
    let mut subscribed: Vec<TopicFilter> = Vec::new();
    let mut pending: VecDeque<Vec<TopicFilter>> = VecDeque::new();
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                let _ = client.try_disconnect();
                continue;
            }
            changed = filters.changed(), if filters_open && !shutting_down => {
                if changed.is_err() {
                    filters_open = false;
                } else if state.connected.load(Ordering::Acquire) {
                    let wanted = crate::topic::disjoint_cover(&filters.borrow_and_update());
                    resubscribe(&client, &mut subscribed, wanted, &mut pending);
                }
                // Not connected: the next CONNACK subscribes to the new set.
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => on_publish(publish),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    log::error!(target: "ledge::mqtt", "local broker {address} refused the connection: {:?}", ack.code);
                    continue;
                }
                state.connected.store(true, Ordering::Release);
                backoff.reset();
                log::info!(target: "ledge::mqtt", "connected to local broker {address}");
                let receive_maximum = ack.properties.as_ref().and_then(|p| p.receive_max);
                state
                    .receive_maximum
                    .store(receive_maximum.map_or(0, u32::from), Ordering::Relaxed);
                if let Some(limit) = receive_maximum.filter(|&n| n < SMALL_RECEIVE_MAXIMUM) {
                    log::info!(target: "ledge::mqtt", "local broker {address} lets ledge have {limit} QoS 1 publishes unacknowledged (its Receive Maximum; mosquitto: max_inflight_messages): functions' QoS 1 publishes go at most {limit} per round trip (docs/config.md)");
                }
                subscribed.clear();
                pending.clear();
                let wanted = crate::topic::disjoint_cover(&filters.borrow_and_update());
                if wanted.is_empty() {
                    state.subscribed.store(true, Ordering::Release);
                    log::info!(target: "ledge::mqtt", "no trigger filters to subscribe to");
                }
                resubscribe(&client, &mut subscribed, wanted, &mut pending);
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let batch = pending.pop_front().unwrap_or_default();
                for (filter, code) in batch.iter().zip(&ack.return_codes) {
                    if !matches!(code, SubscribeReasonCode::Success(_)) {
                        log::error!(target: "ledge::mqtt", "local broker refused subscription to `{filter}`");
                    }
                }
                if !state.subscribed.swap(true, Ordering::AcqRel) {
                    log::info!(target: "ledge::mqtt", "subscribed to {} trigger filters (triggers, forwards and synchronous invokes)", subscribed.len());
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if shutting_down => return,
            Ok(_) => {}
            Err(e) => {
                if shutting_down {
                    return;
                }
                let was_connected = state.connected.swap(false, Ordering::AcqRel);
                state.subscribed.store(false, Ordering::Release);
                let delay = backoff.next_delay();
                if was_connected || backoff.attempts == 1 {
                    log::warn!(target: "ledge::mqtt", "local broker {address}: {e}; retrying with backoff");
                } else {
                    log::debug!(target: "ledge::mqtt", "local broker {address}: {e}; retry in {}ms", delay.as_millis());
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Moves what functions publish from their outboxes into the client, in
/// rounds (fair between functions), until every outbox is closed and
/// empty. Awaiting the client's bounded channel is the backpressure: a
/// full channel leaves messages in the outboxes and their publishers wait.
///
/// A function's publish that comes back to ledge (its topic matches one of
/// `filters`) carries its chain depth as the user property
/// [`DEPTH_PROPERTY`], so a loop through an external broker is stopped as
/// one through the embedded broker is; other publishes carry nothing extra.
pub async fn pump(
    outboxes: Arc<Outboxes>,
    client: AsyncClient,
    filters: watch::Receiver<Vec<TopicFilter>>,
) {
    let mut batch = Vec::new();
    let mut dropped = 0u64;
    while outboxes.next_round(&mut batch).await {
        for message in batch.drain(..) {
            let qos = match message.qos {
                Qos::AtMostOnce => QoS::AtMostOnce,
                Qos::AtLeastOnce => QoS::AtLeastOnce,
                Qos::ExactlyOnce => QoS::ExactlyOnce,
            };
            let returns =
                message.depth > 0 && crate::topic::any_matches(&filters.borrow(), &message.topic);
            // Fails only once the event loop is gone (ledge stopping).
            let sent = if returns {
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    user_properties: vec![(DEPTH_PROPERTY.to_owned(), message.depth.to_string())],
                    ..Default::default()
                };
                client
                    .publish_bytes_with_properties(
                        message.topic,
                        qos,
                        message.retain,
                        message.payload,
                        properties,
                    )
                    .await
            } else {
                client
                    .publish_bytes(message.topic, qos, message.retain, message.payload)
                    .await
            };
            if sent.is_err() {
                dropped += 1;
            }
        }
    }
    if dropped > 0 {
        log::warn!(target: "ledge::publish", "{dropped} local publishes dropped: the link to the local broker closed first");
    }
}

/// Moves the connection's subscriptions from `subscribed` to `wanted`.
fn resubscribe(
    client: &AsyncClient,
    subscribed: &mut Vec<TopicFilter>,
    wanted: Vec<TopicFilter>,
    pending: &mut VecDeque<Vec<TopicFilter>>,
) {
    let added: Vec<TopicFilter> = wanted
        .iter()
        .filter(|f| !subscribed.contains(f))
        .cloned()
        .collect();
    // try_: we are inside the poll loop; awaiting here could deadlock on a
    // full request channel that only this loop drains.
    for removed in subscribed.iter().filter(|f| !wanted.contains(f)) {
        match client.try_unsubscribe(removed.as_str()) {
            Ok(()) => log::info!(target: "ledge::mqtt", "unsubscribed from `{removed}`"),
            Err(e) => {
                log::error!(target: "ledge::mqtt", "cannot unsubscribe from `{removed}`: {e}")
            }
        }
    }
    if !added.is_empty() {
        let subscriptions = added
            .iter()
            .map(|f| Filter::new(f.as_str(), QoS::AtLeastOnce));
        match client.try_subscribe_many(subscriptions) {
            Ok(()) => pending.push_back(added),
            Err(e) => log::error!(target: "ledge::mqtt", "cannot queue subscriptions: {e}"),
        }
    }
    *subscribed = wanted;
}

/// Capped exponential backoff with jitter, so a fleet of gateways that lost
/// the same broker does not reconnect in lockstep.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    pub(crate) attempts: u32,
}

impl Backoff {
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.attempts += 1;
        let exponent = self.attempts.saturating_sub(1).min(16);
        let base = MIN_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
        // Jitter: 75%..100% of the base delay.
        let jitter = crate::rand::below(250) as u32;
        base.mul_f64(0.75 + f64::from(jitter) / 1000.0)
    }

    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= MIN_BACKOFF.mul_f64(0.75) && first <= MIN_BACKOFF);
        for _ in 0..30 {
            assert!(backoff.next_delay() <= MAX_BACKOFF);
        }
        assert!(backoff.next_delay() >= MAX_BACKOFF.mul_f64(0.75));
        backoff.reset();
        assert!(backoff.next_delay() <= MIN_BACKOFF);
    }
}
