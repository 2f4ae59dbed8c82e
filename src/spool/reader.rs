//! Reading durable records in seq order, across segments, from a cursor.
//!
//! A reader never sees a record that is not yet durable (`seq >
//! synced_through`): a record sent upstream and then lost locally in a power
//! cut would let its seq be reused for different data, and upstream
//! de-duplication by seq would then drop the new record. In the active
//! segment it looks only at the synced bytes, so a record still being
//! written is never mistaken for damage.
//!
//! Damage does not stop a reader: a bad stretch is skipped by
//! resynchronising on the next valid frame, an unreadable or missing
//! sealed segment is skipped whole, and what that cost is reported (see
//! `damage.rs`) and counted in `skipped` with the seqs deleted by
//! `drop_oldest`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use super::damage::{Lost, Report};
use super::frame::{self, DecodeError, Kind};
use super::segment;
use super::state::Shared;

/// Bytes read from a segment file at a time.
const READ_CHUNK: usize = 64 << 10;

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ts_ms: u64,
    pub kind: Kind,
    pub body: Vec<u8>,
}

pub struct Reader {
    shared: Arc<Shared>,
    name: String,
    /// The next seq to deliver.
    next: u64,
    open: Option<OpenSegment>,
    /// Seqs that could not be delivered (dropped or damaged).
    pub skipped: u64,
}

struct OpenSegment {
    base: u64,
    file: File,
    /// Bytes read from the file; `buf[pos..]` is not consumed yet.
    buf: Vec<u8>,
    pos: usize,
    /// Offset in the file of `buf[pos]`.
    buf_offset: u64,
}

/// The spool as one `next_batch` sees it (taken under one lock).
struct View {
    /// Highest durable seq.
    limit: u64,
    bases: Vec<u64>,
    /// Synced length of the active (last) segment.
    active_synced: u64,
}

impl View {
    /// The base of the segment after `base`, if `base` is sealed.
    fn after(&self, base: u64) -> Option<u64> {
        self.bases.iter().copied().find(|&b| b > base)
    }

    /// Where the whole records of segment `base` end: its end of file if
    /// sealed, the synced length if active.
    fn end_of(&self, base: u64) -> u64 {
        match self.after(base) {
            Some(_) => u64::MAX,
            None => self.active_synced,
        }
    }
}

