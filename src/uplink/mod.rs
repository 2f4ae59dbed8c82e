//! Upstream sync: delivers the spool to the upstream broker, in seq order,
//! at least once, and moves the spool's `uplink` cursor only over what
//! upstream confirmed.
//!
//! One task owns the upstream MQTT 5 connection. Each connection attempt
//! gets a fresh rumqttc client and event loop: rumqttc keeps unconfirmed
//! publishes only in memory and drops them silently when the broker has no
//! session (research/tech.md §2), so nothing is left in its queues between
//! attempts. After any disconnect the reader rewinds to the confirmed cursor
//! and re-sends from there; upstream drops duplicates by (device, epoch,
//! seq). Reconnects back off exponentially with jitter, capped at 10 s.
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
//! Each connection carries a Last Will and announces itself with a
//! retained `online` status; a clean stop replaces it with `offline` before
//! disconnecting (see `presence`). `outage` says in the log when the link
//! has been down too long and when the backlog is through.

mod acks;
pub mod message;
pub mod outage;
pub mod presence;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rumqttc::v5::mqttbytes::v5::{
    LastWill, Packet, PubAckReason, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::watch;

use crate::config::{TlsFiles, UpstreamPlan};
use crate::mqtt::Backoff;
use crate::spool::{Reader, Spool};
use acks::InFlight;
use message::Stamp;

/// The cursor name the uplink reads with.
pub const CURSOR: &str = "uplink";
/// Records read from the spool per round.
const READ_BATCH: usize = 500;
/// QoS 1 publishes the uplink keeps in flight at most.
const OUTGOING_INFLIGHT: u16 = 1024;
/// The in-flight lane of status messages (not a spool stream).
const STATUS_LANE: usize = usize::MAX;
/// How long a clean stop waits for upstream to confirm the `offline` status.
const OFFLINE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// What `ledge status` shows about the uplink.
#[derive(Debug, Default)]
pub struct UplinkStatus {
    pub connected: AtomicBool,
    /// Messages published (including re-sends).
    pub messages_sent: AtomicU64,
    /// Highest seq upstream confirmed.
    pub confirmed_seq: AtomicU64,
    pub reconnects: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// When the current (or last) connection was made, UNIX ms; 0 before
    /// the first.
    pub connected_at_ms: AtomicU64,
    /// When the link was last lost (or the uplink started, if it never
    /// connected), UNIX ms.
    pub down_since_ms: AtomicU64,
}

pub struct Uplink {
    pub plan: UpstreamPlan,
    pub device: String,
    /// The event stream.
    pub spool: Arc<Spool>,
    /// The telemetry stream (logs, metrics), drained after the events.
    pub telemetry: Option<Arc<Spool>>,
    pub status: Arc<UplinkStatus>,
    /// Deployments: when set, the link subscribes to `<prefix>/deploy` and
    /// its chunks and hands what arrives to the deployment receiver.
    pub deploy: Option<std::sync::mpsc::Sender<crate::deploy::ota::Incoming>>,
}

/// Why a connection ended.
enum End {
    Shutdown,
    Failed(String),
    /// The broker does not take retained messages (MQTT 5 reason 0x9A).
    RetainRefused,
}

/// One spool stream being delivered.
struct Lane {
    spool: Arc<Spool>,
    /// Taken while a read runs on the blocking pool.
    reader: Option<Reader>,
    /// True when the last read found nothing new.
    caught_up: bool,
    durable: watch::Receiver<u64>,
}

impl Lane {
    fn new(spool: &Arc<Spool>) -> Self {
        Self {
            spool: Arc::clone(spool),
            reader: Some(spool.reader(CURSOR)),
            caught_up: false,
            durable: spool.subscribe(),
        }
    }

    /// Back to the confirmed cursor, to re-send what was not confirmed.
    fn rewind(&mut self) {
        let confirmed = self.spool.cursor(CURSOR).unwrap_or(0);
        if let Some(reader) = self.reader.as_mut() {
            reader.rewind_to(confirmed);
        }
        self.caught_up = false;
    }
}

/// What one connection works with.
struct Session<'a> {
    client: &'a AsyncClient,
    lanes: &'a mut [Lane],
    backoff: &'a mut Backoff,
    shutdown: &'a mut watch::Receiver<bool>,
    /// Whether status messages (and the will) are retained.
    retain: bool,
}

