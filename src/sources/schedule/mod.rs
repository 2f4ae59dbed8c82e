//! Schedules: an event every `every`, for the one function the trigger names.
//!
//! The first event fires one period after start, like a rate schedule; a
//! tick missed while the gateway was busy is delayed, not doubled.

pub mod cron;
pub mod tz;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::units::format_duration;
use crate::config::FunctionId;
use crate::dispatch::Dispatcher;
use crate::event::{unix_ms, Event, EventSource};

pub struct Schedule {
    pub function: FunctionId,
    pub every: Duration,
    /// Event payload; a small JSON object if the trigger sets none.
    pub payload: Option<String>,
    /// Pass events through the function's spool stream first.
    pub durable: bool,
}

/// Runs one schedule until `shutdown` changes.
pub async fn run(
    schedule: Schedule,
    dispatcher: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = format!("every {}", format_duration(schedule.every));
    let start = tokio::time::Instant::now() + schedule.every;
    let mut ticker = tokio::time::interval_at(start, schedule.every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let payload = match &schedule.payload {
            Some(payload) => payload.clone(),
            None => format!(
                "{{\"scheduled_at\":{},\"every\":\"{}\"}}",
                unix_ms(),
                format_duration(schedule.every)
            ),
        };
        let event = Event::new(EventSource::Schedule, label.clone(), payload);
        dispatcher.submit_routed(schedule.function, Arc::new(event), schedule.durable);
    }
}
