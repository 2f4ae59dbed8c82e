//! Keeping secret values out of what ledge writes down.
//!
//! A function's `env_file` values are secrets; anything a function says
//! that ledge logs, ships, reports or keeps (log lines, refusals, errors,
//! dead letters) goes through here first. Redaction runs on the whole text
//! before any cut, and a cut that would leave the beginning of a secret at
//! the end of the kept text masks that beginning too: a log line cut at
//! 8 KiB never carries half a secret.

use std::borrow::Cow;

/// Values shorter than this are not redacted: they would redact ordinary
/// words.
pub const MIN_SECRET_LEN: usize = 4;

/// A secret: its key (shown in the marker) and its value.
pub type Secret<'a> = (&'a str, &'a str);

/// `text` with every secret value replaced by `[secret KEY]`.
pub fn redact<'t>(text: &'t str, secrets: &[Secret<'_>]) -> Cow<'t, str> {
    let mut out = Cow::Borrowed(text);
    for (key, value) in secrets {
        if value.len() >= MIN_SECRET_LEN && out.contains(value) {
            out = Cow::Owned(out.replace(value, &format!("[secret {key}]")));
        }
    }
    out
}

/// Guest bytes as one line of text: lossy UTF-8, secrets redacted, at most
/// `max` bytes, with `…[truncated N bytes]` when cut.
///
/// Only the first `max` bytes plus the longest secret are decoded, so a
/// huge input costs no more than a short one, yet every secret that starts
/// before the cut is seen whole.
pub fn redact_and_cut(bytes: &[u8], max: usize, secrets: &[Secret<'_>]) -> String {
    let longest = secrets.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let window_end = bytes.len().min(max.saturating_add(longest));
    let window = String::from_utf8_lossy(&bytes[..window_end]);
    let redacted = redact(&window, secrets);
    if window_end == bytes.len() && redacted.len() <= max {
        return redacted.into_owned();
    }
    let mut cut = floor_char_boundary(&redacted, max.min(redacted.len()));
    cut -= secret_prefix_at_end(&redacted[..cut], secrets);
    let mut line = redacted[..cut].to_owned();
    let dropped = bytes.len().saturating_sub(cut);
    line.push_str(&format!("…[truncated {dropped} bytes]"));
    line
}

/// The length of the longest beginning of a secret that `text` ends with.
fn secret_prefix_at_end(text: &str, secrets: &[Secret<'_>]) -> usize {
    secrets
        .iter()
        .filter(|(_, value)| value.len() >= MIN_SECRET_LEN)
        .filter_map(|(_, value)| {
            (1..value.len())
                .rev()
                .find(|&k| value.is_char_boundary(k) && text.ends_with(&value[..k]))
        })
        .max()
        .unwrap_or(0)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRETS: [Secret<'static>; 2] = [("TOKEN", "QW0123456789"), ("PIN", "W9Q8")];

    #[test]
    fn whole_secrets_are_replaced_by_their_key() {
        assert_eq!(
            redact("a QW0123456789 b W9Q8", &SECRETS),
            "a [secret TOKEN] b [secret PIN]"
        );
        assert!(matches!(redact("nothing", &SECRETS), Cow::Borrowed(_)));
        assert_eq!(redact("abc", &[("K", "abc")]), "abc", "too short to redact");
    }

    #[test]
    fn short_text_is_kept_and_long_text_cut_with_a_count() {
        assert_eq!(redact_and_cut(b"ok", 8, &[]), "ok");
        assert_eq!(redact_and_cut(&[0x66, 0xff, 0x6f], 8, &[]), "f\u{fffd}o");
        let cut = redact_and_cut(&[b'a'; 20], 8, &[]);
        assert_eq!(cut, "aaaaaaaa…[truncated 12 bytes]");
    }

    #[test]
    fn a_secret_across_the_cut_leaves_nothing_of_itself() {
        let text = b"aaaaaaQW0123456789bbbb";
        let line = redact_and_cut(text, 10, &SECRETS);
        assert!(line.starts_with("aaaaaa[sec"), "{line}");
        let line = redact_and_cut(b"aaaaaaQW01", 8, &SECRETS);
        assert!(line.starts_with("aaaaaa…"), "{line}");
    }

    proptest! {
        /// Secrets anywhere in a line of any length, cut anywhere: no
        /// character of a secret survives outside a marker. Filler text is
        /// drawn from letters no secret uses, so any survivor is a leak.
        #[test]
        fn no_piece_of_a_secret_survives_any_cut(
            pieces in proptest::collection::vec((0usize..40, 0usize..2), 0..6),
            max in 0usize..200,
        ) {
            let mut text = String::new();
            for (filler, which) in &pieces {
                text.push_str(&"ab".repeat(*filler));
                text.push_str(SECRETS[*which].1);
            }
            let line = redact_and_cut(text.as_bytes(), max, &SECRETS);
            let body = line.split('…').next().unwrap_or_default();
            let outside = body.replace("[secret TOKEN]", "").replace("[secret PIN]", "");
            prop_assert!(
                !outside.chars().any(|c| "QW0123456789".contains(c)),
                "{line:?} from {text:?} at {max}"
            );
            prop_assert!(body.len() <= max, "{line:?}");
        }
    }
}
