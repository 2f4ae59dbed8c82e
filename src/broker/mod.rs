//! The embedded MQTT 3.1.1 broker, so `ledge run` needs no broker installed
//! first, and ledge's own traffic never leaves the process.
//!
//! Local clients (sensors, PLC bridges, `mosquitto_pub`) connect over TCP;
//! ledge itself is not a client but the broker's *local side* ([`Local`]):
//! every message whose topic matches ledge's filters is handed to it once,
//! on the broker's task, however many filters match; what ledge's functions
//! publish enters through [`Broker::publish`] without a socket. That is what
//! lets an acknowledgement mean *stored*: when ledge answers a message with
//! [`Admission::stored`], the client's PUBACK waits for the spool's fsync,
//! and when ledge asks to [`Admission::hold_back`] the broker stops reading
//! that client until ledge has room, so a burst is held back by TCP instead
//! of being dropped.
//!
//! | what | bound (see [`Settings`]) | beyond it |
//! |---|---|---|
//! | connections | `max_connections` | accepted and closed at once, counted |
//! | time to send CONNECT | `connect_timeout` | closed, counted |
//! | packet size | `max_packet` | connection closed |
//! | QoS 1 messages in flight to one client | `max_inflight` | wait in its queue |
//! | messages queued for one client | `max_queued` / `max_queued_bytes` | dropped, counted |
//! | retained messages | count and bytes | not retained (still delivered), counted |
//!
//! Client ids starting with ledge's prefix (`ledge-`) are refused: no local
//! client can take ledge's place. With a users file, every client must log
//! in. Wills, retained messages, persistent sessions (in memory: a restart
//! forgets them) and QoS 0/1 are supported; QoS 2 publishes are accepted
//! with the full handshake, and subscriptions are granted QoS 1 at most.
//!
//! Everything runs as tasks on ledge's own runtime; [`router`] holds the
//! state without I/O, [`connection`] one socket each.

mod connection;
mod message;
mod router;
mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

pub use message::Message;
pub use router::RouterLimits;
pub use session::QueueLimits;

use crate::topic::TopicFilter;
use crate::users::Users;
use router::Router;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source} (is another MQTT broker running there? set [broker] listen, or url to use it)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the broker is set up; `[broker]` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// How long a new connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// Largest packet accepted from a client.
    pub max_packet: usize,
    pub limits: RouterLimits,
    /// With users, every client must log in.
    pub users: Option<Arc<Users>>,
    /// Client ids starting with this are ledge's and refused to clients.
    pub reserved_client_prefix: String,
}

/// Queue bounds sized for a gateway: a few local clients, each of which may
/// fall behind by 10,000 messages or 8 MiB before the broker drops for it;
/// 256 QoS 1 messages in flight per client keep a fast subscriber busy.
pub const GATEWAY_LIMITS: RouterLimits = RouterLimits {
    queue: QueueLimits {
        max_inflight: 256,
        max_queued: 10_000,
        max_queued_bytes: 8 << 20,
    },
    max_retained: 10_000,
    max_retained_bytes: 16 << 20,
};

/// Where a message handed to ledge came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's PUBLISH: the broker can hold the client back.
    Client,
    /// ledge's own publish or a will: nothing to hold back, so ledge must
    /// take it (or count it as lost) without waiting.
    Internal,
}

/// Resolves to true once a message is stored on flash; false if storage
/// failed for good.
pub type Stored = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What ledge did with a message it was handed. It always takes it.
#[derive(Default)]
pub struct Admission {
    /// Acknowledge once this resolves to true; `None`: at once. If it
    /// resolves to false the acknowledgement (and every later one of that
    /// client) is never sent: the connection closes and the client sends
    /// them again after reconnecting.
    pub stored: Option<Stored>,
    /// ledge is over capacity: read nothing more from this client until it
    /// has room again, so the publisher is held back by TCP.
    pub hold_back: bool,
}

/// ledge's side of the broker.
pub trait Local: Send + Sync + 'static {
    /// One message ledge's filters match. Called on the broker's task:
    /// must not block.
    fn incoming(&self, message: &Message, origin: Origin) -> Admission;
}

