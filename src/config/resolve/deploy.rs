//! `[deploy]`: which keys may sign over-the-air deployments, the largest
//! module accepted, and when a new version is rolled back.
//!
//! Files read: none (trusted keys are written in the file itself).

use super::Resolver;
use crate::config::plan::DeployPlan;
use crate::config::raw::RawDeploy;
use crate::signing::parse_public_key;

impl Resolver<'_> {
    pub(super) fn deploy(&mut self, raw: &RawDeploy) -> DeployPlan {
        let defaults = DeployPlan::default();
        let mut trusted_keys = Vec::new();
        for key in &raw.trusted_keys {
            match parse_public_key(key.get_ref()) {
                Ok(parsed) => trusted_keys.push(parsed),
                Err(e) => self.fail(key.span(), e),
            }
        }
        let max_error_rate = match &raw.max_error_rate {
            Some(rate) if !(0.0..=1.0).contains(rate.get_ref()) => {
                self.fail(rate.span(), "max_error_rate is a fraction from 0 to 1");
                defaults.max_error_rate
            }
            Some(rate) => *rate.get_ref(),
            None => defaults.max_error_rate,
        };
        DeployPlan {
            trusted_keys,
            max_module_size: self.size(&raw.max_module_size, defaults.max_module_size as u64)
                as usize,
            watch_invocations: self.positive(&raw.watch_invocations, 20, 1_000_000) as u64,
            watch_period: self.duration(&raw.watch_period, defaults.watch_period),
            max_error_rate,
        }
    }
}
