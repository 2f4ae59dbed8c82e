//! Time zones for cron schedules: UTC, fixed offsets, and IANA zones read
//! from the system's TZif files (`/usr/share/zoneinfo/<name>`, or `$TZDIR`).
//!
//! A zone answers two questions, which is all the cron calculator needs: the
//! UTC offset at an instant, and the next instant the offset changes. TZif
//! files list transitions explicitly up to some year; after the last one the
//! file's footer (a POSIX TZ string such as `CET-1CEST,M3.5.0,M10.5.0/3`)
//! gives the rule, which "slim" files rely on for every future change.
//! Leap seconds in a file are ignored (ledge counts UNIX time).

use std::path::Path;

/// A time zone. All offsets are seconds east of UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeZone {
    Utc,
    Fixed(i32),
    Rules(Box<Zone>),
}

/// Transitions from a TZif file, then its POSIX rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Offset before the first transition.
    before: i32,
    /// (instant, offset from then on), in time order.
    transitions: Vec<(i64, i32)>,
    /// The rule after the last transition, if the file has one.
    rule: Option<Posix>,
}

/// A POSIX TZ rule: standard offset, and optionally daylight saving time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posix {
    std: i32,
    dst: Option<Dst>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dst {
    offset: i32,
    start: (RuleDay, i32),
    end: (RuleDay, i32),
}

/// When in the year a change happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleDay {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian1(u32),
    /// `n`: day 0..=365, February 29 counted.
    Julian0(u32),
    /// `Mm.w.d`: weekday d (0 = Sunday) of week w (5 = last) of month m.
    Month(u32, u32, u32),
}

impl TimeZone {
    /// Resolves a `timezone` value: `"UTC"`, a fixed offset (`"+02:00"`,
    /// `"-0530"`), `"local"` (the system's `/etc/localtime`, read at load),
    /// or an IANA name looked up under `zoneinfo`.
    pub fn resolve(name: &str, zoneinfo: &Path) -> Result<Self, String> {
        if matches!(name, "UTC" | "Z" | "Etc/UTC") {
            return Ok(Self::Utc);
        }
        if name == "local" {
            let path = Path::new("/etc/localtime");
            let bytes = std::fs::read(path)
                .map_err(|e| format!("timezone \"local\": cannot read {} ({e})", path.display()))?;
            return parse_tzif(&bytes)
                .map(|zone| Self::Rules(Box::new(zone)))
                .map_err(|e| {
                    format!(
                        "timezone \"local\": {} is not a TZif file: {e}",
                        path.display()
                    )
                });
        }
        if name.starts_with(['+', '-']) {
            return parse_fixed(name).map(Self::Fixed).ok_or_else(|| {
                format!("bad UTC offset `{name}` (write it as \"+02:00\" or \"-05:30\")")
            });
        }
        let plausible = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != ".." && part != ".")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
        if !plausible {
            return Err(format!(
                "`{name}` is not a time zone name (e.g. \"Europe/Berlin\", \"UTC\", \"+02:00\")"
            ));
        }
        let path = zoneinfo.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "unknown time zone `{name}`: cannot read {} ({e}); use \"UTC\", an offset such as \"+02:00\", or install tzdata",
                path.display()
            )
        })?;
        parse_tzif(&bytes)
            .map(|zone| Self::Rules(Box::new(zone)))
            .map_err(|e| {
                format!(
                    "time zone `{name}`: {} is not a TZif file: {e}",
                    path.display()
                )
            })
    }

    /// A zone from a POSIX TZ string alone (tests, and TZif footers).
    pub fn from_posix(text: &str) -> Result<Self, String> {
        let rule = Posix::parse(text)?;
        Ok(Self::Rules(Box::new(Zone {
            before: rule.std,
            transitions: Vec::new(),
            rule: Some(rule),
        })))
    }

    /// The UTC offset in force at `utc` (UNIX seconds).
    pub fn offset_at(&self, utc: i64) -> i32 {
        match self {
            Self::Utc => 0,
            Self::Fixed(offset) => *offset,
            Self::Rules(zone) => zone.offset_at(utc),
        }
    }

    /// The first change of offset strictly after `utc`: when, and the
    /// offset from then on.
    pub fn next_transition(&self, utc: i64) -> Option<(i64, i32)> {
        match self {
            Self::Utc | Self::Fixed(_) => None,
            Self::Rules(zone) => zone.next_transition(utc),
        }
    }

    /// ISO 8601 local time with its offset: `2026-11-23T23:35:00+01:00`
    /// (`Z` in UTC).
    pub fn format_iso(&self, utc: i64) -> String {
        let offset = self.offset_at(utc);
        let local = utc + offset as i64;
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400);
        let zone = if matches!(self, Self::Utc) {
            "Z".to_owned()
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
        };
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl Zone {
    fn offset_at(&self, utc: i64) -> i32 {
        let i = self.transitions.partition_point(|(t, _)| *t <= utc);
        match (i, &self.rule) {
            (i, Some(rule)) if i == self.transitions.len() => rule.offset_at(utc),
            (0, _) => self.before,
            (i, _) => self.transitions[i - 1].1,
        }
    }

    fn next_transition(&self, utc: i64) -> Option<(i64, i32)> {
        let i = self.transitions.partition_point(|(t, _)| *t <= utc);
        match self.transitions.get(i) {
            Some(change) => Some(*change),
            None => self.rule.as_ref()?.next_transition(utc),
        }
    }
}

