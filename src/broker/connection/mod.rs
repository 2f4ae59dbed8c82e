//! One client connection: the MQTT 3.1.1 conversation with one socket.
//!
//! One task owns the socket and every await on it. Reading, writing and
//! the session's queue are branches of one `select!`, so a client that does
//! not read cannot stop the broker from reading it (and the other way
//! round): writes are partial and resume where they stopped.
//!
//! Flow control, both ways:
//! - to the client: QoS 1 messages wait in the session while
//!   `max_inflight` are unacknowledged; the write buffer is refilled only
//!   once it has drained below `WRITE_BUFFER`.
//! - from the client: when ledge is over capacity (`Admission::hold_back`)
//!   reading this socket pauses until ledge has room, so the publisher is
//!   held back by TCP instead of anything being dropped; a message ledge
//!   stores is acknowledged (PUBACK/PUBREC) only once it is on flash.
//!   Acknowledgements leave in the order the messages came (§4.6).
//!
//! The CONNECT/CONNACK exchange (protocol level, login, session takeover)
//! is in `handshake`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::message::Message;
use super::session::{Outgoing, Session};
use super::{Origin, Shared, Stored};
use crate::topic::{validate_topic_name, TopicFilter};

mod handshake;

/// Refill the write buffer from the session only below this many bytes.
const WRITE_BUFFER: usize = 64 << 10;
/// Read in chunks of at least this many bytes.
const READ_CHUNK: usize = 16 << 10;
/// While held back, read again at least this often even if no capacity
/// signal arrives (ledge then holds back again if it is still full).
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Ended {
    /// DISCONNECT: no will.
    Clean,
    /// EOF, reset, keep-alive or protocol error: the will is published.
    Lost(String),
    /// A newer connection with the same client id took the session.
    TakenOver,
    /// The broker is stopping.
    Shutdown,
}

/// An acknowledgement owed to the client, in arrival order.
struct OwedAck {
    pkid: u16,
    qos: QoS,
    /// Resolves once the message is stored (false: storage failed, the
    /// acknowledgement is never sent and the client resends after
    /// reconnecting).
    stored: Option<Stored>,
}

pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, id: u64, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let mut connection = Connection {
        peer,
        id,
        inbuf: BytesMut::with_capacity(4096),
        outbuf: BytesMut::with_capacity(4096),
        shared,
    };
    let Some(mut client) = connection.handshake(&mut stream).await else {
        return;
    };
    let ended = connection.run(&mut stream, &mut client).await;
    connection.finish(client, ended);
}

struct Connection {
    peer: SocketAddr,
    /// Distinguishes this connection from a later one with the same client id.
    id: u64,
    inbuf: BytesMut,
    outbuf: BytesMut,
    shared: Arc<Shared>,
}

/// What the handshake established.
struct Client {
    session: Arc<Session>,
    keep_alive: Option<Duration>,
    will: Option<Arc<Message>>,
    /// Messages to send again (DUP) before anything new: a resumed
    /// session's unacknowledged ones.
    resend: VecDeque<(u16, Arc<Message>)>,
}

