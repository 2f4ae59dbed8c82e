//! SIGTERM, SIGINT and SIGHUP as lifecycle events.
//!
//! The handlers are installed before ledge says it is ready: an early
//! SIGHUP would otherwise kill it.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::NodeError;
use crate::lifecycle::Event;

/// Installs the handlers now and forwards what arrives as events until the
/// receiver is dropped.
pub fn forward() -> Result<mpsc::UnboundedReceiver<Event>, NodeError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(NodeError::Signals)?;
    let (events, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = terminate.recv() => Event::Stop("SIGTERM"),
                _ = interrupt.recv() => Event::Stop("SIGINT"),
                _ = hangup.recv() => Event::Reload(None),
                _ = events.closed() => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(received)
}