impl Posix {
    /// Parses `STD offset [DST [offset] [,start[/time],end[/time]]]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("bad POSIX TZ rule `{text}`");
        let mut rest = text;
        skip_name(&mut rest).ok_or_else(bad)?;
        let std = -take_offset(&mut rest).ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(Self { std, dst: None });
        }
        skip_name(&mut rest).ok_or_else(bad)?;
        let offset = if rest.starts_with(',') || rest.is_empty() {
            std + 3600
        } else {
            -take_offset(&mut rest).ok_or_else(bad)?
        };
        // Without rules, the US rules (POSIX's implementation-defined default).
        let rules = rest.strip_prefix(',').unwrap_or("M3.2.0,M11.1.0");
        let (start, end) = rules.split_once(',').ok_or_else(bad)?;
        Ok(Self {
            std,
            dst: Some(Dst {
                offset,
                start: parse_rule(start).ok_or_else(bad)?,
                end: parse_rule(end).ok_or_else(bad)?,
            }),
        })
    }

    /// The two changes of a year: (start of DST, end of DST), as instants.
    fn changes(&self, dst: &Dst, year: i32) -> (i64, i64) {
        let start = rule_days(dst.start.0, year) * 86_400 + dst.start.1 as i64 - self.std as i64;
        let end = rule_days(dst.end.0, year) * 86_400 + dst.end.1 as i64 - dst.offset as i64;
        (start, end)
    }

    fn offset_at(&self, utc: i64) -> i32 {
        let Some(dst) = &self.dst else {
            return self.std;
        };
        let year = civil_from_days((utc + self.std as i64).div_euclid(86_400)).0;
        let (start, end) = self.changes(dst, year);
        let in_dst = if start < end {
            start <= utc && utc < end
        } else {
            utc < end || start <= utc
        };
        if in_dst {
            dst.offset
        } else {
            self.std
        }
    }

    fn next_transition(&self, utc: i64) -> Option<(i64, i32)> {
        let dst = self.dst.as_ref()?;
        let year = civil_from_days(utc.div_euclid(86_400)).0;
        (year - 1..=year + 1)
            .flat_map(|y| {
                let (start, end) = self.changes(dst, y);
                [(start, dst.offset), (end, self.std)]
            })
            .filter(|(t, _)| *t > utc)
            .min_by_key(|(t, _)| *t)
    }
}

/// Skips a zone abbreviation: letters, or `<...>` (e.g. `<+0330>`).
fn skip_name(rest: &mut &str) -> Option<()> {
    let len = if let Some(quoted) = rest.strip_prefix('<') {
        quoted.find('>')? + 2
    } else {
        rest.find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len())
    };
    (len >= 3).then(|| *rest = &rest[len..])
}

/// Takes `[+-]hh[:mm[:ss]]` as seconds (POSIX sign: positive is west).
fn take_offset(rest: &mut &str) -> Option<i32> {
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-:".contains(c)))
        .unwrap_or(rest.len());
    let value = hms(&rest[..end])?;
    *rest = &rest[end..];
    Some(value)
}

