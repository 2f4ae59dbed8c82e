//! What a function, sensor, output, alias, device or route may be called:
//! the one rule every resolver checks names against.

/// Letters, digits, `-`, `_` and any of `extra`; 1 to 64 characters: what a
/// function, sensor, output, alias or device may be called.
pub fn is_identifier(text: &str, extra: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(c))
}
