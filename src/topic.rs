//! MQTT topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5 §4.7).
//!
//! Used wherever ledge decides by topic: the routing table (which functions a
//! message triggers), the per-function `allow_publish` list, and later the
//! forward rules. One implementation, tested against the spec's own examples,
//! so those three can never disagree about what `sensors/+/reading` means.

use std::fmt;

/// A validated topic filter such as `sensors/+/reading` or `alerts/#`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    text: String,
}

/// Why a topic or filter is not valid MQTT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    #[error("topic contains a NUL character")]
    Nul,
    #[error("`#` must be the last level and stand alone (as in `a/#`)")]
    MisplacedHash,
    #[error("`+` must stand alone in its level (as in `a/+/b`)")]
    MisplacedPlus,
    #[error("a topic name cannot contain wildcards `+` or `#`")]
    WildcardInName,
}

impl TopicFilter {
    /// Parses and validates a filter.
    pub fn new(text: &str) -> Result<Self, TopicError> {
        check_common(text)?;
        let mut levels = text.split('/').peekable();
        while let Some(level) = levels.next() {
            let is_last = levels.peek().is_none();
            if level.contains('#') && (level != "#" || !is_last) {
                return Err(TopicError::MisplacedHash);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::MisplacedPlus);
            }
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if a message published on `topic` matches this filter.
    ///
    /// `topic` is assumed to be a valid topic name (the broker checked it);
    /// wildcards in it are treated as ordinary characters.
    pub fn matches(&self, topic: &str) -> bool {
        // Wildcards at the first level do not match `$SYS/...` and other
        // server-reserved topics (§4.7.2).
        if topic.starts_with('$') && self.text.starts_with(['+', '#']) {
            return false;
        }
        // Level by level on bytes: this runs for every message against every
        // subscription, and `str::split` with its char searcher was 13% of
        // the I/O thread's time in the hot-path profile.
        let (mut filter, mut topic) = (self.text.as_bytes(), topic.as_bytes());
        loop {
            let (filter_level, filter_rest) = first_level(filter);
            if filter_level == b"#" {
                return true;
            }
            let (topic_level, topic_rest) = first_level(topic);
            if filter_level != b"+" && filter_level != topic_level {
                return false;
            }
            match (filter_rest, topic_rest) {
                (Some(f), Some(t)) => (filter, topic) = (f, t),
                (None, None) => return true,
                // `a/#` also matches `a` (the parent level, §4.7.1.2).
                (Some(f), None) => return f == b"#",
                (None, Some(_)) => return false,
            }
        }
    }

    /// True if every topic `inner` matches, this filter matches too (so a
    /// permission `inner` grants nothing beyond this one).
    pub fn covers(&self, inner: &TopicFilter) -> bool {
        let mut outer_levels = self.text.split('/');
        let mut inner_levels = inner.text.split('/');
        loop {
            match (outer_levels.next(), inner_levels.next()) {
                (Some("#"), _) => return true,
                (_, Some("#")) => return false,
                (Some("+"), Some(_)) => continue,
                (Some(o), Some(i)) if o == i => continue,
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// True if the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.text.contains(['+', '#'])
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicFilter({})", self.text)
    }
}

/// Splits `levels` at its first `/`: the first level, and what follows the
/// separator (`None` if this was the last level).
fn first_level(levels: &[u8]) -> (&[u8], Option<&[u8]>) {
    match levels.iter().position(|&b| b == b'/') {
        Some(at) => (&levels[..at], Some(&levels[at + 1..])),
        None => (levels, None),
    }
}

/// Checks that `topic` is a valid topic *name* (what a publish is sent to).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// True if any filter in `filters` matches `topic`.
pub fn any_matches(filters: &[TopicFilter], topic: &str) -> bool {
    filters.iter().any(|filter| filter.matches(topic))
}

/// Filters that match every topic `filters` match (and maybe more), no two
/// of which match a common topic. Subscribing to these instead makes every
/// broker deliver each message once, whatever it does with overlapping
/// subscriptions (MQTT 3.1.1 §3.3.5 lets it send one copy per matching
/// subscription); ledge then matches each message against its own filters.
/// Overlapping filters are merged into their join: `a/+/c` and `a/b/+`
/// become `a/+/+`, `a/b` and `a/#` become `a/#`.
pub fn disjoint_cover(filters: &[TopicFilter]) -> Vec<TopicFilter> {
    let mut cover: Vec<TopicFilter> = Vec::new();
    let mut pending: Vec<TopicFilter> = filters.to_vec();
    while let Some(filter) = pending.pop() {
        match cover.iter().position(|other| overlaps(other, &filter)) {
            // Each merge removes one filter, so this ends.
            Some(index) => {
                let other = cover.swap_remove(index);
                pending.push(join(&other, &filter));
            }
            None => cover.push(filter),
        }
    }
    cover.sort_by(|a, b| a.text.cmp(&b.text));
    cover
}

/// True if some topic matches both filters.
pub fn overlaps(a: &TopicFilter, b: &TopicFilter) -> bool {
    // A leading wildcard never matches a `$` topic (§4.7.2).
    let dollar = |f: &TopicFilter| f.text.starts_with('$');
    let wild = |f: &TopicFilter| f.text.starts_with(['+', '#']);
    if (dollar(a) && wild(b)) || (dollar(b) && wild(a)) {
        return false;
    }
    let (mut x, mut y) = (a.text.split('/'), b.text.split('/'));
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some(p), Some(q)) if p == "+" || q == "+" || p == q => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The most specific filter matching everything either filter matches.
fn join(a: &TopicFilter, b: &TopicFilter) -> TopicFilter {
    let (mut x, mut y) = (a.text.split('/'), b.text.split('/'));
    let mut levels: Vec<&str> = Vec::new();
    loop {
        match (x.next(), y.next()) {
            (None, None) => break,
            (Some(p), Some(q)) if p != "#" && q != "#" => {
                levels.push(if p == q { p } else { "+" });
            }
            // One ends or has `#` here: `#` takes the rest (and the parent).
            _ => {
                levels.push("#");
                break;
            }
        }
    }
    TopicFilter {
        text: levels.join("/"),
    }
}

fn check_common(text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > 65_535 {
        return Err(TopicError::TooLong);
    }
    if text.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &str, topic: &str) -> bool {
        TopicFilter::new(filter).unwrap().matches(topic)
    }

    #[test]
    fn multi_level_wildcard_matches_the_parent_and_every_child() {
        // The spec's own examples, §4.7.1.2.
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("sport/tennis/#", "sport/football"));
    }

    #[test]
    fn single_level_wildcard_matches_exactly_one_level() {
        // §4.7.1.3.
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
    }

    #[test]
    fn wildcards_at_the_first_level_skip_dollar_topics() {
        // §4.7.2.
        assert!(!matches("#", "$SYS/broker/clients"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/broker/clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }

    #[test]
    fn exact_filters_are_case_sensitive_and_keep_empty_levels() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "A/b"));
        assert!(!matches("a/b", "a/b/"));
        assert!(matches("a//b", "a//b"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn malformed_filters_are_rejected_with_the_reason() {
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
        assert_eq!(
            TopicFilter::new("sport/tennis#"),
            Err(TopicError::MisplacedHash)
        );
        assert_eq!(
            TopicFilter::new("sport/#/ranking"),
            Err(TopicError::MisplacedHash)
        );
        assert_eq!(TopicFilter::new("sport+"), Err(TopicError::MisplacedPlus));
        assert_eq!(TopicFilter::new("a/b+/c"), Err(TopicError::MisplacedPlus));
        assert_eq!(TopicFilter::new("a\0b"), Err(TopicError::Nul));
        assert!(TopicFilter::new("+/tennis/#").is_ok());
    }

    #[test]
    fn topic_names_cannot_carry_wildcards() {
        assert_eq!(validate_topic_name("alerts/t1"), Ok(()));
        assert_eq!(
            validate_topic_name("alerts/+"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(
            validate_topic_name("alerts/#"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn the_disjoint_cover_merges_overlapping_filters_only() {
        let f = |t: &str| TopicFilter::new(t).unwrap();
        let cover = |list: &[&str]| -> Vec<String> {
            let filters: Vec<TopicFilter> = list.iter().map(|t| f(t)).collect();
            disjoint_cover(&filters)
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect()
        };
        assert_eq!(cover(&["a/+", "a/#", "a/b"]), vec!["a/#"]);
        assert_eq!(cover(&["a/+/c", "a/b/+"]), vec!["a/+/+"]);
        assert_eq!(cover(&["a/b", "a/c", "b/#"]), vec!["a/b", "a/c", "b/#"]);
        assert_eq!(cover(&["+/x", "a/+"]), vec!["+/+"]);
        assert_eq!(cover(&["a", "a/#"]), vec!["a/#"]);
        assert_eq!(cover(&["#", "$SYS/x"]), vec!["#", "$SYS/x"]);
    }

    /// The spec's rule written the obvious way (level lists compared one by
    /// one), which `matches` must agree with on every filter and topic.
    fn matches_by_levels(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && filter.starts_with(['+', '#']) {
            return false;
        }
        let filter: Vec<&str> = filter.split('/').collect();
        let topic: Vec<&str> = topic.split('/').collect();
        for (at, level) in filter.iter().enumerate() {
            match (*level, topic.get(at)) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (f, Some(t)) if f == *t => {}
                _ => return false,
            }
        }
        filter.len() == topic.len()
    }

    proptest::proptest! {
        #[test]
        fn matching_on_bytes_agrees_with_matching_level_lists(
            filter in r"(a|b|ab|\+|\$s|)(/(a|b|ab|\+|))*(/#)?|#",
            topic in r"(a|b|ab|\$s|)(/(a|b|ab|))*",
        ) {
            if let Ok(parsed) = TopicFilter::new(&filter) {
                proptest::prop_assert_eq!(
                    parsed.matches(&topic),
                    matches_by_levels(&filter, &topic),
                    "{} on {}", filter, topic
                );
            }
        }

        /// Every topic a filter matches, the cover matches exactly once.
        #[test]
        fn every_topic_matches_exactly_one_cover_filter_if_any_filter(
            filters in proptest::collection::vec("(a|b|\\+|\\$s)(/(a|b|\\+))*(/#)?", 1..5),
            topic in "(a|b|\\$s)(/(a|b))*",
        ) {
            let filters: Vec<TopicFilter> =
                filters.iter().filter_map(|t| TopicFilter::new(t).ok()).collect();
            let cover = disjoint_cover(&filters);
            let wanted = filters.iter().any(|f| f.matches(&topic));
            let hits = cover.iter().filter(|c| c.matches(&topic)).count();
            if wanted {
                proptest::prop_assert_eq!(hits, 1, "{:?} -> {:?} on {}", filters, cover, topic);
            } else {
                proptest::prop_assert!(hits <= 1, "{:?} -> {:?} on {}", filters, cover, topic);
            }
        }
    }

    #[test]
    fn a_filter_covers_only_filters_that_match_a_subset_of_its_topics() {
        let f = |t: &str| TopicFilter::new(t).unwrap();
        assert!(f("alerts/#").covers(&f("alerts/barn/+")));
        assert!(f("alerts/#").covers(&f("alerts")));
        assert!(f("alerts/+").covers(&f("alerts/barn")));
        assert!(f("+/+").covers(&f("a/+")));
        assert!(!f("alerts/+").covers(&f("alerts/#")));
        assert!(!f("alerts/barn").covers(&f("alerts/+")));
        assert!(!f("alerts/+").covers(&f("alerts/a/b")));
        assert!(!f("a/b").covers(&f("a")));
    }
}
