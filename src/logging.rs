//! Log output: to stderr, one line per record, and into a ring of recent
//! lines that `ledge logs` reads (and follows) over the control socket.
//!
//! Text lines (the default): under systemd (`JOURNAL_STREAM` set) each line
//! starts with its syslog priority (`<3>` error … `<7>` debug), which
//! journald turns into the record's level, and carries no timestamp (the
//! journal adds one). Elsewhere lines start with a UTC timestamp.
//!
//! `[log] format = "json"`: one JSON object per line with journald-style
//! field names (`MESSAGE`, `PRIORITY`, `LEVEL`, `TARGET`, `TIMESTAMP`, and
//! for a function's lines `FUNCTION` and `REQUEST_ID`). Under systemd the
//! priority prefix stays in front of the object, so the journal keeps the
//! level and `MESSAGE` holds the JSON. Lines are written to stderr, not to
//! journald's native protocol.
//!
//! The filter comes from `LEDGE_LOG`, else `[log] level`, else `info`.
//! rumqttd's own logging is off unless the filter names it: it logs every
//! packet at error level through tracing spans.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;

const DEFAULT_FILTER: &str = "info";
/// Lines kept for `ledge logs` (the newest).
pub const RECENT_LINES: usize = 1000;
/// Lines a slow follower may fall behind before it misses some.
const FOLLOW_BACKLOG: usize = 1024;

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

/// One log line, with the function and request it is about when it names
/// them (a function's own lines always do; ledge's `ledge::invoke` lines
/// start with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at_ms: u64,
    pub level: log::Level,
    pub target: String,
    pub function: Option<String>,
    pub request_id: Option<String>,
    /// The message as written.
    pub text: String,
    /// Where in `text` the message proper starts (after a function line's
    /// `[request id] `).
    message_start: usize,
}

impl Line {
    pub fn new(at_ms: u64, level: log::Level, target: &str, text: String) -> Self {
        let mut line = Self {
            at_ms,
            level,
            target: target.to_owned(),
            function: None,
            request_id: None,
            text,
            message_start: 0,
        };
        if let Some(function) = target.strip_prefix("fn::") {
            line.function = Some(function.to_owned());
            // Guest lines are written as `[<request id>] <message>`.
            if let Some(id) = line
                .text
                .strip_prefix('[')
                .and_then(|rest| rest.split_once("] "))
                .map(|(id, _)| id)
                .filter(|id| is_request_id(id))
            {
                line.request_id = Some(id.to_owned());
                line.message_start = id.len() + 3;
            }
        } else if target == "ledge::invoke" {
            // `<function> <request id> …`, or `<function>: …`.
            let mut words = line.text.split_whitespace();
            let first = words.next().unwrap_or("");
            let second = words.next().unwrap_or("").trim_end_matches(':');
            if is_request_id(second) {
                line.function = Some(first.to_owned());
                line.request_id = Some(second.to_owned());
            } else if let Some(function) = first.strip_suffix(':') {
                line.function = Some(function.to_owned());
            }
        }
        line
    }

    /// The message without the request id a function line starts with.
    pub fn message(&self) -> &str {
        self.text.get(self.message_start..).unwrap_or(&self.text)
    }

    /// The journald-style JSON object of this line.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = json!({
            "TIMESTAMP": utc_timestamp(self.at_ms),
            "PRIORITY": syslog_priority(self.level).to_string(),
            "LEVEL": self.level.as_str(),
            "TARGET": self.target,
            "MESSAGE": self.message(),
        });
        if let Some(function) = &self.function {
            doc["FUNCTION"] = function.as_str().into();
        }
        if let Some(id) = &self.request_id {
            doc["REQUEST_ID"] = id.as_str().into();
        }
        doc
    }
}

