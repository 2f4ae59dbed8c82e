//! The maximum zero-loss throughput search.
//!
//! 1. Burst: `BURST_COUNT` messages as fast as the publisher's client takes
//!    them. Messages per second from first send to last receipt estimate the
//!    system's capacity C (queues anywhere absorb the burst, so this can
//!    overstate what can be sustained, and a burst that overflows a queue
//!    shows loss).
//! 2. Paced steps of `STEP_SECS` each, starting at `START_FRACTION` × C and
//!    growing by `GROWTH` until a step fails (at most `MAX_STEPS`), then one
//!    bisection step between the last pass and the first failure. If the
//!    first step fails the rate shrinks instead.
//!
//! A step passes when every input produced exactly one output (zero loss),
//! the publisher managed to offer at least `MIN_OFFERED` of the rate (a
//! broker that pushes back on the publisher is at its limit), and the last
//! output arrived within `MAX_LAG` of the last input: a system that keeps up
//! ends a step with an empty backlog, one that is a few percent too slow
//! ends it seconds behind.
//!
//! The result is the highest passing rate; resolution is about half the
//! growth step.

use super::generator::{self, LoadResult, Offer, Target};

const BURST_COUNT: u64 = 30_000;
const STEP_SECS: f64 = 2.0;
const START_FRACTION: f64 = 0.6;
const GROWTH: f64 = 1.15;
const MAX_STEPS: usize = 8;
const MIN_OFFERED: f64 = 0.97;
const MAX_LAG: f64 = 0.1;
/// Slowest rate the search tries.
const MIN_RATE: f64 = 100.0;

pub struct SearchResult {
    pub burst: LoadResult,
    /// Highest paced rate that passed, and that step's result.
    pub best: Option<(f64, LoadResult)>,
    /// Every paced step, in order.
    pub steps: Vec<(f64, LoadResult, bool)>,
}

impl SearchResult {
    pub fn max_zero_loss(&self) -> f64 {
        self.best.as_ref().map_or(0.0, |(rate, _)| *rate)
    }
}

pub fn passes(rate: f64, result: &LoadResult) -> bool {
    result.lost() == 0
        && result.duplicates == 0
        && result.offered_rate() >= MIN_OFFERED * rate
        && result.lag_secs <= MAX_LAG
}

/// Runs the search against `target`, logging each step to stderr.
pub fn search(label: &str, target: &Target) -> Result<SearchResult, String> {
    let burst = generator::run(target, Offer::Burst { count: BURST_COUNT })?;
    eprintln!("  {label} burst: {}", burst.summary());
    let capacity = burst.completion_rate().max(MIN_RATE);
    let mut outcome = SearchResult {
        burst,
        best: None,
        steps: Vec::new(),
    };
    let mut rate = (capacity * START_FRACTION).max(MIN_RATE);
    let mut first_failure = None;
    for _ in 0..MAX_STEPS {
        let passed = step(label, target, rate, &mut outcome)?;
        match (passed, outcome.best.is_some()) {
            (true, _) => rate *= GROWTH,
            (false, true) => {
                first_failure = Some(rate);
                break;
            }
            // Nothing passed yet: come down until something does.
            (false, false) if rate > MIN_RATE => rate = (rate / GROWTH / GROWTH).max(MIN_RATE),
            (false, false) => break,
        }
    }
    let best = outcome.best.as_ref().map(|(rate, _)| *rate);
    if let (Some(failed), Some(passed)) = (first_failure, best) {
        step(label, target, (failed + passed) / 2.0, &mut outcome)?;
    }
    Ok(outcome)
}

/// One paced step; records it and returns whether it passed.
fn step(
    label: &str,
    target: &Target,
    rate: f64,
    outcome: &mut SearchResult,
) -> Result<bool, String> {
    let rate = rate.round();
    let result = generator::run(
        target,
        Offer::Paced {
            rate,
            secs: STEP_SECS,
        },
    )?;
    let passed = passes(rate, &result);
    eprintln!(
        "  {label} {rate:>6.0}/s {}: {}",
        if passed { "pass" } else { "FAIL" },
        result.summary()
    );
    if passed && outcome.max_zero_loss() < rate {
        outcome.best = Some((rate, result.clone()));
    }
    outcome.steps.push((rate, result, passed));
    Ok(passed)
}
