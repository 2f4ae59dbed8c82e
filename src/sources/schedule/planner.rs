//! The cron schedule's decisions, without IO or a clock: given the wall
//! time, run now, sleep until when, or skip missed runs. The runtime in
//! `mod.rs` owns the clock, the sleeping and the state file.
//!
//! # Missed runs and clock jumps
//!
//! The planner remembers `last`, the latest scheduled time it has handled
//! (run or skipped). At each poll the scheduled times in `(last, now]` are
//! due:
//!
//! - one, at most [`LATE_GRACE`] ago: an ordinary run;
//! - more than one, or one that is older: runs were **missed** (ledge was
//!   stopped, the gateway suspended, or the wall clock stepped forward, as
//!   NTP does at boot on a Pi without RTC). With `catch_up = "once"` one run
//!   fires for the most recent missed time, marked `catch_up`; with `"skip"`
//!   none. Either way thousands of missed times never become thousands of
//!   events.
//!
//! At start every due time counts as missed. If the wall clock steps
//! **back** by up to [`BACKWARD_TOLERANCE`], times already handled are not
//! repeated (the schedule waits for the clock to pass them again); a larger
//! step back means `last` came from a wrong clock, and the schedule restarts
//! from now. Before 2020 the wall clock is taken as unset: the runtime waits.

use crate::config::CatchUp;
use crate::time::cron::Cron;
use crate::time::tz::TimeZone;

/// A run woken up this late (a busy board, a coarse timer) is still on time.
pub const LATE_GRACE: i64 = 10;

/// How far back the wall clock may step before `last` is distrusted
/// (Vixie cron's limit for time changes it treats as DST-like).
pub const BACKWARD_TOLERANCE: i64 = 3 * 3600;

/// 2020-01-01T00:00:00Z: an earlier wall clock has not been set yet.
pub const PLAUSIBLE_CLOCK: i64 = 1_577_836_800;

/// What the runtime should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing due: poll again at this time (UNIX seconds).
    SleepUntil(i64),
    /// Fire the run scheduled at `at`.
    Run { at: i64, catch_up: bool },
    /// Runs were missed and `catch_up = "skip"`: the latest was `at`.
    Skipped { at: i64 },
    /// The expression never fires again.
    Never,
}

pub struct Planner {
    cron: Cron,
    tz: TimeZone,
    catch_up: CatchUp,
    /// The latest scheduled time handled (UNIX seconds).
    last: i64,
}

impl Planner {
    /// A planner at `now`, resuming after `persisted` (the last scheduled
    /// time handled before a restart), if known.
    pub fn new(
        cron: Cron,
        tz: TimeZone,
        catch_up: CatchUp,
        persisted: Option<i64>,
        now: i64,
    ) -> Self {
        let last = match persisted {
            Some(last) if catch_up == CatchUp::Once && last <= now + BACKWARD_TOLERANCE => last,
            _ => now,
        };
        Self {
            cron,
            tz,
            catch_up,
            last,
        }
    }

    /// The first decision after start: every due time counts as missed.
    pub fn start(&mut self, now: i64) -> Step {
        self.step(now, -1)
    }

    /// The decision at `now`.
    pub fn poll(&mut self, now: i64) -> Step {
        self.step(now, LATE_GRACE)
    }