impl Connection {
    /// Serves the connected client until it leaves, breaks the protocol,
    /// is taken over, or the broker stops.
    async fn run(&mut self, stream: &mut TcpStream, client: &mut Client) -> Ended {
        let mut state = RunState {
            resend: std::mem::take(&mut client.resend),
            acks: VecDeque::new(),
            awaiting_release: Vec::new(),
            held_back: false,
            idle_deadline: client.keep_alive.map(|k| Instant::now() + k.mul_f32(1.5)),
        };
        let mut stop = self.shared.stop.subscribe();
        if *stop.borrow() {
            return Ended::Shutdown;
        }
        let client: &Client = client;
        let (mut reader, mut writer) = stream.split();
        let idle = tokio::time::sleep_until(state.idle_deadline.unwrap_or_else(far_future));
        tokio::pin!(idle);
        // The signals live across turns of the loop (re-armed once they
        // fire): made anew each turn, they cost a waiter list lock and, for
        // the retry timer, a clock read per packet batch.
        let shared = Arc::clone(&self.shared);
        let stopping = stop.changed();
        tokio::pin!(stopping);
        let woken = client.session.wake.notified();
        tokio::pin!(woken);
        let room = shared.capacity.notified();
        tokio::pin!(room);
        let retry = tokio::time::sleep_until(far_future());
        tokio::pin!(retry);
        let mut retry_armed = false;
        loop {
            self.fill(client, &mut state);
            if let Some(deadline) = state.idle_deadline {
                if idle.deadline() != deadline {
                    idle.as_mut().reset(deadline);
                }
            }
            let reading = !state.held_back;
            let writing = !self.outbuf.is_empty();
            let head_stored = state.acks.front_mut().and_then(|a| a.stored.as_mut());
            let waiting_ack = head_stored.is_some();
            if !reading && !retry_armed {
                retry.as_mut().reset(Instant::now() + BUSY_RETRY);
                retry_armed = true;
            }
            self.inbuf.reserve(READ_CHUNK);
            tokio::select! {
                _ = &mut stopping => return Ended::Shutdown,
                read = reader.read_buf(&mut self.inbuf), if reading => match read {
                    Ok(0) => return Ended::Lost("connection closed by the client".to_owned()),
                    Ok(_) => {
                        if let Some(k) = client.keep_alive {
                            state.idle_deadline = Some(Instant::now() + k.mul_f32(1.5));
                        }
                        if let Err(ended) = self.incoming(client, &mut state) {
                            return ended;
                        }
                    }
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                written = writer.write(&self.outbuf), if writing => match written {
                    Ok(0) => return Ended::Lost("the socket refused writes".to_owned()),
                    Ok(n) => self.outbuf.advance(n),
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                _ = &mut woken => {
                    woken.set(client.session.wake.notified());
                    if client.session.lock().owner != Some(self.id) {
                        return Ended::TakenOver;
                    }
                }
                stored = async {
                    match head_stored {
                        Some(stored) => stored.await,
                        None => std::future::pending().await,
                    }
                }, if waiting_ack => {
                    if stored {
                        if let Some(ack) = state.acks.front_mut() {
                            ack.stored = None;
                        }
                    } else {
                        // Storage failed: hold every later acknowledgement
                        // back too (they must stay in order); the client
                        // resends once it reconnects.
                        return Ended::Lost("ledge could not store a message".to_owned());
                    }
                }
                _ = &mut room, if !reading => {
                    room.set(shared.capacity.notified());
                    retry_armed = false;
                    state.held_back = false;
                    // Whole packets already read go on now.
                    if let Err(ended) = self.incoming(client, &mut state) {
                        return ended;
                    }
                }
                _ = &mut retry, if !reading && retry_armed => {
                    retry_armed = false;
                    state.held_back = false;
                    if let Err(ended) = self.incoming(client, &mut state) {
                        return ended;
                    }
                }
                _ = &mut idle, if state.idle_deadline.is_some() => {
                    return Ended::Lost("keep-alive expired".to_owned());
                }
            }
        }
    }

    /// Decodes and handles every whole packet in the read buffer.
    fn incoming(&mut self, client: &Client, state: &mut RunState) -> Result<(), Ended> {
        while !state.held_back {
            let packet = match Packet::read(&mut self.inbuf, self.shared.settings.max_packet) {
                Ok(packet) => packet,
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => {
                    self.shared
                        .counters
                        .malformed
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Ended::Lost(format!("malformed packet: {e}")));
                }
            };
            self.packet(client, state, packet)?;
        }
        Ok(())
    }

    fn packet(
        &mut self,
        client: &Client,
        state: &mut RunState,
        packet: Packet,
    ) -> Result<(), Ended> {
        match packet {
            Packet::Publish(publish) => {
                if validate_topic_name(&publish.topic).is_err() {
                    self.shared
                        .counters
                        .malformed
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Ended::Lost(format!(
                        "PUBLISH to an invalid topic `{}`",
                        shorten(&publish.topic)
                    )));
                }
                if publish.qos == QoS::ExactlyOnce && state.awaiting_release.contains(&publish.pkid)
                {
                    // A resent QoS 2 message already delivered: only the
                    // PUBREC is owed again.
                    state.acks.push_back(OwedAck {
                        pkid: publish.pkid,
                        qos: QoS::ExactlyOnce,
                        stored: None,
                    });
                    return Ok(());
                }
                let pkid = publish.pkid;
                let message = Arc::new(Message {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    depth: 0,
                });
                self.shared
                    .counters
                    .received
                    .fetch_add(1, Ordering::Relaxed);
                let local = self.shared.router().route(&message);
                if local {
                    self.deliver_local(state, message, pkid);
                } else {
                    self.owe_ack(state, &message, pkid, None);
                }
            }
            Packet::PubAck(ack) => {
                client.session.lock().acknowledge(ack.pkid);
            }
            Packet::PubRel(release) => {
                state.awaiting_release.retain(|p| *p != release.pkid);
                // PUBCOMP may overtake owed PUBACKs: it answers a different
                // packet id, and §4.6 orders PUBACK/PUBREC only.
                let _ = PubComp::new(release.pkid).write(&mut self.outbuf);
            }
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                for requested in subscribe.filters {
                    match TopicFilter::new(&requested.path) {
                        Ok(filter) => {
                            // QoS 2 is granted as 1 (§3.9.3 allows a lower grant).
                            let granted = super::message::min_qos(requested.qos, QoS::AtLeastOnce);
                            let retained = self.shared.router().retained_for(&filter);
                            client.session.lock().subscribe(filter, granted);
                            for message in retained {
                                client.session.enqueue(
                                    message,
                                    granted,
                                    &self.shared.settings.limits.queue,
                                );
                            }
                            codes.push(SubscribeReasonCode::Success(granted));
                        }
                        Err(_) => codes.push(SubscribeReasonCode::Failure),
                    }
                }
                let _ = SubAck::new(subscribe.pkid, codes).write(&mut self.outbuf);
            }
            Packet::Unsubscribe(unsubscribe) => {
                let mut session = client.session.lock();
                for topic in &unsubscribe.topics {
                    session.unsubscribe(topic);
                }
                drop(session);
                let _ = UnsubAck::new(unsubscribe.pkid).write(&mut self.outbuf);
            }
            Packet::PingReq => {
                let _ = rumqttc::mqttbytes::v4::PingResp.write(&mut self.outbuf);
            }
            Packet::Disconnect => return Err(Ended::Clean),
            Packet::Connect(_) => {
                return Err(Ended::Lost("a second CONNECT".to_owned()));
            }
            // Packets only a server sends, or QoS 2 outbound steps this
            // broker never starts (it grants QoS 1 at most).
            other => {
                self.shared
                    .counters
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Ended::Lost(format!(
                    "unexpected packet from a client: {:?}",
                    packet_name(&other)
                )));
            }
        }
        Ok(())
    }

    /// Hands a message to ledge; stops reading if ledge is over capacity.
    fn deliver_local(&mut self, state: &mut RunState, message: Arc<Message>, pkid: u16) {
        let admission = self.shared.local.incoming(&message, Origin::Client);
        if admission.hold_back {
            self.shared.counters.paused.fetch_add(1, Ordering::Relaxed);
            state.held_back = true;
        }
        self.owe_ack(state, &message, pkid, admission.stored);
    }

    fn owe_ack(
        &mut self,
        state: &mut RunState,
        message: &Message,
        pkid: u16,
        stored: Option<Stored>,
    ) {
        if message.qos == QoS::AtMostOnce {
            return;
        }
        if message.qos == QoS::ExactlyOnce {
            state.awaiting_release.push(pkid);
        }
        state.acks.push_back(OwedAck {
            pkid,
            qos: message.qos,
            stored,
        });
    }

    /// Moves what can be written now into the write buffer: acknowledgements
    /// whose messages are stored (in order), resent and queued messages.
    fn fill(&mut self, client: &Client, state: &mut RunState) {
        while state.acks.front().is_some_and(|a| a.stored.is_none()) {
            let Some(ack) = state.acks.pop_front() else {
                break;
            };
            let _ = match ack.qos {
                QoS::ExactlyOnce => PubRec::new(ack.pkid).write(&mut self.outbuf),
                _ => PubAck::new(ack.pkid).write(&mut self.outbuf),
            };
        }
        while self.outbuf.len() < WRITE_BUFFER {
            if let Some((pkid, message)) = state.resend.pop_front() {
                encode_publish(&mut self.outbuf, &message, QoS::AtLeastOnce, pkid, true);
                continue;
            }
            let next = client
                .session
                .lock()
                .take_next(&self.shared.settings.limits.queue);
            match next {
                Some(Outgoing::Publish { message, qos, pkid }) => {
                    self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                    encode_publish(&mut self.outbuf, &message, qos, pkid, false);
                }
                None => break,
            }
        }
    }

    /// Ends the session's connection: publishes the will unless the client
    /// said goodbye, and detaches the session.
    fn finish(&mut self, client: Client, ended: Ended) {
        let client_id = client.session.client_id.clone();
        match &ended {
            Ended::Clean => {
                log::debug!(target: "ledge::broker", "{} (`{}`) disconnected", self.peer, shorten(&client_id))
            }
            Ended::Lost(why) => {
                log::debug!(target: "ledge::broker", "{} (`{}`) lost: {why}", self.peer, shorten(&client_id))
            }
            Ended::TakenOver => {
                log::info!(target: "ledge::broker", "{} (`{}`) replaced by a newer connection with the same client id", self.peer, shorten(&client_id))
            }
            Ended::Shutdown => {}
        }
        if !matches!(ended, Ended::TakenOver) {
            self.shared.router().detach(&client_id, self.id);
        }
        if let (Some(will), Ended::Lost(_) | Ended::TakenOver) = (client.will, &ended) {
            self.shared.publish_internal(will);
        }
    }
}

