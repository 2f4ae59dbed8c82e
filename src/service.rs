//! Life as a systemd service: readiness, reload and stop notifications and
//! the watchdog keep-alive, over the `sd_notify` protocol.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket in
//! `NOTIFY_SOCKET`, so it is written out here rather than pulled in as a
//! crate. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//!
//! The watchdog keep-alive is sent by a task on the async reactor, the
//! thread that also drives MQTT and the sources: if that thread wedges, the
//! pings stop and systemd restarts ledge. Guest code never runs there (it
//! runs on worker threads with its own timeouts), so a busy function cannot
//! starve the pings.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio::sync::watch;

/// Started and serving.
pub const READY: &str = "READY=1\nSTATUS=serving";
/// Asked to stop; draining in-flight work.
pub const STOPPING: &str = "STOPPING=1\nSTATUS=draining";

/// Reloading; systemd wants the monotonic time with `RELOADING=1`. Send
/// `READY=1` when done.
pub fn reloading() -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
        monotonic_usec()
    )
}

/// CLOCK_MONOTONIC in µs.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// Sends notifications to the service manager, if there is one.
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`; without it (not under systemd) notifications
    /// are dropped.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|path| !path.is_empty())
            // Non-blocking: this runs on the reactor thread, and a service
            // manager that stops reading must never stall it (a full
            // datagram queue drops the notification instead).
            .and_then(|path| match UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(socket) => Some((socket, path)),
                Err(e) => {
                    log::warn!(target: "ledge::service", "cannot open a socket for systemd notifications: {e}");
                    None
                }
            });
        Self { socket }
    }

    /// Sends one notification, e.g. `READY=1`. Failures are logged, never
    /// fatal: ledge keeps serving whatever the service manager does.
    pub fn notify(&self, state: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        if let Err(e) = send(socket, path, state) {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                log::debug!(target: "ledge::service", "systemd notification `{state}` dropped: the manager is not reading");
                return;
            }
            log::warn!(target: "ledge::service", "systemd notification `{state}` to {path} failed: {e}");
        }
    }
}

fn send(socket: &UnixDatagram, path: &str, state: &str) -> std::io::Result<usize> {
    // A leading '@' names a socket in the abstract namespace.
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            return socket.send_to_addr(state.as_bytes(), &address);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "abstract sockets need Linux",
            ));
        }
    }
    socket.send_to(state.as_bytes(), path)
}

/// How often to send `WATCHDOG=1`: half of systemd's `WATCHDOG_USEC`, if
/// the watchdog is on and meant for this process (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends `WATCHDOG=1` every `interval` until `stop` changes.
pub async fn keep_alive(
    notifier: std::sync::Arc<Notifier>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => notifier.notify("WATCHDOG=1"),
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier {
            socket: Some((
                UnixDatagram::unbound().expect("socket"),
                path.display().to_string(),
            )),
        };
        notifier.notify("READY=1\nSTATUS=serving");
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=serving");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ledge-test-{}", std::process::id());
        let address =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&address).expect("bind");
        let notifier = Notifier {
            socket: Some((UnixDatagram::unbound().expect("socket"), format!("@{name}"))),
        };
        notifier.notify("WATCHDOG=1");
        let mut buffer = [0u8; 16];
        let n = listener.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let notifier = Notifier { socket: None };
        notifier.notify("READY=1");
    }
}
