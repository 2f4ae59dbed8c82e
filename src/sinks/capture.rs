//! A sink that keeps what is published, for `ledge invoke` (which runs with no
//! broker and prints what would have been sent) and for tests.

use std::sync::Mutex;
use std::time::Duration;

use super::{ForwardRefused, ForwardSink, OutgoingMessage, PublishRefused, PublishSink};

#[derive(Default)]
pub struct CaptureSink {
    messages: Mutex<Vec<OutgoingMessage>>,
    forwards: Mutex<Vec<(String, Vec<u8>)>>,
}

impl CaptureSink {
    /// Everything published so far, leaving the sink empty.
    pub fn take(&self) -> Vec<OutgoingMessage> {
        match self.messages.lock() {
            Ok(mut messages) => std::mem::take(&mut *messages),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl CaptureSink {
    /// Everything forwarded so far (topic, payload), leaving the sink empty.
    pub fn take_forwards(&self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut *self.forwards.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ForwardSink for CaptureSink {
    fn forward(
        &self,
        topic: &str,
        payload: &[u8],
        _origin: &str,
    ) -> Result<Option<u64>, ForwardRefused> {
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((topic.to_owned(), payload.to_vec()));
        Ok(None)
    }

    fn wait_durable(&self, _seq: u64, _timeout: Duration) -> Result<bool, String> {
        Ok(true)
    }
}

impl PublishSink for CaptureSink {
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused> {
        match self.messages.lock() {
            Ok(mut messages) => messages.push(message),
            Err(poisoned) => poisoned.into_inner().push(message),
        }
        Ok(())
    }
}
