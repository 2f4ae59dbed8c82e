//! Schedules: events at a rate (`every`) or at wall-clock times (`cron`),
//! for the one function the trigger names.
//!
//! - `every`: the first event fires one period after start, like a rate
//!   schedule; a tick missed while the gateway was busy is delayed, not
//!   doubled.
//! - `cron`: [`cron`](crate::time::cron) parses the expression and finds the
//!   next fire time in the schedule's [`tz`](crate::time::tz) time zone;
//!   [`planner`] decides, from the wall clock alone, whether to run, sleep or
//!   skip missed runs; [`state`] keeps the last handled time across restarts
//!   for `catch_up = "once"`.
//!
//! Either kind may add `jitter`: each run waits a random delay in
//! `[0, jitter)` so a fleet of gateways does not hit a broker in the same
//! second. The event still carries the scheduled (un-jittered) time.
//!
//! The runtime never sleeps more than [`MAX_NAP`] at once and re-reads the
//! wall clock on every wake-up, so a suspend or a clock step is noticed
//! within a minute (tokio's timers follow the monotonic clock, which stops
//! during suspend and ignores steps).

pub mod planner;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::{CronTiming, FunctionId, Timing};
use crate::dispatch::Dispatcher;
use crate::event::{unix_ms, Event, EventSource};
use crate::rand::SplitMix64;
use crate::time::tz::TimeZone;
use crate::units::format_duration;
use planner::{Planner, Step, PLAUSIBLE_CLOCK};

/// The longest single sleep of a cron schedule between looks at the clock.
pub const MAX_NAP: Duration = Duration::from_secs(60);

pub struct Schedule {
    pub function: FunctionId,
    /// The function's name, for log lines.
    pub function_name: String,
    pub timing: Timing,
    /// Event payload; a small JSON object if the trigger sets none.
    pub payload: Option<String>,
    /// Pass events through the function's spool stream first.
    pub durable: bool,
    /// Each run waits a random delay in [0, jitter) first.
    pub jitter: Duration,
    /// `catch_up = "once"`: the file keeping the last handled time.
    pub state: Option<PathBuf>,
    /// Seeds the jitter; differs per device and schedule.
    pub seed: u64,
}

/// Runs one schedule until `shutdown` changes.
pub async fn run(schedule: Schedule, dispatcher: Arc<Dispatcher>, shutdown: watch::Receiver<bool>) {
    match schedule.timing.clone() {
        Timing::Every(every) => run_every(schedule, every, dispatcher, shutdown).await,
        Timing::Cron(cron) => run_cron(schedule, *cron, dispatcher, shutdown).await,
    }
}

async fn run_every(
    schedule: Schedule,
    every: Duration,
    dispatcher: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = format!("every {}", format_duration(every));
    let mut rng = SplitMix64::new(schedule.seed);
    let start = tokio::time::Instant::now() + every;
    let mut ticker = tokio::time::interval_at(start, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let scheduled_ms = unix_ms();
        if !jitter_sleep(&mut rng, schedule.jitter, &mut shutdown).await {
            return;
        }
        let payload = schedule.payload.clone().unwrap_or_else(|| {
            serde_json::json!({
                "scheduled_at": scheduled_ms,
                "scheduled_at_iso": iso_utc_ms(scheduled_ms),
                "every": format_duration(every),
            })
            .to_string()
        });
        let event = Event::new(EventSource::Schedule, label.clone(), payload);
        dispatcher.submit_routed(schedule.function, Arc::new(event), schedule.durable);
    }
}

