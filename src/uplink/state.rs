//! The uplink's decisions, without I/O: which lane sends next, what an
//! acknowledgement confirms, when a stop is complete, and whether the next
//! connection rewinds to the cursor. The driver (`mod.rs`) owns the socket,
//! the spool readers, the clock and every await; it tells `Session` and
//! `Link` what happened and does what they answer, so the tests below drive
//! every decision deterministically.
//!
//! Lanes are spool streams in priority order: 0 is the event stream, 1 the
//! telemetry stream. Status messages (`online`, `offline`) travel on their
//! own in-flight lane, `STATUS_LANE`, which no cursor follows.

use super::acks::InFlight;

/// A spool stream's place in the priority order.
pub(crate) type Lane = usize;

/// The event stream, which always goes first.
pub(crate) const EVENTS: Lane = 0;

/// The telemetry stream (logs, metrics), sent while events are idle.
pub(crate) const TELEMETRY: Lane = 1;

/// The in-flight lane of status messages (not a spool stream).
pub(crate) const STATUS_LANE: Lane = usize::MAX;

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A stop was asked for (and is done).
    Shutdown,
    Failed(String),
    /// The broker does not take retained messages (MQTT 5 reason 0x9A).
    RetainRefused,
}

/// What the driver does once a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Stop,
    /// Connect again, without retaining status messages if `retain` is
    /// now false.
    Reconnect {
        /// Readers go back to the confirmed cursor first: whatever was sent
        /// unconfirmed is sent again (upstream drops duplicates).
        rewind: bool,
        /// Wait the backoff delay first.
        back_off: bool,
    },
}

/// What outlives one connection.
#[derive(Debug)]
pub(crate) struct Link {
    /// Whether status messages (and the will) are retained: until the
    /// broker says it cannot retain.
    pub retain: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self { retain: true }
    }
}

impl Link {
    /// What follows a connection that ended with `end`.
    pub fn ended(&mut self, end: &End) -> Next {
        match end {
            End::Shutdown => Next::Stop,
            // Refused at CONNECT: nothing was sent, so nothing to rewind.
            End::RetainRefused => {
                self.retain = false;
                Next::Reconnect {
                    rewind: false,
                    back_off: false,
                }
            }
            // rumqttc keeps unconfirmed publishes only in memory and drops
            // them with the connection: re-send from the cursor.
            End::Failed(_) => Next::Reconnect {
                rewind: true,
                back_off: true,
            },
        }
    }
}

/// What a PUBACK means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// `lane`'s contiguous confirmed prefix grew to `seq`: move its cursor.
    Confirmed { lane: Lane, seq: u64 },
    /// A status message was answered. `refused`: the broker's rules
    /// forbid the status topic (not data, so the spool goes on).
    /// `stop_complete`: the `offline` of a stop is confirmed; disconnect.
    Status { refused: bool, stop_complete: bool },
    /// Upstream refused a spooled message. Not a confirmation: nothing may
    /// be skipped, so the connection restarts and re-sends it.
    Refused,
    /// Nothing moved: confirmed out of order, repeated, or unknown.
    Nothing,
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// Messages handed to the client and not yet confirmed, all lanes.
    inflight: InFlight,
    /// Per lane: true while its last read found nothing new, so it waits
    /// for the spool to say more is durable.
    caught_up: Vec<bool>,
    /// Unconfirmed messages allowed at once (`[upstream] max_inflight`).
    max_inflight: usize,
    /// Set once a stop was asked for: the `offline` status is on its way
    /// and nothing new is sent.
    stopping: bool,
}

impl Session {
    /// A fresh connection over `lanes` spool streams: every lane reads
    /// from where its reader stands.
    pub fn new(lanes: usize, max_inflight: usize) -> Self {
        Self {
            inflight: InFlight::default(),
            caught_up: vec![false; lanes],
            max_inflight,
            stopping: false,
        }
    }

    /// The lane to read and send from now: events first, telemetry only
    /// while the event lane has nothing new, so a backlog of logs never
    /// delays an event. None while the window is full or a stop is on.
    pub fn next_lane(&self) -> Option<Lane> {
        if self.stopping || self.inflight.len() >= self.max_inflight {
            return None;
        }
        self.caught_up.iter().position(|caught_up| !caught_up)
    }

    /// A read of `lane` found `records` records (all handed to the client).
    pub fn read(&mut self, lane: Lane, records: usize) {
        self.caught_up[lane] = records == 0;
    }

    /// A message of `lane` covering records up to `last_seq` (0 for a
    /// status message) was handed to the client.
    pub fn queued(&mut self, lane: Lane, last_seq: u64) {
        self.inflight.queued(lane, last_seq);
    }

    /// The client wrote the oldest queued message with packet id `pkid`.
    pub fn written(&mut self, pkid: u16) {
        self.inflight.written(pkid);
    }

    /// True while `lane` has nothing to send until the spool says more is
    /// durable.
    pub fn waits_for_durable(&self, lane: Lane) -> bool {
        self.caught_up.get(lane).is_some_and(|c| *c) && !self.stopping
    }

    /// More of `lane` is durable: read it.
    pub fn more_durable(&mut self, lane: Lane) {
        self.caught_up[lane] = false;
    }

    /// Upstream answered `pkid`; `accepted` is false for a failure reason
    /// (not authorised, quota exceeded).
    pub fn acked(&mut self, pkid: u16, accepted: bool) -> Ack {
        let status = self.inflight.lane_of(pkid) == Some(STATUS_LANE);
        if !accepted && !status {
            return Ack::Refused;
        }
        let confirmed = self.inflight.acked(pkid);
        if status {
            let stop_complete =
                confirmed.is_some() && self.stopping && !self.inflight.holds(STATUS_LANE);
            return Ack::Status {
                refused: !accepted,
                stop_complete,
            };
        }
        match confirmed {
            Some((lane, seq)) => {
                // Read again: the lane may have stopped short of the window.
                self.caught_up[lane] = false;
                Ack::Confirmed { lane, seq }
            }
            None => Ack::Nothing,
        }
    }

