//! `[broker]`: the local MQTT broker ledge's functions talk through, either
//! the embedded one (and how it treats its local clients) or an external
//! one (`url`). The MQTT URL and keep-alive rules here serve `[upstream]`
//! too.
//!
//! Files read: `users_file` (the embedded broker's logins, at most
//! [`USERS_FILE_LIMIT`]). `password_file` is read by [`super::secrets`].

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::Resolver;
use crate::config::files::read_capped;
use crate::config::plan::{BrokerMode, BrokerPlan, LocalBrokerPlan};
use crate::config::raw::RawBroker;
use crate::users::Users;

/// Default largest event payload, publish or response.
const DEFAULT_MAX_PAYLOAD: u64 = 256 << 10;
/// The local MQTT listener of the embedded broker.
const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// Default cap on the embedded broker's client connections. A gateway has a
/// handful of local clients; 128 leaves room for reconnect storms while
/// bounding memory (tens of KiB per idle connection).
const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default time a new client connection has to send CONNECT: idle sockets
/// cannot hold connection slots for longer.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A users file larger than this is refused (it is a few lines per client).
const USERS_FILE_LIMIT: u64 = 1 << 20;

impl Resolver<'_> {
    pub(super) fn broker(&mut self, raw: RawBroker, device_id: &str) -> BrokerPlan {
        let mode = self.broker_mode(&raw);
        let client_id = match &raw.client_id {
            Some(id) if id.get_ref().is_empty() || id.get_ref().len() > 128 => {
                self.fail(id.span(), "client_id must be 1-128 characters");
                String::new()
            }
            Some(id) => id.get_ref().clone(),
            None => format!("ledge-{device_id}"),
        };
        let keep_alive = self.keep_alive(&raw.keep_alive);
        let password = self.password(&raw.password_file, &raw.password_env);
        let local = self.local_broker(&raw, &mode);
        let max_payload = self.size(&raw.max_payload, DEFAULT_MAX_PAYLOAD);
        if let Some(mp) = &raw.max_payload {
            if !(1..=(256 << 20)).contains(&max_payload) {
                self.fail(mp.span(), "max_payload must be between 1B and 256MiB");
            }
        }
        BrokerPlan {
            mode,
            local,
            client_id,
            keep_alive,
            username: raw.username,
            password,
            max_payload: max_payload as usize,
        }
    }

    /// The embedded broker's client settings. Listening beyond loopback
    /// without a users file is refused: anything reachable from the network
    /// must ask for a login.
    fn local_broker(&mut self, raw: &RawBroker, mode: &BrokerMode) -> LocalBrokerPlan {
        let max_connections = self.positive(&raw.max_connections, DEFAULT_MAX_CONNECTIONS, 100_000);
        let connect_timeout = self.duration(&raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        if let Some(timeout) = &raw.connect_timeout {
            if connect_timeout.is_zero() {
                self.fail(timeout.span(), "connect_timeout must be longer than zero");
            }
        }
        let users = raw.users_file.as_ref().and_then(|file| {
            let path = self.path(file.get_ref());
            match read_capped(&path, USERS_FILE_LIMIT) {
                Ok(bytes) => match Users::parse(&String::from_utf8_lossy(&bytes)) {
                    Ok(users) => Some(std::sync::Arc::new(users)),
                    Err(e) => {
                        self.fail(file.span(), format!("users file {}: {e}", file.get_ref()));
                        None
                    }
                },
                Err(e) => {
                    self.fail(
                        file.span(),
                        format!("cannot read users file {}: {e}", file.get_ref()),
                    );
                    None
                }
            }
        });
        let embedded = matches!(mode, BrokerMode::Embedded { .. });
        for (key, span) in [
            (
                "max_connections",
                raw.max_connections.as_ref().map(Spanned::span),
            ),
            (
                "connect_timeout",
                raw.connect_timeout.as_ref().map(Spanned::span),
            ),
            ("users_file", raw.users_file.as_ref().map(Spanned::span)),
        ] {
            if let (false, Some(span)) = (embedded, span) {
                self.fail(span, format!("{key} applies to the embedded broker only; this config uses an external one (`url`)"));
            }
        }
        if let (BrokerMode::Embedded { listen }, None) = (mode, &users) {
            if !listen.ip().is_loopback() {
                let span = raw.listen.as_ref().map(Spanned::span).unwrap_or(0..0);
                self.fail(span, format!("the embedded broker listens on {listen}, beyond this machine, without a users_file: set users_file (make its lines with `ledge passwd NAME`) or listen on 127.0.0.1"));
            }
        }
        LocalBrokerPlan {
            max_connections,
            connect_timeout,
            users,
        }
    }

    fn broker_mode(&mut self, raw: &RawBroker) -> BrokerMode {
        let embedded = raw.embedded.as_ref().map(|e| *e.get_ref());
        match (&raw.url, embedded) {
            (Some(url), Some(true)) => {
                self.fail(
                    url.span(),
                    "set either `url` (an external broker) or `embedded = true`, not both",
                );
                BrokerMode::External {
                    host: String::new(),
                    port: 0,
                }
            }
            (Some(url), _) => match parse_broker_url(url.get_ref(), false) {
                Ok((_, host, port)) => BrokerMode::External { host, port },
                Err(e) => {
                    self.fail(url.span(), e);
                    BrokerMode::External {
                        host: String::new(),
                        port: 0,
                    }
                }
            },
            (None, Some(false)) => {
                let span = raw.embedded.as_ref().map(Spanned::span).unwrap_or(0..0);
                self.fail(
                    span,
                    "`embedded = false` needs a `url` for the external broker",
                );
                BrokerMode::External {
                    host: String::new(),
                    port: 0,
                }
            }
            (None, _) => {
                let listen = raw
                    .listen
                    .as_ref()
                    .map(|l| (l.get_ref().as_str(), l.span()))
                    .unwrap_or((DEFAULT_LISTEN, 0..0));
                if !cfg!(feature = "local-broker") {
                    self.fail(
                        listen.1.clone(),
                        "this ledge was built without the embedded broker (feature `local-broker`); set `url` to an external broker",
                    );
                }
                match listen.0.parse::<SocketAddr>() {
                    Ok(addr) => BrokerMode::Embedded { listen: addr },
                    Err(_) => {
                        self.fail(
                            listen.1,
                            format!("`{}` is not an address like 127.0.0.1:1883", listen.0),
                        );
                        BrokerMode::Embedded {
                            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
                        }
                    }
                }
            }
        }
    }

    /// An MQTT keep-alive: 30 s unless set, 5 s to 65535 s (the MQTT 5
    /// client refuses less than 5 s, and the field has 16 bits).
    pub(super) fn keep_alive(&mut self, raw: &Option<Spanned<String>>) -> Duration {
        let keep_alive = self.duration(raw, Duration::from_secs(30));
        if let Some(ka) = raw {
            if keep_alive < Duration::from_secs(5) || keep_alive > Duration::from_secs(65_535) {
                self.fail(ka.span(), "keep_alive must be between 5s and 65535s");
            }
        }
        keep_alive
    }
}

