//! How a connection to upstream is made: the MQTT 5 options (Last Will,
//! credentials, limits) and, for `mqtts://`, the TLS transport.

use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::MqttOptions;

use super::presence;
use crate::config::{TlsFiles, UpstreamPlan};

/// QoS 1 publishes the uplink keeps in flight at most.
const OUTGOING_INFLIGHT: u16 = 1024;

/// The options of one connection attempt for `device`; `retain` says
/// whether the Last Will is retained.
pub(super) fn options(
    plan: &UpstreamPlan,
    device: &str,
    retain: bool,
) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(plan.client_id.clone(), plan.host.clone(), plan.port);
    options.set_keep_alive(plan.keep_alive);
    options.set_clean_start(true);
    // Published by the broker if this connection dies without a
    // DISCONNECT: the cloud learns the gateway is gone.
    options.set_last_will(LastWill::new(
        presence::topic(&plan.topic_prefix),
        presence::offline(device, "connection lost"),
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
    if let Some(user) = &plan.username {
        let password = plan
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    if let Some(files) = &plan.tls {
        options.set_transport(tls_transport(files)?);
    }
    // As on the local link: records are small, Nagle would hold them.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    Ok(options)
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
