//! thermostat: switches a heater relay with hysteresis from temperature
//! readings. The relay logic is local and needs no network; what the
//! function reports goes upstream through the spool when there is a link.
//!
//! - Payload: a sensor event, `{"sensor":"room","value":18.7,...}` (see
//!   `ledge-reading`), or a sensor error event (`"quality":"error"`).
//! - Env: `LOW` and `HIGH` (JSON numbers, default 19 and 21): the heater
//!   goes on below `LOW`, off above `HIGH`, and between them stays as it is,
//!   so a temperature hovering near one threshold does not flap the relay.
//!   `RELAY` names the `[[gpio_output]]` (default `heater`); the function
//!   needs it in `allow_gpio`.
//! - The relay's own state is the memory: the function reads it back
//!   (`gpio::read`) instead of keeping it, so a restarted instance, a reload
//!   or a reboot (the relay starts in its safe state, off) all agree.
//! - A sensor error turns the heater off: heating blind is the unsafe choice.
//! - Each reading is forwarded to `thermostat/readings`, each switch and
//!   sensor error to `thermostat/alerts` (upstream, durable: kept in the
//!   spool while offline), and switches are also published locally on
//!   `alerts/thermostat`. Without an `[upstream]` the forwards are skipped.
//! - It responds `{"sensor":"room","value":18.7,"heating":true,"switched":true}`.

use ledge_reading::Reading;
use ledge_sdk::{Context, Event, PublishError, Qos, forward, gpio, info, publish, warn};
use serde::{Deserialize, Serialize};

const DEFAULT_LOW: f64 = 19.0;
const DEFAULT_HIGH: f64 = 21.0;
const DEFAULT_RELAY: &str = "heater";

/// What the heater should do at `value`, given whether it is on now.
pub fn decide(value: f64, heating: bool, low: f64, high: f64) -> bool {
    if value < low {
        true
    } else if value > high {
        false
    } else {
        heating
    }
}

/// The settings from env.
struct Settings {
    low: f64,
    high: f64,
    relay: String,
}

fn settings(ctx: &Context) -> Result<Settings, String> {
    let low = number(ctx.env("LOW").as_deref(), "LOW", DEFAULT_LOW)?;
    let high = number(ctx.env("HIGH").as_deref(), "HIGH", DEFAULT_HIGH)?;
    if low > high {
        return Err("LOW must not be above HIGH".into());
    }
    let relay = ctx.env("RELAY").unwrap_or_else(|| DEFAULT_RELAY.into());
    Ok(Settings { low, high, relay })
}

/// A JSON number from env (no NaN or inf, and no float parser linked in).
fn number(text: Option<&str>, key: &str, default: f64) -> Result<f64, String> {
    match text {
        None => Ok(default),
        Some(text) => serde_json::from_str::<f64>(text.trim())
            .map_err(|_| format!("{key} is not a number: {text:?}")),
    }
}

/// Only the `quality` of a sensor event, to tell errors from readings.
#[derive(Deserialize)]
struct Quality<'a> {
    #[serde(borrow)]
    sensor: Option<&'a str>,
    #[serde(borrow)]
    quality: Option<&'a str>,
    #[serde(borrow)]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct Report<'a> {
    sensor: &'a str,
    value: Option<f64>,
    heating: bool,
    switched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn handle(event: &Event, ctx: &Context) -> Result<String, String> {
    let settings = settings(ctx)?;
    let heating =
        gpio::read(&settings.relay).map_err(|e| format!("relay `{}`: {e}", settings.relay))?;
    let quality: Option<Quality<'_>> = serde_json::from_slice(event.payload()).ok();
    if let Some(Quality {
        sensor,
        quality: Some("error"),
        error,
    }) = quality
    {
        let sensor = sensor.map_or_else(|| event.subject(), String::from);
        return sensor_failed(&sensor, error.unwrap_or("sensor error"), heating, &settings);
    }
    let reading = Reading::from_event(event).map_err(|e| e.to_string())?;
    let want = decide(reading.value, heating, settings.low, settings.high);
    if want != heating {
        gpio::write(&settings.relay, want)
            .map_err(|e| format!("relay `{}`: {e}", settings.relay))?;
    }
    let report = to_json(&Report {
        sensor: &reading.sensor,
        value: Some(reading.value),
        heating: want,
        switched: want != heating,
        error: None,
    })?;
    upstream("thermostat/readings", &report);
    if want != heating {
        info!("heater {}: {report}", if want { "on" } else { "off" });
        alert(&report);
    }
    Ok(report)
}

ledge_sdk::handler!(handle);

fn sensor_failed(
    sensor: &str,
    error: &str,
    heating: bool,
    settings: &Settings,
) -> Result<String, String> {
    if heating {
        gpio::write(&settings.relay, false)
            .map_err(|e| format!("relay `{}`: {e}", settings.relay))?;
    }
    let report = to_json(&Report {
        sensor,
        value: None,
        heating: false,
        switched: heating,
        error: Some(error),
    })?;
    warn!("sensor failed, heater off: {report}");
    alert(&report);
    Ok(report)
}

/// An alert: locally at once, and upstream through the spool.
fn alert(report: &str) {
    if let Err(e) = publish("alerts/thermostat", report, Qos::AtLeastOnce) {
        warn!("alert not published locally: {e}");
    }
    upstream("thermostat/alerts", report);
}

/// Forwards upstream; having no upstream at all is not a problem.
fn upstream(topic: &str, body: &str) {
    match forward(topic, body) {
        Ok(()) | Err(PublishError::Unavailable) => {}
        Err(e) => warn!("{topic} not forwarded: {e}"),
    }
}

fn to_json(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|err| format!("encoding JSON: {err}"))
}

#[cfg(test)]
mod tests;
