//! Per-function metrics, updated lock-free on the hot path: counters, two
//! gauges and two log-scale histograms (invocation duration, and async
//! event age: from receipt to the start of the invocation).
//!
//! Read by `ledge status` / `ledge metrics`, the snapshots spooled upstream,
//! the Prometheus endpoint and the shutdown summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per doubling: 4 gives ~19% resolution on a percentile.
const STEPS_PER_DOUBLING: f64 = 4.0;
/// Enough buckets for values up to 2^40 µs (12 days).
const BUCKETS: usize = 160;

/// A histogram of microsecond values in log-scale buckets: recording is one
/// atomic add; percentiles are read from the cumulative counts and are the
/// upper bound of the bucket they fall in.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        ((us as f64).log2() * STEPS_PER_DOUBLING)
            .ceil()
            .min((BUCKETS - 1) as f64) as usize
    }

    fn upper_bound(bucket: usize) -> u64 {
        (2f64).powf(bucket as f64 / STEPS_PER_DOUBLING).round() as u64
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The value below which `quantile` (0..=1) of the recorded values lie,
    /// in µs; 0 if nothing was recorded.
    pub fn percentile(&self, quantile: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper_bound(bucket);
            }
        }
        Self::upper_bound(BUCKETS - 1)
    }
}

#[derive(Debug, Default)]
pub struct FunctionMetrics {
    /// Invocations started (successful or not).
    pub invocations: AtomicU64,
    /// Invocations that failed, for any reason.
    pub errors: AtomicU64,
    /// Of those, the ones that hit the timeout.
    pub timeouts: AtomicU64,
    /// Events that found the function's queue full (then held back, spilled
    /// or, if the stream refused too, dead-lettered).
    pub throttled: AtomicU64,
    /// Events that waited in the function's stream because its queue was full.
    pub spilled: AtomicU64,
    /// Events not run because they ended a chain of `MAX_CHAIN` function
    /// publishes (a recursive loop).
    pub loops_stopped: AtomicU64,
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
    /// Invocations running right now.
    pub concurrent: AtomicI64,
    /// Invocation durations.
    pub durations: Histogram,
    /// Time from receipt of an event to the start of its invocation.
    pub event_ages: Histogram,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub throttled: u64,
    pub spilled: u64,
    pub loops_stopped: u64,
    pub dropped_disabled: u64,
    pub duration_total_us: u64,
    pub duration_max_us: u64,
    pub retries: u64,
    pub dead_letters: u64,
    pub dead_letter_errors: u64,
    pub concurrent: u64,
    pub duration_p50_us: u64,
    pub duration_p90_us: u64,
    pub duration_p99_us: u64,
    pub event_age_p50_us: u64,
    pub event_age_p99_us: u64,
}

impl FunctionMetrics {
    pub fn record_invocation(&self, duration: Duration, failed: bool, timed_out: bool) {
        let us = duration.as_micros() as u64;
        self.durations.record(us);
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
            spilled: get(&self.spilled),
            loops_stopped: get(&self.loops_stopped),
            dropped_disabled: get(&self.dropped_disabled),
            duration_total_us: get(&self.duration_total_us),
            duration_max_us: get(&self.duration_max_us),
            retries: get(&self.retries),
            dead_letters: get(&self.dead_letters),
            dead_letter_errors: get(&self.dead_letter_errors),
            concurrent: self.concurrent.load(Ordering::Relaxed).max(0) as u64,
            duration_p50_us: self.durations.percentile(0.50),
            duration_p90_us: self.durations.percentile(0.90),
            duration_p99_us: self.durations.percentile(0.99),
            event_age_p50_us: self.event_ages.percentile(0.50),
            event_age_p99_us: self.event_ages.percentile(0.99),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_within_one_bucket_of_the_truth() {
        let h = Histogram::default();
        assert_eq!(h.percentile(0.5), 0);
        for us in 1..=1000 {
            h.record(us);
        }
        for (q, truth) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.percentile(q) as f64;
            assert!(
                got >= truth && got <= truth * 1.19 + 1.0,
                "p{q}: {got} vs {truth}"
            );
        }
        h.record(u64::MAX);
        assert!(h.percentile(1.0) >= 1 << 39);
    }
}
