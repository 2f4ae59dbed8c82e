//! The HTTP part of the config: the `[http]` section (the server's address,
//! HTTPS files, limits, credentials and CORS) and `source = "http"`
//! triggers (method, path, auth, throttling). Resolved here, beside
//! `plan.rs`, with the same rules: every problem is collected with its
//! file:line:col, and `ledge check` refuses a server reachable beyond this
//! machine unless every route on it needs a credential.
//!
//! Credential files are read here and kept as [`ApiKeys`] (SHA-256 hashes
//! only) and [`Credentials`] (access key id → secret, never printed).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::plan::{Resolver, Route, Secret, TriggerSource};
use super::raw::RawTrigger;
use super::Location;

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

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
    /// HTTPS: the server's certificate chain and private key (PEM).
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    /// `name:key` lines; routes with `auth = "api_key"` take `x-api-key`.
    pub api_keys_file: Option<Spanned<String>>,
    /// `access_key_id:secret_access_key` lines; routes with
    /// `auth = "aws_iam"` take SigV4-signed requests.
    pub credentials_file: Option<Spanned<String>>,
    pub cors: Option<RawCors>,
}

/// `[http.cors]` as written (API Gateway HTTP API's CORS settings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allow_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub expose_headers: Vec<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub allow_credentials: Option<Spanned<bool>>,
}

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
                if !super::plan::is_identifier(name, "") {
                    return Err(format!(
                        "path `{text}`: `{{{inner}}}` is not a parameter name (letters, digits, `-`, `_`)"
                    ));
                }
                if segments.iter().any(|s| matches!(s, Segment::Param(n) | Segment::Greedy(n) if n == name)) {
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
                return Err(format!("path `{text}` has an empty segment (`//` or a trailing `/`)"));
            } else if let Some(bad) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-._~:@!$&'()*+,;=".contains(*c)))
            {
                return Err(format!("path `{text}`: `{bad}` is not allowed in a path segment"));
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

    fn first_literal(&self) -> Option<&str> {
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
            if !super::plan::is_identifier(name, ".") {
                return Err(fail("the name must be 1-64 letters, digits, `-`, `_` or `.`"));
            }
            if key.len() < MIN_API_KEY || !key.chars().all(|c| c.is_ascii_graphic()) {
                return Err(fail(&format!(
                    "a key must be at least {MIN_API_KEY} printable characters without spaces"
                )));
            }
            if by_hash.insert(sha256(key.as_bytes()), name.to_owned()).is_some() {
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

/// Resolves `[http]`, or the plain server `[metrics] listen` asks for
/// when there is no `[http]`. `metrics_listen` is that key, already parsed.
pub(super) fn section(
    r: &mut Resolver<'_>,
    raw: Option<RawHttp>,
    metrics_key: &Option<Spanned<String>>,
    metrics_listen: Option<SocketAddr>,
) -> Option<HttpPlan> {
    let plan = raw.map(|raw| resolve(r, raw));
    if let (Some(address), Some(key)) = (metrics_listen, metrics_key) {
        let guarded = plan.as_ref().is_some_and(HttpPlan::guards_builtins);
        if !address.ip().is_loopback() && !guarded {
            r.fail(
                key.span(),
                format!(
                    "[metrics] listen {address} is beyond this machine and would serve /metrics and /healthz to anyone: listen on 127.0.0.1, or set [http] api_keys_file or credentials_file (the built-in paths then need a key)"
                ),
            );
        }
    }
    plan
}

fn resolve(r: &mut Resolver<'_>, raw: RawHttp) -> HttpPlan {
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().ok(),
        Some(text) => match text.get_ref().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(e) => {
                r.fail(
                    text.span(),
                    format!("[http] listen must be an address like \"{DEFAULT_LISTEN}\": {e}"),
                );
                None
            }
        },
    };
    let mut plan = HttpPlan::plain(listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))));
    plan.max_body = r.size(&raw.max_body, DEFAULT_MAX_BODY) as usize;
    if plan.max_body == 0 {
        if let Some(v) = &raw.max_body {
            r.fail(v.span(), "max_body must be more than 0 bytes");
        }
    }
    plan.read_timeout = r.duration(&raw.read_timeout, DEFAULT_READ_TIMEOUT);
    plan.max_connections = r.positive(&raw.max_connections, DEFAULT_MAX_CONNECTIONS, 100_000);
    plan.tls = tls_files(r, &raw);
    plan.api_keys = raw.api_keys_file.as_ref().and_then(|file| {
        let text = read_key_file(r, file, "api_keys_file")?;
        ApiKeys::parse(&text)
            .map_err(|e| r.fail(file.span(), format!("api_keys_file {}: {e}", file.get_ref())))
            .ok()
            .map(Arc::new)
    });
    plan.credentials = raw.credentials_file.as_ref().and_then(|file| {
        let text = read_key_file(r, file, "credentials_file")?;
        Credentials::parse(&text)
            .map_err(|e| {
                r.fail(
                    file.span(),
                    format!("credentials_file {}: {e}", file.get_ref()),
                )
            })
            .ok()
            .map(Arc::new)
    });
    plan.cors = raw.cors.as_ref().map(|c| cors(r, c));
    if !plan.listen.ip().is_loopback() && !plan.guards_builtins() {
        let span = raw.listen.as_ref().map_or(0..0, Spanned::span);
        r.fail(
            span,
            format!(
                "[http] listens on {}, beyond this machine, but no credentials are configured: Lambda's API, /metrics and /healthz would answer anyone. Set api_keys_file or credentials_file, or listen on 127.0.0.1",
                plan.listen
            ),
        );
    }
    plan
}

