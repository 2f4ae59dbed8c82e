//! How much one function may write to ledge's log.
//!
//! A guest can provoke a log line with every host call (a `log`, a denied
//! publish, a refused GPIO write), millions of times a second. Three caps
//! keep that from filling the journal or the spool's log stream, for guest
//! `log` lines and host-call refusals alike:
//!
//! - per line: guest text is cut (a log line at [`MAX_LOG_LINE`], a topic
//!   or line name echoed in a refusal at [`MAX_ECHO`]);
//! - per invocation: [`MAX_LOG_LINES`] lines and [`MAX_LOG_BYTES`] bytes;
//!   the rest are counted in the outcome (`logs_dropped`) and summarised
//!   once by whoever reports the invocation;
//! - per function and second, across its instances: [`LINES_PER_SECOND`]
//!   lines and [`BYTES_PER_SECOND`] bytes; the rest are counted and
//!   summarised as "f: 99,000 log lines suppressed".

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A log line longer than this is cut.
pub const MAX_LOG_LINE: usize = 8 << 10;
/// Guest strings echoed in refusals (topics, line names) are cut here.
pub const MAX_ECHO: usize = 128;
/// Lines kept per invocation.
pub const MAX_LOG_LINES: u32 = 256;
/// Bytes kept per invocation.
pub const MAX_LOG_BYTES: usize = 32 << 10;
/// Lines per function per second, over all its instances.
pub const LINES_PER_SECOND: u32 = 500;
/// Bytes per function per second, over all its instances.
pub const BYTES_PER_SECOND: usize = 64 << 10;

const WINDOW: Duration = Duration::from_secs(1);

/// One function's share of the log, shared by its instances.
#[derive(Debug)]
pub struct LogBudget {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    lines: u32,
    bytes: usize,
    /// Lines refused since the last summary.
    suppressed: u64,
    /// When the last summary was logged: at most one a second.
    last_summary: Option<Instant>,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                bytes: 0,
                suppressed: 0,
                last_summary: None,
            }),
        }
    }
}

impl LogBudget {
    /// True if a line of `len` bytes may be written now; false counts it
    /// as suppressed.
    pub fn admit(&self, function: &str, len: usize) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(window.started) >= WINDOW {
            summarise(function, &mut window, now);
            window.started = now;
            window.lines = 0;
            window.bytes = 0;
        }
        if window.lines >= LINES_PER_SECOND || window.bytes.saturating_add(len) > BYTES_PER_SECOND {
            window.suppressed += 1;
            return false;
        }
        window.lines += 1;
        window.bytes += len;
        true
    }

    /// Logs how many lines were suppressed since the last summary, if any
    /// and if the last summary is a second old: called at the end of each
    /// invocation, so a flood is summarised even if the function never
    /// runs again, without a summary line per invocation.
    pub fn summarise(&self, function: &str) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        summarise(function, &mut window, Instant::now());
    }
}

fn summarise(function: &str, window: &mut Window, now: Instant) {
    if window.suppressed == 0
        || window
            .last_summary
            .is_some_and(|last| now.duration_since(last) < WINDOW)
    {
        return;
    }
    window.last_summary = Some(now);
    log::warn!(
        target: "ledge::invoke",
        "{function}: {} log lines suppressed (a function may log {LINES_PER_SECOND} lines or {} KiB per second)",
        thousands(window.suppressed),
        BYTES_PER_SECOND >> 10
    );
    window.suppressed = 0;
}

/// 99000 as "99,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_gets_its_lines_per_second_and_no_more() {
        let budget = LogBudget::default();
        let admitted = (0..1000).filter(|_| budget.admit("f", 10)).count();
        assert_eq!(admitted, LINES_PER_SECOND as usize);
        let budget = LogBudget::default();
        let admitted = (0..1000).filter(|_| budget.admit("f", 8 << 10)).count();
        assert_eq!(admitted, BYTES_PER_SECOND / (8 << 10));
    }

    #[test]
    fn suppressed_lines_are_summarised_at_most_once_a_second() {
        let budget = LogBudget::default();
        for _ in 0..(LINES_PER_SECOND + 10) {
            budget.admit("f", 10);
        }
        let mut window = budget.window.lock().unwrap();
        let now = Instant::now();
        summarise("f", &mut window, now);
        assert_eq!(window.suppressed, 0, "the first summary is logged");
        window.suppressed = 5;
        summarise("f", &mut window, now + Duration::from_millis(10));
        assert_eq!(window.suppressed, 5, "held back within the second");
        summarise("f", &mut window, now + WINDOW);
        assert_eq!(window.suppressed, 0);
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(99_000), "99,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
