//! `[http]` and `source = "http"` triggers: the HTTP server's address,
//! HTTPS files, limits, credentials and CORS, and each route's method,
//! path, auth and throttle (plan types in [`crate::config::http`]). Every
//! problem is collected with its file:line:col, and `ledge check` refuses
//! a server reachable beyond this machine unless every route on it (and
//! the built-in paths) needs a credential.
//!
//! Files read: `api_keys_file` and `credentials_file` (capped, like every
//! secret file; their contents never appear in an error); `cert_file` and
//! `key_file` must exist.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::Resolver;
use crate::config::files::{read_capped, MAX_SECRET_FILE};
use crate::config::http::{
    ApiKeys, CorsPlan, Credentials, HttpPlan, HttpRoute, RouteAuth, RoutePath, Throttle,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT,
    LAMBDA_API_PREFIX, RESERVED_PATHS,
};
use crate::config::plan::{Route, TriggerSource};
use crate::config::raw::{RawCors, RawHttp, RawTrigger};
use crate::config::{ConfigError, Location};

impl Resolver<'_> {
    /// Resolves `[http]`, or the plain server `[metrics] listen` asks for
    /// when there is no `[http]`. `metrics_listen` is that key, already parsed.
    pub(super) fn http(
        &mut self,
        raw: Option<RawHttp>,
        metrics_key: &Option<Spanned<String>>,
        metrics_listen: Option<SocketAddr>,
    ) -> Option<HttpPlan> {
        let plan = raw.map(|raw| self.http_server(raw));
        if let (Some(address), Some(key)) = (metrics_listen, metrics_key) {
            let guarded = plan.as_ref().is_some_and(HttpPlan::guards_builtins);
            if !address.ip().is_loopback() && !guarded {
                self.fail(
                    key.span(),
                    format!(
                        "[metrics] listen {address} is beyond this machine and would serve /metrics and /healthz to anyone: listen on 127.0.0.1, or set [http] api_keys_file or credentials_file (the built-in paths then need a key)"
                    ),
                );
            }
        }
        plan
    }

    fn http_server(&mut self, raw: RawHttp) -> HttpPlan {
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().ok(),
            Some(text) => match text.get_ref().parse::<SocketAddr>() {
                Ok(address) => Some(address),
                Err(e) => {
                    self.fail(
                        text.span(),
                        format!("[http] listen must be an address like \"{DEFAULT_LISTEN}\": {e}"),
                    );
                    None
                }
            },
        };
        let mut plan = HttpPlan::plain(listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))));
        plan.max_body = self.size(&raw.max_body, DEFAULT_MAX_BODY) as usize;
        if plan.max_body == 0 {
            if let Some(v) = &raw.max_body {
                self.fail(v.span(), "max_body must be more than 0 bytes");
            }
        }
        plan.read_timeout = self.duration(&raw.read_timeout, DEFAULT_READ_TIMEOUT);
        plan.max_connections =
            self.positive(&raw.max_connections, DEFAULT_MAX_CONNECTIONS, 100_000);
        plan.tls = self.tls_files(&raw);
        plan.api_keys = raw.api_keys_file.as_ref().and_then(|file| {
            let text = self.read_key_file(file, "api_keys_file")?;
            ApiKeys::parse(&text)
                .map_err(|e| {
                    self.fail(
                        file.span(),
                        format!("api_keys_file {}: {e}", file.get_ref()),
                    )
                })
                .ok()
                .map(Arc::new)
        });
        plan.credentials = raw.credentials_file.as_ref().and_then(|file| {
            let text = self.read_key_file(file, "credentials_file")?;
            Credentials::parse(&text)
                .map_err(|e| {
                    self.fail(
                        file.span(),
                        format!("credentials_file {}: {e}", file.get_ref()),
                    )
                })
                .ok()
                .map(Arc::new)
        });
        plan.cors = raw.cors.as_ref().map(|c| self.cors(c));
        if !plan.listen.ip().is_loopback() && !plan.guards_builtins() {
            let span = raw.listen.as_ref().map_or(0..0, Spanned::span);
            self.fail(
                span,
                format!(
                    "[http] listens on {}, beyond this machine, but no credentials are configured: Lambda's API, /metrics and /healthz would answer anyone. Set api_keys_file or credentials_file, or listen on 127.0.0.1",
                    plan.listen
                ),
            );
        }
        plan
    }

    fn tls_files(&mut self, raw: &RawHttp) -> Option<(PathBuf, PathBuf)> {
        match (&raw.cert_file, &raw.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                if cfg!(not(feature = "tls")) {
                    self.fail(
                        cert.span(),
                        "this ledge was built without TLS (feature `tls`); HTTPS is not available",
                    );
                    return None;
                }
                let mut files = (self.path(cert.get_ref()), self.path(key.get_ref()));
                for (spanned, path) in [(cert, &mut files.0), (key, &mut files.1)] {
                    if !path.is_file() {
                        self.fail(
                            spanned.span(),
                            format!("{} is not a readable file", path.display()),
                        );
                    }
                }
                Some(files)
            }
            (Some(one), None) | (None, Some(one)) => {
                self.fail(one.span(), "HTTPS needs both cert_file and key_file (PEM)");
                None
            }
        }
    }

    fn read_key_file(&mut self, file: &Spanned<String>, key: &str) -> Option<String> {
        let path = self.path(file.get_ref());
        match read_capped(&path, MAX_SECRET_FILE) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    self.fail(
                        file.span(),
                        format!("{key} {} is not UTF-8 text", path.display()),
                    );
                    None
                }
            },
            Err(e) => {
                self.fail(file.span(), format!("cannot read {key}: {e}"));
                None
            }
        }
    }

    fn cors(&mut self, raw: &RawCors) -> CorsPlan {
        let list = |values: &[Spanned<String>]| -> Vec<String> {
            values
                .iter()
                .map(|v| v.get_ref().trim().to_owned())
                .collect()
        };
        for origin in &raw.allow_origins {
            let text = origin.get_ref();
            let ok = text == "*"
                || ((text.starts_with("http://") || text.starts_with("https://"))
                    && !text.ends_with('/')
                    && !text.contains(char::is_whitespace));
            if !ok {
                self.fail(
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
                    self.fail(m.span(), format!("`{}` is not an HTTP method", m.get_ref()));
                }
                upper
            })
            .collect();
        for header in raw.allow_headers.iter().chain(&raw.expose_headers) {
            let text = header.get_ref();
            if text != "*" && !is_token(text) {
                self.fail(header.span(), format!("`{text}` is not a header name"));
            }
        }
        let allow_credentials = raw.allow_credentials.as_ref().is_some_and(|c| *c.get_ref());
        if allow_credentials && raw.allow_origins.iter().any(|o| o.get_ref() == "*") {
            if let Some(c) = &raw.allow_credentials {
                self.fail(
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
            max_age: raw
                .max_age
                .as_ref()
                .map(|v| self.duration(&Some(v.clone()), Duration::ZERO)),
            allow_credentials,
        }
    }

    /// A `source = "http"` trigger.
    pub(super) fn http_trigger(&mut self, t: &RawTrigger) -> Option<TriggerSource> {
        if let Some(size) = &t.batch_size {
            self.fail(
                size.span(),
                "an http trigger answers its caller; it cannot be batched",
            );
        }
        if t.durable == Some(true) {
            self.fail(
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
                    self.fail(
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
            self.fail(
                t.source.span(),
                "an http trigger needs `path` (e.g. \"/readings/{sensor}\")",
            );
            return None;
        };
        let path = match RoutePath::parse(path_text.get_ref()) {
            Ok(path) => path,
            Err(e) => {
                self.fail(path_text.span(), e);
                return None;
            }
        };
        if RESERVED_PATHS.contains(&path_text.get_ref().as_str())
            || path.first_literal() == Some(LAMBDA_API_PREFIX)
        {
            self.fail(
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
                self.fail(
                    span,
                    format!("unknown auth `{other}` (known: none, api_key, aws_iam)"),
                );
                RouteAuth::None
            }
        };
        let throttle = match (&t.rate, &t.burst) {
            (None, None) => None,
            (None, Some(burst)) => {
                self.fail(burst.span(), "`burst` needs `rate` (requests a second)");
                None
            }
            (Some(rate), burst) => {
                let value = *rate.get_ref();
                if !(value.is_finite() && value > 0.0 && value <= 1e6) {
                    self.fail(
                        rate.span(),
                        "rate must be more than 0 and at most 1000000 requests a second",
                    );
                }
                let burst = match burst {
                    None => value.ceil().max(1.0) as u32,
                    Some(b) => match u32::try_from(*b.get_ref()) {
                        Ok(n) if (1..=1_000_000).contains(&n) => n,
                        _ => {
                            self.fail(b.span(), "burst must be between 1 and 1000000");
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
    pub(super) fn check_http_routes(&mut self, http: Option<&HttpPlan>, routes: &[Route]) {
        let mut seen: HashMap<String, Location> = HashMap::new();
        for route in routes {
            let TriggerSource::Http(http_route) = &route.source else {
                continue;
            };
            let location = route.location.clone();
            let Some(plan) = http else {
                self.fail_at(
                    location,
                    "an http trigger needs an [http] section (e.g. `[http]` with `listen = \"127.0.0.1:8080\"`)",
                );
                continue;
            };
            let key = http_route.key();
            if let Some(first) = seen.get(&key) {
                self.fail_at(
                    location.clone(),
                    format!("route `{key}` is defined twice (first at {first})"),
                );
            } else {
                seen.insert(key.clone(), location.clone());
            }
            match http_route.auth {
                RouteAuth::ApiKey if plan.api_keys.is_none() => self.fail_at(
                    location,
                    format!("route `{key}` has auth = \"api_key\" but [http] has no api_keys_file"),
                ),
                RouteAuth::AwsIam if plan.credentials.is_none() => self.fail_at(
                    location,
                    format!("route `{key}` has auth = \"aws_iam\" but [http] has no credentials_file"),
                ),
                RouteAuth::None if !plan.listen.ip().is_loopback() => self.fail_at(
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

    /// A problem at a place already located (a trigger's table).
    fn fail_at(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: location.file.clone(),
            location: Some(location),
            message: message.into(),
        });
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