fn hms(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let mut parts = digits.split(':');
    let h: i32 = parts.next()?.parse().ok()?;
    let m: i32 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let s: i32 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    (h <= 167 && m < 60 && s < 60 && parts.next().is_none())
        .then_some(sign * (h * 3600 + m * 60 + s))
}

fn parse_rule(text: &str) -> Option<(RuleDay, i32)> {
    let (day, time) = match text.split_once('/') {
        Some((day, time)) => (day, hms(time)?),
        None => (text, 7200),
    };
    let day = if let Some(m) = day.strip_prefix('M') {
        let mut p = m.split('.').map(|v| v.parse::<u32>().ok());
        let (m, w, d) = (p.next()??, p.next()??, p.next()??);
        ((1..=12).contains(&m) && (1..=5).contains(&w) && d <= 6)
            .then_some(RuleDay::Month(m, w, d))?
    } else if let Some(j) = day.strip_prefix('J') {
        RuleDay::Julian1(j.parse().ok().filter(|j| (1..=365).contains(j))?)
    } else {
        RuleDay::Julian0(day.parse().ok().filter(|n| *n <= 365)?)
    };
    Some((day, time))
}

/// Days since 1970-01-01 of a rule's day in `year`.
fn rule_days(day: RuleDay, year: i32) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    match day {
        RuleDay::Julian1(n) => {
            let leap_skip = is_leap(year) && n >= 60;
            jan1 + n as i64 - 1 + leap_skip as i64
        }
        RuleDay::Julian0(n) => jan1 + n as i64,
        RuleDay::Month(m, w, d) => {
            let first = days_from_civil(year, m, 1);
            let first_dow = (first + 4).rem_euclid(7);
            let mut day = first + (d as i64 - first_dow).rem_euclid(7) + (w as i64 - 1) * 7;
            let next_month = if m == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, m + 1, 1)
            };
            while day >= next_month {
                day -= 7;
            }
            day
        }
    }
}