fn tls_files(r: &mut Resolver<'_>, raw: &RawHttp) -> Option<(PathBuf, PathBuf)> {
    match (&raw.cert_file, &raw.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            if cfg!(not(feature = "tls")) {
                r.fail(
                    cert.span(),
                    "this ledge was built without TLS (feature `tls`); HTTPS is not available",
                );
                return None;
            }
            let mut files = (r.path(cert.get_ref()), r.path(key.get_ref()));
            for (spanned, path) in [(cert, &mut files.0), (key, &mut files.1)] {
                if !path.is_file() {
                    r.fail(
                        spanned.span(),
                        format!("{} is not a readable file", path.display()),
                    );
                }
            }
            Some(files)
        }
        (Some(one), None) | (None, Some(one)) => {
            r.fail(
                one.span(),
                "HTTPS needs both cert_file and key_file (PEM)",
            );
            None
        }
    }
}

fn read_key_file(r: &mut Resolver<'_>, file: &Spanned<String>, key: &str) -> Option<String> {
    let path = r.path(file.get_ref());
    match super::files::read_capped(&path, super::files::MAX_SECRET_FILE) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                r.fail(file.span(), format!("{key} {} is not UTF-8 text", path.display()));
                None
            }
        },
        Err(e) => {
            r.fail(file.span(), format!("cannot read {key}: {e}"));
            None
        }
    }
}

fn cors(r: &mut Resolver<'_>, raw: &RawCors) -> CorsPlan {
    let list = |values: &[Spanned<String>]| -> Vec<String> {
        values.iter().map(|v| v.get_ref().trim().to_owned()).collect()
    };
    for origin in &raw.allow_origins {
        let text = origin.get_ref();
        let ok = text == "*"
            || ((text.starts_with("http://") || text.starts_with("https://"))
                && !text.ends_with('/')
                && !text.contains(char::is_whitespace));
        if !ok {
            r.fail(
                origin.span(),
                format!("`{text}` is not an origin: `*` or scheme://host[:port], no path, e.g. \"https://hmi.local\""),
            );
        }
    }
    let methods: Vec<String> = raw
        .allow_methods
        .iter()
        .map(|m| {
            let upper = m.get_ref().trim().to_ascii_uppercase();
            if upper != "*" && !is_method(&upper) {
                r.fail(m.span(), format!("`{}` is not an HTTP method", m.get_ref()));
            }
            upper
        })
        .collect();
    for header in raw.allow_headers.iter().chain(&raw.expose_headers) {
        let text = header.get_ref();
        if text != "*" && !is_token(text) {
            r.fail(header.span(), format!("`{text}` is not a header name"));
        }
    }
    let allow_credentials = raw.allow_credentials.as_ref().is_some_and(|c| *c.get_ref());
    if allow_credentials && raw.allow_origins.iter().any(|o| o.get_ref() == "*") {
        if let Some(c) = &raw.allow_credentials {
            r.fail(
                c.span(),
                "allow_credentials cannot go with allow_origins = [\"*\"] (browsers refuse it): list the origins",
            );
        }
    }
    CorsPlan {
        allow_origins: list(&raw.allow_origins),
        allow_methods: if methods.is_empty() {
            vec!["*".to_owned()]
        } else {
            methods
        },
        allow_headers: list(&raw.allow_headers),
        expose_headers: list(&raw.expose_headers),
        max_age: raw.max_age.as_ref().map(|v| r.duration(&Some(v.clone()), Duration::ZERO)),
        allow_credentials,
    }
}

fn is_method(text: &str) -> bool {
    matches!(
        text,
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
    )
}

/// An HTTP token (header names): visible ASCII but separators.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// The span and name of an http-only key set on a trigger of another
/// source.
pub(super) fn stray_keys(t: &RawTrigger) -> Option<(std::ops::Range<usize>, &'static str)> {
    let text = |field: &Option<Spanned<String>>, name| field.as_ref().map(|f| (f.span(), name));
    text(&t.method, "method")
        .or(text(&t.path, "path"))
        .or(text(&t.auth, "auth"))
        .or(t.rate.as_ref().map(|f| (f.span(), "rate")))
        .or(t.burst.as_ref().map(|f| (f.span(), "burst")))
}

