//! moving-average: averages each sensor's readings over windows of `WINDOW`
//! readings and publishes every completed window's average.
//!
//! - Payload: a reading, `{"value":21.5,"sensor":"t1"}` or `21.5` (see
//!   `ledge-reading` for the format and how the sensor is named).
//! - Env: `WINDOW`, a whole number of readings, at least 1 (default 5).
//! - Every `WINDOW`th reading of a sensor completes its window: the average
//!   is published at QoS 0 to `averages/<sensor>` as
//!   `{"sensor":"t1","average":21.7,"count":5}` and the window starts over.
//! - It responds `{"sensor":"t1","average":<running average>,"count":<readings in the window>}`;
//!   the reading that completes a window reports the completed window.
//!
//! The windows live in the instance's memory, so they survive warm
//! invocations and are lost when ledge replaces the instance; each
//! concurrent instance keeps its own.

mod window;

use std::cell::RefCell;

use ledge_reading::Reading;
use ledge_sdk::{Context, Event, Qos, publish};
use serde::Serialize;

use window::Windows;

/// The window size when `WINDOW` is unset.
const DEFAULT_WINDOW: u32 = 5;

thread_local! {
    // wasm32-unknown-unknown is single-threaded, so this is one global per
    // instance; in host tests it gives each test thread its own state.
    static WINDOWS: RefCell<Windows> = RefCell::new(Windows::default());
}

/// Both the response and the published average.
#[derive(Serialize)]
struct Summary<'a> {
    sensor: &'a str,
    average: f64,
    count: u32,
}

fn handle(event: &Event, ctx: &Context) -> Result<Vec<u8>, String> {
    let size = window_size(ctx.env("WINDOW").as_deref())?;
    let reading = Reading::from_event(event).map_err(|err| err.to_string())?;
    let current = WINDOWS
        .with_borrow(|windows| windows.get(&reading.sensor))
        .map_err(|err| err.to_string())?;
    let (next, step) = current.add(reading.value, size);
    let summary = Summary {
        sensor: &reading.sensor,
        average: step.average,
        count: step.count,
    };
    let body = serde_json::to_vec(&summary).map_err(|err| format!("encoding JSON: {err}"))?;
    if step.complete {
        let topic = format!("averages/{}", reading.sensor);
        publish(&topic, &body, Qos::AtMostOnce)
            .map_err(|err| format!("average for {} not sent to {topic}: {err}", reading.sensor))?;
    }
    // Only now, so a failed invocation leaves the window as it was and a
    // retry of the same reading is not counted twice.
    WINDOWS.with_borrow_mut(|windows| windows.set(reading.sensor, next));
    Ok(body)
}

ledge_sdk::handler!(handle);

/// The window size from the `WINDOW` env value, if set.
fn window_size(configured: Option<&str>) -> Result<u32, String> {
    let Some(text) = configured else {
        return Ok(DEFAULT_WINDOW);
    };
    match text.trim().parse::<u32>() {
        Ok(size) if size >= 1 => Ok(size),
        _ => Err(format!(
            "WINDOW is not a whole number of at least 1: {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests;
