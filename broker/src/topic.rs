//! Topic names and topic filters: validation and the reference matcher.
//!
//! [`matches`] is deliberately the simplest correct implementation; the
//! subscription trie and the retained tree are tested against it.

/// Topics and filters with more levels than this are refused (a bound on the
/// work one PUBLISH or SUBSCRIBE can cause).
pub const MAX_LEVELS: usize = 200;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty topic")]
    Empty,
    #[error("wildcard in topic name")]
    WildcardInName,
    #[error("'#' not last or not alone in its level")]
    InvalidMultiLevelWildcard,
    #[error("'+' not alone in its level")]
    InvalidSingleLevelWildcard,
    #[error("more than {MAX_LEVELS} levels")]
    TooManyLevels,
}

/// Checks a topic name (PUBLISH, will): non-empty [MQTT-4.7.3-1], no
/// wildcards [MQTT-3.3.2-2], at most [`MAX_LEVELS`] levels.
pub fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::Empty);
    }
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(Error::WildcardInName);
    }
    check_levels(name)
}

/// Checks a topic filter: non-empty [MQTT-4.7.3-1], `#` last and alone
/// [MQTT-4.7.1-2], `+` alone in its level [MQTT-4.7.1-3], at most
/// [`MAX_LEVELS`] levels.
pub fn validate_filter(filter: &str) -> Result<(), Error> {
    if filter.is_empty() {
        return Err(Error::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(Error::InvalidMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(Error::InvalidSingleLevelWildcard);
        }
    }
    check_levels(filter)
}

/// `n` separators make `n + 1` levels; counting bytes avoids a second split.
fn check_levels(topic: &str) -> Result<(), Error> {
    if topic.bytes().filter(|&b| b == b'/').count() >= MAX_LEVELS {
        Err(Error::TooManyLevels)
    } else {
        Ok(())
    }
}

/// Whether a topic filter's first level is a wildcard, which hides topics
/// starting with `$` from it [MQTT-4.7.2-1].
pub(crate) fn starts_with_wildcard(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether `filter` matches `name` (both valid), with the `$` rule
/// [MQTT-4.7.2-1]. The reference the tries are tested against.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            // `#` also matches the parent level: `sport/#` matches `sport`
            // [MQTT-4.7.1-2].
            (Some("#"), _) => return true,
            // `+` matches exactly one level, which may be empty [MQTT-4.7.1-3].
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Levels from a small alphabet so that random filters and names collide.
    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$SYS", "$x"])
    }

    /// Random valid topic names, for the trie and retained store property tests.
    pub(crate) fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("valid name", |n| validate_name(n).is_ok())
    }

    /// Random valid topic filters, for the trie and retained store property tests.
    pub(crate) fn filter() -> impl Strategy<Value = String> {
        let lvl = prop_oneof![3 => level(), 1 => Just("+")];
        (prop::collection::vec(lvl, 0..4), any::<bool>())
            .prop_map(|(mut l, hash)| {
                if hash || l.is_empty() {
                    l.push("#");
                }
                l.join("/")
            })
            .prop_filter("valid filter", |f| validate_filter(f).is_ok())
    }

    #[test]
    fn names() {
        let deep_ok = vec!["a"; MAX_LEVELS].join("/");
        let deep_bad = vec!["a"; MAX_LEVELS + 1].join("/");
        let cases: &[(&str, Result<(), Error>)] = &[
            // [MQTT-4.7.3-1]: at least one character; `/` alone is two empty levels.
            ("", Err(Error::Empty)),
            ("/", Ok(())),
            ("a", Ok(())),
            ("a//b", Ok(())),
            ("/finance", Ok(())),
            ("finance/", Ok(())),
            // 4.7.3: spaces are allowed, case matters.
            ("Accounts payable", Ok(())),
            ("ACCOUNTS", Ok(())),
            ("$SYS/broker/uptime", Ok(())),
            // [MQTT-3.3.2-2]: no wildcards in a name.
            ("+", Err(Error::WildcardInName)),
            ("#", Err(Error::WildcardInName)),
            ("a/+/b", Err(Error::WildcardInName)),
            ("a/#", Err(Error::WildcardInName)),
            ("a+b", Err(Error::WildcardInName)),
            ("a#", Err(Error::WildcardInName)),
            (&deep_ok, Ok(())),
            (&deep_bad, Err(Error::TooManyLevels)),
        ];
        for (name, want) in cases {
            assert_eq!(validate_name(name), *want, "{name:?}");
        }
    }

    #[test]
    fn filters() {
        let deep_ok = vec!["+"; MAX_LEVELS].join("/");
        let deep_bad = vec!["+"; MAX_LEVELS + 1].join("/");
        let cases: &[(&str, Result<(), Error>)] = &[
            ("", Err(Error::Empty)),
            ("/", Ok(())),
            ("a//b", Ok(())),
            // 4.7.1.2 examples [MQTT-4.7.1-2].
            ("#", Ok(())),
            ("sport/tennis/#", Ok(())),
            ("sport/tennis#", Err(Error::InvalidMultiLevelWildcard)),
            (
                "sport/tennis/#/ranking",
                Err(Error::InvalidMultiLevelWildcard),
            ),
            ("#/", Err(Error::InvalidMultiLevelWildcard)),
            ("##", Err(Error::InvalidMultiLevelWildcard)),
            ("a/#b", Err(Error::InvalidMultiLevelWildcard)),
            ("/#", Ok(())),
            // 4.7.1.3 examples [MQTT-4.7.1-3].
            ("+", Ok(())),
            ("+/tennis/#", Ok(())),
            ("sport+", Err(Error::InvalidSingleLevelWildcard)),
            ("sport/+/player1", Ok(())),
            ("+/", Ok(())),
            ("/+", Ok(())),
            ("+/+", Ok(())),
            ("++", Err(Error::InvalidSingleLevelWildcard)),
            ("a/+b", Err(Error::InvalidSingleLevelWildcard)),
            ("+#", Err(Error::InvalidMultiLevelWildcard)),
            ("$SYS/#", Ok(())),
            (&deep_ok, Ok(())),
            (&deep_bad, Err(Error::TooManyLevels)),
        ];
        for (filter, want) in cases {
            assert_eq!(validate_filter(filter), *want, "{filter:?}");
        }
    }

    /// (filter, name, expected). Every example of section 4.7 is here.
    pub(crate) const MATCH_TABLE: &[(&str, &str, bool)] = &[
        // 4.7.1.2 [MQTT-4.7.1-2]: `#` matches the parent and any descendants.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sport/a/b", true),
        ("sport/#", "sports", false),
        ("#", "sport", true),
        ("#", "/", true),
        ("#", "/a", true),
        ("/#", "/a", true),
        ("/#", "a", false),
        // 4.7.1.3 [MQTT-4.7.1-3]: `+` matches exactly one level.
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis", true),
        ("+/tennis/#", "sport/tennis/x/y", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport//player1", true),
        ("+/", "a/", true),
        ("+/", "a", false),
        // 4.7.2 [MQTT-4.7.2-1]: wildcards at the first level hide `$` topics.
        ("#", "$SYS/broker/uptime", false),
        ("#", "$SYS", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+", "$SYS/x", true),
        // `$` only counts as the first character of the name.
        ("#", "a/$SYS", true),
        ("+/+", "a/$x", true),
        // 4.7.3: case-sensitive, byte-exact, leading `/` is a level.
        ("ACCOUNTS", "Accounts", false),
        ("Accounts", "Accounts", true),
        ("Accounts payable", "Accounts payable", true),
        ("/finance", "finance", false),
        ("finance", "/finance", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/b", "a/b/", false),
        ("a/+/b", "a//b", true),
    ];

    #[test]
    fn match_table() {
        for &(filter, name, want) in MATCH_TABLE {
            assert_eq!(validate_filter(filter), Ok(()), "{filter:?}");
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
            assert_eq!(matches(filter, name), want, "{filter:?} vs {name:?}");
        }
    }
}
