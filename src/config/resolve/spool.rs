//! `[spool]`: the on-flash log's fsync policy, what happens when it is
//! full, and its size (the board profile's, if any, unless set).
//!
//! Files read: none.

use toml::Spanned;

use super::Resolver;
use crate::config::raw::RawSpool;
use crate::spool::{FsyncPolicy, OnFull, SpoolOptions};
use crate::units::format_size;

impl Resolver<'_> {
    pub(super) fn spool(&mut self, raw: &RawSpool) -> SpoolOptions {
        let defaults = SpoolOptions::default();
        let fsync = match &raw.fsync {
            None => defaults.fsync,
            Some(text) => FsyncPolicy::parse(text.get_ref()).unwrap_or_else(|e| {
                self.fail(text.span(), e);
                defaults.fsync
            }),
        };
        let on_full = match &raw.on_full {
            None => defaults.on_full,
            Some(text) => OnFull::parse(text.get_ref()).unwrap_or_else(|e| {
                self.fail(text.span(), e);
                defaults.on_full
            }),
        };
        // A board's smaller spool gets smaller segments, so 4 of them fit.
        let board_max = self.board_size(|d| &d.spool_max_bytes);
        let default_segment = match board_max {
            Some(max) if raw.max_bytes.is_none() => {
                (max / 8).clamp(64 << 10, defaults.segment_size)
            }
            _ => defaults.segment_size,
        };
        let segment_size = self.size(&raw.segment_size, default_segment);
        if let Some(v) = &raw.segment_size {
            if !(64 << 10..=1 << 30).contains(&segment_size) {
                self.fail(v.span(), "segment_size must be between 64KiB and 1GiB");
            }
        }
        let max_bytes = self.size(&raw.max_bytes, board_max.unwrap_or(defaults.max_bytes));
        if max_bytes < segment_size.saturating_mul(4) {
            let span = raw
                .max_bytes
                .as_ref()
                .or(raw.segment_size.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(span, format!(
                "max_bytes ({}) must be at least 4 × segment_size ({}) so old segments can be dropped or reclaimed while the newest fills",
                format_size(max_bytes),
                format_size(segment_size)
            ));
        }
        SpoolOptions {
            segment_size,
            max_bytes,
            on_full,
            fsync,
            ..defaults
        }
    }
}
