//! Per-function metrics, updated lock-free on the hot path: counters, two
//! gauges and two log-scale histograms (invocation duration, and async
//! event age: from receipt to the start of the invocation); and the
//! process-wide count of sensor failures.
//!
//! Read by `ledge status` / `ledge metrics`, the snapshots spooled upstream,
//! the Prometheus endpoint and the shutdown summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Buckets per doubling: 4 gives ~19% resolution on a percentile.
const STEPS_PER_DOUBLING: usize = 4;
/// Enough buckets for values up to 2^40 µs (12 days).
const BUCKETS: usize = 160;

/// A histogram of microsecond values in log-scale buckets: recording is a
/// few atomic adds; percentiles are read from the cumulative counts, are
/// the upper bound of the bucket they fall in, and never exceed the largest
/// value recorded.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

/// A histogram's counts at one moment, with Prometheus-style cumulative
/// buckets at powers of two microseconds (exact: every internal bucket
/// lies wholly below or above each of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    /// `(upper bound in µs, values at or below it)`, bounds ascending.
    pub cumulative: Vec<(u64, u64)>,
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        ((us as f64).log2() * STEPS_PER_DOUBLING as f64)
            .ceil()
            .min((BUCKETS - 1) as f64) as usize
    }

    fn upper_bound(bucket: usize) -> u64 {
        (2f64)
            .powf(bucket as f64 / STEPS_PER_DOUBLING as f64)
            .round() as u64
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(us, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts().iter().sum()
    }

    /// Sum of the values recorded, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// The largest value recorded, µs (0 if none).
    pub fn max_us(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value below which `quantile` (0..=1) of the recorded values lie,
    /// in µs, at most the largest value recorded; 0 if nothing was.
    pub fn percentile(&self, quantile: f64) -> u64 {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        // Read after the counts: a value recorded in between raises the
        // maximum, never lowers it below a counted value.
        let max = self.max_us();
        let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper_bound(bucket).min(max);
            }
        }
        max
    }

    /// Cumulative counts at the bounds 2^`from`..=2^`to` µs.
    pub fn buckets(&self, from: u32, to: u32) -> Buckets {
        let counts = self.counts();
        let mut cumulative = Vec::with_capacity((to.saturating_sub(from) + 1) as usize);
        let mut seen = 0;
        let mut next = 0;
        for power in from..=to {
            // The internal bucket whose upper bound is exactly 2^power.
            let last = (power as usize * STEPS_PER_DOUBLING).min(BUCKETS - 1);
            while next <= last {
                seen += counts[next];
                next += 1;
            }
            cumulative.push((1u64 << power, seen));
        }
        Buckets {
            cumulative,
            count: counts.iter().sum(),
            sum_us: self.sum_us(),
            max_us: self.max_us(),
        }
    }
}

/// Bounds of the exported duration buckets: 2^4 µs (16 µs) to 2^26 µs (67 s).
pub const DURATION_BUCKETS: (u32, u32) = (4, 26);
/// Bounds of the exported event age buckets: 2^10 µs (1 ms) to 2^34 µs (4.8 h).
pub const EVENT_AGE_BUCKETS: (u32, u32) = (10, 34);

/// Sensor failures by sensor name, for as long as the process runs (a
/// sensor removed by a reload keeps its count).
pub fn sensor_failed(sensor: &str) {
    let mut counts = sensor_errors_map();
    match counts.get_mut(sensor) {
        Some(count) => *count += 1,
        None => {
            counts.insert(sensor.to_owned(), 1);
        }
    }
}

/// Every sensor that has failed, with how often.
pub fn sensor_errors() -> BTreeMap<String, u64> {
    sensor_errors_map().clone()
}

fn sensor_errors_map() -> std::sync::MutexGuard<'static, BTreeMap<String, u64>> {
    static ERRORS: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    ERRORS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
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
    /// Publishes refused (`ERR_THROTTLED`) because the function was over
    /// its `publish_rate`.
    pub publish_throttled: AtomicU64,
    /// Retries scheduled after a failed attempt.
    pub retries: AtomicU64,
    /// Events that went to the failure destination after their last attempt.
    pub dead_letters: AtomicU64,
    /// Events the failure destination itself could not take (logged in full).
    pub dead_letter_errors: AtomicU64,
    /// Invocations running right now.
    pub concurrent: AtomicI64,
    /// Invocation durations (with their sum and maximum).
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
    pub publish_throttled: u64,
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
            publish_throttled: get(&self.publish_throttled),
            duration_total_us: self.durations.sum_us(),
            duration_max_us: self.durations.max_us(),
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

    #[test]
    fn percentiles_never_exceed_the_largest_value() {
        let h = Histogram::default();
        // 1000 µs lies inside a bucket whose upper bound is 1024 µs.
        h.record(1000);
        assert_eq!(h.percentile(0.99), 1000);
        assert_eq!(h.percentile(0.5), 1000);
        for us in [3, 17, 250, 999] {
            h.record(us);
        }
        assert!(h.percentile(0.99) <= h.max_us());
        assert_eq!(h.max_us(), 1000);
    }

    #[test]
    fn exported_buckets_are_exact_at_powers_of_two() {
        let h = Histogram::default();
        for us in [1, 16, 17, 32, 33, 1024, 1025, 5_000_000] {
            h.record(us);
        }
        let b = h.buckets(4, 11);
        let expected: Vec<(u64, u64)> = vec![
            (16, 2),
            (32, 4),
            (64, 5),
            (128, 5),
            (256, 5),
            (512, 5),
            (1024, 6),
            (2048, 7),
        ];
        assert_eq!(b.cumulative, expected);
        assert_eq!(b.count, 8);
        assert_eq!(b.sum_us, 1 + 16 + 17 + 32 + 33 + 1024 + 1025 + 5_000_000);
        assert_eq!(b.max_us, 5_000_000);
    }

    #[test]
    fn sensor_failures_are_counted_per_sensor() {
        sensor_failed("metrics-test-a");
        sensor_failed("metrics-test-a");
        sensor_failed("metrics-test-b");
        let errors = sensor_errors();
        assert_eq!(errors.get("metrics-test-a"), Some(&2));
        assert_eq!(errors.get("metrics-test-b"), Some(&1));
    }
}