/// Resolves when `lane` has new durable records (never without a lane).
async fn more_durable(lane: Option<&mut Lane>) -> Result<(), watch::error::RecvError> {
    match lane {
        Some(lane) => lane.durable.changed().await,
        None => std::future::pending().await,
    }
}

impl Uplink {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut lanes: Vec<Lane> = std::iter::once(&self.spool)
            .chain(self.telemetry.as_ref())
            .map(Lane::new)
            .collect();
        let mut backoff = Backoff::default();
        let address = format!("{}:{}", self.plan.host, self.plan.port);
        let _ = self.status.down_since_ms.compare_exchange(
            0,
            crate::event::unix_ms(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        tokio::spawn(outage::warn_while_down(
            Arc::clone(&self.status),
            Arc::clone(&self.spool),
            address.clone(),
            self.plan.outage_warning,
            shutdown.clone(),
        ));
        // The status is retained unless the broker cannot retain.
        let mut retain = true;
        loop {
            let end = match self.options(retain) {
                Ok(options) => {
                    let capacity = self.plan.max_inflight * 2 + READ_BATCH + 8;
                    let (client, eventloop) = AsyncClient::new(options, capacity);
                    let mut session = Session {
                        client: &client,
                        lanes: &mut lanes,
                        backoff: &mut backoff,
                        shutdown: &mut shutdown,
                        retain,
                    };
                    self.session(&mut session, eventloop).await
                }
                Err(reason) => End::Failed(reason),
            };
            if self.status.connected.swap(false, Ordering::AcqRel) {
                self.status
                    .down_since_ms
                    .store(crate::event::unix_ms(), Ordering::Release);
            }
            match end {
                End::Shutdown => return,
                End::RetainRefused => {
                    log::warn!(target: "ledge::uplink", "upstream {address} does not take retained messages: {} is sent unretained, so only subscribers connected at the time see it", presence::topic(&self.plan.topic_prefix));
                    retain = false;
                }
                End::Failed(reason) => {
                    let delay = backoff.next_delay();
                    self.status.reconnects.fetch_add(1, Ordering::Relaxed);
                    if backoff.attempts == 1 {
                        log::warn!(target: "ledge::uplink", "upstream {address}: {reason}; retrying with backoff");
                    } else {
                        log::debug!(target: "ledge::uplink", "upstream {address}: {reason}; retry in {}ms", delay.as_millis());
                    }
                    *self
                        .status
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(reason);
                    for lane in &mut lanes {
                        lane.rewind();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    fn options(&self, retain: bool) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(
            self.plan.client_id.clone(),
            self.plan.host.clone(),
            self.plan.port,
        );
        options.set_keep_alive(self.plan.keep_alive);
        options.set_clean_start(true);
        // Published by the broker if this connection dies without a
        // DISCONNECT: the cloud learns the gateway is gone.
        options.set_last_will(LastWill::new(
            presence::topic(&self.plan.topic_prefix),
            presence::offline(&self.device, "connection lost"),
            QoS::AtLeastOnce,
            retain,
            None,
        ));
        options.set_max_packet_size(Some(16 << 20));
        // rumqttc's MQTT 5 client sizes its in-flight table by the broker's
        // receive maximum, 65,535 slots (~13.5 MiB) unless capped; the
        // uplink never has more than a few read batches in flight.
        options.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
        options.set_connection_timeout(10);
        if let Some(user) = &self.plan.username {
            let password = self
                .plan
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        if let Some(files) = &self.plan.tls {
            options.set_transport(tls_transport(files)?);
        }
        // As on the local link: records are small, Nagle would hold them.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        Ok(options)
    }

    async fn session(&self, session: &mut Session<'_>, mut eventloop: EventLoop) -> End {
        use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
        use rumqttc::v5::ConnectionError;
        let Session {
            client,
            lanes,
            backoff,
            shutdown,
            retain,
        } = session;
        let (client, retain) = (*client, *retain);
        // Connect first: nothing is queued before the CONNACK.
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return End::Failed(format!("connection refused: {:?}", ack.code));
                        }
                        break;
                    }
                    Ok(_) => {}
                    Err(ConnectionError::ConnectionRefused(ConnectReturnCode::RetainNotSupported)) if retain => {
                        return End::RetainRefused;
                    }
                    Err(e) => return End::Failed(e.to_string()),
                },
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
        backoff.reset();
        let mut inflight = InFlight::default();
        // Before anything else, so its packet id is the first written.
        let online = presence::online(&self.device);
        if let Err(e) = self.publish_status(client, online, retain, &mut inflight) {
            return End::Failed(e);
        }
        if self.deploy.is_some() {
            // The document first: a broker delivers retained messages per
            // subscription in order, so its chunks come after it.
            let prefix = &self.plan.topic_prefix;
            for filter in [
                format!("{prefix}/deploy"),
                format!("{prefix}/deploy/chunk/#"),
            ] {
                if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                    return End::Failed(format!("cannot subscribe to deployments: {e}"));
                }
            }
        }
        let now = crate::event::unix_ms();
        let outage = std::time::Duration::from_millis(
            now.saturating_sub(self.status.down_since_ms.load(Ordering::Acquire)),
        );
        let spools: Vec<Arc<Spool>> = lanes.iter().map(|l| Arc::clone(&l.spool)).collect();
        let mut backlog = outage::Backlog::at_connect(spools.iter(), outage);
        self.status.connected_at_ms.store(now, Ordering::Release);
        self.status.connected.store(true, Ordering::Release);
        log::info!(target: "ledge::uplink", "connected to upstream {}:{}", self.plan.host, self.plan.port);
        for lane in lanes.iter_mut() {
            lane.caught_up = false;
        }
        // Set once a stop was asked for: the `offline` status is on its way
        // and nothing new is sent.
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            // Events first: telemetry only while the event lane is idle.
            let ready = lanes.iter().position(|lane| !lane.caught_up);
            let sending = stopping.is_none() && inflight.len() < self.plan.max_inflight;
            if let (Some(i), true) = (ready, sending) {
                match self
                    .send_more(client, &mut lanes[i], i, &mut inflight)
                    .await
                {
                    Ok(sent) => lanes[i].caught_up = sent == 0,
                    Err(reason) => return End::Failed(reason),
                }
                continue;
            }
            let (events, rest) = lanes.split_at_mut(1);
            let (events, mut telemetry) = (&mut events[0], rest.first_mut());
            let events_idle = events.caught_up && stopping.is_none();
            let telemetry_idle =
                telemetry.as_ref().is_some_and(|t| t.caught_up) && stopping.is_none();
            let offline_deadline = stopping.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => inflight.written(pkid),
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let granted = ack.return_codes.iter().all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                        if granted {
                            log::info!(target: "ledge::deploy", "listening for deployments on {}/deploy", self.plan.topic_prefix);
                        } else {
                            log::error!(target: "ledge::deploy", "upstream refused the deployment subscription ({:?}): over-the-air deployments cannot arrive", ack.return_codes);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if let Some(deploy) = &self.deploy {
                            let _ = deploy.send(crate::deploy::ota::Incoming {
                                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                                payload: publish.payload.to_vec(),
                            });
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let refused = !matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers);
                        if refused && inflight.lane_of(ack.pkid) == Some(STATUS_LANE) {
                            // Not data: a broker whose rules forbid the
                            // status topic must not stop the spool.
                            log::warn!(target: "ledge::uplink", "upstream refused the status message on {} ({:?}); allow that topic for ledge's client to publish its online/offline status", presence::topic(&self.plan.topic_prefix), ack.reason);
                        } else if refused {
                            return End::Failed(format!("upstream refused a message: {:?}", ack.reason));
                        }
                        let Some((index, seq)) = inflight.acked(ack.pkid) else {
                            continue;
                        };
                        let lane = match index {
                            0 => {
                                self.status.confirmed_seq.store(seq, Ordering::Relaxed);
                                Some(events)
                            }
                            1 => telemetry,
                            _ => None,
                        };
                        match lane {
                            Some(lane) => {
                                lane.spool.ack(CURSOR, seq);
                                lane.caught_up = false;
                                backlog.check(spools.iter());
                            }
                            // The `offline` status is confirmed: done.
                            None if stopping.is_some() && !inflight.holds(STATUS_LANE) => {
                                disconnect(client, &mut eventloop).await;
                                return End::Shutdown;
                            }
                            None => {}
                        }
                    }
                    Ok(_) => {}
                    // After a stop was asked for, a lost link ends the uplink.
                    Err(_) if stopping.is_some() => return End::Shutdown,
                    Err(e) => return End::Failed(e.to_string()),
                },
                changed = events.durable.changed(), if events_idle => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    events.caught_up = false;
                }
                changed = more_durable(telemetry.as_deref_mut()), if telemetry_idle => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    if let Some(t) = telemetry {
                        t.caught_up = false;
                    }
                }
                _ = tokio::time::sleep_until(offline_deadline), if stopping.is_some() => {
                    log::warn!(target: "ledge::uplink", "upstream did not confirm the offline status within {}s; disconnecting", OFFLINE_DEADLINE.as_secs());
                    disconnect(client, &mut eventloop).await;
                    return End::Shutdown;
                }
                _ = shutdown.changed(), if stopping.is_none() => {
                    // A clean stop: say so (the will is for an unclean
                    // end), then disconnect once upstream has it.
                    let offline = presence::offline(&self.device, "stopped");
                    if self.publish_status(client, offline, retain, &mut inflight).is_err() {
                        disconnect(client, &mut eventloop).await;
                        return End::Shutdown;
                    }
                    stopping = Some(tokio::time::Instant::now() + OFFLINE_DEADLINE);
                }
            }
        }
    }

    /// Publishes a retained status message, tracked like a lane's message
    /// so packet ids stay matched.
    fn publish_status(
        &self,
        client: &AsyncClient,
        payload: Vec<u8>,
        retain: bool,
        inflight: &mut InFlight,
    ) -> Result<(), String> {
        client
            .try_publish(
                presence::topic(&self.plan.topic_prefix),
                QoS::AtLeastOnce,
                retain,
                payload,
            )
            .map_err(|e| format!("cannot queue the status message: {e}"))?;
        inflight.queued(STATUS_LANE, 0);
        Ok(())
    }

    /// Reads the lane's next durable records and hands their messages to
    /// the client; returns how many records were read.
    async fn send_more(
        &self,
        client: &AsyncClient,
        lane: &mut Lane,
        index: usize,
        inflight: &mut InFlight,
    ) -> Result<usize, String> {
        let stamp = Stamp {
            device: &self.device,
            epoch: lane.spool.epoch(),
            prefix: &self.plan.topic_prefix,
        };
        let reader = &mut lane.reader;
        let Some(mut taken) = reader.take() else {
            return Err("spool reader lost".to_owned());
        };
        let (returned, read) = tokio::task::spawn_blocking(move || {
            let batch = taken.next_batch(READ_BATCH, 1 << 20);
            (taken, batch)
        })
        .await
        .map_err(|e| format!("spool read panicked: {e}"))?;
        *reader = Some(returned);
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
            inflight.queued(index, message.last_seq);
            self.status.messages_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(records.len())
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
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), written).await;
}

