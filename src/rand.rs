//! Non-cryptographic randomness: the one generator ledge uses to spread
//! things out (schedule jitter, reconnect backoff, the canary split) and to
//! make ids that do not repeat (request ids, spool epochs). Keys and salts
//! come from `ring` instead (`deploy::signing`, `users`).
//!
//! The generator is splitmix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", 2014): a counter stepped by an odd
//! constant, then a bijective mix. Because the mix is a bijection and the
//! counter visits every u64 before it repeats, [`next_u64`] never returns
//! the same value twice in one process, which is what request ids rely on.
//!
//! - [`SplitMix64`]: a seeded stream, for whoever wants its own sequence
//!   (a schedule's jitter, reproducible from its seed in tests);
//! - [`next_u64`] / [`below`]: one process-wide stream, one atomic add per
//!   draw, seeded once from the operating system ([`seed`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// splitmix64's step: 2^64 / φ, odd, so the counter has full period.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded splitmix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform enough in `[0, bound)`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        scale(self.next_u64(), bound)
    }
}

/// The process seed: 8 bytes from the operating system, drawn once. If the
/// OS has none to give (no `getrandom`, no `/dev/urandom`), the clock and
/// the process id, which still differ between runs and between gateways
/// started at different instants.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        match ring::rand::SystemRandom::new().fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => clock_seed(),
        }
    })
}

/// The next value of the process-wide stream: never the same twice in one
/// process, and different between runs.
pub fn next_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let step = COUNTER.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed);
    mix(seed().wrapping_add(step).wrapping_add(GOLDEN_GAMMA))
}

/// A draw of the process-wide stream, uniform enough in `[0, bound)`.
pub fn below(bound: u64) -> u64 {
    scale(next_u64(), bound)
}

/// splitmix64's output function: a bijection on u64 whose output bits each
/// depend on every input bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a uniform u64 onto `[0, bound)` by multiplication (Lemire), which
/// keeps the high bits instead of the weaker low ones a `%` would.
fn scale(value: u64, bound: u64) -> u64 {
    ((u128::from(value) * u128::from(bound)) >> 64) as u64
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_stream_matches_the_published_splitmix64_values() {
        // The reference implementation (Vigna's splitmix64.c) seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn draws_stay_below_their_bound_and_spread() {
        let mut rng = SplitMix64::new(42);
        let draws: Vec<u64> = (0..10_000).map(|_| rng.below(30_000)).collect();
        assert!(draws.iter().all(|d| *d < 30_000));
        // Each tenth of the range gets a fair share.
        for decile in 0..10 {
            let n = draws.iter().filter(|d| **d / 3_000 == decile).count();
            assert!((800..1200).contains(&n), "decile {decile}: {n}");
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn the_process_stream_does_not_repeat() {
        let draws: HashSet<u64> = (0..10_000).map(|_| next_u64()).collect();
        assert_eq!(draws.len(), 10_000);
        assert!((0..1_000).all(|_| below(100) < 100));
    }
}
