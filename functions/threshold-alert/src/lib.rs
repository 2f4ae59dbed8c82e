//! threshold-alert: publishes an alert when a sensor reading is above a
//! threshold.
//!
//! - Payload: a reading, `{"value":31.5,"sensor":"t1"}` or `31.5` (see
//!   `ledge-reading` for the format and how the sensor is named).
//! - Env: `THRESHOLD`, a JSON number such as `30` or `27.5` (default 30.0).
//! - Above the threshold (strictly), it publishes at QoS 1 to
//!   `alerts/<sensor>`: `{"sensor":"t1","value":31.5,"threshold":30.0,"request_id":"…"}`.
//! - It responds `{"alert":true|false,"sensor":"t1","value":31.5}`.

use ledge_reading::Reading;
use ledge_sdk::{Context, Event, Qos, info, publish};
use serde::Serialize;

/// The threshold when `THRESHOLD` is unset.
const DEFAULT_THRESHOLD: f64 = 30.0;

/// What is published to `alerts/<sensor>`.
#[derive(Serialize)]
struct Alert<'a> {
    sensor: &'a str,
    value: f64,
    threshold: f64,
    request_id: &'a str,
}

/// The invocation's response.
#[derive(Serialize)]
struct Verdict<'a> {
    alert: bool,
    sensor: &'a str,
    value: f64,
}

fn handle(event: &Event, ctx: &Context) -> Result<String, String> {
    let threshold = threshold(ctx.env("THRESHOLD").as_deref())?;
    let reading = Reading::from_event(event).map_err(|err| err.to_string())?;
    let alert = reading.value > threshold;
    if alert {
        let topic = format!("alerts/{}", reading.sensor);
        let request_id = ctx.request_id();
        let message = Alert {
            sensor: &reading.sensor,
            value: reading.value,
            threshold,
            request_id: &request_id,
        };
        let body = to_json(&message)?;
        publish(&topic, &body, Qos::AtLeastOnce)
            .map_err(|err| format!("alert for {} not sent to {topic}: {err}", reading.sensor))?;
        // The JSON already carries the numbers; formatting them again with
        // `{}` would link core's float printer (about 18 KB of wasm).
        info!("alert sent to {topic}: {body}");
    }
    to_json(&Verdict {
        alert,
        sensor: &reading.sensor,
        value: reading.value,
    })
}

ledge_sdk::handler!(handle);

/// The threshold from the `THRESHOLD` env value, if set.
fn threshold(configured: Option<&str>) -> Result<f64, String> {
    let Some(text) = configured else {
        return Ok(DEFAULT_THRESHOLD);
    };
    // Read as a JSON number, like the readings: the same syntax for both, no
    // "NaN" or "inf" (which would make every comparison meaningless), and it
    // reuses the JSON parser instead of linking core's (about 14 KB of wasm).
    serde_json::from_str::<f64>(text.trim())
        .map_err(|_| format!("THRESHOLD is not a number: {text:?}"))
}

fn to_json(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|err| format!("encoding JSON: {err}"))
}

#[cfg(test)]
mod tests;