fn is_request_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which lines a reader of the log wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A function's name (a version or alias suffix, `f:3`, is ignored:
    /// lines name the function).
    pub function: Option<String>,
    /// Lines at this level or more severe.
    pub level: Option<log::Level>,
    pub request_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, line: &Line) -> bool {
        let function = self
            .function
            .as_deref()
            .map(|f| f.split(':').next().unwrap_or(f));
        function.is_none_or(|f| line.function.as_deref() == Some(f))
            && self.level.is_none_or(|level| line.level <= level)
            && self
                .request_id
                .as_deref()
                .is_none_or(|id| line.request_id.as_deref() == Some(id))
    }
}

/// The newest lines, and the channel live lines go out on.
struct Recent {
    lines: Mutex<VecDeque<Arc<Line>>>,
    live: broadcast::Sender<Arc<Line>>,
}

fn recent() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(|| Recent {
        lines: Mutex::new(VecDeque::with_capacity(RECENT_LINES)),
        live: broadcast::Sender::new(FOLLOW_BACKLOG),
    })
}

fn remember(line: Line) {
    let recent = recent();
    let line = Arc::new(line);
    let mut lines = recent.lines.lock().unwrap_or_else(|p| p.into_inner());
    if lines.len() == RECENT_LINES {
        lines.pop_front();
    }
    lines.push_back(Arc::clone(&line));
    // Under the lock, so a new follower sees each line exactly once: in
    // its snapshot or live.
    let _ = recent.live.send(line);
}

/// The recent lines `filter` matches (at most `max`, the newest), and a
/// receiver of every line logged after them.
pub fn follow(filter: &Filter, max: usize) -> (Vec<Arc<Line>>, broadcast::Receiver<Arc<Line>>) {
    let recent = recent();
    let lines = recent.lines.lock().unwrap_or_else(|p| p.into_inner());
    let live = recent.live.subscribe();
    let mut matching: Vec<Arc<Line>> = lines
        .iter()
        .rev()
        .filter(|l| filter.matches(l))
        .take(max)
        .cloned()
        .collect();
    matching.reverse();
    (matching, live)
}

/// env_logger for the terminal and journal, plus shipping and the ring of
/// recent lines.
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
            remember(Line::new(
                crate::event::unix_ms(),
                record.level(),
                record.target(),
                record.args().to_string(),
            ));
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

/// Installs the text logger. Calling it twice keeps the first.
pub fn init(config_filter: Option<&str>) {
    init_with_format(config_filter, false);
}

