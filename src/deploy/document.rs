//! The deployment document: what a backend (or `ledge sign`) publishes on
//! `<prefix>/deploy`, and how ledge checks it before anything runs.
//!
//! ```json
//! {"deployment": "<the deployment, as JSON text>",
//!  "key_id": "ops-2026",
//!  "signature": "<128 hex digits: ed25519 over the deployment text's bytes>"}
//! ```
//!
//! The deployment itself (signed as the exact bytes of that string, so no
//! JSON canonicalisation is needed on either side):
//!
//! ```json
//! {"format": "ledge-deploy-1", "function": "threshold-alert", "version": 3,
//!  "alias": "live", "sha256": "<hex>", "size": 48213, "chunk_size": 65536,
//!  "settings": {"memory_bytes": 1048576, "timeout_ms": 500, "env": {"K": "V"}},
//!  "created_at_ms": 1795000000000}
//! ```
//!
//! The module follows in `ceil(size / chunk_size)` chunks on
//! `<prefix>/deploy/chunk/<function>/<version>/<index>`, raw bytes, every
//! one `chunk_size` long but the last.

use serde::{Deserialize, Serialize};

use super::store::{check_name, Settings};
use crate::signing;

pub const FORMAT: &str = "ledge-deploy-1";
/// Chunks must fit common broker message limits with room to spare.
pub const MAX_CHUNK_SIZE: u64 = 256 << 10;
/// Chunks per module: the upload's bookkeeping (and its `receiving`
/// report) grows with the count, which an unchecked document could set to
/// millions with one-byte chunks. A 4 MiB module needs chunks of 1 KiB.
pub const MAX_CHUNKS: u64 = 4096;
/// Text taken from a document before its signature is checked (a key id)
/// is echoed in logs and reports cut to this many bytes.
pub const MAX_ECHO: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub deployment: String,
    pub key_id: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub format: String,
    pub function: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub chunk_size: u64,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub created_at_ms: u64,
}

impl Deployment {
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// The length chunk `index` must have.
    pub fn chunk_len(&self, index: u64) -> u64 {
        if index + 1 < self.chunks() {
            self.chunk_size
        } else {
            self.size - self.chunk_size * (self.chunks() - 1)
        }
    }
}

/// Why a deployment was refused; reported upstream as `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a deployment document: {0}")]
    Malformed(String),
    #[error("signed by unknown key `{0}` (trusted: {1})")]
    UnknownKey(String, String),
    #[error("bad signature: the deployment was not signed by key `{0}`")]
    BadSignature(String),
    #[error("{0}")]
    Invalid(String),
    #[error("module of {size} bytes is over deploy.max_module_size ({limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
}

/// Checks an envelope's signature against the trusted keys and the
/// deployment's fields; the deployment is then safe to act on.
pub fn verify(
    payload: &[u8],
    trusted: &[(String, [u8; 32])],
    max_module_size: u64,
) -> Result<Deployment, Rejected> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|e| Rejected::Malformed(short(&e.to_string(), 4 * MAX_ECHO)))?;
    let Some((_, key)) = trusted.iter().find(|(id, _)| *id == envelope.key_id) else {
        let ids: Vec<&str> = trusted.iter().map(|(id, _)| id.as_str()).collect();
        return Err(Rejected::UnknownKey(
            short(&envelope.key_id, MAX_ECHO),
            if ids.is_empty() {
                "none configured in [deploy] trusted_keys".to_owned()
            } else {
                ids.join(", ")
            },
        ));
    };
    let signature = signing::from_hex(&envelope.signature)
        .ok_or_else(|| Rejected::BadSignature(envelope.key_id.clone()))?;
    if !signing::verify(key, envelope.deployment.as_bytes(), &signature) {
        return Err(Rejected::BadSignature(envelope.key_id));
    }
    let deployment: Deployment = serde_json::from_str(&envelope.deployment).map_err(|e| {
        Rejected::Malformed(format!(
            "signed deployment: {}",
            short(&e.to_string(), 4 * MAX_ECHO)
        ))
    })?;
    check(&deployment, max_module_size)?;
    Ok(deployment)
}

