//! The spool's options: when the syncer fsyncs, what a full spool does,
//! the size bounds, and how the uplink's two streams share them.

use std::time::Duration;

/// When the syncer calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Batch,
    Interval(Duration),
}

impl FsyncPolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch),
            _ => match text.strip_prefix("interval:") {
                Some(period) => crate::units::parse_duration(period)
                    .map(Self::Interval)
                    .and_then(|p| match p {
                        Self::Interval(d) if d.is_zero() => Err("the interval must be longer than zero".to_owned()),
                        p => Ok(p),
                    }),
                None => Err(format!(
                    "`{text}` is not a fsync policy (use \"always\", \"batch\" or \"interval:50ms\")"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Batch => f.write_str("batch"),
            Self::Interval(d) => {
                write!(f, "interval:{}", crate::units::format_duration(*d))
            }
        }
    }
}

/// What an append does when the spool is at `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    DropOldest,
    Reject,
}

impl OnFull {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "drop_oldest" => Ok(Self::DropOldest),
            "reject" => Ok(Self::Reject),
            _ => Err(format!(
                "`{text}` is not an on_full policy (use \"drop_oldest\" or \"reject\")"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// A segment rolls once it reaches this size.
    pub segment_size: u64,
    /// Cap on segments on disk plus records buffered in memory.
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub fsync: FsyncPolicy,
    /// Records buffered in memory before appends are refused as backlog
    /// (the device cannot keep up).
    pub max_pending: usize,
    /// How often changed cursors are persisted and spent segments reclaimed.
    pub cursor_interval: Duration,
    /// A non-empty active segment older than this rolls, so a quiet gateway
    /// can still reclaim it once confirmed.
    pub segment_max_age: Duration,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            segment_size: 8 << 20,
            max_bytes: 64 << 20,
            on_full: OnFull::DropOldest,
            fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
            max_pending: 4 << 20,
            cursor_interval: Duration::from_secs(1),
            segment_max_age: Duration::from_secs(3600),
        }
    }
}

/// The stream beside `uplink` that holds logs and metric snapshots for
/// upstream (see "Record classes" in the [spool](super) docs).
pub const TELEMETRY_STREAM: &str = "telemetry";

/// The telemetry stream gets `max_bytes / TELEMETRY_SHARE`; the event
/// stream the rest.
pub const TELEMETRY_SHARE: u64 = 8;

impl SpoolOptions {
    /// The options of the uplink's two streams, events and telemetry, out of
    /// the configured ones: together they stay within `max_bytes`. The
    /// telemetry stream always drops its oldest when full (logs and metrics
    /// are worth less than the newest ones, and are never worth refusing
    /// for), rolls in smaller segments so dropping frees little at a time,
    /// and syncs at the configured interval (50 ms under `always` and
    /// `batch`): nobody waits for a log line.
    pub fn split_for_telemetry(&self) -> (SpoolOptions, SpoolOptions) {
        let telemetry_bytes = self.max_bytes / TELEMETRY_SHARE;
        let events = SpoolOptions {
            max_bytes: self.max_bytes - telemetry_bytes,
            ..self.clone()
        };
        let telemetry = SpoolOptions {
            max_bytes: telemetry_bytes,
            // At least 4 segments, so dropping one frees a quarter at most.
            segment_size: self.segment_size.min(telemetry_bytes / 4).max(4096),
            on_full: OnFull::DropOldest,
            fsync: match self.fsync {
                FsyncPolicy::Interval(period) => FsyncPolicy::Interval(period),
                FsyncPolicy::Always | FsyncPolicy::Batch => {
                    FsyncPolicy::Interval(Duration::from_millis(50))
                }
            },
            max_pending: self.max_pending.min(telemetry_bytes as usize),
            ..self.clone()
        };
        (events, telemetry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_gets_its_own_share_and_always_drops_its_oldest() {
        for options in [
            SpoolOptions::default(),
            SpoolOptions {
                max_bytes: 256 << 10,
                segment_size: 64 << 10,
                on_full: OnFull::Reject,
                fsync: FsyncPolicy::Always,
                ..SpoolOptions::default()
            },
        ] {
            let (events, telemetry) = options.split_for_telemetry();
            assert_eq!(events.max_bytes + telemetry.max_bytes, options.max_bytes);
            assert_eq!(telemetry.max_bytes, options.max_bytes / TELEMETRY_SHARE);
            assert_eq!(
                (events.on_full, events.fsync, events.segment_size),
                (options.on_full, options.fsync, options.segment_size)
            );
            assert_eq!(telemetry.on_full, OnFull::DropOldest);
            assert!(matches!(telemetry.fsync, FsyncPolicy::Interval(_)));
            assert!(telemetry.segment_size * 4 <= telemetry.max_bytes);
            assert!(telemetry.max_pending as u64 <= telemetry.max_bytes);
        }
    }
}
