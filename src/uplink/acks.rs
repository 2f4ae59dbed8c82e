//! Which spooled records upstream has confirmed.
//!
//! Messages go out in seq order, each covering records up to its
//! `last_seq`. rumqttc reports a packet id when a publish is written
//! (`Outgoing::Publish`, in request order) and again when its PUBACK
//! arrives, in any order. The cursor may only move over the contiguous
//! confirmed prefix: confirming message 3 before message 2 moves nothing
//! until 2 is confirmed too. No IO here, so it is tested directly.

use std::collections::VecDeque;

#[derive(Debug)]
struct Entry {
    last_seq: u64,
    pkid: Option<u16>,
    acked: bool,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: VecDeque<Entry>,
}

impl InFlight {
    /// A message covering records up to `last_seq` was handed to the client.
    pub fn queued(&mut self, last_seq: u64) {
        self.entries.push_back(Entry {
            last_seq,
            pkid: None,
            acked: false,
        });
    }

    /// The client wrote the oldest queued message with packet id `pkid`.
    pub fn written(&mut self, pkid: u16) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.pkid.is_none()) {
            entry.pkid = Some(pkid);
        }
    }

    /// Upstream confirmed `pkid`. Returns the new confirmed seq if the
    /// contiguous prefix grew.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.pkid == Some(pkid) && !e.acked)?;
        entry.acked = true;
        let mut confirmed = None;
        while self.entries.front().is_some_and(|e| e.acked) {
            confirmed = self.entries.pop_front().map(|e| e.last_seq);
        }
        confirmed
    }

    /// Messages sent and not yet confirmed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_cursor_moves_only_over_the_contiguous_prefix() {
        let mut inflight = InFlight::default();
        for (seq, pkid) in [(10, 1), (20, 2), (30, 3)] {
            inflight.queued(seq);
            inflight.written(pkid);
        }
        assert_eq!(inflight.acked(2), None);
        assert_eq!(inflight.acked(3), None);
        assert_eq!(inflight.acked(1), Some(30));
        assert_eq!(inflight.len(), 0);
    }

    #[test]
    fn unknown_and_repeated_acks_change_nothing() {
        let mut inflight = InFlight::default();
        inflight.queued(5);
        inflight.written(7);
        assert_eq!(inflight.acked(9), None);
        assert_eq!(inflight.acked(7), Some(5));
        assert_eq!(inflight.acked(7), None);
    }

    proptest! {
        #[test]
        fn any_ack_order_confirms_exactly_the_prefix(order in Just((1u16..=20).collect::<Vec<_>>()).prop_shuffle()) {
            let mut inflight = InFlight::default();
            for pkid in 1..=20u16 {
                inflight.queued(u64::from(pkid) * 10);
                inflight.written(pkid);
            }
            let mut acked = std::collections::BTreeSet::new();
            let mut confirmed = 0;
            for pkid in order {
                acked.insert(pkid);
                if let Some(seq) = inflight.acked(pkid) {
                    prop_assert!(seq > confirmed);
                    confirmed = seq;
                }
                let prefix = (1..=20u16).take_while(|p| acked.contains(p)).count() as u64;
                prop_assert_eq!(confirmed, prefix * 10);
            }
        }
    }
}
