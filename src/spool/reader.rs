//! Reading durable records in seq order, across segments, from a cursor.
//!
//! A reader never sees a record that is not yet durable (`seq >
//! synced_through`): a record sent upstream and then lost locally in a power
//! cut would let its seq be reused for different data, and upstream
//! de-duplication by seq would then drop the new record.
//!
//! Damage does not stop a reader: a bad stretch in a segment is skipped to
//! the next valid record and seqs that cannot be delivered (damaged, or
//! deleted by `drop_oldest`) are counted in `skipped`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use super::frame::{self, DecodeError, Kind};
use super::segment;
use super::writer::Shared;

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
        let (limit, bases) = {
            let state = self.shared.lock();
            let bases: Vec<u64> = state.segments.iter().map(|s| s.base).collect();
            (state.synced_through, bases)
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes && self.next <= limit {
            match self.next_record(&bases, limit)? {
                Some(record) => {
                    bytes += record.body.len();
                    out.push(record);
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn next_record(&mut self, bases: &[u64], limit: u64) -> std::io::Result<Option<Record>> {
        loop {
            if self.open.is_none() && !self.open_segment(bases)? {
                return Ok(None);
            }
            let Some(open) = self.open.as_mut() else {
                return Ok(None);
            };
            match frame::decode(open.unread()) {
                Ok(found) if found.seq < self.next => {
                    open.consume(found.size());
                }
                Ok(found) if found.seq > limit => return Ok(None),
                Ok(found) => {
                    let record = Record {
                        seq: found.seq,
                        ts_ms: found.ts_ms,
                        kind: found.kind,
                        body: open.unread()[frame::HEADER_LEN..found.size()].to_vec(),
                    };
                    open.consume(found.size());
                    if found.seq > self.next {
                        self.skip_to(found.seq, "missing from the segment");
                    }
                    self.next = found.seq + 1;
                    return Ok(Some(record));
                }
                Err(DecodeError::Incomplete) => {
                    if open.fill()? == 0 && !self.advance_segment(bases) {
                        return Ok(None);
                    }
                }
                Err(DecodeError::Corrupt(why)) => {
                    // Read the rest of the segment so the resync can look
                    // past a damaged stretch longer than one chunk.
                    while open.fill()? > 0 {}
                    let unread = open.unread();
                    let skip = frame::resync(unread).unwrap_or(unread.len());
                    log::warn!(target: "ledge::spool", "{}: reader {}: skipped {skip} damaged bytes at offset {} of segment {} ({why})", self.shared.dir.display(), self.name, open.buf_offset, open.base);
                    open.consume(skip);
                    if open.unread().is_empty() && !self.advance_segment(bases) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Opens the segment holding `next`; false if there is none yet.
    fn open_segment(&mut self, bases: &[u64]) -> std::io::Result<bool> {
        let Some(&first) = bases.first() else {
            return Ok(false);
        };
        if self.next < first {
            self.skip_to(
                first,
                "no longer in the spool: confirmed before a restart, or dropped when full",
            );
        }
        let Some(&base) = bases.iter().rev().find(|&&b| b <= self.next) else {
            return Ok(false);
        };
        let path = self.shared.dir.join(segment::file_name(base));
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Deleted by drop_oldest since the list was taken: next round.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(segment::HEADER_LEN as u64))?;
        self.open = Some(OpenSegment {
            base,
            file,
            buf: Vec::new(),
            pos: 0,
            buf_offset: segment::HEADER_LEN as u64,
        });
        Ok(true)
    }

    /// At the end of a segment: move to the next one if it exists.
    fn advance_segment(&mut self, bases: &[u64]) -> bool {
        let Some(current) = self.open.as_ref().map(|o| o.base) else {
            return false;
        };
        let Some(&next_base) = bases.iter().find(|&&b| b > current) else {
            return false; // the active segment: wait for more
        };
        if next_base > self.next {
            self.skip_to(next_base, "missing at the end of a segment");
        }
        self.open = None;
        true
    }

    fn skip_to(&mut self, seq: u64, why: &str) {
        let count = seq - self.next;
        self.skipped += count;
        log::warn!(target: "ledge::spool", "{}: reader {}: records {}..{} cannot be delivered ({why})", self.shared.dir.display(), self.name, self.next, seq - 1);
        self.next = seq;
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

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.buf_offset += n as u64;
    }
}
