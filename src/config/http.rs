//! The HTTP part of the plan: the `[http]` server (address, HTTPS files,
//! limits, credentials, CORS) and `source = "http"` routes (method, path
//! with `{param}` and `{proxy+}`, auth, throttling), as
//! `config::resolve::http` checks and builds them from the raw config.
//!
//! Credential files are read here and kept as [`ApiKeys`] (SHA-256 hashes
//! only) and [`Credentials`] (access key id → secret, never printed).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::names::is_identifier;
use super::secret::Secret;

/// `[http] listen` when the section does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Largest request body: API Gateway's payload limit is 10 MB, Lambda's 6 MB;
/// a gateway with 512 MB of RAM holds a few of these at once.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// How long a client has to send a request's head, and again its body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Simultaneous connections; beyond it the longest-idle one is closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// API Gateway's shortest API key.
const MIN_API_KEY: usize = 20;
/// Paths the server answers itself; routes may not take them.
pub const RESERVED_PATHS: [&str; 2] = ["/metrics", "/healthz"];
/// The first segment of Lambda's own API (`/2015-03-31/functions/...`).
pub const LAMBDA_API_PREFIX: &str = "2015-03-31";

/// The HTTP server, resolved.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    pub listen: SocketAddr,
    /// HTTPS certificate chain and key, both PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_body: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
    pub api_keys: Option<Arc<ApiKeys>>,
    pub credentials: Option<Arc<Credentials>>,
    pub cors: Option<CorsPlan>,
}

impl HttpPlan {
    /// A plain server on `listen` with the defaults and no credentials:
    /// what `[metrics] listen` starts when there is no `[http]`.
    pub fn plain(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            max_body: DEFAULT_MAX_BODY as usize,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            api_keys: None,
            credentials: None,
            cors: None,
        }
    }

    /// True if the built-in paths (Lambda's API, /metrics, /healthz) need
    /// a credential: whenever any is configured.
    pub fn guards_builtins(&self) -> bool {
        self.api_keys.is_some() || self.credentials.is_some()
    }
}

/// `[http.cors]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPlan {
    /// Exact origins, or `*` for any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
}

/// One `source = "http"` trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Upper case; `None` is `ANY`.
    pub method: Option<String>,
    pub path: RoutePath,
    /// The function as the trigger names it (`f`, `f:live`, `f:7`): each
    /// request is routed by name, like a synchronous invoke.
    pub function: String,
    pub auth: RouteAuth,
    pub throttle: Option<Throttle>,
}

impl HttpRoute {
    /// API Gateway's route key: `POST /sensors/{id}`, `ANY /{proxy+}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method.as_deref().unwrap_or("ANY"), self.path)
    }
}

impl fmt::Display for HttpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key())?;
        if self.auth != RouteAuth::None {
            write!(f, " ({})", self.auth.as_str())?;
        }
        if let Some(t) = &self.throttle {
            write!(f, " ({}/s, burst {})", t.rate, t.burst)?;
        }
        Ok(())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    None,
    /// An `x-api-key` header with a key from `api_keys_file`.
    ApiKey,
    /// A SigV4 signature by a key pair from `credentials_file`.
    AwsIam,
}

impl RouteAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::AwsIam => "aws_iam",
        }
    }
}

/// A route's token bucket: `rate` requests a second on average, `burst`
/// at once (API Gateway's throttling settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: u32,
}

/// A route's path: literal segments, `{param}` segments and a final greedy
/// `{proxy+}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

impl fmt::Display for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RoutePath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path `{text}` must start with `/`"));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_identifier(name, "") {
                    return Err(format!(
                        "path `{text}`: `{{{inner}}}` is not a parameter name (letters, digits, `-`, `_`)"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::Greedy(n) if n == name))
                {
                    return Err(format!("path `{text}` names parameter `{name}` twice"));
                }
                if greedy && !last {
                    return Err(format!(
                        "path `{text}`: the greedy `{{{name}+}}` must be the last segment"
                    ));
                }
                segments.push(if greedy {
                    Segment::Greedy(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                });
            } else if part.is_empty() {
                return Err(format!(
                    "path `{text}` has an empty segment (`//` or a trailing `/`)"
                ));
            } else if let Some(bad) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-._~:@!$&'()*+,;=".contains(*c)))
            {
                return Err(format!(
                    "path `{text}`: `{bad}` is not allowed in a path segment"
                ));
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path parameters if `path` (the request's path, still
    /// percent-encoded, without the query) matches: values decoded, a
    /// greedy one with its `/`s.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let mut parts = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if parts.get(i).map(|p| percent_decode(p)) != Some(literal.clone()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), percent_decode(part)));
                }
                Segment::Greedy(name) => {
                    let tail = parts.split_off(i.min(parts.len()));
                    if tail.is_empty() || tail.iter().all(|p| p.is_empty()) {
                        return None;
                    }
                    params.push((name.clone(), percent_decode(&tail.join("/"))));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// How specific the path is, for choosing among routes that match:
    /// greater is more specific. Compared segment by segment, a literal
    /// beats a parameter, which beats a greedy tail; then longer wins.
    pub fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
                Segment::Greedy(_) => 1,
            })
            .collect()
    }

    /// The first segment, if it is a literal (reserved prefixes).
    pub fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(l)) => Some(l),
            _ => None,
        }
    }
}

/// `%XX` escapes decoded (a bad escape stays as written); invalid UTF-8
/// is replaced.
pub fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// API keys from `api_keys_file`: only their SHA-256 hashes are kept, so a
/// key is never in memory longer than the file read, nor in a dump.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], String>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.by_hash.len())
    }
}