/// The TLS transport for `mqtts://`: the CA from `ca_file` (else the
/// system's roots), and a client certificate for mutual TLS if configured.
#[cfg(feature = "tls")]
fn tls_transport(files: &TlsFiles) -> Result<rumqttc::Transport, String> {
    // Exactly one crypto provider is compiled in; installing it explicitly
    // avoids rustls' runtime check panicking if that ever changes.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |path: &std::path::Path| {
        crate::config::files::read_capped(path, crate::config::files::MAX_SECRET_FILE)
            .map_err(|e| e.to_string())
    };
    let client_auth = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    Ok(match &files.ca_file {
        Some(ca) => rumqttc::Transport::tls(read(ca)?, client_auth, None),
        None => match client_auth {
            Some(auth) => {
                let roots = rustls_native_roots()?;
                rumqttc::Transport::tls(roots, Some(auth), None)
            }
            None => rumqttc::Transport::tls_with_default_config(),
        },
    })
}

/// The system's CA bundle as PEM, for mutual TLS without a `ca_file`.
#[cfg(feature = "tls")]
fn rustls_native_roots() -> Result<Vec<u8>, String> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .ok_or_else(|| "no ca_file and no system CA bundle found".to_owned())
}

#[cfg(not(feature = "tls"))]
fn tls_transport(_files: &TlsFiles) -> Result<rumqttc::Transport, String> {
    Err("this ledge was built without the `tls` feature; mqtts:// is not available".to_owned())
}