/// Per-connection state of the serving loop.
struct RunState {
    resend: VecDeque<(u16, Arc<Message>)>,
    acks: VecDeque<OwedAck>,
    /// QoS 2 packet ids delivered and waiting for their PUBREL.
    awaiting_release: Vec<u16>,
    /// ledge asked to stop reading until it has room.
    held_back: bool,
    idle_deadline: Option<Instant>,
}

/// A deadline that never comes, for a timer that is not armed.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn flush(stream: &mut TcpStream, outbuf: &mut BytesMut) -> std::io::Result<()> {
    stream.write_all(outbuf).await?;
    outbuf.clear();
    Ok(())
}

/// Writes a PUBLISH without building rumqttc's `Publish` (which would copy
/// the topic for every subscriber).
pub(super) fn encode_publish(
    out: &mut BytesMut,
    message: &Message,
    qos: QoS,
    pkid: u16,
    dup: bool,
) {
    let topic = message.topic.as_bytes();
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id_len + message.payload.len();
    out.reserve(5 + remaining);
    out.put_u8(0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(message.retain));
    let mut length = remaining;
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if length == 0 {
            break;
        }
    }
    // Topics are checked to be at most 65,535 bytes when they come in.
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    if id_len > 0 {
        out.put_u16(pkid);
    }
    out.put_slice(&message.payload);
}

fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// At most 64 bytes of a client-supplied string, for log lines.
fn shorten(text: &str) -> &str {
    crate::logging::shorten(text, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Publish;

    #[test]
    fn encoded_publishes_decode_as_rumqttc_reads_them() {
        for (qos, pkid, payload_len) in [
            (QoS::AtMostOnce, 0, 0),
            (QoS::AtLeastOnce, 7, 100),
            (QoS::AtLeastOnce, 65_535, 20_000),
        ] {
            let mut message = Message::new("a/b", vec![7u8; payload_len], qos);
            message.retain = true;
            let mut out = BytesMut::new();
            encode_publish(&mut out, &message, qos, pkid, true);
            let Packet::Publish(decoded) = Packet::read(&mut out, 1 << 20).unwrap() else {
                panic!("not a publish")
            };
            let mut expected = Publish::from_bytes("a/b", qos, message.payload.clone());
            expected.pkid = pkid;
            expected.dup = true;
            expected.retain = true;
            assert_eq!(decoded, expected);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn log_lines_echo_at_most_64_characters() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"x".repeat(5000)).len(), 64);
        assert_eq!(shorten(&"é".repeat(100)).chars().count(), 32);
    }
}
