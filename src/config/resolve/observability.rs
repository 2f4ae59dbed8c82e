//! `[log]` and `[metrics]`: how ledge reports on itself. (`[log] level` is
//! taken as written; `LEDGE_LOG` overrides it when ledge starts.)
//!
//! Files read: none.

use std::net::SocketAddr;
use std::time::Duration;

use super::Resolver;
use crate::config::raw::{RawLog, RawMetrics};

impl Resolver<'_> {
    /// `[metrics] interval`: how often a metrics snapshot is spooled for
    /// upstream; a minute unless set.
    pub(super) fn metrics_interval(&mut self, raw: &RawMetrics) -> Duration {
        self.duration(&raw.interval, Duration::from_secs(60))
    }

    /// `[metrics] listen`: where Prometheus text is served, if anywhere.
    pub(super) fn metrics_listen(&mut self, raw: &RawMetrics) -> Option<SocketAddr> {
        let listen = raw.listen.as_ref()?;
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(e) => {
                self.fail(
                    listen.span(),
                    format!("metrics listen must be an address like \"127.0.0.1:9464\": {e}"),
                );
                None
            }
        }
    }

    /// `[log] format`: true for one JSON object per line, false for text.
    pub(super) fn log_json(&mut self, raw: &RawLog) -> bool {
        match raw
            .format
            .as_ref()
            .map(|f| (f.get_ref().as_str(), f.span()))
        {
            None | Some(("text", _)) => false,
            Some(("json", _)) => true,
            Some((other, span)) => {
                self.fail(span, format!("log format `{other}` is not text or json"));
                false
            }
        }
    }
}
