//! GPIO inputs as sensors: not sampled but event-driven, one event per
//! debounced edge the sensor's `edge` admits.
//!
//! The line is requested and waited on by a blocking thread (the character
//! device's read() blocks; the fake driver polls a file); edges reach the
//! async task over a small channel and are delivered like any sensor reading.
//! The thread wakes every `WAKE` to see whether the sensor was stopped, and
//! releases the line when it ends, so a reload can request it again.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{deliver, error_json, ErrorLog, SensorError};
use crate::config::{GpioInputSpec, SensorSpec};
use crate::dispatch::Dispatcher;
use crate::event::unix_ms;
use crate::hw::gpio::{open_chip, Backend, Edge, EdgeKind, GpioLines, InputLine};
use crate::sinks::PublishSink;

/// How often the waiting thread checks for a stop.
const WAKE: Duration = Duration::from_millis(100);
/// Delay before requesting a line again after it could not be had.
const RETRY: Duration = Duration::from_secs(5);
/// Edges in flight between the thread and the task; more wait (in the
/// kernel's own event buffer on a real chip).
const CHANNEL: usize = 64;

/// What the waiting thread reports.
enum Report {
    Edge(Edge, u64),
    Failed(SensorError),
}

/// Watches one input until `shutdown` changes.
pub async fn run(
    spec: SensorSpec,
    input: GpioInputSpec,
    backend: Backend,
    lines: Arc<GpioLines>,
    dispatcher: Arc<Dispatcher>,
    publisher: Arc<dyn PublishSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cell = Arc::new(AtomicU8::new(crate::hw::gpio::UNKNOWN));
    lines.register_input(&spec.name, Arc::clone(&cell));
    let (sender, mut reports) = mpsc::channel(CHANNEL);
    let mut errors = ErrorLog::default();
    let waiter = {
        let (name, stop, cell) = (spec.name.clone(), shutdown.clone(), Arc::clone(&cell));
        tokio::task::spawn_blocking(move || {
            watch_line(&name, &input, &backend, &cell, &stop, &sender)
        })
    };
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Some(Report::Edge(edge, ts)) => {
                    deliver(&spec, edge_json(&spec.name, edge, ts), &dispatcher, publisher.as_ref());
                }
                // Logged and sent as an error event when the line starts
                // failing, then at most once a minute, like sampled sensors.
                Some(Report::Failed(e)) => {
                    if errors.record(&spec.name, &e) {
                        deliver(&spec, error_json(&spec.name, &e, unix_ms()), &dispatcher, publisher.as_ref());
                    }
                }
                None => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    // The thread sees the same stop and releases the line within `WAKE`.
    let _ = waiter.await;
    lines.unregister_input(&spec.name, &cell);
}

/// The blocking side: request the line, then wait for edges until stopped.
fn watch_line(
    name: &str,
    input: &GpioInputSpec,
    backend: &Backend,
    cell: &AtomicU8,
    stop: &watch::Receiver<bool>,
    reports: &mpsc::Sender<Report>,
) {
    let consumer = format!("ledge:{name}");
    while !*stop.borrow() {
        let requested = open_chip(backend, &input.address.chip)
            .and_then(|chip| chip.request_input(input.address.line, &consumer, &input.config));
        let mut line = match requested {
            Ok(line) => line,
            Err(e) => {
                let error = SensorError::Unavailable(format!("{}: {e}", input.address));
                if reports.blocking_send(Report::Failed(error)).is_err() {
                    return;
                }
                sleep_unless_stopped(RETRY, stop);
                continue;
            }
        };
        log::info!(target: "ledge::sensor", "sensor {name}: watching {} for {} edges", input.address, input.config.edge.as_str());
        match wait_for_edges(line.as_mut(), input.config.edge, cell, stop, reports) {
            Ok(()) => return,
            Err(e) => {
                if reports.blocking_send(Report::Failed(e)).is_err() {
                    return;
                }
                drop(line);
                sleep_unless_stopped(RETRY, stop);
            }
        }
    }
}

fn wait_for_edges(
    line: &mut dyn InputLine,
    edge_kind: EdgeKind,
    cell: &AtomicU8,
    stop: &watch::Receiver<bool>,
    reports: &mpsc::Sender<Report>,
) -> Result<(), SensorError> {
    let unavailable = |e: crate::hw::gpio::GpioError| SensorError::Unavailable(e.to_string());
    cell.store(
        u8::from(line.value().map_err(unavailable)?),
        Ordering::Release,
    );
    while !*stop.borrow() {
        let Some(edge) = line.next_edge(WAKE).map_err(unavailable)? else {
            continue;
        };
        // The level is tracked in both directions; only the edges the
        // sensor asked for become events.
        cell.store(u8::from(edge.value), Ordering::Release);
        if !edge_kind.admits(edge.value) {
            continue;
        }
        if reports
            .blocking_send(Report::Edge(edge, unix_ms()))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

fn sleep_unless_stopped(total: Duration, stop: &watch::Receiver<bool>) {
    let mut left = total;
    while !left.is_zero() && !*stop.borrow() {
        let step = left.min(WAKE);
        std::thread::sleep(step);
        left -= step;
    }
}

/// The event payload of an edge.
pub fn edge_json(sensor: &str, edge: Edge, ts_ms: u64) -> String {
    serde_json::json!({
        "sensor": sensor,
        "value": u8::from(edge.value),
        "edge": edge.name(),
        "ts": ts_ms,
        "quality": "ok",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_event_names_the_sensor_value_edge_time_and_quality() {
        let json = edge_json("button", Edge { value: false }, 7);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["sensor"], "button");
        assert_eq!(value["value"], 0);
        assert_eq!(value["edge"], "falling");
        assert_eq!(value["ts"], 7);
        assert_eq!(value["quality"], "ok");
    }
}
