//! The HTTP server, a source beside those in `sources` (it is its own
//! top-level module because it also serves `telemetry`'s `/metrics`, and
//! `telemetry` sits above `sources`): API Gateway's role on the gateway (the config's
//! `source = "http"` routes, with API Gateway HTTP API payload 2.0 events
//! and responses), Lambda's own Invoke API, and `/metrics` and `/healthz`.
//!
//! HTTP/1.1 is hyper's (`http1` + `server` only); the rest is here: the
//! accept loop, the connection limit, the slow-client timeout ([`io`]),
//! HTTPS ([`tls`]). One request's way through is in [`handler`]; the
//! others are its parts: [`router`] (which route), [`auth`] and [`sigv4`]
//! (API keys, AWS SigV4), [`cors`], [`body`] (limits), [`event`] (the 2.0
//! event), [`response`] (the 2.0 response and error bodies),
//! [`invoke_api`] (Lambda's API), [`builtin`] (`/metrics`, `/healthz`) and
//! [`stats`] (throttling buckets and counters).
//!
//! Limits, so no client can take the gateway's memory: a request head over
//! [`MAX_HEAD`] gets 431; a body over `max_body` 413; a head or body slower
//! than `read_timeout` 408; beyond `max_connections` the longest-idle
//! connection is closed for the new one, and a new one is refused when
//! every connection is in the middle of a request.

mod app;
mod auth;
mod base64;
mod body;
mod builtin;
mod cors;
mod event;
mod handler;
mod invoke_api;
mod io;
mod response;
mod router;
mod sigv4;
mod stats;
#[cfg(feature = "tls")]
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::config::http::HttpPlan;
use crate::dispatch::Routing;
use crate::telemetry::StatusSources;

pub use app::App;
pub use stats::Stats;

/// The largest request head (request line and headers) hyper buffers;
/// beyond it the client gets 431. (hyper's smallest allowed buffer is
/// 8 KiB; API Gateway allows 10 KiB of headers.)
pub const MAX_HEAD: usize = 64 * 1024;

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTPS: {0}")]
    Tls(String),
}

impl Server {
    /// Binds `plan.listen`. `api`: serve the config's routes and Lambda's
    /// API too, not only `/metrics` and `/healthz`.
    pub async fn bind(
        plan: HttpPlan,
        api: bool,
        routing: Routing,
        status: Arc<StatusSources>,
        stats: Arc<Stats>,
    ) -> Result<Self, StartError> {
        #[cfg(feature = "tls")]
        let tls = match &plan.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(StartError::Tls)?),
            None => None,
        };
        let listener = listen(plan.listen).map_err(|source| StartError::Bind {
            address: plan.listen,
            source,
        })?;
        Ok(Self {
            listener,
            app: Arc::new(App {
                plan,
                api,
                routing,
                status,
                stats,
            }),
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// The address it listens on (the port, when the config said 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// True if it speaks HTTPS.
    pub fn is_https(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Accepts and serves connections until `shutdown` changes.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let registry = Arc::new(Registry::default());
        let max = self.app.plan.max_connections;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, mostly: wait rather than spin.
                        log::warn!(target: "ledge::http", "accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let Some(entry) = registry.admit(max, &self.app.stats) else {
                self.app.stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let app = Arc::clone(&self.app);
            let registry = Arc::clone(&registry);
            #[cfg(feature = "tls")]
            let tls = self.tls.clone();
            tokio::spawn(async move {
                app.stats.connections.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tls")]
                if let Some(tls) = tls {
                    let handshake =
                        tokio::time::timeout(app.plan.read_timeout, tls.accept(stream)).await;
                    if let Ok(Ok(stream)) = handshake {
                        serve(&app, &entry, stream, peer).await;
                    }
                    registry.remove(&entry);
                    app.stats.connections.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                serve::<TcpStream>(&app, &entry, stream, peer).await;
                registry.remove(&entry);
                app.stats.connections.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

/// A listening socket with room for a burst of connections: tokio's
/// default backlog (128) drops SYNs while the accept loop catches up, and
/// each dropped one costs its client a second.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Connections the kernel may hold for the accept loop (capped by
/// `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// Serves one connection until the client closes it, it errs, or the
/// registry closes it for another.
async fn serve<S>(app: &Arc<App>, entry: &Arc<Entry>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = io::Io::new(stream, Arc::clone(&entry.phase), app.plan.read_timeout);
    let service_app = Arc::clone(app);
    let phase = Arc::clone(&entry.phase);
    let service = hyper::service::service_fn(move |request| {
        phase.serving();
        handler::handle(Arc::clone(&service_app), peer, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                if e.is_timeout() || is_timed_out(&e) {
                    app.stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                log::debug!(target: "ledge::http", "connection from {peer}: {e}");
            }
        }
        _ = entry.close.notified() => {}
    }
}

fn is_timed_out(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The open connections, oldest first, so the longest-open idle one is
/// the one closed for a newcomer.
#[derive(Default)]
struct Registry {
    open: Mutex<Vec<Arc<Entry>>>,
}

struct Entry {
    phase: Arc<io::Phase>,
    close: Notify,
}

impl Registry {
    /// A slot for a new connection: free, or taken from the oldest idle
    /// connection; `None` if all `max` are mid-request.
    fn admit(&self, max: usize, stats: &Stats) -> Option<Arc<Entry>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= max {
            let idle = open.iter().position(|e| e.phase.is_idle())?;
            let evicted = open.remove(idle);
            // `notify_one` keeps the permit if the task is not waiting yet.
            evicted.close.notify_one();
            stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Arc::new(Entry {
            phase: Arc::default(),
            close: Notify::new(),
        });
        open.push(Arc::clone(&entry));
        Some(entry)
    }

    fn remove(&self, entry: &Arc<Entry>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = open.iter().position(|e| Arc::ptr_eq(e, entry)) {
            open.remove(i);
        }
    }
}
