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

/// How far ahead the calculator looks before deciding an expression never
/// fires again. Every valid expression matches at least once in 8 years
/// (29 February can be 8 years apart around 2100).
const HORIZON_SECONDS: i64 = 9 * 366 * 86_400;

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
        if !cron.day_or && rest[4].starts_with('*') && !cron.any_valid_day_of_month() {
            return Err(format!("`{text}` never fires: no month in it has that day"));
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
    /// expression fires in `tz`, or `None` if it never fires again.
    pub fn next_after(&self, after: i64, tz: &TimeZone) -> Option<i64> {
        let limit = after.saturating_add(HORIZON_SECONDS);
        let mut lo = after;
        while lo < limit {
            let offset = tz.offset_at(lo + 1) as i64;
            let change = tz.next_transition(lo + 1);
            let candidate = self.next_civil(lo + offset, limit + offset)? - offset;
            match change {
                Some((at, _)) if candidate >= at => {}
                _ => return Some(candidate),
            }
            let (at, new_offset) = change?;
            let new_offset = new_offset as i64;
            if new_offset > offset {
                // Spring forward: wall times [at+offset, at+new_offset) are
                // skipped; if one of them matches, fire at the change.
                if self
                    .next_civil(at + offset - 1, at + new_offset)
                    .is_some_and(|c| c < at + new_offset)
                {
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
            if found.is_some() || from == floor || window > HORIZON_SECONDS {
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
    /// `limit`, on the local calendar (no time zone involved).
    fn next_civil(&self, after: i64, limit: i64) -> Option<i64> {
        let mut t = after + 1;
        while t < limit {
            let days = t.div_euclid(86_400);
            let sod = t.rem_euclid(86_400);
            let (year, month, day) = civil_from_days(days);
            if self.months & (1 << month) == 0 {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                t = days_from_civil(y, m, 1) * 86_400;
                continue;
            }
            if !self.day_matches(days, day) {
                t = (days + 1) * 86_400;
                continue;
            }
            let (hour, minute, second) = (
                (sod / 3600) as u32,
                (sod / 60 % 60) as u32,
                (sod % 60) as u32,
            );
            match next_bit(self.hours as u64, hour) {
                None => {
                    t = (days + 1) * 86_400;
                    continue;
                }
                Some(h) if h != hour => {
                    t = days * 86_400 + h as i64 * 3600;
                    continue;
                }
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                None => {
                    t = days * 86_400 + (hour as i64 + 1) * 3600;
                    continue;
                }
                Some(m) if m != minute => {
                    t = days * 86_400 + hour as i64 * 3600 + m as i64 * 60;
                    continue;
                }
                Some(_) => {}
            }
            match next_bit(self.seconds, second) {
                None => {
                    t = days * 86_400 + hour as i64 * 3600 + (minute as i64 + 1) * 60;
                    continue;
                }
                Some(s) => {
                    return Some(days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + s as i64)
                        .filter(|t| *t < limit)
                }
            }
        }
        None
    }
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
            // Check every second up to the next fire (bounded for speed: a
            // minute-granular scan beyond the first day).
            let end = next.min(after + 2 * 86_400);
            for t in after + 1..end {
                prop_assert!(!cron.matches_civil(t), "{expr}: {t} matches, before {next}");
            }
            let mut t = end - end.rem_euclid(60);
            while t < next {
                if t > after {
                    prop_assert!(!cron.matches_civil(t), "{expr}: {t} matches, before {next}");
                }
                t += 60;
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
