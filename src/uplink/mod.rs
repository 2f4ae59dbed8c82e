//! Upstream sync: delivers the spool to the upstream broker, in seq order,
//! at least once, and moves the spool's `uplink` cursor only over what
//! upstream confirmed.
//!
//! This file is the I/O driver: one task owns the upstream MQTT 5
//! connection, the spool readers and every await. What to send next, what
//! an acknowledgement confirms, when a stop is done and when to rewind are
//! decided in `state` without I/O; the driver reports what happened and
//! does what it answers.
//!
//! Each connection attempt gets a fresh rumqttc client and event loop:
//! rumqttc keeps unconfirmed publishes only in memory and drops them
//! silently when the broker has no session (research/tech.md §2), so
//! nothing is left in its queues between attempts. After a lost connection
//! the readers rewind to the confirmed cursor and re-send from there;
//! upstream drops duplicates by (device, epoch, seq). Reconnects back off
//! exponentially with jitter, capped at 10 s.
//!
//! A PUBACK with a failure reason (not authorised, quota exceeded) is not a
//! confirmation: the connection is restarted and the records re-sent, with
//! the reason in the log, so a misconfigured broker never makes ledge skip
//! data.
//!
//! Two streams share the connection (see "Record classes" in the spool
//! docs): the event stream (forwards, dead letters, reports) and the
//! telemetry stream (logs, metrics). Each is a lane with its own reader,
//! cursor and epoch; events go first, telemetry only while the event lane
//! has nothing to send, so a backlog of logs never delays an event.
//!
//! The other direction is generic: the caller names topic filters
//! (`Subscriptions`), subscribed on every connection, and a channel that
//! receives each message published there as an `Incoming`. The uplink
//! knows nothing of what they mean.
//!
//! Each connection carries a Last Will and announces itself with a
//! retained `online` status; a clean stop replaces it with `offline` before
//! disconnecting (see `presence`). `outage` says in the log when the link
//! has been down too long and when the backlog is through; `status` is
//! what the rest of ledge reads about the uplink.

mod acks;
mod connect;
pub mod message;
pub mod outage;
pub mod presence;
mod state;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Packet, PubAckReason, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::UpstreamPlan;
use crate::event::unix_ms;
use crate::mqtt::Backoff;
use crate::spool::{Reader, Spool};
use message::Stamp;
use state::{Ack, End, Lane, Link, Next, Session, EVENTS, STATUS_LANE, TELEMETRY};
pub use status::{UplinkSnapshot, UplinkStatus};

/// The cursor name the uplink reads with.
pub const CURSOR: &str = "uplink";
/// Records read from the spool per round.
const READ_BATCH: usize = 500;
/// How long a clean stop waits for upstream to confirm the `offline` status.
const OFFLINE_DEADLINE: Duration = Duration::from_secs(2);

/// A message upstream published on one of the caller's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Topics the uplink's caller wants from upstream.
pub struct Subscriptions {
    /// What arrives there, for the log ("deployments").
    pub purpose: String,
    /// Topic filters, subscribed at QoS 1 in this order on every
    /// connection, in one SUBSCRIBE: a broker delivers retained messages
    /// per filter, in order.
    pub filters: Vec<String>,
    /// Where each message published on them goes.
    pub deliver: std::sync::mpsc::Sender<Incoming>,
}

pub struct Uplink {
    pub plan: UpstreamPlan,
    pub device: String,
    /// The event stream.
    pub spool: Arc<Spool>,
    /// The telemetry stream (logs, metrics), drained after the events.
    pub telemetry: Option<Arc<Spool>>,
    pub status: Arc<UplinkStatus>,
    /// What the caller wants from upstream, if anything.
    pub subscriptions: Option<Subscriptions>,
}

/// One spool stream being delivered: what the driver reads it with.
struct LaneIo {
    spool: Arc<Spool>,
    /// Taken while a read runs on the blocking pool.
    reader: Option<Reader>,
    durable: watch::Receiver<u64>,
}

impl LaneIo {
    fn new(spool: &Arc<Spool>) -> Self {
        Self {
            spool: Arc::clone(spool),
            reader: Some(spool.reader(CURSOR)),
            durable: spool.subscribe(),
        }
    }