/// A `source = "http"` trigger.
pub(super) fn trigger(r: &mut Resolver<'_>, t: &RawTrigger) -> Option<TriggerSource> {
    if let Some(size) = &t.batch_size {
        r.fail(size.span(), "an http trigger answers its caller; it cannot be batched");
    }
    if t.durable == Some(true) {
        r.fail(
            t.source.span(),
            "an http trigger answers its caller; it cannot be durable (use Lambda's API with X-Amz-Invocation-Type: Event for queued, retried events)",
        );
    }
    let method = match &t.method {
        None => None,
        Some(m) => {
            let upper = m.get_ref().trim().to_ascii_uppercase();
            if upper == "ANY" {
                None
            } else if is_method(&upper) {
                Some(upper)
            } else {
                r.fail(
                    m.span(),
                    format!(
                        "unknown method `{}` (known: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY)",
                        m.get_ref()
                    ),
                );
                None
            }
        }
    };
    let Some(path_text) = &t.path else {
        r.fail(
            t.source.span(),
            "an http trigger needs `path` (e.g. \"/readings/{sensor}\")",
        );
        return None;
    };
    let path = match RoutePath::parse(path_text.get_ref()) {
        Ok(path) => path,
        Err(e) => {
            r.fail(path_text.span(), e);
            return None;
        }
    };
    if RESERVED_PATHS.contains(&path.text.as_str())
        || path.first_literal() == Some(LAMBDA_API_PREFIX)
    {
        r.fail(
            path_text.span(),
            format!(
                "path `{path}` is ledge's own (/metrics, /healthz and Lambda's API under /{LAMBDA_API_PREFIX}/)"
            ),
        );
        return None;
    }
    let auth = match t.auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
        None | Some(("none", _)) => RouteAuth::None,
        Some(("api_key", _)) => RouteAuth::ApiKey,
        Some(("aws_iam", _)) => RouteAuth::AwsIam,
        Some((other, span)) => {
            r.fail(
                span,
                format!("unknown auth `{other}` (known: none, api_key, aws_iam)"),
            );
            RouteAuth::None
        }
    };
    let throttle = match (&t.rate, &t.burst) {
        (None, None) => None,
        (None, Some(burst)) => {
            r.fail(burst.span(), "`burst` needs `rate` (requests a second)");
            None
        }
        (Some(rate), burst) => {
            let value = *rate.get_ref();
            if !(value.is_finite() && value > 0.0 && value <= 1e6) {
                r.fail(rate.span(), "rate must be more than 0 and at most 1000000 requests a second");
            }
            let burst = match burst {
                None => value.ceil().max(1.0) as u32,
                Some(b) => match u32::try_from(*b.get_ref()) {
                    Ok(n) if (1..=1_000_000).contains(&n) => n,
                    _ => {
                        r.fail(b.span(), "burst must be between 1 and 1000000");
                        1
                    }
                },
            };
            Some(Throttle { rate: value, burst })
        }
    };
    Some(TriggerSource::Http(Box::new(HttpRoute {
        method,
        path,
        function: t.function.get_ref().trim().to_owned(),
        auth,
        throttle,
    })))
}

/// Checks the http routes against the server they are served on: there is
/// one, the credentials they need are configured, beyond loopback each
/// needs one, and no two share a route key.
pub(super) fn check_routes(r: &mut Resolver<'_>, http: Option<&HttpPlan>, routes: &[Route]) {
    let mut seen: HashMap<String, Location> = HashMap::new();
    for route in routes {
        let TriggerSource::Http(http_route) = &route.source else {
            continue;
        };
        let location = route.location.clone();
        let Some(plan) = http else {
            r.fail_at(
                location,
                "an http trigger needs an [http] section (e.g. `[http]` with `listen = \"127.0.0.1:8080\"`)",
            );
            continue;
        };
        let key = http_route.key();
        if let Some(first) = seen.get(&key) {
            r.fail_at(
                location.clone(),
                format!("route `{key}` is defined twice (first at {first})"),
            );
        } else {
            seen.insert(key.clone(), location.clone());
        }
        match http_route.auth {
            RouteAuth::ApiKey if plan.api_keys.is_none() => r.fail_at(
                location,
                format!("route `{key}` has auth = \"api_key\" but [http] has no api_keys_file"),
            ),
            RouteAuth::AwsIam if plan.credentials.is_none() => r.fail_at(
                location,
                format!("route `{key}` has auth = \"aws_iam\" but [http] has no credentials_file"),
            ),
            RouteAuth::None if !plan.listen.ip().is_loopback() => r.fail_at(
                location,
                format!(
                    "route `{key}` is served on {}, beyond this machine, without auth: set auth = \"api_key\" or \"aws_iam\", or listen on 127.0.0.1",
                    plan.listen
                ),
            ),
            _ => {}
        }
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
        let keys = ApiKeys::parse("# plant\nhmi: 0123456789abcdefghijKLM\n\nplc:zyxwvutsrqponmlkjihg\n")
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
