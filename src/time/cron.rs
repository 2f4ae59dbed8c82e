//! Cron expressions: parsing, and the next fire time in a time zone.
//!
//! # Syntax
//!
//! Five fields, `minute hour day-of-month month day-of-week`, as in Vixie
//! cron, or six with a **seconds** field first (`"*/10 * * * * *"`: every ten
//! seconds). Each field is a comma-separated list of `*`, `N`, `A-B`, with an
//! optional step `/S` (`*/5`, `10-40/10`, and `A/S` meaning `A-max/S`).
//! Months take `JAN`..`DEC`, days of the week `SUN`..`SAT` (case-insensitive);
//! day of week 0 and 7 are both Sunday. Shortcuts: `@yearly` (`@annually`),
//! `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
//!
//! When both day fields are restricted (neither starts with `*`) a day
//! matches if **either** matches (`0 0 1 * MON`: the 1st and every Monday),
//! as in Vixie cron; otherwise both must.
//!
//! # Time zones and daylight saving
//!
//! Fields are matched against the wall clock of the schedule's time zone.
//! When the clock jumps forward (a spring-forward gap), wall times inside
//! the gap do not exist: a schedule that matches any of them fires **once, at
//! the moment of the change**. When the clock falls back, wall times in the
//! repeated hour occur twice: an expression whose hour field starts with `*`
//! (`*/15 * * * *`, `0 * * * *`) fires in both passes, keeping its rhythm;
//! any other (a fixed time such as `30 1 * * *`) fires only in the first.
//! That is Vixie cron's rule for changes of less than three hours.
//!
//! The calculator is pure: it maps an instant to the next instant, so tests
//! drive it with any clock.

use super::tz::{civil_from_days, days_from_civil, TimeZone};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// Bit n set: second n matches (only bit 0 for five-field expressions).
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    days_of_week: u8,
    /// Both day fields restricted: a day matches if either does.
    day_or: bool,
    /// The hour field starts with `*`: repeated wall times fire twice.
    hour_wildcard: bool,
}

/// One field's legal range and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
/// Names start at `min`: JAN = 1.
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
/// 7 is Sunday too; SUN = 0.
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// Seconds in a day: the calculator works on whole days of the local calendar.
const DAY: i64 = 86_400;

/// The Gregorian calendar repeats every 400 years (146,097 days, a whole
/// number of weeks), and so does every cron expression's pattern of fire
/// times: an expression that fires at all fires within any 400 years. The
/// calculator searches one cycle plus a year, so that a wall time skipped by
/// a daylight-saving change at the start of the window recurs inside it.
/// Rare expressions are far apart: `* * */7 4 6` (a Saturday among 1, 8, 15,
/// 22, 29 April) can wait 11 years, `0 0 29 2 */7` (29 February on a
/// Sunday) 40.
const SEARCH_SECONDS: i64 = (146_097 + 366) * DAY;

