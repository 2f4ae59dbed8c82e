//! Best-effort publishing to the local broker.
//!
//! Worker threads hand messages to a bounded channel without blocking; one
//! async task pumps them into the MQTT client. When the broker is not
//! connected or the channel is full, the publish is refused at once (the
//! guest sees `ERR_UNAVAILABLE`) rather than piling up in memory: durable
//! delivery is the spool's job, not this sink's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

use super::{OutgoingMessage, PublishRefused, PublishSink, Qos};
use crate::mqtt::LinkState;

/// Messages waiting for the MQTT client.
const CHANNEL_CAPACITY: usize = 4096;

pub struct LocalPublisher {
    sender: mpsc::Sender<OutgoingMessage>,
    link: Arc<LinkState>,
}

impl LocalPublisher {
    /// The sink and the receiving end for [`pump`].
    pub fn new(link: Arc<LinkState>) -> (Self, mpsc::Receiver<OutgoingMessage>) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        (Self { sender, link }, receiver)
    }
}

impl PublishSink for LocalPublisher {
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused> {
        if !self.link.connected.load(Ordering::Acquire) {
            return Err(PublishRefused::NotConnected);
        }
        self.sender.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PublishRefused::Backlog,
            mpsc::error::TrySendError::Closed(_) => PublishRefused::NotConnected,
        })
    }
}

/// Moves messages from the channel into the client until every sender is
/// dropped and the channel is empty.
pub async fn pump(mut receiver: mpsc::Receiver<OutgoingMessage>, client: AsyncClient) {
    while let Some(message) = receiver.recv().await {
        let qos = match message.qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        log::trace!(target: "ledge::publish", "{} ({} bytes)", message.topic, message.payload.len());
        if let Err(e) = client
            .publish_bytes(message.topic, qos, false, message.payload)
            .await
        {
            log::warn!(target: "ledge::publish", "local publish dropped: {e}");
        }
    }
}
