//! `[upstream]`, the broker ledge syncs its spool to, and `[[forward]]`,
//! the local messages copied there.
//!
//! Files read: none. `ca_file`, `cert_file` and `key_file` must exist (the
//! uplink reads them when it connects); `password_file` is read by
//! [`super::secrets`]. The URL and keep-alive rules are `[broker]`'s
//! ([`super::broker`]).

use std::time::Duration;

use toml::Spanned;

use super::broker::parse_broker_url;
use super::Resolver;
use crate::config::plan::{ForwardRule, TlsFiles, UpstreamPlan};
use crate::config::raw::{RawForward, RawUpstream};
use crate::topic::{validate_topic_name, TopicFilter};

impl Resolver<'_> {
    pub(super) fn upstream(&mut self, raw: RawUpstream, device_id: &str) -> UpstreamPlan {
        let (tls, host, port) = parse_broker_url(raw.url.get_ref(), true).unwrap_or_else(|e| {
            self.fail(raw.url.span(), e);
            (false, String::new(), 0)
        });
        let file = |r: &mut Self, f: &Option<Spanned<String>>| {
            f.as_ref().map(|f| {
                let path = r.path(f.get_ref());
                if !path.is_file() {
                    r.fail(f.span(), format!("{} does not exist", path.display()));
                }
                path
            })
        };
        let tls_files = TlsFiles {
            ca_file: file(self, &raw.ca_file),
            cert_file: file(self, &raw.cert_file),
            key_file: file(self, &raw.key_file),
        };
        if tls_files.cert_file.is_some() != tls_files.key_file.is_some() {
            let span = raw
                .cert_file
                .as_ref()
                .or(raw.key_file.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(
                span,
                "a client certificate needs both cert_file and key_file",
            );
        }
        if !tls && (raw.ca_file.is_some() || raw.cert_file.is_some()) {
            self.fail(
                raw.url.span(),
                "ca_file/cert_file/key_file need an mqtts:// url",
            );
        }
        let topic_prefix = match &raw.topic_prefix {
            Some(prefix) => {
                let text = prefix.get_ref().trim_end_matches('/').to_owned();
                if let Err(e) = validate_topic_name(&text) {
                    self.fail(prefix.span(), format!("invalid topic prefix: {e}"));
                }
                text
            }
            None => format!("ledge/{device_id}"),
        };
        let ship_logs = match raw.logs.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
            None => Some(log::Level::Info),
            Some(("off", _)) => None,
            Some((text, span)) => text.parse::<log::Level>().map(Some).unwrap_or_else(|_| {
                self.fail(
                    span,
                    format!("`{text}` is not a level (off, error, warn, info, debug)"),
                );
                None
            }),
        };
        let keep_alive = self.keep_alive(&raw.keep_alive);
        let outage_warning = self.duration(&raw.outage_warning, Duration::from_secs(60));
        if let Some(warning) = &raw.outage_warning {
            if outage_warning < Duration::from_secs(1) {
                self.fail(warning.span(), "outage_warning must be at least 1s");
            }
        }
        UpstreamPlan {
            host,
            port,
            tls: tls.then_some(tls_files),
            client_id: raw
                .client_id
                .map(Spanned::into_inner)
                .unwrap_or_else(|| format!("ledge-{device_id}-uplink")),
            keep_alive,
            username: raw.username,
            password: self.password(&raw.password_file, &raw.password_env),
            topic_prefix,
            max_inflight: self.positive(&raw.max_inflight, 32, 1000),
            ship_logs,
            outage_warning,
        }
    }

    pub(super) fn forwards(
        &mut self,
        raw: Vec<Spanned<RawForward>>,
        has_upstream: bool,
    ) -> Vec<ForwardRule> {
        let mut rules = Vec::new();
        for entry in raw {
            let span = entry.span();
            let f = entry.into_inner();
            if !has_upstream {
                self.fail(
                    span.clone(),
                    "[[forward]] needs an [upstream] to forward to",
                );
            }
            let filter = match TopicFilter::new(f.topic.get_ref()) {
                Ok(filter) => filter,
                Err(e) => {
                    self.fail(f.topic.span(), format!("invalid topic filter: {e}"));
                    continue;
                }
            };
            if let Some(to) = &f.to {
                if let Err(e) = validate_topic_name(to.get_ref()) {
                    self.fail(to.span(), format!("invalid upstream topic: {e}"));
                }
            }
            rules.push(ForwardRule {
                filter,
                to: f.to.map(Spanned::into_inner),
            });
        }
        rules
    }
}