fn check(d: &Deployment, max_module_size: u64) -> Result<(), Rejected> {
    let invalid = |m: String| Err(Rejected::Invalid(m));
    if d.format != FORMAT {
        return invalid(format!("format `{}` is not {FORMAT}", d.format));
    }
    check_name(&d.function, "function").map_err(|e| Rejected::Invalid(e.to_string()))?;
    if let Some(alias) = &d.alias {
        check_name(alias, "alias").map_err(|e| Rejected::Invalid(e.to_string()))?;
    }
    if d.version == 0 {
        return invalid("versions are numbered from 1".to_owned());
    }
    if d.sha256.len() != 64 || !d.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return invalid("sha256 must be 64 hex digits".to_owned());
    }
    if d.size == 0 {
        return invalid("size is 0: an empty module".to_owned());
    }
    if d.size > max_module_size {
        return Err(Rejected::TooLarge {
            size: d.size,
            limit: max_module_size,
        });
    }
    if d.chunk_size == 0 || d.chunk_size > MAX_CHUNK_SIZE {
        return invalid(format!(
            "chunk_size {} is out of range (1 to {MAX_CHUNK_SIZE})",
            d.chunk_size
        ));
    }
    if d.chunks() > MAX_CHUNKS {
        return invalid(format!(
            "chunk_size {} splits {} bytes into {} chunks, more than {MAX_CHUNKS}: use chunk_size {} or more",
            d.chunk_size,
            d.size,
            d.chunks(),
            d.size.div_ceil(MAX_CHUNKS)
        ));
    }
    Ok(())
}

/// `text` cut to at most `max` bytes, with its full length when cut: how
/// unverified input is shown.
pub fn short(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &text[..end], text.len())
}

/// Signs a deployment into an envelope (what `ledge sign` writes).
pub fn seal(
    deployment: &Deployment,
    key_id: &str,
    seed: &[u8; 32],
) -> Result<Envelope, signing::SigningError> {
    let text = serde_json::to_string(deployment)
        .map_err(|e| signing::SigningError::BadKey(e.to_string()))?;
    let signature = signing::sign(seed, text.as_bytes())?;
    Ok(Envelope {
        deployment: text,
        key_id: key_id.to_owned(),
        signature: super::store::hex(&signature),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            format: FORMAT.to_owned(),
            function: "f".to_owned(),
            version: 2,
            alias: Some("live".to_owned()),
            sha256: "ab".repeat(32),
            size: 100_000,
            chunk_size: 65_536,
            settings: Settings::default(),
            created_at_ms: 1,
        }
    }

    fn keys() -> ([u8; 32], Vec<(String, [u8; 32])>) {
        let (seed, public) = signing::generate().unwrap();
        (seed, vec![("ops".to_owned(), public)])
    }

    #[test]
    fn a_sealed_deployment_verifies() {
        let (seed, trusted) = keys();
        let envelope = seal(&deployment(), "ops", &seed).unwrap();
        let payload = serde_json::to_vec(&envelope).unwrap();
        assert_eq!(verify(&payload, &trusted, 4 << 20).unwrap(), deployment());
        assert_eq!(deployment().chunks(), 2);
        assert_eq!(deployment().chunk_len(1), 100_000 - 65_536);
    }

    #[test]
    fn tampering_unknown_keys_and_limits_are_rejected() {
        let (seed, trusted) = keys();
        let mut envelope = seal(&deployment(), "ops", &seed).unwrap();
        envelope.deployment = envelope
            .deployment
            .replace("\"version\":2", "\"version\":9");
        let payload = serde_json::to_vec(&envelope).unwrap();
        assert_eq!(
            verify(&payload, &trusted, 4 << 20),
            Err(Rejected::BadSignature("ops".to_owned()))
        );

        let envelope = seal(&deployment(), "someone", &seed).unwrap();
        let payload = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            verify(&payload, &trusted, 4 << 20),
            Err(Rejected::UnknownKey(..))
        ));

        let (other_seed, _) = keys();
        let envelope = seal(&deployment(), "ops", &other_seed).unwrap();
        let payload = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            verify(&payload, &trusted, 4 << 20),
            Err(Rejected::BadSignature(_))
        ));

        let envelope = seal(&deployment(), "ops", &seed).unwrap();
        let payload = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            verify(&payload, &trusted, 50_000),
            Err(Rejected::TooLarge { .. })
        ));
        assert!(matches!(
            verify(b"{not json", &trusted, 50_000),
            Err(Rejected::Malformed(_))
        ));
    }
}