/// What opening the segment holding `next` came to.
enum Opened {
    Yes,
    /// Nothing to read yet.
    Nothing,
    /// The segment was skipped (reported); try the next one.
    Skipped,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, name: String, next: u64) -> Self {
        Self {
            shared,
            name,
            next,
            open: None,
            skipped: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The seq the next delivered record will have (at least).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves the reader back to just after `seq` (after a reconnect, to
    /// re-send what was not confirmed).
    pub fn rewind_to(&mut self, seq: u64) {
        self.next = seq + 1;
        self.open = None;
    }

    /// Up to `max_records` durable records (and about `max_bytes` of
    /// bodies), in seq order; empty when the reader has caught up.
    pub fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<Record>> {
        let view = {
            let state = self.shared.lock();
            View {
                limit: state.synced_through,
                bases: state.segments.iter().map(|s| s.base).collect(),
                active_synced: state.active_synced,
            }
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes && self.next <= view.limit {
            match self.next_record(&view)? {
                Some(record) => {
                    bytes += record.body.len();
                    out.push(record);
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn next_record(&mut self, view: &View) -> std::io::Result<Option<Record>> {
        loop {
            if self.open.is_none() {
                match self.open_segment(view)? {
                    Opened::Yes => {}
                    Opened::Nothing => return Ok(None),
                    Opened::Skipped => continue,
                }
            }
            let Some(open) = self.open.as_mut() else {
                return Ok(None);
            };
            let end = view.end_of(open.base);
            match frame::decode(open.unread_before(end)) {
                Ok(found) if found.seq < self.next => open.consume(found.size()),
                Ok(found) if found.seq > view.limit => return Ok(None),
                Ok(found) => {
                    let offset = open.buf_offset;
                    let record = Record {
                        seq: found.seq,
                        ts_ms: found.ts_ms,
                        kind: found.kind,
                        body: open.unread()[frame::HEADER_LEN..found.size()].to_vec(),
                    };
                    open.consume(found.size());
                    let base = open.base;
                    if found.seq > self.next {
                        self.skip_to(found.seq, base, offset, "records missing");
                    }
                    self.next = found.seq + 1;
                    return Ok(Some(record));
                }
                Err(DecodeError::Incomplete) => {
                    if open.buffered_end() < end {
                        match open.fill() {
                            Ok(0) => {}
                            Ok(_) => continue,
                            Err(e) => {
                                self.unreadable(view, e)?;
                                continue;
                            }
                        }
                    }
                    // At the end of the whole records: done with a sealed
                    // segment, caught up in the active one, or bytes that
                    // are no record (a length running past the end).
                    if open.unread_before(end).is_empty() {
                        if !self.advance_segment(view) {
                            return Ok(None);
                        }
                        continue;
                    }
                    if !self.skip_damage(view, "length runs past the end of the records") {
                        return Ok(None);
                    }
                }
                Err(DecodeError::Corrupt(why)) => {
                    // Read up to the end first, so the resync can look past
                    // a damaged stretch longer than one chunk.
                    let filled = loop {
                        match open.fill() {
                            Ok(n) if n > 0 && open.buffered_end() < end => {}
                            Ok(_) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    };
                    if let Err(e) = filled {
                        self.unreadable(view, e)?;
                        continue;
                    }
                    if !self.skip_damage(view, &why.to_string()) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The unread bytes of the open segment start with damage: skips to the
    /// next valid record, or past the end of a sealed segment, reporting
    /// what it cost. False if there is nothing to skip to yet.
    fn skip_damage(&mut self, view: &View, reason: &str) -> bool {
        let Some(open) = self.open.as_mut() else {
            return true;
        };
        let (base, offset) = (open.base, open.buf_offset);
        let rest = open.unread_before(view.end_of(base));
        let len = rest.len();
        match frame::resync(rest) {
            Some(skip) => {
                let lost = match frame::decode(&rest[skip..]) {
                    Ok(found) if found.seq > self.next => Lost::Range(self.next, found.seq - 1),
                    _ => Lost::Nothing,
                };
                open.consume(skip);
                self.report(
                    base,
                    offset,
                    format!("{skip} damaged bytes ({reason})"),
                    lost,
                );
                true
            }
            None => {
                open.consume(len);
                let what = format!("{len} damaged bytes at the end ({reason})");
                match view.after(base) {
                    Some(next_base) => {
                        let lost = lost_before(self.next, next_base);
                        self.report(base, offset, what, lost);
                        true
                    }
                    // The damage runs to the end of what the active segment
                    // has synced: every durable record after `next` is in it.
                    None => {
                        let lost = lost_before(self.next, view.limit + 1);
                        self.report(base, offset, what, lost);
                        self.skip_to(view.limit + 1, base, offset, "damaged");
                        false
                    }
                }
            }
        }
    }

    /// The open segment cannot be read: a sealed one is skipped (its
    /// unread records reported lost), an error in the active one is
    /// returned.
    fn unreadable(&mut self, view: &View, error: std::io::Error) -> std::io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let Some(next_base) = view.after(open.base) else {
            return Err(error);
        };
        let lost = lost_before(self.next, next_base);
        self.report(
            open.base,
            open.buf_offset,
            format!("cannot be read ({error})"),
            lost,
        );
        self.skip_to(next_base, open.base, open.buf_offset, "unreadable");
        Ok(())
    }

    /// Opens the segment holding `next`.
    fn open_segment(&mut self, view: &View) -> std::io::Result<Opened> {
        let Some(&first) = view.bases.first() else {
            return Ok(Opened::Nothing);
        };
        if self.next < first {
            // Not damage: confirmed before a restart, or deleted by
            // drop_oldest (counted as dropped there).
            self.skipped += first - self.next;
            log::warn!(target: "ledge::spool", "{}: reader {}: records {}..={} are no longer in the spool (confirmed before a restart, or dropped when full)", self.shared.dir.display(), self.name, self.next, first - 1);
            self.next = first;
        }
        let Some(&base) = view.bases.iter().rev().find(|&&b| b <= self.next) else {
            return Ok(Opened::Nothing);
        };
        let path = self.shared.dir.join(segment::file_name(base));
        let opened = File::open(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))?;
            Ok(file)
        });
        let error = match opened {
            Ok(file) => {
                self.open = Some(OpenSegment {
                    base,
                    file,
                    buf: Vec::new(),
                    pos: 0,
                    buf_offset: segment::HEADER_LEN as u64,
                });
                return Ok(Opened::Yes);
            }
            Err(e) => e,
        };
        // Deleted (reclaimed or dropped when full) since the view was taken.
        let listed = self.shared.lock().segments.iter().any(|s| s.base == base);
        if !listed && error.kind() == std::io::ErrorKind::NotFound {
            return Ok(Opened::Nothing);
        }
        let Some(next_base) = view.after(base) else {
            return Err(error);
        };
        let what = if error.kind() == std::io::ErrorKind::NotFound {
            "is missing".to_owned()
        } else {
            format!("cannot be opened ({error})")
        };
        let lost = lost_before(self.next, next_base);
        self.report(base, 0, what, lost);
        self.skip_to(next_base, base, 0, "unreadable");
        Ok(Opened::Skipped)
    }

    /// At the end of a segment: move to the next one if it exists.
    fn advance_segment(&mut self, view: &View) -> bool {
        let Some((base, offset)) = self.open.as_ref().map(|o| (o.base, o.buf_offset)) else {
            return false;
        };
        let Some(next_base) = view.after(base) else {
            return false; // the active segment: wait for more
        };
        if next_base > self.next {
            self.skip_to(next_base, base, offset, "records missing at the end");
        }
        self.open = None;
        true
    }

    /// Moves past seqs `next..seq` that cannot be delivered: a gap inside
    /// or between segments is damage and goes to the ledger (which already
    /// knows it if it was reported where it was found).
    fn skip_to(&mut self, seq: u64, segment: u64, offset: u64, why: &str) {
        if seq <= self.next {
            return;
        }
        self.skipped += seq - self.next;
        let lost = Lost::Range(self.next, seq - 1);
        self.report(segment, offset, why.to_owned(), lost);
        self.next = seq;
    }

    fn report(&self, segment: u64, offset: u64, what: String, lost: Lost) {
        self.shared.report_damage(&Report {
            segment,
            offset,
            what,
            lost,
        });
    }
}

/// The seqs from `next` up to (not including) `end`.
fn lost_before(next: u64, end: u64) -> Lost {
    if end > next {
        Lost::Range(next, end - 1)
    } else {
        Lost::Nothing
    }
}

impl OpenSegment {
    /// Reads the next chunk; returns the bytes read (0 at end of file).
    fn fill(&mut self) -> std::io::Result<usize> {
        // Compact first, so the buffer never grows past one chunk plus the
        // largest record.
        self.buf.drain(..self.pos);
        self.pos = 0;
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let n = self.file.read(&mut self.buf[start..])?;
        self.buf.truncate(start + n);
        Ok(n)
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The unread bytes before file offset `end`.
    fn unread_before(&self, end: u64) -> &[u8] {
        let room = end.saturating_sub(self.buf_offset);
        let unread = self.unread();
        &unread[..unread
            .len()
            .min(usize::try_from(room).unwrap_or(usize::MAX))]
    }

    /// File offset just past the buffered bytes.
    fn buffered_end(&self) -> u64 {
        self.buf_offset + self.unread().len() as u64
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.buf_offset += n as u64;
    }
}