impl Cron {
    /// Parses a five- or six-field expression or an `@` shortcut.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "unknown shortcut `{text}` (known: @yearly, @monthly, @weekly, @daily, @hourly)"
                ))
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => (1, &fields[..]),
            6 => (parse_field(fields[0], &SECOND)?, &fields[1..]),
            n => {
                return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; `{text}` has {n}"
            ))
            }
        };
        let dow = parse_field(rest[4], &DAY_OF_WEEK)?;
        let cron = Cron {
            seconds,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)? as u32,
            days_of_month: parse_field(rest[2], &DAY_OF_MONTH)? as u32,
            months: parse_field(rest[3], &MONTH)? as u16,
            // 7 is Sunday.
            days_of_week: ((dow & 0x7f) | (dow >> 7)) as u8,
            day_or: !rest[2].starts_with('*') && !rest[4].starts_with('*'),
            hour_wildcard: rest[1].starts_with('*'),
        };
        if cron.next_civil(-1, SEARCH_SECONDS).is_none() {
            let why = if cron.any_valid_day_of_month() {
                "no date has that day of month and day of week"
            } else {
                "no month in it has that day"
            };
            return Err(format!("`{text}` never fires: {why}"));
        }
        Ok(cron)
    }

    /// Whether some month in the expression has one of its days of month.
    fn any_valid_day_of_month(&self) -> bool {
        const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12).any(|m| {
            self.months & (1 << m) != 0
                && (1..=LONGEST[m as usize - 1]).any(|d| self.days_of_month & (1 << d) != 0)
        })
    }

    /// The first instant strictly after `after` (UNIX seconds) at which the
    /// expression fires in `tz`, or `None` if it never fires again (only
    /// near the end of time: [`Cron::parse`] refuses expressions that never
    /// fire).
    pub fn next_after(&self, after: i64, tz: &TimeZone) -> Option<i64> {
        let limit = after.saturating_add(SEARCH_SECONDS);
        let mut lo = after;
        while lo < limit {
            let offset = tz.offset_at(lo + 1) as i64;
            let change = tz.next_transition(lo + 1);
            // Only up to the next change: the offset holds until then.
            let end = change.map_or(limit, |(at, _)| at.min(limit));
            if let Some(candidate) = self.next_civil(lo + offset, end + offset) {
                return Some(candidate - offset);
            }
            let (at, new_offset) = change.filter(|(at, _)| *at < limit)?;
            let new_offset = new_offset as i64;
            if new_offset > offset {
                // Spring forward: wall times [at+offset, at+new_offset) are
                // skipped; if one of them matches, fire at the change.
                if self.next_civil(at + offset - 1, at + new_offset).is_some() {
                    return Some(at);
                }
                lo = at - 1;
            } else if new_offset < offset && !self.hour_wildcard {
                // Fall back: the repeated wall times already fired.
                lo = at + (offset - new_offset) - 1;
            } else {
                lo = at - 1;
            }
        }
        None
    }

    /// The most recent fire time in `(floor, at]`, if any. Looks back in
    /// growing windows so a long gap costs no more than a short one.
    pub fn last_at_or_before(&self, at: i64, floor: i64, tz: &TimeZone) -> Option<i64> {
        let mut window: i64 = 60;
        loop {
            let from = at.saturating_sub(window).max(floor);
            let mut found = None;
            let mut t = from;
            while let Some(next) = self.next_after(t, tz).filter(|n| *n <= at) {
                found = Some(next);
                t = next;
            }
            if found.is_some() || from == floor || window > SEARCH_SECONDS {
                return found;
            }
            window = window.saturating_mul(16);
        }
    }

    /// Whether the wall time `civil` (seconds since 1970-01-01 00:00 of the
    /// local calendar) matches.
    pub fn matches_civil(&self, civil: i64) -> bool {
        let days = civil.div_euclid(86_400);
        let second_of_day = civil.rem_euclid(86_400);
        let (_, month, day) = civil_from_days(days);
        bit64(self.seconds, (second_of_day % 60) as u32)
            && bit64(self.minutes, (second_of_day / 60 % 60) as u32)
            && self.hours & (1 << (second_of_day / 3600)) != 0
            && self.months & (1 << month) != 0
            && self.day_matches(days, day)
    }

    fn day_matches(&self, days: i64, day_of_month: u32) -> bool {
        let dom = self.days_of_month & (1 << day_of_month) != 0;
        // 1970-01-01 was a Thursday (4).
        let dow = self.days_of_week & (1 << (days + 4).rem_euclid(7)) != 0;
        if self.day_or {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first matching wall time strictly after `after` and before
    /// `limit`, on the local calendar (no time zone involved). Skips whole
    /// months whose month does not match and whole days whose day does not,
    /// so searching a 400-year cycle costs at most a few thousand steps
    /// per month in the expression.
    fn next_civil(&self, after: i64, limit: i64) -> Option<i64> {
        let start = after.checked_add(1)?;
        let mut days = start.div_euclid(DAY);
        // The first second of `days` still to consider: only the first day
        // starts part-way through.
        let mut from_second = start.rem_euclid(DAY) as u32;
        let (mut year, mut month, mut day) = civil_from_days(days);
        while days.saturating_mul(DAY) < limit {
            if self.months & (1 << month) != 0 {
                let length = month_length(year, month);
                while day <= length && days.saturating_mul(DAY) < limit {
                    if self.day_matches(days, day) {
                        if let Some(second) = self.next_time_of_day(from_second) {
                            let t = days * DAY + second as i64;
                            return (t < limit).then_some(t);
                        }
                    }
                    day += 1;
                    days += 1;
                    from_second = 0;
                }
            }
            (year, month) = if month == 12 {
                (year.checked_add(1)?, 1)
            } else {
                (year, month + 1)
            };
            day = 1;
            days = days_from_civil(year, month, 1);
            from_second = 0;
        }
        None
    }

    /// The first matching second of a day at or after `from` (seconds
    /// since midnight), if the day has one left.
    fn next_time_of_day(&self, from: u32) -> Option<u32> {
        let (mut hour, mut minute, mut second) = (from / 3600, from / 60 % 60, from % 60);
        loop {
            let h = next_bit(self.hours.into(), hour)?;
            if h != hour {
                (hour, minute, second) = (h, 0, 0);
            }
            match next_bit(self.minutes, minute) {
                None => {
                    (hour, minute, second) = (hour + 1, 0, 0);
                    continue;
                }
                Some(m) if m != minute => (minute, second) = (m, 0),
                Some(_) => {}
            }
            match next_bit(self.seconds, second) {
                None => (minute, second) = (minute + 1, 0),
                Some(s) => return Some(hour * 3600 + minute * 60 + s),
            }
        }
    }
}

/// Days in `month` of `year`.
fn month_length(year: i32, month: u32) -> u32 {
    const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    DAYS[month as usize - 1] + u32::from(month == 2 && leap)
}

fn bit64(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

/// The smallest set bit at or above `from`.
fn next_bit(set: u64, from: u32) -> Option<u32> {
    let rest = set.checked_shr(from)?;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// Parses one field into a bit set (bit n = value n matches).
fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("bad step `{step}` in {} field `{text}`", field.name)
                    })?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" {
            // Day of week: `*` is 0-6 (7 is Sunday again).
            let high = if field.max == 7 { 6 } else { field.max };
            (field.min, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field, text)?, value(b, field, text)?)
        } else {
            let a = value(range, field, text)?;
            // `A/S` means from A to the end, stepping by S.
            (a, if step.is_some() { field.max } else { a })
        };
        if low > high {
            return Err(format!(
                "range `{range}` runs backwards in {} field `{text}`",
                field.name
            ));
        }
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field, whole: &str) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    let named = field
        .names
        .iter()
        .position(|n| *n == upper)
        .map(|i| i as u32 + if field.max == 12 { 1 } else { 0 });
    let v = named.or_else(|| text.parse().ok()).ok_or_else(|| {
        format!(
            "`{text}` is not a {} in `{whole}`{}",
            field.name,
            if field.names.is_empty() {
                String::new()
            } else {
                format!(
                    " (numbers or {}..{})",
                    field.names[0],
                    field.names[field.names.len() - 1]
                )
            }
        )
    })?;
    if v < field.min || v > field.max {
        return Err(format!(
            "{} {v} is out of range {}-{} in `{whole}`",
            field.name, field.min, field.max
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    fn next(expr: &str, after: i64) -> i64 {
        Cron::parse(expr)
            .unwrap()
            .next_after(after, &TimeZone::Utc)
            .unwrap()
    }

    #[test]
    fn every_five_minutes_fires_on_the_next_multiple_of_five() {
        let t = utc(2026, 11, 23, 22, 31, 7);
        assert_eq!(next("*/5 * * * *", t), utc(2026, 11, 23, 22, 35, 0));
        // Strictly after: at 22:35:00 the next is 22:40.
        assert_eq!(
            next("*/5 * * * *", utc(2026, 11, 23, 22, 35, 0)),
            utc(2026, 11, 23, 22, 40, 0)
        );
    }

    #[test]
    fn the_end_of_the_year_rolls_into_the_next() {
        let t = utc(2026, 12, 31, 23, 59, 30);
        assert_eq!(next("* * * * *", t), utc(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("@yearly", t), utc(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("@monthly", t), utc(2027, 1, 1, 0, 0, 0));
    }

    #[test]
    fn names_lists_ranges_and_steps_combine() {
        let cron = Cron::parse("0,30 9-17/4 * jan-mar MON-fri").unwrap();
        assert_eq!(cron.hours, (1 << 9) | (1 << 13) | (1 << 17));
        assert_eq!(cron.minutes, 1 | (1 << 30));
        assert_eq!(cron.months, 0b1110);
        assert_eq!(cron.days_of_week, 0b0111110);
        // Monday 2026-01-05 09:00.
        assert_eq!(
            next("0,30 9-17/4 * jan-mar MON-fri", utc(2026, 1, 3, 12, 0, 0)),
            utc(2026, 1, 5, 9, 0, 0)
        );
        assert_eq!(
            Cron::parse("5/20 * * * *").unwrap().minutes,
            (1 << 5) | (1 << 25) | (1 << 45)
        );
    }

    #[test]
    fn sunday_is_both_zero_and_seven() {
        assert_eq!(Cron::parse("0 0 * * 7").unwrap().days_of_week, 1);
        assert_eq!(Cron::parse("0 0 * * 5-7").unwrap().days_of_week, 0b1100001);
        // 2026-11-29 is a Sunday.
        assert_eq!(
            next("@weekly", utc(2026, 11, 23, 0, 0, 0)),
            utc(2026, 11, 29, 0, 0, 0)
        );
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 1st of the month or a Monday: Mon 2026-11-30, then Tue 12-01.
        let t = utc(2026, 11, 24, 0, 0, 0);
        assert_eq!(next("0 12 1 * MON", t), utc(2026, 11, 30, 12, 0, 0));
        assert_eq!(
            next("0 12 1 * MON", utc(2026, 11, 30, 12, 0, 0)),
            utc(2026, 12, 1, 12, 0, 0)
        );
        // With a `*` day of week only the day of month counts.
        assert_eq!(next("0 12 1 * *", t), utc(2026, 12, 1, 12, 0, 0));
        // `*/2` starts with `*`: both must match (Vixie): odd days that are Mondays.
        assert_eq!(next("0 12 */2 * MON", t), utc(2026, 12, 7, 12, 0, 0));
    }

    #[test]
    fn the_29th_of_february_waits_for_a_leap_year() {
        assert_eq!(
            next("0 0 29 2 *", utc(2026, 3, 1, 0, 0, 0)),
            utc(2028, 2, 29, 0, 0, 0)
        );
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let t = utc(2026, 11, 23, 22, 31, 7);
        assert_eq!(next("*/10 * * * * *", t), utc(2026, 11, 23, 22, 31, 10));
        assert_eq!(next("30 0 12 * * *", t), utc(2026, 11, 24, 12, 0, 30));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let err = |e: &str| Cron::parse(e).unwrap_err();
        assert!(err("* * * *").contains("has 4"), "{}", err("* * * *"));
        assert!(err("60 * * * *").contains("minute 60 is out of range 0-59"));
        assert!(err("* 24 * * *").contains("hour 24"));
        assert!(err("* * 0 * *").contains("day of month 0"));
        assert!(err("* * * FOO *").contains("`FOO` is not a month"));
        assert!(err("*/0 * * * *").contains("bad step"));
        assert!(err("5-1 * * * *").contains("backwards"));
        assert!(err("@reboot").contains("unknown shortcut"));
        assert!(err("0 0 30 2 *").contains("never fires"));
        assert!(err("x * * * *").contains("not a minute"));
        // Or-semantics make 30 February valid as long as a weekday is named.
        assert!(Cron::parse("0 0 30 2 MON").is_ok());
    }

    /// A zone like Central Europe: +1, +2 from the last Sunday of March
    /// 02:00 to the last Sunday of October 03:00.
    fn cet() -> TimeZone {
        TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    #[test]
    fn a_fixed_time_in_a_zone_is_its_local_wall_time() {
        // 07:00 in Berlin is 06:00 UTC in winter, 05:00 in summer.
        assert_eq!(
            Cron::parse("0 7 * * *")
                .unwrap()
                .next_after(utc(2026, 1, 10, 0, 0, 0), &cet()),
            Some(utc(2026, 1, 10, 6, 0, 0))
        );
        assert_eq!(
            Cron::parse("0 7 * * *")
                .unwrap()
                .next_after(utc(2026, 7, 10, 0, 0, 0), &cet()),
            Some(utc(2026, 7, 10, 5, 0, 0))
        );
        let plus_two = TimeZone::Fixed(7200);
        assert_eq!(
            Cron::parse("0 7 * * *")
                .unwrap()
                .next_after(utc(2026, 1, 10, 0, 0, 0), &plus_two),
            Some(utc(2026, 1, 10, 5, 0, 0))
        );
    }

    #[test]
    fn a_wall_time_skipped_by_spring_forward_fires_at_the_change() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        let cron = Cron::parse("30 2 * * *").unwrap();
        let change = utc(2026, 3, 29, 1, 0, 0);
        assert_eq!(
            cron.next_after(utc(2026, 3, 28, 12, 0, 0), &cet()),
            Some(change)
        );
        // Then the next day at 02:30 CEST = 00:30 UTC.
        assert_eq!(
            cron.next_after(change, &cet()),
            Some(utc(2026, 3, 30, 0, 30, 0))
        );
        // An every-15-minutes schedule fires once at the change (for 02:00,
        // 02:15, ...), then 03:15 CEST.
        let quarter = Cron::parse("*/15 * * * *").unwrap();
        assert_eq!(quarter.next_after(change - 60, &cet()), Some(change));
        assert_eq!(quarter.next_after(change, &cet()), Some(change + 15 * 60));
    }

    #[test]
    fn a_repeated_wall_time_fires_once_unless_the_hour_is_a_wildcard() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC;
        // 02:30 local is 00:30 UTC (first) and 01:30 UTC (second).
        let fixed = Cron::parse("30 2 * * *").unwrap();
        let first = utc(2026, 10, 25, 0, 30, 0);
        assert_eq!(fixed.next_after(first - 1, &cet()), Some(first));
        assert_eq!(
            fixed.next_after(first, &cet()),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
        let hourly = Cron::parse("30 * * * *").unwrap();
        assert_eq!(hourly.next_after(first, &cet()), Some(first + 3600));
        assert_eq!(hourly.next_after(first + 3600, &cet()), Some(first + 7200));
    }

    #[test]
    fn the_most_recent_fire_time_is_found_after_a_long_gap() {
        let cron = Cron::parse("0 * * * *").unwrap();
        let now = utc(2026, 11, 23, 22, 31, 0);
        let floor = now - 400 * 86_400;
        assert_eq!(
            cron.last_at_or_before(now, floor, &TimeZone::Utc),
            Some(utc(2026, 11, 23, 22, 0, 0))
        );
        // Nothing in (floor, at].
        assert_eq!(cron.last_at_or_before(now, now - 60, &TimeZone::Utc), None);
        let yearly = Cron::parse("@yearly").unwrap();
        assert_eq!(
            yearly.last_at_or_before(now, floor, &TimeZone::Utc),
            Some(utc(2026, 1, 1, 0, 0, 0))
        );
    }

    /// The earliest second of a day the time fields allow, from their bit
    /// sets directly (not through the calculator).
    fn first_time_of_day(cron: &Cron) -> i64 {
        (cron.hours.trailing_zeros() * 3600
            + cron.minutes.trailing_zeros() * 60
            + cron.seconds.trailing_zeros()) as i64
    }

    /// The first midnight after `after` that falls on `day` `month` and is
    /// a Sunday, found year by year.
    fn next_sunday_date(month: u32, day: u32, after: i64) -> i64 {
        let (start, _, _) = civil_from_days(after.div_euclid(DAY));
        (start..start + 1000)
            .filter_map(|year| {
                let days = days_from_civil(year, month, day);
                // Not a real date: days_from_civil rolls it into the next month.
                (civil_from_days(days) == (year, month, day)).then_some(days)
            })
            .filter(|days| (days + 4).rem_euclid(7) == 0)
            .map(|days| days * DAY)
            .find(|t| *t > after)
            .unwrap()
    }

    #[test]
    fn rare_dates_years_apart_are_found_exactly() {
        // A Saturday among 1, 8, 15, 22, 29 April (`*/7` starts with `*`: both
        // day fields must match): only in years where 1 April is a
        // Saturday. From mid-2062 the next is 2073 (11 years), beyond the
        // 9-year horizon the calculator once had.
        let after: i64 = 2_913_580_740; // 2062-04-29T23:59:00Z
        let saturday_in_april = |t: i64| {
            let (_, month, day) = civil_from_days(t.div_euclid(DAY));
            month == 4 && day % 7 == 1 && (t.div_euclid(DAY) + 4).rem_euclid(7) == 6
        };
        let expected = (after.div_euclid(DAY) + 1..)
            .map(|d| d * DAY)
            .find(|t| saturday_in_april(*t))
            .unwrap();
        assert_eq!(civil_from_days(expected.div_euclid(DAY)), (2073, 4, 1));
        assert_eq!(next("* * */7 4 6", after), expected);
        // 29 February on a Sunday: 2088, then 2128 (2100 is no leap year).
        assert_eq!(
            next("0 0 29 2 */7", utc(2088, 3, 1, 0, 0, 0)),
            utc(2128, 2, 29, 0, 0, 0)
        );
    }

    #[test]
    fn every_date_on_a_sunday_is_found_from_any_year() {
        // `*/7` in the day of week is Sunday alone, and both fields must match.
        for month in 1..=12 {
            for day in 1..=month_length(2000, month) {
                let expr = format!("0 0 {day} {month} */7");
                for after in [utc(2026, 6, 1, 0, 0, 0), utc(2090, 1, 1, 0, 0, 0)] {
                    assert_eq!(
                        next(&expr, after),
                        next_sunday_date(month, day, after),
                        "{expr} after {after}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_expression_that_can_never_fire_is_refused() {
        for expr in [
            "0 0 31 2 *",
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 30-31 2 */7",
        ] {
            let err = Cron::parse(expr).unwrap_err();
            assert!(err.contains("never fires"), "{expr}: {err}");
        }
        // Each of these has a date, however rare.
        for expr in ["0 0 29 2 *", "0 0 29 2 */7", "0 0 31 1-2 *", "0 0 30 2 MON"] {
            assert!(Cron::parse(expr).is_ok(), "{expr}");
        }
    }

    fn field(max: u32, min: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (min..=max).prop_map(|v| v.to_string()),
            (min..=max, 1..=max.max(1)).prop_map(move |(a, s)| format!("{a}-{max}/{s}")),
            (1..=max.max(1)).prop_map(|s| format!("*/{s}")),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{},{}", a.min(b), a.max(b))),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        (
            field(59, 0),
            field(23, 0),
            field(28, 1),
            field(12, 1),
            field(6, 0),
            proptest::bool::ANY,
        )
            .prop_map(|(s, h, dom, mon, dow, seconds)| {
                let five = format!("{s} {h} {dom} {mon} {dow}");
                if seconds {
                    format!("{s} {five}")
                } else {
                    five
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The next fire time matches, and no second between matches.
        #[test]
        fn the_next_fire_time_matches_and_nothing_before_it_does(
            expr in expression(),
            after in 0i64..4_000_000_000,
        ) {
            let cron = Cron::parse(&expr).unwrap();
            let next = cron.next_after(after, &TimeZone::Utc).unwrap();
            prop_assert!(next > after);
            prop_assert!(cron.matches_civil(next), "{expr}: {next} does not match");
            // Check every second of the first two days, then every day up
            // to the next fire: a day has a match if and only if it matches
            // at the first second the time fields allow.
            let end = next.min(after + 2 * DAY);
            for t in after + 1..end {
                prop_assert!(!cron.matches_civil(t), "{expr}: {t} matches, before {next}");
            }
            let first_second = first_time_of_day(&cron);
            let mut day = end.div_euclid(DAY);
            while day * DAY + first_second < next {
                let t = day * DAY + first_second;
                prop_assert!(t <= after || !cron.matches_civil(t), "{expr}: {t} matches, before {next}");
                day += 1;
            }
        }

        /// In a zone with daylight saving every fire time is an instant whose
        /// wall time matches, unless it is the moment of a spring-forward.
        #[test]
        fn fire_times_in_a_zone_are_matching_wall_times(
            expr in expression(),
            after in 1_600_000_000i64..2_000_000_000,
        ) {
            let cron = Cron::parse(&expr).unwrap();
            let tz = cet();
            let next = cron.next_after(after, &tz).unwrap();
            prop_assert!(next > after);
            let wall = next + tz.offset_at(next) as i64;
            let at_change = tz.offset_at(next - 1) != tz.offset_at(next);
            prop_assert!(cron.matches_civil(wall) || at_change, "{expr}: {next}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Around daylight-saving changes, no instant before a fire time has
        /// a matching wall time, except in the second pass of a repeated
        /// hour for a fixed-hour expression.
        #[test]
        fn nothing_before_a_fire_time_around_a_dst_change_matches(
            expr in expression(),
            year in 2021i32..2060,
            autumn in proptest::bool::ANY,
            delta in -2 * 86_400i64..86_400,
        ) {
            let cron = Cron::parse(&expr).unwrap();
            let tz = cet();
            let from = days_from_civil(year, if autumn { 7 } else { 1 }, 1) * 86_400;
            let (change, _) = tz.next_transition(from).unwrap();
            let after = change + delta;
            let next = cron.next_after(after, &tz).unwrap();
            for u in after + 1..next.min(after + 86_400) {
                let wall = u + tz.offset_at(u) as i64;
                let second_pass = tz.offset_at(u) == 3600 && tz.offset_at(u - 3600) == 7200;
                prop_assert!(
                    !cron.matches_civil(wall) || (second_pass && !cron.hour_wildcard),
                    "{expr}: {u} has a matching wall time, before {next}"
                );
            }
        }
    }
}
