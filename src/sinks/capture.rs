//! A sink that keeps what is published, for `ledge invoke` (which runs with no
//! broker and prints what would have been sent) and for tests.

use std::sync::Mutex;

use super::{OutgoingMessage, PublishRefused, PublishSink};

#[derive(Default)]
pub struct CaptureSink {
    messages: Mutex<Vec<OutgoingMessage>>,
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

impl PublishSink for CaptureSink {
    fn publish(&self, message: OutgoingMessage) -> Result<(), PublishRefused> {
        match self.messages.lock() {
            Ok(mut messages) => messages.push(message),
            Err(poisoned) => poisoned.into_inner().push(message),
        }
        Ok(())
    }
}
