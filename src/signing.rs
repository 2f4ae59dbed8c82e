//! ed25519 keys and signatures for deployments (ring's implementation,
//! already in the binary for TLS).
//!
//! Keys travel as text: a public key is `<key id>:<64 hex digits>` (what
//! `[deploy] trusted_keys` lists), a secret key file holds the 32-byte seed
//! as 64 hex digits. Signatures are 128 hex digits.
//!
//! Beside the pipeline because two layers use it: the config checks
//! `[deploy] trusted_keys`, and `deploy` signs and verifies documents.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{0}")]
    BadKey(String),
    #[error("cannot generate a key: the system's random source failed")]
    Random,
}

/// Parses `<key id>:<hex public key>`.
pub fn parse_public_key(text: &str) -> Result<(String, [u8; 32]), String> {
    let Some((id, hex)) = text.rsplit_once(':') else {
        return Err(format!(
            "trusted key `{text}` must be \"<key id>:<64 hex digits>\" (as `ledge keygen` prints it)"
        ));
    };
    let valid_id = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if !valid_id {
        return Err(format!(
            "trusted key id `{id}` must be letters, digits, `-`, `_`, `.` or `@`"
        ));
    }
    let bytes = from_hex(hex)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("trusted key `{id}`: the public key must be 64 hex digits"))?;
    let mut key = [0; 32];
    key.copy_from_slice(&bytes);
    Ok((id.to_owned(), key))
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    crate::hex::decode(text.trim())
}

/// A new key pair: (secret seed, public key).
pub fn generate() -> Result<([u8; 32], [u8; 32]), SigningError> {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| SigningError::Random)?;
    let public = key_pair(&seed)?
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| SigningError::BadKey("ed25519 public key is not 32 bytes".to_owned()))?;
    Ok((seed, public))
}

fn key_pair(seed: &[u8; 32]) -> Result<Ed25519KeyPair, SigningError> {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|e| SigningError::BadKey(format!("invalid ed25519 seed: {e}")))
}

/// Reads a secret key file's seed.
pub fn parse_secret_key(text: &str) -> Result<[u8; 32], SigningError> {
    let bytes = from_hex(text)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| SigningError::BadKey("a secret key file holds 64 hex digits".to_owned()))?;
    let mut seed = [0; 32];
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

pub fn public_key(seed: &[u8; 32]) -> Result<[u8; 32], SigningError> {
    key_pair(seed)?
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| SigningError::BadKey("ed25519 public key is not 32 bytes".to_owned()))
}

/// Signs `message`; 64 bytes.
pub fn sign(seed: &[u8; 32], message: &[u8]) -> Result<Vec<u8>, SigningError> {
    Ok(key_pair(seed)?.sign(message).as_ref().to_vec())
}

pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let (seed, public) = generate().unwrap();
        let (_, other) = generate().unwrap();
        let signature = sign(&seed, b"deploy v2").unwrap();
        assert!(verify(&public, b"deploy v2", &signature));
        assert!(!verify(&public, b"deploy v3", &signature));
        assert!(!verify(&other, b"deploy v2", &signature));
        assert_eq!(public_key(&seed).unwrap(), public);
    }

    #[test]
    fn public_keys_parse_from_their_text_form() {
        let text = format!("ops-2026:{}", "ab".repeat(32));
        let (id, key) = parse_public_key(&text).unwrap();
        assert_eq!((id.as_str(), key[0]), ("ops-2026", 0xab));
        assert!(parse_public_key("nokey").is_err());
        assert!(parse_public_key("k:abcd").is_err());
        assert!(parse_public_key(&format!("bad id:{}", "ab".repeat(32))).is_err());
    }
}
