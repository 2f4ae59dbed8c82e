//! The start of a connection: read the CONNECT in time, check the protocol
//! level and the login, attach (or take over) the session, answer CONNACK.

use super::*;

impl Connection {
    /// Reads the CONNECT within `connect_timeout`, checks it, attaches the
    /// session and answers with CONNACK. `None`: the connection is refused
    /// or gone (already logged).
    pub(super) async fn handshake(&mut self, stream: &mut TcpStream) -> Option<Client> {
        let deadline = self.shared.settings.connect_timeout;
        let packet = match tokio::time::timeout(deadline, self.read_connect(stream)).await {
            Ok(Ok(packet)) => packet,
            Ok(Err(reason)) => {
                self.refuse_quietly(&reason);
                return None;
            }
            Err(_) => {
                self.shared
                    .counters
                    .connect_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                self.refuse_quietly(&format!("no CONNECT within {}s", deadline.as_secs()));
                return None;
            }
        };
        let Packet::Connect(connect) = packet else {
            self.refuse_quietly("the first packet was not CONNECT");
            return None;
        };
        let mut client_id = connect.client_id;
        let clean = connect.clean_session;
        if let Err(code) = self.check_login(connect.login).await {
            return self.refuse(stream, code, "bad user name or password").await;
        }
        if client_id.is_empty() {
            if !clean {
                return self
                    .refuse(
                        stream,
                        ConnectReturnCode::BadClientId,
                        "an empty client id needs clean_session",
                    )
                    .await;
            }
            client_id = format!("auto-{}", self.id);
        }
        if client_id.starts_with(&self.shared.settings.reserved_client_prefix) {
            // ledge's own link never connects over TCP; a client using its
            // prefix is either confused or trying to take ledge's place.
            self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            log::warn!(target: "ledge::broker", "{}: client id `{}` refused: the prefix `{}` is reserved for ledge", self.peer, shorten(&client_id), self.shared.settings.reserved_client_prefix);
            return self
                .refuse_with(stream, ConnectReturnCode::BadClientId)
                .await;
        }
        let will = connect.last_will.and_then(|will| {
            validate_topic_name(&will.topic).ok()?;
            Some(Arc::new(Message {
                topic: will.topic,
                payload: will.message,
                qos: crate::broker::message::min_qos(will.qos, QoS::AtLeastOnce),
                retain: will.retain,
                depth: 0,
            }))
        });
        let attached = self.shared.router().attach(&client_id, clean, self.id);
        let resend = if attached.resumed {
            attached.session.lock().unacknowledged().into()
        } else {
            VecDeque::new()
        };
        let ack = ConnAck::new(ConnectReturnCode::Success, attached.resumed);
        if ack.write(&mut self.outbuf).is_err() || flush(stream, &mut self.outbuf).await.is_err() {
            self.shared.router().detach(&client_id, self.id);
            return None;
        }
        log::debug!(target: "ledge::broker", "{} connected as `{}` (clean session: {clean})", self.peer, shorten(&client_id));
        let keep_alive =
            (connect.keep_alive > 0).then(|| Duration::from_secs(u64::from(connect.keep_alive)));
        Some(Client {
            session: attached.session,
            keep_alive,
            will,
            resend,
        })
    }

    /// Reads until one whole packet is in: the CONNECT.
    async fn read_connect(&mut self, stream: &mut TcpStream) -> Result<Packet, String> {
        loop {
            if let Some(level) = protocol_level(&self.inbuf) {
                if level != 4 {
                    // MQTT 3.1 (level 3) and 5 are not spoken here.
                    let _ = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false)
                        .write(&mut self.outbuf);
                    let _ = flush(stream, &mut self.outbuf).await;
                    return Err(format!(
                        "MQTT protocol level {level} is not supported (3.1.1 only)"
                    ));
                }
            }
            match Packet::read(&mut self.inbuf, self.shared.settings.max_packet) {
                Ok(packet) => return Ok(packet),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("malformed CONNECT: {e}")),
            }
            self.inbuf.reserve(READ_CHUNK);
            match stream.read_buf(&mut self.inbuf).await {
                Ok(0) => return Err("closed before CONNECT".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Checks the login against the users file, if there is one. PBKDF2 is
    /// slow on purpose, so it runs off the I/O task.
    async fn check_login(
        &self,
        login: Option<rumqttc::mqttbytes::v4::Login>,
    ) -> Result<(), ConnectReturnCode> {
        let Some(users) = self.shared.settings.users.clone() else {
            return Ok(());
        };
        let Some(login) = login else {
            return Err(ConnectReturnCode::NotAuthorized);
        };
        let verified = tokio::task::spawn_blocking(move || {
            users.verify(&login.username, login.password.as_bytes())
        })
        .await
        .unwrap_or(false);
        if verified {
            Ok(())
        } else {
            Err(ConnectReturnCode::BadUserNamePassword)
        }
    }

    async fn refuse(
        &mut self,
        stream: &mut TcpStream,
        code: ConnectReturnCode,
        why: &str,
    ) -> Option<Client> {
        self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        log::warn!(target: "ledge::broker", "{}: connection refused: {why}", self.peer);
        self.refuse_with(stream, code).await
    }

    async fn refuse_with(
        &mut self,
        stream: &mut TcpStream,
        code: ConnectReturnCode,
    ) -> Option<Client> {
        let _ = ConnAck::new(code, false).write(&mut self.outbuf);
        let _ = flush(stream, &mut self.outbuf).await;
        None
    }

    fn refuse_quietly(&self, why: &str) {
        log::debug!(target: "ledge::broker", "{}: connection dropped: {why}", self.peer);
    }
}

/// The protocol level byte of a CONNECT at the start of `buffer`, once
/// enough bytes are in to see it.
fn protocol_level(buffer: &[u8]) -> Option<u8> {
    if buffer.first()? >> 4 != 1 {
        return None;
    }
    // Fixed header: 1 byte + 1-4 bytes of remaining length.
    let mut index = 1;
    while buffer.get(index)? & 0x80 != 0 {
        index += 1;
        if index > 4 {
            return None;
        }
    }
    // Then the protocol name (2-byte length + "MQTT"), then the level.
    let name_len = usize::from(u16::from_be_bytes([
        *buffer.get(index + 1)?,
        *buffer.get(index + 2)?,
    ]));
    buffer.get(index + 3 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn the_protocol_level_is_read_from_a_partial_connect() {
        let mut connect = BytesMut::new();
        rumqttc::mqttbytes::v4::Connect::new("c")
            .write(&mut connect)
            .unwrap();
        assert_eq!(protocol_level(&connect), Some(4));
        assert_eq!(protocol_level(&connect[..5]), None);
        assert_eq!(protocol_level(&[0x30, 0]), None, "not a CONNECT");
    }
}