/// Installs the logger, writing JSON lines with `json`. Calling it twice
/// keeps the first.
pub fn init_with_format(config_filter: Option<&str>, json: bool) {
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
                write!(out, "<{}>", syslog_priority(record.level()))?;
            }
            if json {
                let line = Line::new(
                    crate::event::unix_ms(),
                    record.level(),
                    record.target(),
                    record.args().to_string(),
                );
                writeln!(out, "{}", line.to_json())
            } else if journal {
                writeln!(
                    out,
                    "{} {}: {}",
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

/// The facts of one invocation for the end of its log line: what Lambda's
/// `REPORT` line says (duration, memory size, peak memory), with the fuel
/// used where Lambda has billed duration: `REPORT Duration: 1.234 ms Fuel
/// Used: 56789 Memory Size: 1024 KiB Max Memory Used: 129 KiB`. Memory size
/// is the function's limit; memory used, the instance's linear memory after
/// the call (it only grows, so it is the peak).
pub fn report_line(
    duration: Duration,
    fuel_used: u64,
    memory_limit: usize,
    memory_used: usize,
) -> String {
    format!(
        "REPORT Duration: {:.3} ms Fuel Used: {fuel_used} Memory Size: {} KiB Max Memory Used: {} KiB",
        duration.as_secs_f64() * 1e3,
        memory_limit / 1024,
        memory_used.div_ceil(1024),
    )
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
    fn function_and_invoke_lines_name_their_function_and_request() {
        let guest = Line::new(
            0,
            log::Level::Info,
            "fn::talk",
            "[00112233aabbccdd] hello".to_owned(),
        );
        assert_eq!(guest.function.as_deref(), Some("talk"));
        assert_eq!(guest.request_id.as_deref(), Some("00112233aabbccdd"));
        assert_eq!(guest.message(), "hello");
        let failed = Line::new(
            0,
            log::Level::Warn,
            "ledge::invoke",
            "fails 00112233aabbccdd failed (error) after 5µs on mqtt x: no".to_owned(),
        );
        assert_eq!(failed.function.as_deref(), Some("fails"));
        assert_eq!(failed.request_id.as_deref(), Some("00112233aabbccdd"));
        assert_eq!(failed.message(), failed.text);
        let budget = Line::new(
            0,
            log::Level::Warn,
            "ledge::invoke",
            "talk: 5 log lines suppressed".to_owned(),
        );
        assert_eq!(
            (budget.function.as_deref(), budget.request_id),
            (Some("talk"), None)
        );
        let other = Line::new(
            0,
            log::Level::Info,
            "ledge::node",
            "[0011223344556677] x".to_owned(),
        );
        assert_eq!((other.function, other.request_id), (None, None));
        let json = guest.to_json();
        assert_eq!(json["MESSAGE"], "hello");
        assert_eq!(json["PRIORITY"], "6");
        assert_eq!(json["LEVEL"], "INFO");
        assert_eq!(json["FUNCTION"], "talk");
    }

    #[test]
    fn filters_select_by_function_level_and_request() {
        let line = Line::new(
            0,
            log::Level::Info,
            "fn::talk",
            "[00112233aabbccdd] hi".to_owned(),
        );
        let by = |function: Option<&str>, level: Option<log::Level>, id: Option<&str>| Filter {
            function: function.map(str::to_owned),
            level,
            request_id: id.map(str::to_owned),
        };
        assert!(by(None, None, None).matches(&line));
        assert!(by(Some("talk"), None, None).matches(&line));
        assert!(by(Some("talk:3"), None, None).matches(&line));
        assert!(!by(Some("other"), None, None).matches(&line));
        assert!(by(None, Some(log::Level::Info), None).matches(&line));
        assert!(!by(None, Some(log::Level::Warn), None).matches(&line));
        assert!(by(None, None, Some("00112233aabbccdd")).matches(&line));
        assert!(!by(None, None, Some("ffffffffffffffff")).matches(&line));
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_and_followers_get_the_rest_once() {
        let filter = Filter {
            function: Some("ring-test".to_owned()),
            ..Filter::default()
        };
        for i in 0..RECENT_LINES + 5 {
            remember(Line::new(
                0,
                log::Level::Info,
                "fn::ring-test",
                format!("line {i}"),
            ));
        }
        let (recent, mut live) = follow(&filter, usize::MAX);
        // Other tests log too; the newest lines of this one are all there.
        assert_eq!(recent.last().map(|l| l.text.as_str()), Some("line 1004"));
        assert!(recent.len() <= RECENT_LINES);
        assert_eq!(follow(&filter, 2).0.len(), 2);
        remember(Line::new(
            0,
            log::Level::Info,
            "fn::ring-test",
            "after".to_owned(),
        ));
        loop {
            let line = live.try_recv().expect("the line logged after following");
            if filter.matches(&line) {
                assert_eq!(line.text, "after");
                break;
            }
        }
    }

    #[test]
    fn report_lines_carry_lambdas_facts_and_fuel() {
        let facts = report_line(Duration::from_micros(1234), 56_789, 1 << 20, 131_073);
        assert_eq!(
            facts,
            "REPORT Duration: 1.234 ms Fuel Used: 56789 Memory Size: 1024 KiB Max Memory Used: 129 KiB"
        );
        // As the invocation's line ends it, the line still names its
        // function and request for `ledge logs`.
        let line =
            format!("talk 00112233aabbccdd ok in 1234µs (mqtt from t, 2 bytes out); {facts}");
        let parsed = Line::new(0, log::Level::Debug, "ledge::invoke", line);
        assert_eq!(parsed.function.as_deref(), Some("talk"));
        assert_eq!(parsed.request_id.as_deref(), Some("00112233aabbccdd"));
    }

    #[test]
    fn timestamps_are_utc_iso8601_with_milliseconds() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_timestamp(1_795_449_845_007), "2026-11-23T16:04:05.007Z");
    }
}