/// Parses `mqtt://host[:port]` or, where `tls_allowed`, `mqtts://host[:port]`;
/// returns (tls, host, port) with default ports 1883 and 8883. IPv6 hosts
/// go in brackets.
pub(super) fn parse_broker_url(
    url: &str,
    tls_allowed: bool,
) -> Result<(bool, String, u16), String> {
    let (tls, rest) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) if tls_allowed => (true, rest),
        (None, Some(_)) => {
            return Err(format!(
                "`{url}`: TLS to the local broker is not supported; use mqtt:// on loopback"
            ))
        }
        (None, None) => {
            return Err(format!(
                "`{url}` is not an mqtt:// URL (for example mqtt://127.0.0.1:1883)"
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("`{url}` has no valid host"));
    }
    let port = match port {
        None if tls => 8883,
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{url}`: `{p}` is not a port number"))?,
    };
    Ok((tls, host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::plan;

    /// `mqtt://` only, as `[broker] url` takes it: (host, port).
    fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
        parse_broker_url(url, false).map(|(_, host, port)| (host, port))
    }

    #[test]
    fn broker_url_and_embedded_are_exclusive() {
        let err = plan("[broker]\nembedded = true\nurl = \"mqtt://127.0.0.1:1883\"\n").unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let ext = plan("[broker]\nurl = \"mqtt://[::1]:18830\"\n").unwrap();
        assert_eq!(
            ext.broker.mode,
            BrokerMode::External {
                host: "::1".into(),
                port: 18830
            }
        );
    }

    #[test]
    fn mqtt_urls_are_parsed_with_default_port() {
        assert_eq!(
            parse_mqtt_url("mqtt://gw.local"),
            Ok(("gw.local".into(), 1883))
        );
        assert_eq!(
            parse_mqtt_url("mqtt://10.0.0.2:1884/"),
            Ok(("10.0.0.2".into(), 1884))
        );
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(parse_mqtt_url("mqtt://x:99999").is_err());
        assert!(parse_mqtt_url("mqtts://x").unwrap_err().contains("TLS"));
    }
}