impl ApiKeys {
    /// `name:key` lines; blank lines and `#` comments ignored. Errors name
    /// the line, never its content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |what: &str| format!("line {}: {what}", number + 1);
            let Some((name, key)) = line.split_once(':') else {
                return Err(fail("expected name:key"));
            };
            let (name, key) = (name.trim(), key.trim());
            if !is_identifier(name, ".") {
                return Err(fail(
                    "the name must be 1-64 letters, digits, `-`, `_` or `.`",
                ));
            }
            if key.len() < MIN_API_KEY || !key.chars().all(|c| c.is_ascii_graphic()) {
                return Err(fail(&format!(
                    "a key must be at least {MIN_API_KEY} printable characters without spaces"
                )));
            }
            if by_hash
                .insert(sha256(key.as_bytes()), name.to_owned())
                .is_some()
            {
                return Err(fail("this key is listed twice"));
            }
        }
        if by_hash.is_empty() {
            return Err("no keys in it".to_owned());
        }
        Ok(Self { by_hash })
    }

    /// The name of the key `presented`, if it is one. Looked up by hash:
    /// the time taken says nothing about how close a guess was.
    pub fn name_of(&self, presented: &str) -> Option<&str> {
        self.by_hash
            .get(&sha256(presented.as_bytes()))
            .map(String::as_str)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SigV4 key pairs from `credentials_file`: access key id → secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    secrets: HashMap<String, Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} key pairs)", self.secrets.len())
    }
}

impl Credentials {
    /// `access_key_id:secret_access_key` lines; blank lines and `#`
    /// comments ignored. Errors name the line, never its content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut secrets = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |what: &str| format!("line {}: {what}", number + 1);
            let Some((id, secret)) = line.split_once(':') else {
                return Err(fail("expected access_key_id:secret_access_key"));
            };
            let (id, secret) = (id.trim(), secret.trim());
            if !(1..=128).contains(&id.len()) || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(fail("an access key id is 1-128 letters and digits"));
            }
            if secret.len() < 16 || !secret.chars().all(|c| c.is_ascii_graphic()) {
                return Err(fail(
                    "a secret access key is at least 16 printable characters without spaces",
                ));
            }
            if secrets
                .insert(id.to_owned(), Secret::new(secret.to_owned()))
                .is_some()
            {
                return Err(fail("this access key id is listed twice"));
            }
        }
        if secrets.is_empty() {
            return Err("no key pairs in it".to_owned());
        }
        Ok(Self { secrets })
    }

    pub fn secret(&self, access_key_id: &str) -> Option<&Secret> {
        self.secrets.get(access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        RoutePath::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn paths_match_literals_params_and_a_greedy_tail() {
        assert_eq!(params("/", "/"), Some(vec![]));
        assert_eq!(params("/a/b", "/a/b"), Some(vec![]));
        assert_eq!(params("/a/b", "/a/b/c"), None);
        assert_eq!(params("/a/b", "/a"), None);
        assert_eq!(
            params("/r/{id}", "/r/t%201"),
            Some(vec![("id".into(), "t 1".into())])
        );
        assert_eq!(params("/r/{id}", "/r/"), None);
        assert_eq!(
            params("/f/{proxy+}", "/f/a/b/c"),
            Some(vec![("proxy".into(), "a/b/c".into())])
        );
        assert_eq!(params("/f/{proxy+}", "/f"), None);
        assert_eq!(params("/f/{proxy+}", "/f/"), None);
        assert_eq!(
            params("/{proxy+}", "/x"),
            Some(vec![("proxy".into(), "x".into())])
        );
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        for (path, needle) in [
            ("a", "start with"),
            ("/a//b", "empty segment"),
            ("/a/", "empty segment"),
            ("/{p+}/x", "last segment"),
            ("/{a}/{a}", "twice"),
            ("/{a b}", "parameter name"),
            ("/a b", "not allowed"),
        ] {
            let e = RoutePath::parse(path).unwrap_err();
            assert!(e.contains(needle), "{path}: {e}");
        }
    }

    #[test]
    fn literals_are_more_specific_than_params_than_greedy() {
        let spec = |p: &str| RoutePath::parse(p).unwrap().specificity();
        assert!(spec("/a/b") > spec("/a/{x}"));
        assert!(spec("/a/{x}") > spec("/a/{x+}"));
        assert!(spec("/a/{x}") > spec("/{y}/b"));
    }

    #[test]
    fn api_keys_are_kept_as_hashes_and_found_by_value() {
        let keys =
            ApiKeys::parse("# plant\nhmi: 0123456789abcdefghijKLM\n\nplc:zyxwvutsrqponmlkjihg\n")
                .unwrap();
        assert_eq!(keys.name_of("0123456789abcdefghijKLM"), Some("hmi"));
        assert_eq!(keys.name_of("zyxwvutsrqponmlkjihg"), Some("plc"));
        assert_eq!(keys.name_of("zyxwvutsrqponmlkjihh"), None);
        assert!(!format!("{keys:?}").contains("0123"));
        let e = ApiKeys::parse("hmi:short\n").unwrap_err();
        assert!(e.starts_with("line 1:") && !e.contains("short"), "{e}");
        assert!(ApiKeys::parse("nokey\n").unwrap_err().contains("name:key"));
    }

    #[test]
    fn credentials_need_an_id_and_a_secret_and_never_print_it() {
        let c = Credentials::parse("AKIDEXAMPLE12345:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n")
            .unwrap();
        assert_eq!(
            c.secret("AKIDEXAMPLE12345").unwrap().expose(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        );
        assert!(!format!("{c:?}").contains("wJalr"));
        let e = Credentials::parse("x:y\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
