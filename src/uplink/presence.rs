//! The retained `<prefix>/status` message that tells the cloud whether this
//! gateway is online: `online` on every connect, `offline` published on a
//! clean stop, and the same `offline` as the connection's Last Will, which
//! the broker publishes when the link dies without a DISCONNECT (power cut,
//! kill -9, a dead network). An outage of the link and a dead gateway look
//! the same to the broker; `started_ms` tells a restarted ledge from one
//! that only reconnected, `boot_ms` a rebooted gateway.

use crate::time::{boot_ms, started_ms};
use serde_json::json;

/// Where the status goes.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}/status")
}

/// The message published on connect.
pub fn online(device: &str) -> Vec<u8> {
    let mut doc = json!({
        "state": "online",
        "device": device,
        "version": env!("CARGO_PKG_VERSION"),
        "started_ms": started_ms(),
        "at_ms": crate::event::unix_ms(),
    });
    if let Some(boot) = boot_ms() {
        doc["boot_ms"] = boot.into();
    }
    doc.to_string().into_bytes()
}

/// The message for a link that ended: `reason` is `stopped` (published by
/// ledge itself) or `connection lost` (the Last Will).
pub fn offline(device: &str, reason: &str) -> Vec<u8> {
    json!({
        "state": "offline",
        "device": device,
        "version": env!("CARGO_PKG_VERSION"),
        "started_ms": started_ms(),
        "reason": reason,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_and_online_name_the_same_start() {
        let on: serde_json::Value = serde_json::from_slice(&online("gw")).unwrap();
        let off: serde_json::Value =
            serde_json::from_slice(&offline("gw", "connection lost")).unwrap();
        assert_eq!(on["state"], "online");
        assert_eq!(off["state"], "offline");
        assert_eq!(off["reason"], "connection lost");
        assert_eq!(on["started_ms"], off["started_ms"]);
    }
}