/// What the broker counts, for status and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    /// Connections refused: over `max_connections`, bad login, reserved id.
    pub refused: AtomicU64,
    pub connect_timeouts: AtomicU64,
    pub malformed: AtomicU64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Times a client was paused because ledge was busy.
    pub paused: AtomicU64,
}

struct Shared {
    settings: Settings,
    router: Mutex<Router>,
    local: Arc<dyn Local>,
    /// ledge signals here when it has room again after a hold-back.
    capacity: Arc<Notify>,
    stop: watch::Sender<bool>,
    counters: Counters,
    next_connection: AtomicU64,
    /// When a refused connection was last logged (ms since start), so a
    /// connection flood does not flood the log.
    last_refusal_log: AtomicU64,
    started: std::time::Instant,
}

impl Shared {
    fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes a message that no client is waiting on an acknowledgement
    /// for (ledge's own, a will).
    fn publish_internal(&self, message: Arc<Message>) {
        let local = self.router().route(&message);
        if local {
            // ledge takes it or counts it lost; there is no one to hold back.
            let _ = self.local.incoming(&message, Origin::Internal);
        }
    }
}

/// A running broker. Cheap to clone; [`Broker::stop`] ends it.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// Binds the listener and starts accepting on the current runtime.
    /// `room` is notified (`notify_waiters`) whenever ledge has room again
    /// after asking to hold a client back.
    pub async fn start(
        settings: Settings,
        local: Arc<dyn Local>,
        room: Arc<Notify>,
    ) -> Result<Self, BrokerError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let address = listener.local_addr().unwrap_or(settings.listen);
        let shared = Arc::new(Shared {
            router: Mutex::new(Router::new(settings.limits)),
            settings,
            local,
            capacity: room,
            stop: watch::Sender::new(false),
            counters: Counters::default(),
            next_connection: AtomicU64::new(1),
            last_refusal_log: AtomicU64::new(0),
            started: std::time::Instant::now(),
        });
        tokio::spawn(accept(listener, Arc::clone(&shared)));
        let auth = if shared.settings.users.is_some() {
            "users file"
        } else {
            "no login"
        };
        log::info!(target: "ledge::broker", "embedded MQTT broker listening on {address} ({auth}, at most {} connections)", shared.settings.max_connections);
        Ok(Self { shared })
    }

    /// Publishes a message from ledge: to every subscribed client, and back
    /// to ledge itself if its filters match (a function's output can
    /// trigger another function).
    pub fn publish(&self, message: Message) {
        self.shared.publish_internal(Arc::new(message));
    }

    /// The filters ledge's local side subscribes to. Retained messages the
    /// new filters match are handed to ledge at once.
    pub fn set_local_filters(&self, filters: Vec<TopicFilter>) {
        let retained = self.shared.router().set_local_filters(filters);
        for message in retained {
            let _ = self.shared.local.incoming(&message, Origin::Internal);
        }
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        let _ = self.shared.stop.send(true);
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Sessions known (connected or persistent), and messages dropped for
    /// full client queues.
    pub fn sessions_and_drops(&self) -> (usize, u64) {
        let router = self.shared.router();
        (router.session_count(), router.dropped())
    }
}

/// Accepts connections until the broker stops.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to
                // close instead of spinning.
                log::warn!(target: "ledge::broker", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refuse_connection(&shared, peer);
            continue;
        };
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            connection::serve(stream, peer, id, shared).await;
            drop(slot);
        });
    }
}

/// Closes a connection over `max_connections`, logging at most one line
/// every 10 s.
fn refuse_connection(shared: &Shared, peer: SocketAddr) {
    let refused = shared.counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
    let now_ms = shared.started.elapsed().as_millis() as u64 + 1;
    let last = shared.last_refusal_log.load(Ordering::Relaxed);
    if last == 0 || now_ms - last >= 10_000 {
        shared.last_refusal_log.store(now_ms, Ordering::Relaxed);
        log::warn!(target: "ledge::broker", "connection from {peer} refused: {} connections already open (max_connections); {refused} refused so far", shared.settings.max_connections);
    }
}
