//! A function's publish rate: `publish_rate` and `publish_burst`.
//!
//! A token bucket shared by the function's instances: it holds up to
//! `burst` publishes and refills at `per_second`. The `publish` host call
//! takes one token per publish the function's config allows (a denied or
//! malformed publish costs none); with none left the call returns
//! `ERR_THROTTLED` and nothing is sent. Refused publishes are counted for
//! the invocation (`Outcome::publishes_throttled`, then the function's
//! `publish_throttled` metric) and summarised in the log at most every
//! [`SUMMARY_EVERY`], never a line per publish: a function over its rate is
//! publishing thousands a second.
//!
//! A function without `publish_rate` has no bucket at all, so the hot path
//! (tens of thousands of publishes a second) pays nothing for this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::PublishLimit;

/// Throttled publishes are summarised at most this often per function.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One function's bucket, shared by its instances.
#[derive(Debug)]
pub struct PublishBudget {
    limit: PublishLimit,
    bucket: Mutex<Bucket>,
    /// Publishes refused since the last summary; read without the lock so
    /// an invocation that was never throttled takes none.
    unsummarised: AtomicU64,
    /// When the last summary was logged.
    last_summary: Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Bucket {
    /// Publishes available now (fractions accrue between publishes).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
}

impl PublishBudget {
    /// A full bucket.
    pub fn new(limit: PublishLimit) -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst),
                refilled: Instant::now(),
            }),
            limit,
            unsummarised: AtomicU64::new(0),
            last_summary: Mutex::new(None),
        }
    }

    /// True if one more publish may go now; false counts it as throttled.
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled);
        bucket.refilled = bucket.refilled.max(now);
        let refill = elapsed.as_secs_f64() * self.limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.limit.burst));
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        drop(bucket);
        self.unsummarised.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Logs how many publishes were throttled since the last summary, if
    /// any and if that summary is [`SUMMARY_EVERY`] old (the first one at
    /// once). Called at the end of each invocation, like the log budget's.
    pub fn summarise(&self, function: &str) {
        if self.unsummarised.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.summarise_at(function, Instant::now());
    }

    fn summarise_at(&self, function: &str, now: Instant) -> Option<u64> {
        let mut last = self.last_summary.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < SUMMARY_EVERY) {
            return None;
        }
        let count = self.unsummarised.swap(0, Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        *last = Some(now);
        log::warn!(
            target: "ledge::invoke",
            "{function}: {count} publishes throttled (over publish_rate = \"{}\", burst {}): each returned ERR_THROTTLED to the function and was not sent",
            self.limit.rate,
            self.limit.burst
        );
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: f64, burst: u32) -> PublishBudget {
        PublishBudget::new(PublishLimit {
            rate: format!("{per_second}/s"),
            per_second,
            burst,
        })
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_and_no_more() {
        let budget = budget(0.001, 10);
        let now = Instant::now();
        let sent = (0..50).filter(|_| budget.take_at(now)).count();
        assert_eq!(sent, 10);
        assert_eq!(budget.unsummarised.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_the_burst() {
        let budget = budget(5.0, 10);
        let start = Instant::now();
        while budget.take_at(start) {}
        let second = start + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| budget.take_at(second)).count(), 5);
        // A long quiet spell fills it to the burst, not beyond.
        let later = second + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| budget.take_at(later)).count(), 10);
    }

    #[test]
    fn fractions_of_a_token_accrue_between_publishes() {
        let budget = budget(4.0, 1);
        let start = Instant::now();
        assert!(budget.take_at(start));
        assert!(!budget.take_at(start + Duration::from_millis(100)));
        assert!(budget.take_at(start + Duration::from_millis(250)));
    }

    #[test]
    fn throttled_publishes_are_summarised_at_most_every_ten_seconds() {
        let budget = budget(0.001, 1);
        let now = Instant::now();
        for _ in 0..5 {
            budget.take_at(now);
        }
        assert_eq!(budget.summarise_at("f", now), Some(4), "the first at once");
        budget.take_at(now);
        assert_eq!(budget.summarise_at("f", now + Duration::from_secs(1)), None);
        let due = now + SUMMARY_EVERY;
        assert_eq!(
            budget.summarise_at("f", due),
            Some(1),
            "held back, not lost"
        );
        assert_eq!(
            budget.summarise_at("f", due + SUMMARY_EVERY),
            None,
            "nothing new"
        );
    }
}