    /// A stop was asked for and its `offline` status queued: send nothing
    /// more, and wait for that status to be confirmed.
    pub fn stop(&mut self) {
        self.queued(STATUS_LANE, 0);
        self.stopping = true;
    }

    pub fn stopping(&self) -> bool {
        self.stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session over events and telemetry whose `online` went out as
    /// packet 1.
    fn connected(max_inflight: usize) -> Session {
        let mut session = Session::new(2, max_inflight);
        session.queued(STATUS_LANE, 0);
        session.written(1);
        session
    }

    fn send(session: &mut Session, lane: Lane, last_seqs: &[u64], first_pkid: u16) {
        for (i, seq) in last_seqs.iter().enumerate() {
            session.queued(lane, *seq);
            session.written(first_pkid + i as u16);
        }
        session.read(lane, last_seqs.len());
    }

    #[test]
    fn events_go_before_telemetry() {
        let mut session = connected(10);
        assert_eq!(session.next_lane(), Some(EVENTS));
        session.read(EVENTS, 0);
        assert_eq!(session.next_lane(), Some(TELEMETRY));
        session.read(TELEMETRY, 0);
        assert_eq!(session.next_lane(), None);
        assert!(session.waits_for_durable(EVENTS) && session.waits_for_durable(TELEMETRY));
        session.more_durable(TELEMETRY);
        session.more_durable(EVENTS);
        assert_eq!(session.next_lane(), Some(EVENTS));
    }

    #[test]
    fn a_full_window_sends_nothing_until_an_ack() {
        let mut session = connected(3);
        send(&mut session, EVENTS, &[10, 20], 2);
        assert_eq!(session.next_lane(), None, "online + two events fill 3");
        assert_eq!(
            session.acked(2, true),
            Ack::Confirmed {
                lane: EVENTS,
                seq: 10
            }
        );
        assert_eq!(session.next_lane(), Some(EVENTS));
    }

    #[test]
    fn a_confirmation_moves_only_its_lanes_contiguous_prefix() {
        let mut session = connected(10);
        send(&mut session, EVENTS, &[10, 20], 2);
        send(&mut session, TELEMETRY, &[500], 4);
        assert_eq!(session.acked(3, true), Ack::Nothing);
        assert_eq!(
            session.acked(4, true),
            Ack::Confirmed {
                lane: TELEMETRY,
                seq: 500
            }
        );
        assert_eq!(
            session.acked(2, true),
            Ack::Confirmed {
                lane: EVENTS,
                seq: 20
            }
        );
        assert_eq!(session.acked(2, true), Ack::Nothing, "a repeat");
        assert_eq!(session.acked(99, true), Ack::Nothing, "unknown");
    }

    #[test]
    fn a_confirmation_makes_its_lane_read_again() {
        let mut session = connected(10);
        send(&mut session, EVENTS, &[10], 2);
        session.read(EVENTS, 0);
        session.read(TELEMETRY, 0);
        assert_eq!(session.next_lane(), None);
        session.acked(2, true);
        assert_eq!(session.next_lane(), Some(EVENTS));
    }

    #[test]
    fn a_refused_record_is_not_confirmed_but_a_refused_status_is_let_go() {
        let mut session = connected(10);
        send(&mut session, EVENTS, &[10], 2);
        assert_eq!(session.acked(2, false), Ack::Refused);
        assert_eq!(
            session.acked(1, false),
            Ack::Status {
                refused: true,
                stop_complete: false
            }
        );
        assert_eq!(
            session.acked(99, false),
            Ack::Refused,
            "unknown and refused"
        );
    }

    #[test]
    fn a_stop_sends_nothing_more_and_ends_when_the_offline_status_is_confirmed() {
        let mut session = connected(10);
        send(&mut session, EVENTS, &[10], 2);
        session.read(EVENTS, 0);
        session.stop();
        session.written(3);
        assert!(session.stopping());
        assert_eq!(session.next_lane(), None);
        assert!(
            !session.waits_for_durable(EVENTS),
            "no reads while stopping"
        );
        // The online status (1) is still unconfirmed: not done yet.
        assert_eq!(
            session.acked(3, true),
            Ack::Status {
                refused: false,
                stop_complete: false
            }
        );
        assert_eq!(
            session.acked(1, true),
            Ack::Status {
                refused: false,
                stop_complete: true
            }
        );
        // Events confirmed during the stop still move the cursor.
        assert_eq!(
            session.acked(2, true),
            Ack::Confirmed {
                lane: EVENTS,
                seq: 10
            }
        );
    }

    #[test]
    fn a_refused_offline_status_still_completes_the_stop() {
        let mut session = connected(10);
        session.acked(1, true);
        session.stop();
        session.written(2);
        assert_eq!(
            session.acked(2, false),
            Ack::Status {
                refused: true,
                stop_complete: true
            }
        );
    }

    #[test]
    fn a_lost_connection_rewinds_and_backs_off_a_refused_retain_only_stops_retaining() {
        let mut link = Link::default();
        assert!(link.retain);
        assert_eq!(
            link.ended(&End::Failed("reset".into())),
            Next::Reconnect {
                rewind: true,
                back_off: true
            }
        );
        assert!(link.retain);
        assert_eq!(
            link.ended(&End::RetainRefused),
            Next::Reconnect {
                rewind: false,
                back_off: false
            }
        );
        assert!(!link.retain);
        assert_eq!(link.ended(&End::Shutdown), Next::Stop);
    }
}
