//! Per-function counters, updated lock-free on the hot path.
//!
//! Kept deliberately small for now: counts and duration totals that the node
//! logs at shutdown and tests read. Percentiles, export upstream and
//! `ledge metrics` build on these counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct FunctionMetrics {
    /// Invocations started (successful or not).
    pub invocations: AtomicU64,
    /// Invocations that failed, for any reason.
    pub errors: AtomicU64,
    /// Of those, the ones that hit the timeout.
    pub timeouts: AtomicU64,
    /// Events refused because the function's queue was full.
    pub throttled: AtomicU64,
    /// Events refused because the function is disabled (module failed to load).
    pub dropped_disabled: AtomicU64,
    /// Sum and maximum of invocation durations, microseconds.
    pub duration_total_us: AtomicU64,
    pub duration_max_us: AtomicU64,
    /// Retries scheduled after a failed attempt.
    pub retries: AtomicU64,
    /// Events that went to the failure destination after their last attempt.
    pub dead_letters: AtomicU64,
    /// Events the failure destination itself could not take (logged in full).
    pub dead_letter_errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub throttled: u64,
    pub dropped_disabled: u64,
    pub duration_total_us: u64,
    pub duration_max_us: u64,
    pub retries: u64,
    pub dead_letters: u64,
    pub dead_letter_errors: u64,
}

impl FunctionMetrics {
    pub fn record_invocation(&self, duration: Duration, failed: bool, timed_out: bool) {
        let us = duration.as_micros() as u64;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.duration_total_us.fetch_add(us, Ordering::Relaxed);
        self.duration_max_us.fetch_max(us, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            invocations: get(&self.invocations),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            throttled: get(&self.throttled),
            dropped_disabled: get(&self.dropped_disabled),
            duration_total_us: get(&self.duration_total_us),
            duration_max_us: get(&self.duration_max_us),
            retries: get(&self.retries),
            dead_letters: get(&self.dead_letters),
            dead_letter_errors: get(&self.dead_letter_errors),
        }
    }
}

impl Snapshot {
    pub fn mean_duration_us(&self) -> u64 {
        self.duration_total_us
            .checked_div(self.invocations)
            .unwrap_or(0)
    }
}
