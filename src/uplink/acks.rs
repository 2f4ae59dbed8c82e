//! Which spooled records upstream has confirmed.
//!
//! Messages go out in seq order per stream (lane), each covering records
//! up to its `last_seq`. rumqttc reports a packet id when a publish is
//! written (`Outgoing::Publish`, in request order, across lanes) and again
//! when its PUBACK arrives, in any order. A lane's cursor may only move
//! over its contiguous confirmed prefix: confirming message 3 before
//! message 2 of the same lane moves nothing until 2 is confirmed too, and
//! one lane's confirmations never move the other's. No IO here, so it is
//! tested directly.

use std::collections::VecDeque;

#[derive(Debug)]
struct Entry {
    lane: usize,
    last_seq: u64,
    pkid: Option<u16>,
    acked: bool,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// In the order the messages were handed to the client.
    entries: VecDeque<Entry>,
}

impl InFlight {
    /// A message of `lane` covering records up to `last_seq` was handed to
    /// the client.
    pub fn queued(&mut self, lane: usize, last_seq: u64) {
        self.entries.push_back(Entry {
            lane,
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

    /// Upstream confirmed `pkid`. Returns its lane and the lane's new
    /// confirmed seq if the lane's contiguous prefix grew.
    pub fn acked(&mut self, pkid: u16) -> Option<(usize, u64)> {
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.pkid == Some(pkid) && !e.acked)?;
        entry.acked = true;
        let lane = entry.lane;
        let mut confirmed = None;
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &self.entries[i];
            if entry.lane != lane {
                i += 1;
            } else if entry.acked {
                confirmed = Some(entry.last_seq);
                self.entries.remove(i);
            } else {
                break;
            }
        }
        confirmed.map(|seq| (lane, seq))
    }

    /// The lane of the message written with `pkid`, if it is in flight.
    pub fn lane_of(&self, pkid: u16) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.pkid == Some(pkid) && !e.acked)
            .map(|e| e.lane)
    }

    /// True while a message of `lane` is unconfirmed.
    pub fn holds(&self, lane: usize) -> bool {
        self.entries.iter().any(|e| e.lane == lane)
    }

    /// Messages sent and not yet confirmed, all lanes.
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
            inflight.queued(0, seq);
            inflight.written(pkid);
        }
        assert_eq!(inflight.acked(2), None);
        assert_eq!(inflight.acked(3), None);
        assert_eq!(inflight.acked(1), Some((0, 30)));
        assert_eq!(inflight.len(), 0);
    }

    #[test]
    fn unknown_and_repeated_acks_change_nothing() {
        let mut inflight = InFlight::default();
        inflight.queued(0, 5);
        inflight.written(7);
        assert_eq!(inflight.acked(9), None);
        assert_eq!(inflight.lane_of(7), Some(0));
        assert!(inflight.holds(0) && !inflight.holds(1));
        assert_eq!(inflight.acked(7), Some((0, 5)));
        assert_eq!(inflight.lane_of(7), None);
        assert!(!inflight.holds(0));
        assert_eq!(inflight.acked(7), None);
    }

    #[test]
    fn lanes_confirm_independently() {
        let mut inflight = InFlight::default();
        // events 10, telemetry 500, events 20, telemetry 600
        for (lane, seq, pkid) in [(0, 10, 1), (1, 500, 2), (0, 20, 3), (1, 600, 4)] {
            inflight.queued(lane, seq);
            inflight.written(pkid);
        }
        // An unconfirmed event does not hold back telemetry, nor the reverse.
        assert_eq!(inflight.acked(2), Some((1, 500)));
        assert_eq!(inflight.acked(3), None);
        assert_eq!(inflight.acked(4), Some((1, 600)));
        assert_eq!(inflight.acked(1), Some((0, 20)));
        assert_eq!(inflight.len(), 0);
    }

    proptest! {
        #[test]
        fn any_ack_order_confirms_exactly_the_prefix(order in Just((1u16..=20).collect::<Vec<_>>()).prop_shuffle()) {
            let mut inflight = InFlight::default();
            for pkid in 1..=20u16 {
                inflight.queued(0, u64::from(pkid) * 10);
                inflight.written(pkid);
            }
            let mut acked = std::collections::BTreeSet::new();
            let mut confirmed = 0;
            for pkid in order {
                acked.insert(pkid);
                if let Some((_, seq)) = inflight.acked(pkid) {
                    prop_assert!(seq > confirmed);
                    confirmed = seq;
                }
                let prefix = (1..=20u16).take_while(|p| acked.contains(p)).count() as u64;
                prop_assert_eq!(confirmed, prefix * 10);
            }
        }
    }
}