    fn step(&mut self, now: i64, grace: i64) -> Step {
        if now + BACKWARD_TOLERANCE < self.last {
            self.last = now;
        }
        let Some(next) = self.cron.next_after(self.last, &self.tz) else {
            return Step::Never;
        };
        if next > now {
            return Step::SleepUntil(next);
        }
        let only_one = self.cron.next_after(next, &self.tz).is_none_or(|n| n > now);
        if only_one && now - next <= grace {
            self.last = next;
            return Step::Run {
                at: next,
                catch_up: false,
            };
        }
        let at = self
            .cron
            .last_at_or_before(now, self.last, &self.tz)
            .unwrap_or(next);
        self.last = at;
        match self.catch_up {
            CatchUp::Once => Step::Run { at, catch_up: true },
            CatchUp::Skip => Step::Skipped { at },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000; // 2025-11-24T16:00:00Z

    fn planner(expr: &str, catch_up: CatchUp, persisted: Option<i64>, now: i64) -> Planner {
        Planner::new(
            Cron::parse(expr).unwrap(),
            TimeZone::Utc,
            catch_up,
            persisted,
            now,
        )
    }

    #[test]
    fn an_on_time_poll_runs_each_scheduled_time_once() {
        let mut p = planner("*/10 * * * * *", CatchUp::Skip, None, T0 + 1);
        assert_eq!(p.start(T0 + 1), Step::SleepUntil(T0 + 10));
        assert_eq!(p.poll(T0 + 9), Step::SleepUntil(T0 + 10));
        assert_eq!(
            p.poll(T0 + 10),
            Step::Run {
                at: T0 + 10,
                catch_up: false
            }
        );
        assert_eq!(p.poll(T0 + 10), Step::SleepUntil(T0 + 20));
        // A few seconds late is still on time.
        assert_eq!(
            p.poll(T0 + 23),
            Step::Run {
                at: T0 + 20,
                catch_up: false
            }
        );
    }

    #[test]
    fn a_restart_across_scheduled_times_catches_up_once_with_once() {
        // Stopped after handling T0; restarted an hour later.
        let mut p = planner("* * * * *", CatchUp::Once, Some(T0), T0 + 3600 + 5);
        assert_eq!(
            p.start(T0 + 3605),
            Step::Run {
                at: T0 + 3600,
                catch_up: true
            }
        );
        assert_eq!(p.poll(T0 + 3606), Step::SleepUntil(T0 + 3660));
    }

    #[test]
    fn skip_runs_nothing_for_missed_times_and_ignores_old_state() {
        let mut p = planner("* * * * *", CatchUp::Skip, Some(T0), T0 + 3605);
        assert_eq!(p.start(T0 + 3605), Step::SleepUntil(T0 + 3660));
        // A suspend across several runs: skipped, the latest reported.
        assert_eq!(p.poll(T0 + 7265), Step::Skipped { at: T0 + 7260 });
        assert_eq!(p.poll(T0 + 7266), Step::SleepUntil(T0 + 7320));
    }

    #[test]
    fn a_clock_stepping_from_1970_to_now_gives_one_catch_up_not_thousands() {
        let boot = 30; // seconds after the epoch: no RTC
        let mut p = planner("* * * * * *", CatchUp::Once, None, boot);
        assert_eq!(p.start(boot), Step::SleepUntil(boot + 1));
        assert_eq!(
            p.poll(T0),
            Step::Run {
                at: T0,
                catch_up: true
            }
        );
        assert_eq!(p.poll(T0), Step::SleepUntil(T0 + 1));
    }

    #[test]
    fn a_small_step_back_does_not_repeat_runs_and_a_large_one_resets() {
        let mut p = planner("0 * * * *", CatchUp::Skip, None, T0 - 1);
        assert_eq!(
            p.poll(T0),
            Step::Run {
                at: T0,
                catch_up: false
            }
        );
        // One hour back: 15:00 was not handled... but 16:00 was; wait for 17:00.
        assert_eq!(p.poll(T0 - 3000), Step::SleepUntil(T0 + 3600));
        // A day back: the old `last` is distrusted.
        assert_eq!(p.poll(T0 - 86_400), Step::SleepUntil(T0 - 86_400 + 3600));
    }

    #[test]
    fn persisted_times_from_a_clock_in_the_future_are_ignored() {
        let mut p = planner("* * * * *", CatchUp::Once, Some(T0 + 86_400), T0 + 5);
        assert_eq!(p.start(T0 + 5), Step::SleepUntil(T0 + 60));
    }
}
