//! Probation: a freshly switched alias target is watched for its first
//! `watch_invocations` invocations or `watch_period`, whichever comes first.
//! If its error rate exceeds `max_error_rate`, the alias goes back to where
//! it pointed before; otherwise the probation ends.
//!
//! Judged early when the outcome is already certain: once the errors alone
//! exceed `max_error_rate × watch_invocations`, no later success can save
//! the target, so it is rolled back without waiting for the rest.

use std::time::Duration;

use crate::config::DeployPlan;
use crate::metrics::Snapshot;

use super::store::{FunctionState, Probation};

/// One alias under probation.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub function: String,
    pub alias: String,
    /// Slot names (`f:8`) of the versions new in the alias's target.
    pub versions: Vec<String>,
    /// Their (invocations, errors) when the watch began in this process.
    pub baseline: Vec<(u64, u64)>,
    /// When the switch happened (persisted, so a restart continues it).
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pending,
    Healthy { invocations: u64, errors: u64 },
    Failing { invocations: u64, errors: u64 },
}

impl Watch {
    /// The watches the store asks for. `metrics(name)` gives a slot's
    /// counters now; `keep` are the watches already running, whose
    /// baselines carry on.
    pub fn from_state(
        function: &str,
        state: &FunctionState,
        keep: &[Watch],
        metrics: impl Fn(&str) -> Snapshot,
    ) -> Vec<Watch> {
        let mut watches = Vec::new();
        for (alias, entry) in &state.aliases {
            let Some(Probation { since_ms, .. }) = &entry.probation else {
                continue;
            };
            let before: Vec<u32> = entry.previous.iter().flat_map(|p| p.versions()).collect();
            let versions: Vec<String> = entry
                .target
                .versions()
                .filter(|v| !before.contains(v))
                .map(|v| format!("{function}:{v}"))
                .collect();
            if versions.is_empty() {
                continue;
            }
            if let Some(existing) = keep.iter().find(|w| {
                w.function == function
                    && w.alias == *alias
                    && w.versions == versions
                    && w.since_ms == *since_ms
            }) {
                watches.push(existing.clone());
                continue;
            }
            let baseline = versions
                .iter()
                .map(|v| {
                    let m = metrics(v);
                    (m.invocations, m.errors)
                })
                .collect();
            watches.push(Watch {
                function: function.to_owned(),
                alias: alias.clone(),
                versions,
                baseline,
                since_ms: *since_ms,
            });
        }
        watches
    }

    /// The verdict with the counters `now` (same order as `versions`).
    pub fn judge(&self, now: &[Snapshot], elapsed: Duration, rules: &DeployPlan) -> Verdict {
        let (mut invocations, mut errors) = (0, 0);
        for (snapshot, (base_invocations, base_errors)) in now.iter().zip(&self.baseline) {
            invocations += snapshot.invocations.saturating_sub(*base_invocations);
            errors += snapshot.errors.saturating_sub(*base_errors);
        }
        let too_many = |errors: u64, invocations: u64| {
            invocations > 0 && errors as f64 > rules.max_error_rate * invocations as f64
        };
        let certain_failure = errors as f64 > rules.max_error_rate * rules.watch_invocations as f64;
        if certain_failure
            || (invocations >= rules.watch_invocations || elapsed >= rules.watch_period)
                && too_many(errors, invocations)
        {
            Verdict::Failing {
                invocations,
                errors,
            }
        } else if invocations >= rules.watch_invocations || elapsed >= rules.watch_period {
            Verdict::Healthy {
                invocations,
                errors,
            }
        } else {
            Verdict::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch {
            function: "f".into(),
            alias: "live".into(),
            versions: vec!["f:2".into()],
            baseline: vec![(10, 3)],
            since_ms: 0,
        }
    }

    fn counts(invocations: u64, errors: u64) -> [Snapshot; 1] {
        [Snapshot {
            invocations,
            errors,
            ..Snapshot::default()
        }]
    }

    #[test]
    fn a_target_is_judged_after_its_invocations_or_its_period() {
        let rules = DeployPlan::default(); // 20 invocations, 10 min, 20 %
        let w = watch();
        let early = Duration::from_secs(1);
        assert_eq!(w.judge(&counts(25, 4), early, &rules), Verdict::Pending);
        assert_eq!(
            w.judge(&counts(30, 6), early, &rules),
            Verdict::Healthy {
                invocations: 20,
                errors: 3
            }
        );
        assert_eq!(
            w.judge(&counts(30, 8), early, &rules),
            Verdict::Failing {
                invocations: 20,
                errors: 5
            }
        );
        assert_eq!(
            w.judge(&counts(12, 3), rules.watch_period, &rules),
            Verdict::Healthy {
                invocations: 2,
                errors: 0
            }
        );
    }

    #[test]
    fn a_target_that_fails_every_call_is_rolled_back_before_the_window_ends() {
        let rules = DeployPlan::default();
        let w = watch();
        let early = Duration::from_secs(1);
        assert_eq!(w.judge(&counts(14, 7), early, &rules), Verdict::Pending);
        assert_eq!(
            w.judge(&counts(15, 8), early, &rules),
            Verdict::Failing {
                invocations: 5,
                errors: 5
            }
        );
    }
}
