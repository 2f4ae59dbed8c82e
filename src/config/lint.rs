//! Warnings about configs that are valid but probably wrong: ledge runs
//! them, `ledge check` and `ledge run` say what looks off and where.

use super::{Plan, TriggerSource};
use crate::topic::overlaps;

/// One warning, with the place it is about.
pub fn warnings(plan: &Plan) -> Vec<String> {
    self_triggers(plan)
}

/// A function allowed to publish where one of its own MQTT triggers
/// listens can feed itself forever (each run publishes the event of the
/// next). ledge stops such a chain after `event::MAX_CHAIN` hops; this says
/// so before it happens.
fn self_triggers(plan: &Plan) -> Vec<String> {
    let mut found = Vec::new();
    for route in &plan.routes {
        let TriggerSource::Mqtt { filter } = &route.source else {
            continue;
        };
        let spec = &plan.functions[route.function];
        if let Some(grant) = spec.allow_publish.iter().find(|g| overlaps(g, filter)) {
            found.push(format!(
                "{}: function `{}` may trigger itself: it may publish to `{grant}` and this trigger (`{filter}`) runs it on such topics; ledge stops a chain of function publishes after {} hops",
                route.location,
                spec.name,
                crate::event::MAX_CHAIN
            ));
        }
    }
    found
}