    /// Back to the confirmed cursor, to re-send what was not confirmed.
    fn rewind(&mut self) {
        let confirmed = status::confirmed(&self.spool);
        if let Some(reader) = self.reader.as_mut() {
            reader.rewind_to(confirmed);
        }
    }
}

/// What woke a connected session. Lives on the stack for one turn of the
/// loop, so its size does not matter and boxing the event would only add
/// an allocation per packet.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Mqtt(Result<Event, ConnectionError>),
    /// The spool of a lane has more durable records (false: it closed).
    Durable(Lane, bool),
    StopAsked,
    OfflineOverdue,
}

/// What one connection works with.
struct Connection<'a> {
    client: AsyncClient,
    eventloop: EventLoop,
    lanes: &'a mut [LaneIo],
    /// Whether status messages (and the will) are retained.
    retain: bool,
}

/// Resolves when `lane` has new durable records (never without a lane).
async fn more_durable(lane: Option<&mut LaneIo>) -> Result<(), watch::error::RecvError> {
    match lane {
        Some(lane) => lane.durable.changed().await,
        None => std::future::pending().await,
    }
}

impl Uplink {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut lanes: Vec<LaneIo> = std::iter::once(&self.spool)
            .chain(self.telemetry.as_ref())
            .map(LaneIo::new)
            .collect();
        let mut backoff = Backoff::default();
        let mut link = Link::default();
        let address = format!("{}:{}", self.plan.host, self.plan.port);
        self.status.starting(unix_ms());
        tokio::spawn(outage::warn_while_down(
            Arc::clone(&self.status),
            Arc::clone(&self.spool),
            address.clone(),
            self.plan.outage_warning,
            shutdown.clone(),
        ));
        loop {
            let end = match connect::options(&self.plan, &self.device, link.retain) {
                Ok(options) => {
                    let capacity = self.plan.max_inflight * 2 + READ_BATCH + 8;
                    let (client, eventloop) = AsyncClient::new(options, capacity);
                    let connection = Connection {
                        client,
                        eventloop,
                        lanes: &mut lanes,
                        retain: link.retain,
                    };
                    self.session(connection, &mut backoff, &mut shutdown).await
                }
                Err(reason) => End::Failed(reason),
            };
            self.status.disconnected(unix_ms());
            let Next::Reconnect { rewind, back_off } = link.ended(&end) else {
                return;
            };
            let delay = back_off.then(|| backoff.next_delay());
            match end {
                End::RetainRefused => {
                    log::warn!(target: "ledge::uplink", "upstream {address} does not take retained messages: {} is sent unretained, so only subscribers connected at the time see it", presence::topic(&self.plan.topic_prefix));
                }
                End::Failed(reason) => {
                    let retry = delay.unwrap_or_default().as_millis();
                    if backoff.attempts == 1 {
                        log::warn!(target: "ledge::uplink", "upstream {address}: {reason}; retrying with backoff");
                    } else {
                        log::debug!(target: "ledge::uplink", "upstream {address}: {reason}; retry in {retry}ms");
                    }
                    self.status.failed(reason);
                }
                End::Shutdown => {}
            }
            if rewind {
                lanes.iter_mut().for_each(LaneIo::rewind);
            }
            if let Some(delay) = delay {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// One connection, from CONNECT to its end.
    async fn session(
        &self,
        mut c: Connection<'_>,
        backoff: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        if let Err(end) = connack(&mut c.eventloop, shutdown, c.retain).await {
            return end;
        }
        backoff.reset();
        let mut session = Session::new(c.lanes.len(), self.plan.max_inflight);
        // Before anything else, so its packet id is the first written.
        let online = presence::online(&self.device);
        if let Err(e) = self.publish_status(&c.client, online, c.retain) {
            return End::Failed(e);
        }
        session.queued(STATUS_LANE, 0);
        if let Some(subscriptions) = &self.subscriptions {
            let filters = subscriptions
                .filters
                .iter()
                .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
            if let Err(e) = c.client.try_subscribe_many(filters) {
                let purpose = &subscriptions.purpose;
                return End::Failed(format!("cannot subscribe to {purpose}: {e}"));
            }
        }
        let now = unix_ms();
        let outage = Duration::from_millis(self.status.snapshot(&self.spool, now).disconnected_ms);
        let mut backlog = outage::Backlog::at_connect(c.lanes.iter().map(|l| &l.spool), outage);
        self.status.connected(now);
        log::info!(target: "ledge::uplink", "connected to upstream {}:{}", self.plan.host, self.plan.port);
        let mut offline_deadline = Instant::now();
        loop {
            if let Some(lane) = session.next_lane() {
                match self
                    .send_more(&c.client, &mut c.lanes[lane], lane, &mut session)
                    .await
                {
                    Ok(records) => session.read(lane, records),
                    Err(reason) => return End::Failed(reason),
                }
                continue;
            }
            let wake = {
                let (events, rest) = c.lanes.split_at_mut(1);
                let (events, telemetry) = (&mut events[0], rest.first_mut());
                let events_idle = session.waits_for_durable(EVENTS);
                let telemetry_idle = session.waits_for_durable(TELEMETRY);
                let stopping = session.stopping();
                tokio::select! {
                    event = c.eventloop.poll() => Wake::Mqtt(event),
                    changed = events.durable.changed(), if events_idle => Wake::Durable(EVENTS, changed.is_ok()),
                    changed = more_durable(telemetry), if telemetry_idle => Wake::Durable(TELEMETRY, changed.is_ok()),
                    _ = tokio::time::sleep_until(offline_deadline), if stopping => Wake::OfflineOverdue,
                    _ = shutdown.changed(), if !stopping => Wake::StopAsked,
                }
            };
            let event = match wake {
                Wake::Mqtt(Ok(event)) => event,
                // After a stop was asked for, a lost link ends the uplink.
                Wake::Mqtt(Err(_)) if session.stopping() => return End::Shutdown,
                Wake::Mqtt(Err(e)) => return End::Failed(e.to_string()),
                Wake::Durable(lane, true) => {
                    session.more_durable(lane);
                    continue;
                }
                Wake::Durable(_, false) => return End::Shutdown,
                Wake::OfflineOverdue => {
                    log::warn!(target: "ledge::uplink", "upstream did not confirm the offline status within {}s; disconnecting", OFFLINE_DEADLINE.as_secs());
                    disconnect(&c.client, &mut c.eventloop).await;
                    return End::Shutdown;
                }
                Wake::StopAsked => {
                    // A clean stop: say so (the will is for an unclean
                    // end), then disconnect once upstream has it.
                    let offline = presence::offline(&self.device, "stopped");
                    if self.publish_status(&c.client, offline, c.retain).is_err() {
                        disconnect(&c.client, &mut c.eventloop).await;
                        return End::Shutdown;
                    }
                    session.stop();
                    offline_deadline = Instant::now() + OFFLINE_DEADLINE;
                    continue;
                }
            };
            match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => session.written(pkid),
                Event::Incoming(Packet::SubAck(ack)) => self.subscribed(&ack.return_codes),
                Event::Incoming(Packet::Publish(publish)) => {
                    if let Some(subscriptions) = &self.subscriptions {
                        let _ = subscriptions.deliver.send(Incoming {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload.to_vec(),
                        });
                    }
                }
                Event::Incoming(Packet::PubAck(ack)) => {
                    let accepted = matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    );
                    match session.acked(ack.pkid, accepted) {
                        Ack::Confirmed { lane, seq } => {
                            c.lanes[lane].spool.ack(CURSOR, seq);
                            backlog.check(c.lanes.iter().map(|l| &l.spool));
                        }
                        Ack::Status {
                            refused,
                            stop_complete,
                        } => {
                            if refused {
                                log::warn!(target: "ledge::uplink", "upstream refused the status message on {} ({:?}); allow that topic for ledge's client to publish its online/offline status", presence::topic(&self.plan.topic_prefix), ack.reason);
                            }
                            if stop_complete {
                                disconnect(&c.client, &mut c.eventloop).await;
                                return End::Shutdown;
                            }
                        }
                        Ack::Refused => {
                            return End::Failed(format!(
                                "upstream refused a message: {:?}",
                                ack.reason
                            ))
                        }
                        Ack::Nothing => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Says in the log whether upstream granted the caller's subscriptions.
    fn subscribed(&self, codes: &[SubscribeReasonCode]) {
        let Some(subscriptions) = &self.subscriptions else {
            return;
        };
        let purpose = &subscriptions.purpose;
        let filters = subscriptions.filters.join(", ");
        if codes
            .iter()
            .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
        {
            log::info!(target: "ledge::uplink", "listening for {purpose} on {filters}");
        } else {
            log::error!(target: "ledge::uplink", "upstream refused the subscription to {filters} ({codes:?}): {purpose} cannot arrive");
        }
    }

    /// Queues a status message (retained unless the broker cannot retain).
    fn publish_status(
        &self,
        client: &AsyncClient,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), String> {
        let topic = presence::topic(&self.plan.topic_prefix);
        client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| format!("cannot queue the status message: {e}"))
    }

    /// Reads the lane's next durable records and hands their messages to
    /// the client; returns how many records were read.
    async fn send_more(
        &self,
        client: &AsyncClient,
        lane: &mut LaneIo,
        index: Lane,
        session: &mut Session,
    ) -> Result<usize, String> {
        let stamp = Stamp {
            device: &self.device,
            epoch: lane.spool.epoch(),
            prefix: &self.plan.topic_prefix,
        };
        let Some(mut taken) = lane.reader.take() else {
            return Err("spool reader lost".to_owned());
        };
        let (returned, read) = tokio::task::spawn_blocking(move || {
            let batch = taken.next_batch(READ_BATCH, 1 << 20);
            (taken, batch)
        })
        .await
        .map_err(|e| format!("spool read panicked: {e}"))?;
        lane.reader = Some(returned);
        let records = read.map_err(|e| format!("cannot read the spool: {e}"))?;
        for message in message::build(&records, &stamp) {
            let properties = PublishProperties {
                user_properties: message.properties,
                ..PublishProperties::default()
            };
            client
                .try_publish_with_properties(
                    message.topic,
                    QoS::AtLeastOnce,
                    false,
                    message.payload,
                    properties,
                )
                .map_err(|e| format!("cannot queue a publish: {e}"))?;
            session.queued(index, message.last_seq);
            self.status.sent();
        }
        Ok(records.len())
    }
}

/// Waits for the CONNACK: nothing is queued before it.
async fn connack(
    eventloop: &mut EventLoop,
    shutdown: &mut watch::Receiver<bool>,
    retain: bool,
) -> Result<(), End> {
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        return Err(End::Failed(format!("connection refused: {:?}", ack.code)));
                    }
                    return Ok(());
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(ConnectReturnCode::RetainNotSupported)) if retain => {
                    return Err(End::RetainRefused);
                }
                Err(e) => return Err(End::Failed(e.to_string())),
            },
            _ = shutdown.changed() => return Err(End::Shutdown),
        }
    }
}

/// Sends DISCONNECT and waits (briefly) until it is written: a connection
/// that just closes would make the broker publish the Last Will.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let written = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), written).await;
}

#[cfg(test)]
mod tests {
    /// Issue 14: the uplink sits below deploy and telemetry. It delivers
    /// generic `Incoming` messages and exports its status; it imports
    /// neither of them (a cycle ran control → telemetry → uplink →
    /// deploy/ota → control).
    #[test]
    fn the_uplink_imports_neither_deploy_nor_telemetry() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("acks.rs", include_str!("acks.rs")),
            ("connect.rs", include_str!("connect.rs")),
            ("message.rs", include_str!("message.rs")),
            ("outage.rs", include_str!("outage.rs")),
            ("presence.rs", include_str!("presence.rs")),
            ("state.rs", include_str!("state.rs")),
            ("status.rs", include_str!("status.rs")),
        ];
        for (name, text) in files {
            for upper in ["deploy", "telemetry", "control", "node"] {
                let path = format!("crate::{upper}::");
                let import = format!("use crate::{upper}");
                assert!(
                    !text.contains(&path) && !text.contains(&import),
                    "src/uplink/{name} reaches up into crate::{upper}"
                );
            }
        }
    }
}
