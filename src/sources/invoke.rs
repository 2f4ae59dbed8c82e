//! Synchronous invocations over MQTT 5, on the link to an external broker
//! (subscribed to `ledge/<device>/invoke/+`).
//!
//! A request that carries an MQTT 5 response topic is answered there, with
//! the request's correlation data as a property and the payload as the
//! event (no envelope). A request without one (an MQTT 3.1.1 client) must be
//! the JSON envelope of `dispatch::sync`, answered on its `reply_to`. Used
//! with an external broker; the embedded broker speaks MQTT 3.1.1 only, and
//! there the main link takes envelope requests (`sources::mqtt`).

use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::AsyncClient;

use crate::dispatch::{sync, Routing};
use crate::event::{Event as LedgeEvent, EventSource};

/// Runs one synchronous request that came in on the link's invoke filter:
/// an MQTT 5 request with a response topic, or an envelope.
pub fn request(client: &AsyncClient, routing: &Routing, prefix: &str, publish: &Publish) {
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let Some(function) = topic.strip_prefix(prefix) else {
        return;
    };
    let properties = publish.properties.clone().unwrap_or_default();
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
