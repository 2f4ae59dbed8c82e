//! The embedded local MQTT broker (rumqttd), so `ledge run` needs no broker
//! installed first.
//!
//! It runs on its own threads (rumqttd starts a router thread and one per
//! listener, each with its own tokio runtime) and ledge connects to it over
//! loopback like any other client, so the rest of ledge cannot tell an
//! embedded broker from mosquitto. Built only with the `local-broker` feature
//! (on by default; ~1.1 MB of binary).

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source} (is another MQTT broker running there? set [broker] listen, or url to use it)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded broker: {0}")]
    Start(String),
}

/// Starts the broker on `listen` and returns once its threads are running.
/// Messages up to `max_message` bytes are accepted.
#[cfg(feature = "local-broker")]
pub fn start(listen: SocketAddr, max_message: usize) -> Result<(), BrokerError> {
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
    use std::collections::HashMap;
    use std::net::TcpListener;

    // rumqttd reports a bind failure only in a log line from its own thread;
    // probe first so the user gets a clear error and a non-zero exit.
    TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })?;

    let connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: max_message,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "local".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            // rumqttd's own defaults are 100 MiB × 10 segments per filter:
            // far too much for a 512 MB gateway.
            // Segments hold messages for subscribers that lag; two of one
            // message's size each keep RSS flat under load (measured: 4 of
            // 1 MiB grew to 39 MiB in a minute at 1,000 msg/s).
            max_segment_size: max_message.max(256 << 10),
            max_segment_count: 2,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("local".to_owned(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("broker".to_owned())
        .spawn(move || {
            if let Err(e) = broker.start() {
                log::error!(target: "ledge::broker", "embedded broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    log::info!(target: "ledge::broker", "embedded MQTT broker listening on {listen}");
    Ok(())
}

#[cfg(not(feature = "local-broker"))]
pub fn start(_listen: SocketAddr, _max_message: usize) -> Result<(), BrokerError> {
    Err(BrokerError::Start(
        "this ledge was built without the `local-broker` feature".to_owned(),
    ))
}
