//! Warnings about configs that are valid but probably wrong: ledge runs
//! them, `ledge check` and `ledge run` say what looks off and where.

use super::{Plan, Route, TriggerSource};
use crate::topic::{overlaps, TopicFilter};

/// One warning, with the place it is about.
pub fn warnings(plan: &Plan) -> Vec<String> {
    let mut found = self_triggers(plan);
    found.extend(mutual_triggers(plan));
    found
}

/// A function allowed to publish where one of its own MQTT triggers
/// listens can feed itself forever (each run publishes the event of the
/// next). ledge stops such a chain after `event::MAX_CHAIN` hops; this says
/// so before it happens.
fn self_triggers(plan: &Plan) -> Vec<String> {
    let mut found = Vec::new();
    for (route, filter) in mqtt_routes(plan) {
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

/// Two functions each allowed to publish where the other's MQTT trigger
/// listens can feed each other the same way: a loop of two hops. Said once
/// per pair, at the first trigger. (Longer cycles are left to the hop
/// limit: finding them all is a graph search for a warning.)
fn mutual_triggers(plan: &Plan) -> Vec<String> {
    // Only functions that may publish can be in a loop: the pairs are
    // checked among their triggers alone.
    let routes: Vec<_> = mqtt_routes(plan)
        .into_iter()
        .filter(|(route, _)| !plan.functions[route.function].allow_publish.is_empty())
        .collect();
    let mut found = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    for (i, &(first, first_filter)) in routes.iter().enumerate() {
        for &(second, second_filter) in &routes[i + 1..] {
            let (a, b) = (first.function, second.function);
            if a == b || pairs.contains(&(a.min(b), a.max(b))) {
                continue;
            }
            let (f, g) = (&plan.functions[a], &plan.functions[b]);
            let (Some(f_grant), Some(g_grant)) = (
                grant_for(&f.allow_publish, second_filter),
                grant_for(&g.allow_publish, first_filter),
            ) else {
                continue;
            };
            pairs.insert((a.min(b), a.max(b)));
            found.push(format!(
                "{}: functions `{}` and `{}` may trigger each other: `{}` may publish to `{f_grant}`, which `{}`'s trigger `{second_filter}` ({}) runs it on, and `{}` may publish to `{g_grant}`, which this trigger (`{first_filter}`) runs `{}` on; ledge stops a chain of function publishes after {} hops",
                first.location,
                f.name,
                g.name,
                f.name,
                g.name,
                second.location,
                g.name,
                f.name,
                crate::event::MAX_CHAIN
            ));
        }
    }
    found
}

/// Every route with an MQTT trigger, with its filter.
fn mqtt_routes(plan: &Plan) -> Vec<(&Route, &TopicFilter)> {
    plan.routes
        .iter()
        .filter_map(|route| match &route.source {
            TriggerSource::Mqtt { filter } => Some((route, filter)),
            _ => None,
        })
        .collect()
}

/// The first of `grants` that can publish a topic `filter` matches.
fn grant_for<'a>(grants: &'a [TopicFilter], filter: &TopicFilter) -> Option<&'a TopicFilter> {
    grants.iter().find(|grant| overlaps(grant, filter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::plan;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::new(text).unwrap()
    }

    fn overlap(a: &str, b: &str) -> bool {
        let (a, b) = (filter(a), filter(b));
        let forward = overlaps(&a, &b);
        assert_eq!(forward, overlaps(&b, &a), "overlap is symmetric: {a} {b}");
        forward
    }

    #[test]
    fn filters_overlap_exactly_when_some_topic_matches_both() {
        for (a, b) in [
            ("storm/in", "storm/#"),
            ("storm/in", "storm/+"),
            ("storm/#", "storm"),
            ("a/+/c", "a/b/+"),
            ("+/+", "a/b"),
            ("#", "a/b/c"),
            ("a/#", "+/b/#"),
            ("+", "a"),
            ("$SYS/x", "$SYS/#"),
            ("$SYS/+", "$SYS/x"),
            ("a//b", "a/+/b"),
        ] {
            assert!(overlap(a, b), "{a} and {b} share a topic");
        }
        for (a, b) in [
            ("storm/in", "storm/out"),
            ("storm/+", "storm"),
            ("a/+", "a/b/c"),
            ("a/b", "a/b/c"),
            ("a/+/c", "a/b/d"),
            ("+/x", "a/y/#"),
            // A leading wildcard never matches a `$` topic (MQTT §4.7.2).
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("+/#", "$SYS/#"),
            ("a/+", "a//b"),
        ] {
            assert!(!overlap(a, b), "{a} and {b} share no topic");
        }
    }

    /// Every topic of up to `levels` levels from `words`.
    fn topics(words: &[&str], levels: usize) -> Vec<String> {
        let mut all: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        let mut last = all.clone();
        for _ in 1..levels {
            last = last
                .iter()
                .flat_map(|t| words.iter().map(move |w| format!("{t}/{w}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    proptest::proptest! {
        /// `overlaps` agrees with a search for a common topic. The search
        /// is complete for these filters: a witness needs no more levels
        /// than the longer filter has, and no word but theirs and one more
        /// (`c`, for a `+` facing a `+`).
        #[test]
        fn overlap_agrees_with_a_search_for_a_common_topic(
            a in "(a|b|\\+|\\$s)(/(a|b|\\+|\\$s)){0,2}(/#)?|#",
            b in "(a|b|\\+|\\$s)(/(a|b|\\+|\\$s)){0,2}(/#)?|#",
        ) {
            let (fa, fb) = (filter(&a), filter(&b));
            let universe = topics(&["a", "b", "c", "$s", ""], 4);
            let common = universe.iter().find(|t| fa.matches(t) && fb.matches(t));
            proptest::prop_assert_eq!(
                overlaps(&fa, &fb),
                common.is_some(),
                "{} and {}: common topic {:?}", a, b, common
            );
        }
    }

    const STORM: &str = "[[function]]\nname = \"storm\"\nmodule = \"f.wasm\"\nallow_publish = [\"storm/#\"]\n\
                         [[trigger]]\nsource = \"mqtt\"\ntopic = \"storm/in\"\nfunction = \"storm\"\n";

    #[test]
    fn a_function_that_may_publish_to_its_own_trigger_is_warned_about() {
        let warnings = warnings(&plan(STORM).unwrap());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = &warnings[0];
        for part in [
            "/cfg/ledge.toml:5:1:",
            "function `storm` may trigger itself",
            "`storm/#`",
            "(`storm/in`)",
            "after 16 hops",
        ] {
            assert!(warning.contains(part), "{part}: {warning}");
        }
    }

    #[test]
    fn a_function_publishing_elsewhere_is_not_warned_about() {
        let text = STORM.replace("storm/#", "alerts/#");
        assert_eq!(warnings(&plan(&text).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn two_functions_that_feed_each_other_are_warned_about_once() {
        let pair = "[[function]]\nname = \"ping\"\nmodule = \"f.wasm\"\nallow_publish = [\"pong/in\"]\n\
                    [[function]]\nname = \"pong\"\nmodule = \"f.wasm\"\nallow_publish = [\"ping/+\"]\n\
                    [[trigger]]\nsource = \"mqtt\"\ntopic = \"ping/#\"\nfunction = \"ping\"\n\
                    [[trigger]]\nsource = \"mqtt\"\ntopic = \"pong/in\"\nfunction = \"pong\"\n\
                    [[trigger]]\nsource = \"mqtt\"\ntopic = \"pong/+\"\nfunction = \"pong\"\n";
        let warnings = warnings(&plan(pair).unwrap());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("functions `ping` and `pong` may trigger each other")
                && warnings[0].contains("`ping/+`")
                && warnings[0].contains("`pong/in`"),
            "{warnings:?}"
        );
        // One way only is a pipeline, not a loop.
        let one_way = pair.replace("[\"ping/+\"]", "[\"out/+\"]");
        assert_eq!(
            super::warnings(&plan(&one_way).unwrap()),
            Vec::<String>::new()
        );
    }
}