/// `+HH:MM`, `-HH:MM`, `+HHMM` or `+HH` as seconds east.
fn parse_fixed(text: &str) -> Option<i32> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits = &text[1..];
    let (h, m) = match (digits.len(), digits.split_once(':')) {
        (_, Some((h, m))) if h.len() == 2 && m.len() == 2 => (h, m),
        (4, None) => digits.split_at(2),
        (2, None) => (digits, "00"),
        _ => return None,
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Parses a TZif file (RFC 8536), version 1 to 4.
fn parse_tzif(bytes: &[u8]) -> Result<Zone, String> {
    let header = |at: usize| -> Result<[usize; 6], String> {
        let h = bytes.get(at..at + 44).ok_or("truncated header")?;
        if &h[..4] != b"TZif" {
            return Err("no TZif magic".to_owned());
        }
        let mut counts = [0usize; 6];
        for (i, c) in counts.iter_mut().enumerate() {
            let b = &h[20 + 4 * i..24 + 4 * i];
            *c = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        }
        Ok(counts)
    };
    let v1 = header(0)?;
    let version = bytes[4];
    // counts: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
    let block_len = |c: [usize; 6], time: usize| {
        c[3] * time + c[3] + c[4] * 6 + c[5] + c[2] * (time + 4) + c[1] + c[0]
    };
    let (counts, start, time_size) = if version >= b'2' {
        let at = 44 + block_len(v1, 4);
        (header(at)?, at + 44, 8)
    } else {
        (v1, 44, 4)
    };
    let data = bytes
        .get(start..start + block_len(counts, time_size))
        .ok_or("truncated data")?;
    let [_, _, _, timecnt, typecnt, _] = counts;
    if typecnt == 0 {
        return Err("no local time types".to_owned());
    }
    let times = &data[..timecnt * time_size];
    let indices = &data[timecnt * time_size..timecnt * (time_size + 1)];
    let types = &data[timecnt * (time_size + 1)..timecnt * (time_size + 1) + typecnt * 6];
    let offset_of = |i: usize| -> Result<i32, String> {
        let t = types.get(i * 6..i * 6 + 4).ok_or("bad type index")?;
        Ok(i32::from_be_bytes([t[0], t[1], t[2], t[3]]))
    };
    let mut transitions = Vec::with_capacity(timecnt);
    for i in 0..timecnt {
        let b = &times[i * time_size..(i + 1) * time_size];
        let at = if time_size == 8 {
            i64::from_be_bytes(b.try_into().map_err(|_| "bad time")?)
        } else {
            i32::from_be_bytes(b.try_into().map_err(|_| "bad time")?) as i64
        };
        transitions.push((at, offset_of(indices[i] as usize)?));
    }
    let footer = &bytes[start + data.len()..];
    let rule = match std::str::from_utf8(footer)
        .ok()
        .map(|f| f.trim_matches('\n'))
    {
        Some(text) if version >= b'2' && !text.is_empty() => Some(Posix::parse(text)?),
        _ => None,
    };
    Ok(Zone {
        before: offset_of(0)?,
        transitions,
        rule,
    })
}

fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = year as i64 - (month <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (the inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn fixed_offsets_and_utc_are_resolved_without_files() {
        let none = Path::new("/nonexistent");
        assert_eq!(TimeZone::resolve("UTC", none), Ok(TimeZone::Utc));
        assert_eq!(TimeZone::resolve("+02:00", none), Ok(TimeZone::Fixed(7200)));
        assert_eq!(
            TimeZone::resolve("-0530", none),
            Ok(TimeZone::Fixed(-19_800))
        );
        assert!(TimeZone::resolve("+25:00", none)
            .unwrap_err()
            .contains("bad UTC offset"));
        assert!(TimeZone::resolve("../etc/passwd", none)
            .unwrap_err()
            .contains("not a time zone name"));
        assert!(TimeZone::resolve("Mars/Olympus", none)
            .unwrap_err()
            .contains("unknown time zone `Mars/Olympus`"));
    }

    #[test]
    fn iso_times_carry_their_offset() {
        let t = utc(2026, 11, 23, 22, 35);
        assert_eq!(TimeZone::Utc.format_iso(t), "2026-11-23T22:35:00Z");
        assert_eq!(
            TimeZone::Fixed(3600).format_iso(t),
            "2026-11-23T23:35:00+01:00"
        );
        assert_eq!(
            TimeZone::Fixed(-19_800).format_iso(t),
            "2026-11-23T17:05:00-05:30"
        );
    }

    #[test]
    fn posix_rules_give_the_european_changes() {
        let tz = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let spring = utc(2026, 3, 29, 1, 0);
        let autumn = utc(2026, 10, 25, 1, 0);
        assert_eq!(tz.offset_at(spring - 1), 3600);
        assert_eq!(tz.offset_at(spring), 7200);
        assert_eq!(tz.offset_at(autumn - 1), 7200);
        assert_eq!(tz.offset_at(autumn), 3600);
        assert_eq!(
            tz.next_transition(utc(2026, 1, 1, 0, 0)),
            Some((spring, 7200))
        );
        assert_eq!(tz.next_transition(spring), Some((autumn, 3600)));
        // The southern hemisphere: Sydney is on DST from October to April.
        let sydney = TimeZone::from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(utc(2026, 1, 15, 0, 0)), 11 * 3600);
        assert_eq!(sydney.offset_at(utc(2026, 7, 15, 0, 0)), 10 * 3600);
        assert_eq!(
            TimeZone::from_posix("<+0330>-3:30").unwrap().offset_at(0),
            12_600
        );
    }

    /// Uses the system's tzdata, which this crate's test setup installs
    /// (tests/run.sh); ledge reads the same files on a gateway.
    #[test]
    fn a_system_tzif_file_agrees_with_the_rules() {
        let tz = TimeZone::resolve("Europe/Berlin", Path::new("/usr/share/zoneinfo")).unwrap();
        let rule = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        for t in (utc(2020, 1, 1, 0, 0)..utc(2045, 1, 1, 0, 0)).step_by(3 * 3600 + 7) {
            assert_eq!(tz.offset_at(t), rule.offset_at(t), "at {t}");
        }
        // Before the rules: Berlin in 1950 was +1.
        assert_eq!(tz.offset_at(utc(1950, 1, 1, 0, 0)), 3600);
        assert_eq!(
            tz.next_transition(utc(2026, 1, 1, 0, 0)),
            Some((utc(2026, 3, 29, 1, 0), 7200))
        );
        assert_eq!(
            tz.next_transition(utc(2040, 4, 1, 0, 0)),
            Some((utc(2040, 10, 28, 1, 0), 3600))
        );
    }
}
