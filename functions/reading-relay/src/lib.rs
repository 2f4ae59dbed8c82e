//! reading-relay: the MQTT → wasm → MQTT job of ledge's benchmarks, written
//! the way a lean production function would be.
//!
//! - Payload: a JSON reading, `{"value":31.5,"sensor":"t1"}`.
//! - Env: `THRESHOLD`, a number (default 30), read once per instance.
//! - Above the threshold it publishes at QoS 1 to `alerts/<sensor>`:
//!   `{"sensor":"t1","value":31.5,"seq":7,"ts_ns":1796190000000000000}`
//!   (`seq` counts this instance's alerts; `ts_ns` is the host clock).
//! - It responds with nothing; a payload that is not a reading fails.
//!
//! Unlike threshold-alert it neither logs nor answers with a verdict, so
//! the benchmark measures ledge, not formatting.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ledge_sdk::{Context, Event, Qos, now_ms, publish};
use serde::{Deserialize, Serialize};

const DEFAULT_THRESHOLD: f64 = 30.0;

static THRESHOLD: OnceLock<f64> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize)]
struct Reading<'a> {
    value: f64,
    #[serde(borrow, default)]
    sensor: Option<&'a str>,
}

#[derive(Serialize)]
struct Alert<'a> {
    sensor: &'a str,
    value: f64,
    seq: u64,
    ts_ns: u64,
}

fn handle(event: &Event, ctx: &Context) -> Result<&'static str, String> {
    let threshold = *THRESHOLD.get_or_init(|| {
        ctx.env("THRESHOLD")
            .and_then(|t| serde_json::from_str(t.trim()).ok())
            .unwrap_or(DEFAULT_THRESHOLD)
    });
    let reading: Reading = serde_json::from_slice(event.payload()).map_err(|e| e.to_string())?;
    if reading.value > threshold {
        let sensor = reading.sensor.unwrap_or("unknown");
        let alert = Alert {
            sensor,
            value: reading.value,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            ts_ns: now_ms().saturating_mul(1_000_000),
        };
        let body = serde_json::to_vec(&alert).map_err(|e| e.to_string())?;
        let mut topic = String::with_capacity(7 + sensor.len());
        topic.push_str("alerts/");
        topic.push_str(sensor);
        publish(&topic, &body, Qos::AtLeastOnce).map_err(|e| e.to_string())?;
    }
    Ok("")
}

ledge_sdk::handler!(handle);

#[cfg(test)]
mod tests {
    use ledge_sdk::mock;

    use super::handle;

    #[test]
    fn a_reading_above_the_threshold_is_republished_with_seq_and_time() {
        mock::set_env("THRESHOLD", "30");
        assert_eq!(
            mock::invoke(handle, br#"{"value":1000042,"sensor":"t1"}"#),
            Ok(Vec::new())
        );
        let sent = mock::published();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].topic, "alerts/t1");
        let alert: serde_json::Value = serde_json::from_slice(&sent[0].payload).unwrap();
        assert_eq!(alert["value"], 1000042.0);
        assert_eq!(alert["sensor"], "t1");
        assert!(alert["seq"].is_u64() && alert["ts_ns"].is_u64());
    }

    #[test]
    fn a_reading_below_is_not_and_garbage_fails() {
        mock::set_env("THRESHOLD", "30");
        assert_eq!(mock::invoke(handle, br#"{"value":3}"#), Ok(Vec::new()));
        assert!(mock::published().is_empty());
        assert!(mock::invoke(handle, b"not json").is_err());
    }
}