async fn run_cron(
    schedule: Schedule,
    timing: CronTiming,
    dispatcher: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = format!("cron {}", timing.expression);
    let name = format!("schedule `{label}` -> {}", schedule.function_name);
    let mut rng = SplitMix64::new(schedule.seed);
    if unix_secs() < PLAUSIBLE_CLOCK {
        log::info!(target: "ledge::schedule", "{name}: the wall clock is not set yet (before 2020); waiting for it");
        while unix_secs() < PLAUSIBLE_CLOCK {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
    let persisted = schedule.state.as_deref().and_then(state::read);
    let now = unix_secs();
    let mut planner = Planner::new(
        timing.cron.clone(),
        timing.tz.clone(),
        timing.catch_up,
        persisted.map(|ms| (ms / 1000) as i64),
        now,
    );
    if persisted.is_none() {
        // Nothing before now is owed: a stop before the first run still
        // catches up on what it misses after this.
        save(&schedule, &name, now as u64 * 1000);
    }
    let mut step = planner.start(now);
    loop {
        match step {
            Step::SleepUntil(at) => {
                let wait = (at * 1000).saturating_sub(unix_ms() as i64).max(0) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait).min(MAX_NAP)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            Step::Run { at, catch_up } => {
                if catch_up {
                    log::info!(target: "ledge::schedule", "{name}: catching up the run of {} (missed while ledge was stopped or the gateway asleep)", timing.tz.format_iso(at));
                }
                if !jitter_sleep(&mut rng, schedule.jitter, &mut shutdown).await {
                    return;
                }
                let payload = schedule
                    .payload
                    .clone()
                    .unwrap_or_else(|| cron_payload(&timing, at, catch_up));
                let event = Event::new(EventSource::Schedule, label.clone(), payload);
                dispatcher.submit_routed(schedule.function, Arc::new(event), schedule.durable);
                save(&schedule, &name, at as u64 * 1000);
            }
            Step::Skipped { at } => {
                log::info!(target: "ledge::schedule", "{name}: runs missed up to {} are skipped (catch_up = \"skip\")", timing.tz.format_iso(at));
            }
            Step::Never => {
                log::warn!(target: "ledge::schedule", "{name}: the expression never fires again");
                return;
            }
        }
        step = planner.poll(unix_secs());
    }
}

/// The default event payload of a cron run.
pub fn cron_payload(timing: &CronTiming, at: i64, catch_up: bool) -> String {
    let mut object = serde_json::json!({
        "scheduled_at": at * 1000,
        "scheduled_at_iso": timing.tz.format_iso(at),
        "cron": timing.expression,
        "timezone": timing.timezone,
    });
    if catch_up {
        object["catch_up"] = true.into();
    }
    object.to_string()
}

fn save(schedule: &Schedule, name: &str, scheduled_ms: u64) {
    if let Some(path) = &schedule.state {
        if let Err(e) = state::write(path, scheduled_ms) {
            log::warn!(target: "ledge::schedule", "{name}: cannot record the last run in {}: {e}", path.display());
        }
    }
}

/// Sleeps a random delay in [0, jitter); false if shutdown came first.
async fn jitter_sleep(
    rng: &mut SplitMix64,
    jitter: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if jitter.is_zero() {
        return true;
    }
    let delay = Duration::from_micros(rng.below(jitter.as_micros() as u64));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.changed() => false,
    }
}

fn unix_secs() -> i64 {
    (unix_ms() / 1000) as i64
}

/// `2026-11-23T22:35:00.123Z`.
fn iso_utc_ms(ms: u64) -> String {
    let seconds = TimeZone::Utc.format_iso((ms / 1000) as i64);
    format!("{}.{:03}Z", &seconds[..seconds.len() - 1], ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::cron;

    #[test]
    fn a_cron_payload_carries_the_scheduled_time_and_marks_catch_ups() {
        let timing = CronTiming {
            expression: "0 7 * * *".into(),
            cron: cron::Cron::parse("0 7 * * *").unwrap(),
            timezone: "+01:00".into(),
            tz: TimeZone::Fixed(3600),
            catch_up: crate::config::CatchUp::Once,
        };
        let at = 1_764_050_400; // 2025-11-25T06:00:00Z
        let value: serde_json::Value =
            serde_json::from_str(&cron_payload(&timing, at, false)).unwrap();
        assert_eq!(value["scheduled_at"], 1_764_050_400_000u64);
        assert_eq!(value["scheduled_at_iso"], "2025-11-25T07:00:00+01:00");
        assert_eq!(value["cron"], "0 7 * * *");
        assert!(value.get("catch_up").is_none());
        let value: serde_json::Value =
            serde_json::from_str(&cron_payload(&timing, at, true)).unwrap();
        assert_eq!(value["catch_up"], true);
        assert_eq!(iso_utc_ms(1_764_050_400_123), "2025-11-25T06:00:00.123Z");
    }
}
