//! Human units: sizes (`"16MiB"`, `"256KiB"`, `"4096"`), durations
//! (`"200ms"`, `"5m"`, `"1.5s"`) and rates (`"2000/s"`, `"10/m"`), as the
//! config file, command-line flags and the spool's `fsync = "interval:..."`
//! policy write them.
//!
//! Both parse into plain integers (bytes, `Duration`) so the rest of ledge never
//! sees strings. Errors say which forms are accepted, because the user is
//! looking at a config file, not at this code.

use std::time::Duration;

/// Parses a byte size: a number with an optional unit `B`, `KiB`, `MiB`,
/// `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    scale(number, multiplier as f64, text)
}

/// Parses a duration: a number followed by `ms`, `s`, `m`, `h` or `d`.
/// A bare number is rejected: `timeout = "200"` is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let millis_per_unit: f64 = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "" => {
            return Err(format!(
                "`{text}` has no unit (write for example \"200ms\", \"5s\", \"10m\")"
            ))
        }
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ))
        }
    };
    scale(number, millis_per_unit, text).map(Duration::from_millis)
}

/// Parses a rate, `<count>/<period>`: `"2000/s"`, `"10/m"`, `"1/h"`, or
/// with a period of its own, `"5/100ms"`. Returns events per second,
/// greater than zero.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let form = "(write for example \"2000/s\", \"10/m\" or \"1/h\")";
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a rate {form}"));
    };
    let (count, rest) =
        split_number(count).map_err(|_| format!("`{text}` does not start with a count {form}"))?;
    if !rest.is_empty() {
        return Err(format!("`{text}` is not a rate {form}"));
    }
    let period = period.trim();
    if period.is_empty() {
        return Err(format!("`{text}` has no period {form}"));
    }
    // "s" alone means one second: the period's number is optional.
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(period)
    } else {
        parse_duration(&format!("1{period}"))
    }
    .map_err(|_| format!("`{text}`: the period `{period}` is not a duration {form}"))?;
    let per_second = count / period.as_secs_f64();
    if !per_second.is_finite() || per_second <= 0.0 {
        return Err(format!(
            "`{text}` must be a count above zero per a period above zero"
        ));
    }
    Ok(per_second)
}

/// Formats a byte count the way a user would write it in the config.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
        if bytes >= size {
            return format!("{:.1}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration compactly (`200ms`, `5s`, `10m`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => format!("{}µs", duration.as_micros()),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let trimmed = text.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(end);
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    Ok((number, unit.trim()))
}

fn scale(number: f64, multiplier: f64, text: &str) -> Result<u64, String> {
    let value = number * multiplier;
    if !value.is_finite() || value > u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("256 KiB"), Ok(256 << 10));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1_000B"), Ok(1000));
    }

    #[test]
    fn sizes_reject_unknown_units_with_the_accepted_list() {
        let err = parse_size("16 megs").unwrap_err();
        assert!(err.contains("megs") && err.contains("MiB"), "{err}");
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("200").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 weeks").unwrap_err().contains("weeks"));
    }

    #[test]
    fn rates_are_a_count_per_period() {
        assert_eq!(parse_rate("2000/s"), Ok(2000.0));
        assert_eq!(parse_rate("2_000 / s"), Ok(2000.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert_eq!(parse_rate("5/100ms"), Ok(50.0));
        assert_eq!(parse_rate("1/10s"), Ok(0.1));
    }

    #[test]
    fn rates_reject_what_is_not_a_positive_count_per_period() {
        for (text, says) in [
            ("2000", "not a rate"),
            ("2000/", "no period"),
            ("fast/s", "count"),
            ("10x/s", "not a rate"),
            ("0/s", "above zero"),
            ("10/0s", "above zero"),
            ("10/weeks", "weeks"),
        ] {
            let err = parse_rate(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for text in ["16MiB", "256KiB", "1GiB", "17B"] {
            assert_eq!(format_size(parse_size(text).unwrap()), text);
        }
        for text in ["200ms", "5s", "10m", "2h"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
