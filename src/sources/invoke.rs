//! Synchronous invocations over MQTT 5: a dedicated MQTT 5 connection to the
//! local broker, subscribed to `ledge/<device>/invoke/+`.
//!
//! A request that carries an MQTT 5 response topic is answered there, with
//! the request's correlation data as a property and the payload as the
//! event (no envelope). A request without one (an MQTT 3.1.1 client) must be
//! the JSON envelope of `dispatch::sync`, answered on its `reply_to`. Used
//! with an external broker; the embedded broker speaks MQTT 3.1.1 only, and
//! there the main link takes envelope requests (`sources::mqtt`).

use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::watch;

use crate::config::BrokerPlan;
use crate::dispatch::{sync, Routing};
use crate::event::{Event as LedgeEvent, EventSource};
use crate::mqtt::Backoff;

/// Serves synchronous requests until `shutdown` changes.
pub async fn serve(
    broker: BrokerPlan,
    device: String,
    routing: Routing,
    mut shutdown: watch::Receiver<bool>,
) {
    let (host, port) = broker.mode.client_address();
    let mut options = MqttOptions::new(format!("{}-invoke", broker.client_id), host, port);
    options.set_keep_alive(broker.keep_alive);
    options.set_max_packet_size(Some(
        broker
            .max_payload
            .saturating_mul(4)
            .saturating_add(64 << 10) as u32,
    ));
    if let Some(user) = &broker.username {
        let password = broker.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user.clone(), password);
    }
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let filter = format!("ledge/{device}/invoke/+");
    let prefix = format!("ledge/{device}/invoke/");
    let mut backoff = Backoff::default();
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = shutdown.changed() => {
                let _ = client.try_disconnect();
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    log::error!(target: "ledge::invoke", "cannot subscribe to `{filter}`: {e}");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                log::info!(target: "ledge::invoke", "synchronous invokes (MQTT 5 and envelope) on `{filter}`");
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                request(&client, &routing, &prefix, publish);
            }
            Ok(_) => {}
            Err(e) => {
                let delay = backoff.next_delay();
                if backoff.attempts == 1 {
                    log::warn!(target: "ledge::invoke", "invoke link to the local broker: {e}; retrying with backoff");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

fn request(client: &AsyncClient, routing: &Routing, prefix: &str, publish: Publish) {
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let Some(function) = topic.strip_prefix(prefix) else {
        return;
    };
    let properties = publish.properties.unwrap_or_default();
    let (reply, payload) = match properties.response_topic {
        Some(response_topic) => {
            if let Err(e) = crate::topic::validate_topic_name(&response_topic) {
                log::warn!(target: "ledge::invoke", "synchronous request on `{topic}` ignored: response topic `{response_topic}`: {e}");
                return;
            }
            let reply = sync::Reply {
                topic: response_topic,
                correlation_id: None,
                via: sync::ReplyPath::Mqtt5 {
                    client: client.clone(),
                    correlation_data: properties.correlation_data,
                },
            };
            (reply, publish.payload.to_vec())
        }
        None => match sync::parse_request(&publish.payload) {
            Ok(envelope) => {
                let reply = sync::Reply {
                    topic: envelope.reply_to,
                    correlation_id: envelope.correlation_id,
                    via: sync::ReplyPath::Mqtt5 {
                        client: client.clone(),
                        correlation_data: None,
                    },
                };
                (reply, envelope.payload)
            }
            Err(e) => {
                log::warn!(target: "ledge::invoke", "synchronous request on `{topic}` ignored: {e} (MQTT 5 clients: set a response topic)");
                return;
            }
        },
    };
    let event = LedgeEvent::new(EventSource::Invoke, topic.clone(), payload);
    routing.submit_sync(function, event, reply);
}
