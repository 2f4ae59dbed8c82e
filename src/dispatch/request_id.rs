//! Request ids: unique per invocation, cheap to make, and short enough to
//! read in a log line (16 hex digits).
//!
//! Each id is the next draw of the process-wide stream in `crate::rand`,
//! which never repeats within a process and is seeded from the OS, so ids
//! are unlikely to repeat across restarts either.

/// The next request id.
pub fn next() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = crate::rand::next_u64();
    // One allocation, no formatting machinery: made once per request.
    (0..16)
        .rev()
        .map(|i| char::from(HEX[((n >> (i * 4)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_sixteen_hex_digits_and_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| next()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
