//! Log output: to stderr, one line per record.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog
//! priority (`<3>` error … `<7>` debug), which journald turns into the
//! record's level, and carries no timestamp (the journal adds one).
//! Elsewhere lines start with a UTC timestamp.
//!
//! The filter comes from `LEDGE_LOG`, else `[log] level`, else `info`.
//! rumqttd's own logging is off unless the filter names it: it logs every
//! packet at error level through tracing spans.

use std::cell::Cell;
use std::io::Write;
use std::sync::OnceLock;

const DEFAULT_FILTER: &str = "info";

/// Where ledge's own warnings and errors are shipped (upstream, via the
/// spool), once a node with an upstream is running.
type Shipper = Box<dyn Fn(&log::Record<'_>) + Send + Sync>;
static SHIPPER: OnceLock<Shipper> = OnceLock::new();

thread_local! {
    /// Set while shipping a record, so shipping never ships itself.
    static SHIPPING: Cell<bool> = const { Cell::new(false) };
}

/// Installs the shipper; warnings and errors logged after this go upstream
/// too (except the spool's and uplink's own, which would feed back).
pub fn set_shipper(shipper: Shipper) {
    let _ = SHIPPER.set(shipper);
}

/// env_logger for the terminal and journal, plus shipping.
struct Tee {
    inner: env_logger::Logger,
}

impl log::Log for Tee {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata) || metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.inner.matches(record) {
            self.inner.log(record);
        }
        let target = record.target();
        let shippable = record.level() <= log::Level::Warn
            && target.starts_with("ledge")
            && !target.starts_with("ledge::spool")
            && !target.starts_with("ledge::uplink");
        if let (true, Some(ship)) = (shippable, SHIPPER.get()) {
            SHIPPING.with(|busy| {
                if !busy.replace(true) {
                    ship(record);
                    busy.set(false);
                }
            });
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
/// rumqttd logs through tracing; its spans arrive as `tracing::span` records.
const QUIET_DEPENDENCIES: &str = "rumqttd=off,tracing::span=off,rumqttc=warn";

/// Installs the logger. Calling it twice keeps the first.
pub fn init(config_filter: Option<&str>) {
    let filter = std::env::var("LEDGE_LOG")
        .ok()
        .or_else(|| config_filter.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(QUIET_DEPENDENCIES)
        .parse_filters(&filter)
        .format(move |out, record| {
            if journal {
                writeln!(
                    out,
                    "<{}>{} {}: {}",
                    syslog_priority(record.level()),
                    record.level(),
                    record.target(),
                    record.args()
                )
            } else {
                writeln!(
                    out,
                    "{} {:5} {}: {}",
                    utc_timestamp(crate::event::unix_ms()),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        });
    let inner = builder.build();
    let max = inner.filter().max(log::LevelFilter::Warn);
    if log::set_boxed_logger(Box::new(Tee { inner })).is_ok() {
        log::set_max_level(max);
    }
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `2026-11-23T16:04:05.123Z` from UNIX milliseconds.
pub fn utc_timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), to avoid a date crate for one log prefix.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// At most `max` bytes of `text` (cut at a character boundary), for echoing
/// strings a client or guest chose into a log line.
pub fn shorten(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso8601_with_milliseconds() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_timestamp(1_795_449_845_007), "2026-11-23T16:04:05.007Z");
    }
}
