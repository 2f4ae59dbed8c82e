//! Wall-clock time without a clock: cron expressions ([`cron`]) and the time
//! zones they are read in ([`tz`]); and when this process and this machine
//! started ([`started_ms`], [`boot_ms`]).
//!
//! Both are pure calculators that map an instant to another instant, so the
//! config checks expressions and zones when it resolves a schedule trigger,
//! and `sources::schedule` drives them from its run loop with the real
//! clock. The only file read here is a zone's TZif file, by
//! [`tz::TimeZone::resolve`] (from the folder its caller names:
//! `/usr/share/zoneinfo` or `$TZDIR`).

pub mod cron;
pub mod tz;
mod uptime;

pub use uptime::{boot_ms, started_ms};
