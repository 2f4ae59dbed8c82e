//! What asks a running ledge to do something from outside its pipeline:
//! stop, or reload its config and function store. Signals, the control
//! socket and over-the-air deployments all speak this; `node::run_with`
//! takes it as input, so tests can drive a node without signals.

use tokio::sync::{mpsc, oneshot};

/// A request to re-read the config and the function store and apply them
/// (what SIGHUP does); the outcome goes to `reply`.
pub struct ReloadRequest {
    /// For the log: who asked.
    pub why: String,
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// Where reload requests go (the running node).
pub type Reloads = mpsc::UnboundedSender<ReloadRequest>;

/// What a running node is asked from outside.
pub enum Event {
    /// Stop, draining in-flight work; the name says who asked (`SIGTERM`).
    Stop(&'static str),
    /// Reload: SIGHUP (`None`) or a request with a reply (control socket,
    /// deployment).
    Reload(Option<ReloadRequest>),
}
