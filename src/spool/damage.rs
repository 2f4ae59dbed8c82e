//! Damage found in segment files: each place reported once at ERROR, with
//! the segment, the offset and the records it cost, and counted once.
//!
//! Recovery finds damage at open and readers find it while reading sealed
//! segments; a reader passes the same damage again after every rewind (the
//! uplink rewinds on each reconnect), and recovery and a reader can find the
//! same loss from two sides (a missing segment at open, a gap between
//! segments when reading). So the ledger keys places by (segment, offset)
//! and losses by seq: a report that names no new place and no new lost seq
//! changes nothing and logs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::segment;

/// What a piece of damage cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Nothing: the records around it are whole (a damaged header, stale
    /// bytes between records).
    Nothing,
    /// These seqs, inclusive.
    Range(u64, u64),
    /// Every record from this seq to the end of the segment, how many is
    /// not known (the segment's content is gone).
    From(u64),
}

/// One piece of damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Base seq of the segment it is in.
    pub segment: u64,
    pub offset: u64,
    /// What is wrong, e.g. "37 damaged bytes (checksum mismatch)".
    pub what: String,
    pub lost: Lost,
}

/// What a report added to the ledger, for the spool's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Newly {
    /// The first damage found in this segment.
    pub segment: bool,
    /// Lost seqs not counted before.
    pub records: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    places: BTreeSet<(u64, u64)>,
    segments: BTreeSet<u64>,
    /// Lost seqs already counted, as disjoint inclusive ranges by start.
    lost: BTreeMap<u64, u64>,
}

impl Ledger {
    /// Notes `report`; logs whatever is new in it and returns it, to count.
    pub fn note(&mut self, dir: &Path, report: &Report) -> Newly {
        let new_place = self.places.insert((report.segment, report.offset));
        let newly_lost = match report.lost {
            Lost::Range(first, last) if first <= last => self.add_lost(first, last),
            _ => 0,
        };
        let loses_records = matches!(report.lost, Lost::Range(..));
        if newly_lost == 0 && (loses_records || !new_place) {
            return Newly::default();
        }
        let newly = Newly {
            segment: self.segments.insert(report.segment),
            records: newly_lost,
        };
        let cost = match report.lost {
            Lost::Nothing => "no record lost".to_owned(),
            Lost::Range(first, last) => {
                format!(
                    "records {first}..={last} lost ({} records)",
                    last - first + 1
                )
            }
            Lost::From(first) => {
                format!("the records it held from seq {first} on are lost (how many is unknown)")
            }
        };
        log::error!(
            target: "ledge::spool",
            "{}: segment {}: {} at offset {}: {cost}",
            dir.display(),
            segment::file_name(report.segment),
            report.what,
            report.offset
        );
        newly
    }

    /// Adds `first..=last` to the lost seqs; returns how many were new.
    fn add_lost(&mut self, first: u64, last: u64) -> u64 {
        let mut new = last - first + 1;
        let (mut start, mut end) = (first, last);
        // Ranges overlapping or touching [first, last] merge into it.
        let touching: Vec<(u64, u64)> = self
            .lost
            .range(..=last.saturating_add(1))
            .rev()
            .take_while(|(_, e)| **e + 1 >= first)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            let overlap_start = s.max(first);
            let overlap_end = e.min(last);
            if overlap_start <= overlap_end {
                new -= overlap_end - overlap_start + 1;
            }
            start = start.min(s);
            end = end.max(e);
            self.lost.remove(&s);
        }
        self.lost.insert(start, end);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(segment: u64, offset: u64, lost: Lost) -> Report {
        Report {
            segment,
            offset,
            what: "test damage".to_owned(),
            lost,
        }
    }

    /// Notes each report in turn; returns (damaged segments, lost records)
    /// as the spool would count them.
    fn count(ledger: &mut Ledger, reports: &[Report]) -> (u64, u64) {
        reports.iter().fold((0, 0), |(segments, records), r| {
            let newly = ledger.note(Path::new("/spool"), r);
            (segments + u64::from(newly.segment), records + newly.records)
        })
    }

    #[test]
    fn the_same_damage_seen_twice_counts_once() {
        let mut ledger = Ledger::default();
        let seen = count(
            &mut ledger,
            &[
                report(100, 40, Lost::Range(105, 109)),
                report(100, 40, Lost::Range(105, 109)),
                // The same loss found from another place (a gap seen by a reader).
                report(100, 900, Lost::Range(106, 109)),
            ],
        );
        assert_eq!(seen, (1, 5));
        let more = count(&mut ledger, &[report(100, 950, Lost::Range(108, 112))]);
        assert_eq!(more, (0, 3));
        let header = count(
            &mut ledger,
            &[report(200, 0, Lost::Nothing), report(200, 0, Lost::Nothing)],
        );
        assert_eq!(header, (1, 0));
    }

    #[test]
    fn lost_ranges_merge_whatever_the_order() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.add_lost(10, 19), 10);
        assert_eq!(ledger.add_lost(30, 39), 10);
        assert_eq!(ledger.add_lost(15, 34), 10);
        assert_eq!(ledger.add_lost(1, 50), 50 - 30);
        assert_eq!(ledger.lost.len(), 1);
        assert_eq!(ledger.add_lost(51, 51), 1);
        assert_eq!(ledger.lost.iter().next(), Some((&1, &51)));
    }
}
