//! The embedded broker's users file (`[broker] users_file`): who may connect
//! as a local MQTT client.
//!
//! One user per line, `name:pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`
//! (make a line with `ledge passwd NAME`); blank lines and `#` comments are
//! ignored. Passwords are never stored: a hash is checked with PBKDF2-HMAC-
//! SHA256 (ring, already linked for TLS). Parsing reports the line of any
//! mistake; nothing here echoes a hash or a password.

use std::collections::HashMap;
use std::num::NonZeroU32;

use ring::pbkdf2;

const SCHEME: &str = "pbkdf2-sha256";
/// Iterations for new hashes: about 5 ms on a Pi 4 core per login, which
/// the broker spends off its I/O task.
pub const DEFAULT_ITERATIONS: u32 = 10_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// A parsed users file.
#[derive(Clone, PartialEq, Eq)]
pub struct Users {
    users: HashMap<String, Hash>,
}

#[derive(Clone, PartialEq, Eq)]
struct Hash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.users.len())
    }
}

/// A mistake in a users file: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct UsersError {
    pub line: usize,
    pub message: String,
}

impl Users {
    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let fail = |message: &str| UsersError {
                line: index + 1,
                message: message.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line.split_once(':').ok_or_else(|| {
                fail("expected `name:pbkdf2-sha256$...` (make one with `ledge passwd NAME`)")
            })?;
            if name.is_empty() {
                return Err(fail("the user name is empty"));
            }
            let hash = parse_hash(hash).map_err(|m| fail(&m))?;
            if users.insert(name.to_owned(), hash).is_some() {
                return Err(fail(&format!("user `{name}` is listed twice")));
            }
        }
        if users.is_empty() {
            return Err(UsersError {
                line: 0,
                message: "the file lists no users, so no client could connect".to_owned(),
            });
        }
        Ok(Self { users })
    }

    /// True if `password` is `name`'s. Deliberately slow (PBKDF2).
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        let Some(entry) = self.users.get(name) else {
            return false;
        };
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            entry.iterations,
            &entry.salt,
            password,
            &entry.hash,
        )
        .is_ok()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn parse_hash(text: &str) -> Result<Hash, String> {
    let mut parts = text.split('$');
    let (Some(scheme), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!("expected `{SCHEME}$<iterations>$<salt>$<hash>`"));
    };
    if scheme != SCHEME {
        return Err(format!("unknown hash scheme `{scheme}` (only {SCHEME})"));
    }
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or("the iteration count must be a positive number")?;
    let salt = crate::hex::decode(salt).ok_or("the salt is not hex")?;
    let hash = crate::hex::decode(hash).ok_or("the hash is not hex")?;
    if hash.len() != HASH_LEN {
        return Err(format!("the hash must be {HASH_LEN} bytes"));
    }
    Ok(Hash {
        iterations,
        salt,
        hash,
    })
}

/// A users-file line for `name` with `password`, salted at random.
pub fn hash_line(name: &str, password: &[u8], iterations: u32) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let iterations = NonZeroU32::new(iterations).ok_or("iterations must be positive")?;
    if name.is_empty() || name.contains([':', '\n']) {
        return Err("a user name must be non-empty and contain no `:`".to_owned());
    }
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no randomness available for the salt".to_owned())?;
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password,
        &mut hash,
    );
    Ok(format!(
        "{name}:{SCHEME}${iterations}${}${}",
        crate::hex::encode(&salt),
        crate::hex::encode(&hash)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_line_verifies_its_password_only() {
        let line = hash_line("hub", b"s3cret", 1000).unwrap();
        let users = Users::parse(&format!("# comment\n\n{line}\n")).unwrap();
        assert!(users.verify("hub", b"s3cret"));
        assert!(!users.verify("hub", b"s3cret!"));
        assert!(!users.verify("other", b"s3cret"));
        assert!(!line.contains("s3cret"));
    }

    #[test]
    fn mistakes_name_their_line() {
        let good = hash_line("a", b"x", 10).unwrap();
        let err = Users::parse(&format!("{good}\nb:plain-text\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("pbkdf2-sha256"), "{err}");
        let err = Users::parse(&format!("{good}\n{good}\n")).unwrap_err();
        assert!(err.message.contains("twice"), "{err}");
        assert!(Users::parse("# nobody\n").is_err());
        assert!(Users::parse("a:pbkdf2-sha256$0$00$00").is_err());
    }
}
