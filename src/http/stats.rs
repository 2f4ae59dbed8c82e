//! Per-route state kept by the server: the route's token bucket
//! (throttling) and its counters, by route key so a reload that keeps a
//! route keeps both; plus the connection counters. Rendered as Prometheus
//! families after ledge's own on `/metrics`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::http::Throttle;

/// Everything the server counts.
#[derive(Default)]
pub struct Stats {
    routes: RwLock<HashMap<String, Arc<RouteState>>>,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections refused: every slot busy with a request.
    pub refused: AtomicU64,
    /// Clients that did not send a request (head or body) in time.
    pub read_timeouts: AtomicU64,
}

/// One route's bucket and counters.
#[derive(Default)]
pub struct RouteState {
    bucket: Mutex<Option<Bucket>>,
    /// Responses by status class: 1xx … 5xx.
    responses: [AtomicU64; 5],
    pub throttled: AtomicU64,
    pub auth_failures: AtomicU64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Stats {
    /// The state of the route with this key, made on first use.
    pub fn route(&self, key: &str) -> Arc<RouteState> {
        if let Some(state) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Arc::clone(state);
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(routes.entry(key.to_owned()).or_default())
    }

    /// The `ledge_http_*` families, with `device` on every series.
    pub fn prometheus(&self, device: &str) -> String {
        let mut out = String::new();
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&String> = routes.keys().collect();
        keys.sort();
        let device = escape(device);
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            if samples.is_empty() {
                return;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{device=\"{device}\"{labels}}} {value}");
            }
        };
        let mut responses = Vec::new();
        for key in &keys {
            for (class, count) in routes[*key].responses.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    responses.push((
                        format!(",route=\"{}\",code=\"{}xx\"", escape(key), class + 1),
                        count,
                    ));
                }
            }
        }
        family(
            "ledge_http_responses_total",
            "counter",
            "HTTP responses by route and status class.",
            responses,
        );
        for (name, help, pick) in [
            (
                "ledge_http_throttles_total",
                "Requests refused with 429 by the route's rate and burst.",
                (|s: &RouteState| &s.throttled) as fn(&RouteState) -> &AtomicU64,
            ),
            (
                "ledge_http_auth_failures_total",
                "Requests refused with 401 or 403: no credential, or a wrong one.",
                |s: &RouteState| &s.auth_failures,
            ),
        ] {
            let samples = keys
                .iter()
                .map(|key| {
                    let value = pick(&routes[*key]).load(Ordering::Relaxed);
                    (format!(",route=\"{}\"", escape(key)), value)
                })
                .collect();
            family(name, "counter", help, samples);
        }
        for (name, kind, help, value) in [
            (
                "ledge_http_connections",
                "gauge",
                "HTTP connections open now.",
                &self.connections,
            ),
            (
                "ledge_http_evicted_connections_total",
                "counter",
                "Idle HTTP connections closed to make room (max_connections).",
                &self.evicted,
            ),
            (
                "ledge_http_refused_connections_total",
                "counter",
                "HTTP connections refused: every slot was busy with a request.",
                &self.refused,
            ),
            (
                "ledge_http_read_timeouts_total",
                "counter",
                "Clients that did not send their request in read_timeout (408).",
                &self.read_timeouts,
            ),
        ] {
            family(
                name,
                kind,
                help,
                vec![(String::new(), value.load(Ordering::Relaxed))],
            );
        }
        out
    }
}

impl RouteState {
    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a token from the route's bucket; `Err` says how long until
    /// one is there (for `Retry-After`), and counts the refusal.
    pub fn admit(&self, throttle: Option<Throttle>) -> Result<(), Duration> {
        let Some(throttle) = throttle else {
            return Ok(());
        };
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(throttle.burst);
        let bucket = bucket.get_or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * throttle.rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / throttle.rate,
        ))
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let state = RouteState::default();
        let throttle = Some(Throttle {
            rate: 1000.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(state.admit(throttle).is_ok());
        }
        let wait = state.admit(throttle).unwrap_err();
        assert!(wait <= Duration::from_millis(1), "{wait:?}");
        assert_eq!(state.throttled.load(Ordering::Relaxed), 1);
        std::thread::sleep(Duration::from_millis(3));
        assert!(state.admit(throttle).is_ok());
        assert!(state.admit(None).is_ok());
    }

    #[test]
    fn families_carry_route_and_class() {
        let stats = Stats::default();
        stats.route("POST /r/{id}").count(200);
        stats.route("POST /r/{id}").count(429);
        let text = stats.prometheus("gw");
        assert!(text.contains(
            "ledge_http_responses_total{device=\"gw\",route=\"POST /r/{id}\",code=\"2xx\"} 1"
        ));
        assert!(text.contains("code=\"4xx\"} 1"));
        assert!(text.contains("ledge_http_connections{device=\"gw\"} 0"));
    }
}
