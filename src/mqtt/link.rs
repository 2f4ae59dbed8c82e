//! Starts ledge's link to the local broker: the embedded broker with ledge
//! plugged in, or a client connection to an external one. Either way the
//! link takes the same three things: the MQTT source that routes incoming
//! messages, the outboxes functions publish into, and the subscription set
//! (a watch, so a reload can change it).

use std::sync::Arc;

use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::LinkState;
use crate::config::{BrokerMode, Plan};
use crate::dispatch::{Overflow, Routing};
use crate::sinks::local::Outboxes;
use crate::sources::mqtt::{settle, MqttSource, Wait};
use crate::topic::TopicFilter;

/// A running link.
pub struct Link {
    /// Follows the subscription set (embedded) or drives the client
    /// (external) until the stop signal.
    pub task: JoinHandle<()>,
    /// Moves the outboxes into the broker; ends once they are closed and
    /// empty.
    pub pump: JoinHandle<()>,
    #[cfg(feature = "local-broker")]
    pub broker: Option<crate::broker::Broker>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[cfg(feature = "local-broker")]
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[cfg(not(feature = "local-broker"))]
    #[error("this ledge was built without the embedded broker (feature `local-broker`)")]
    NoEmbeddedBroker,
}

/// Everything a link needs from the node.
pub struct LinkParts<'a> {
    pub plan: &'a Plan,
    pub source: MqttSource,
    pub routing: &'a Routing,
    pub outboxes: &'a Arc<Outboxes>,
    pub state: &'a Arc<LinkState>,
    /// "A full queue has room again": held-back clients read again.
    #[cfg_attr(not(feature = "local-broker"), allow(dead_code))]
    pub room: &'a Arc<Notify>,
    pub filters: watch::Receiver<Vec<TopicFilter>>,
    pub stop: watch::Receiver<bool>,
}

impl Link {
    pub async fn start(parts: LinkParts<'_>) -> Result<Self, LinkError> {
        match &parts.plan.broker.mode {
            BrokerMode::Embedded { listen } => embedded(*listen, parts).await,
            BrokerMode::External { .. } => Ok(external(parts)),
        }
    }
}

#[cfg(feature = "local-broker")]
async fn embedded(listen: std::net::SocketAddr, parts: LinkParts<'_>) -> Result<Link, LinkError> {
    use crate::broker::{Broker, Settings};
    let plan = parts.plan;
    // The embedded broker takes messages up to 4× max_payload so ledge can
    // reject oversized ones with a clear log line instead of the client
    // seeing its connection dropped.
    let settings = Settings {
        listen,
        max_connections: plan.broker.local.max_connections,
        connect_timeout: plan.broker.local.connect_timeout,
        max_packet: plan
            .broker
            .max_payload
            .saturating_mul(4)
            .saturating_add(64 << 10),
        limits: crate::broker::GATEWAY_LIMITS,
        users: plan.broker.local.users.clone(),
        reserved_client_prefix: "ledge-".to_owned(),
    };
    let local = Arc::new(super::embedded::LocalSide {
        source: parts.source,
        routing: parts.routing.clone(),
    });
    let broker = Broker::start(settings, local, Arc::clone(parts.room)).await?;
    parts
        .state
        .connected
        .store(true, std::sync::atomic::Ordering::Release);
    let mut filters = parts.filters;
    let wanted = filters.borrow_and_update().clone();
    let count = wanted.len();
    broker.set_local_filters(wanted);
    parts
        .state
        .subscribed
        .store(true, std::sync::atomic::Ordering::Release);
    log::info!(target: "ledge::mqtt", "subscribed to {count} trigger filters (triggers, forwards and synchronous invokes), in-process");
    let pump = tokio::spawn(super::embedded::pump(
        Arc::clone(parts.outboxes),
        broker.clone(),
    ));
    let task = {
        let broker = broker.clone();
        let mut stop = parts.stop;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = filters.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        broker.set_local_filters(filters.borrow_and_update().clone());
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    };
    Ok(Link {
        task,
        pump,
        broker: Some(broker),
    })
}

#[cfg(not(feature = "local-broker"))]
async fn embedded(_listen: std::net::SocketAddr, _parts: LinkParts<'_>) -> Result<Link, LinkError> {
    Err(LinkError::NoEmbeddedBroker)
}

fn external(parts: LinkParts<'_>) -> Link {
    let persistent = MqttSource::needs_manual_acks(parts.plan);
    let (client, eventloop) = super::connect(&parts.plan.broker, persistent);
    let pump = tokio::spawn(super::pump(
        Arc::clone(parts.outboxes),
        client.clone(),
        parts.filters.clone(),
    ));
    let acks = persistent.then(|| {
        let (acks, queue) = mpsc::unbounded_channel();
        tokio::spawn(acknowledge_in_order(client.clone(), queue));
        acks
    });
    let source = parts.source;
    let routing = parts.routing.clone();
    let invoke_prefix = format!("ledge/{}/invoke/", parts.plan.device.id);
    let replies = client.clone();
    let task = tokio::spawn(super::drive(
        client,
        eventloop,
        parts.filters,
        Arc::clone(parts.state),
        parts.stop,
        move |publish: Publish| {
            let ack = |publish: Publish, waits: Vec<Wait>| match (&acks, publish.qos) {
                (Some(acks), QoS::AtLeastOnce | QoS::ExactlyOnce) => {
                    // Only the packet id and QoS are needed to acknowledge:
                    // the topic and payload are not kept while waiting.
                    let mut key = Publish::new("", publish.qos, bytes::Bytes::new(), None);
                    key.pkid = publish.pkid;
                    let _ = acks.send((key, waits));
                }
                _ => {
                    if waits.iter().any(|w| matches!(w, Wait::Append { .. })) {
                        tokio::spawn(settle(waits));
                    }
                }
            };
            // MQTT topics are UTF-8; anything else has nothing to route to.
            let Ok(topic) = std::str::from_utf8(&publish.topic) else {
                return ack(publish, Vec::new());
            };
            if topic.starts_with(&invoke_prefix) {
                crate::sources::invoke::request(&replies, &routing, &invoke_prefix, &publish);
                return ack(publish, Vec::new());
            }
            // A client of another broker cannot be held back from here:
            // what does not fit a queue spills into the function's stream.
            let depth = publish
                .properties
                .as_ref()
                .and_then(|p| {
                    p.user_properties
                        .iter()
                        .find(|(k, _)| k == super::DEPTH_PROPERTY)
                })
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let taken = source.incoming(&routing, topic, &publish.payload, depth, Overflow::Spill);
            ack(publish, taken.waits);
        },
    ));
    Link {
        task,
        pump,
        #[cfg(feature = "local-broker")]
        broker: None,
    }
}

/// Acknowledges messages in arrival order, each once what it waits for is
/// stored. Ends when the link is dropped. If storage fails for good, the
/// remaining messages stay unacknowledged and the broker redelivers them
/// after the next reconnect.
async fn acknowledge_in_order(
    client: AsyncClient,
    mut queue: mpsc::UnboundedReceiver<(Publish, Vec<Wait>)>,
) {
    while let Some((publish, waits)) = queue.recv().await {
        if !settle(waits).await {
            return;
        }
        if client.ack(&publish).await.is_err() {
            return;
        }
    }
}
