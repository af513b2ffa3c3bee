//! Property tests of the identifier grammars against an independent reference written from
//! docs/api.md ("Names and limits") and docs/security.md (key names):
//!
//! | name | grammar | length |
//! |---|---|---|
//! | explicit namespace | `[a-z0-9-]`, not starting or ending with `-` | 1–128 bytes |
//! | agent-derived namespace, namespace reference | `[A-Za-z0-9][A-Za-z0-9_.-]*` | 1–128 bytes |
//! | agent_id | `[A-Za-z0-9][A-Za-z0-9_.-]*` | 1–256 bytes |
//! | memory id | `[A-Za-z0-9][A-Za-z0-9_.:@-]*` | 1–128 bytes |
//! | session id | `[A-Za-z0-9][A-Za-z0-9_.:@-]*` | 1–256 bytes |
//! | tag | no control characters, not `dakera-curated` | 1–256 characters, at most 50 |
//! | key name | not blank, no control characters | 1–128 bytes |

use proptest::prelude::*;
use regex::Regex;

use crate::validate;

fn full(re: &str, s: &str) -> bool {
    Regex::new(&format!("^(?:{re})$")).expect("regex").is_match(s)
}

fn ref_explicit_namespace(s: &str) -> bool {
    (1..=128).contains(&s.len()) && full("[a-z0-9-]+", s) && !s.starts_with('-') && !s.ends_with('-')
}

fn ref_agent_namespace(s: &str) -> bool {
    (1..=128).contains(&s.len()) && full("[A-Za-z0-9][A-Za-z0-9_.-]*", s)
}

fn ref_agent_id(s: &str) -> bool {
    (1..=256).contains(&s.len()) && full("[A-Za-z0-9][A-Za-z0-9_.-]*", s)
}

fn ref_client_id(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && full("[A-Za-z0-9][A-Za-z0-9_.:@-]*", s)
}

fn ref_tag(s: &str) -> bool {
    // Seed 002's field limits: 256 characters per tag (not bytes).
    (1..=256).contains(&s.chars().count()) && !s.chars().any(char::is_control) && s != "dakera-curated"
}

fn ref_key_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && !s.trim().is_empty() && !s.chars().any(char::is_control)
}

/// Strings near every grammar's edges: the allowed characters and their neighbours, control
/// characters, non-ASCII, and lengths around the limits.
fn text() -> impl Strategy<Value = String> {
    let chars = "[a-zA-Z0-9_.:@ *\\-\u{0}\n\t\u{7f}\u{85}\u{e9}\u{4e16}]";
    prop_oneof![
        proptest::string::string_regex(&format!("{chars}{{0,12}}")).expect("strategy"),
        proptest::string::string_regex(&format!("[a-z0-9]{{120,135}}{chars}{{0,2}}")).expect("strategy"),
        proptest::string::string_regex(&format!("[A-Za-z0-9]{{250,260}}{chars}{{0,2}}")).expect("strategy"),
        proptest::string::string_regex("[\u{e9}a]{60,70}").expect("strategy"),
        // Long names with multi-byte characters around the byte offsets messages cut at.
        proptest::string::string_regex("a{29,33}[\u{e9}\u{4e16}]{40,50}").expect("strategy"),
        Just("dakera-curated".to_string()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn identifiers_follow_the_documented_grammars(s in text()) {
        prop_assert_eq!(validate::namespace_name(&s).is_ok(), ref_explicit_namespace(&s), "namespace {:?}", s);
        prop_assert_eq!(validate::namespace_name_for_agent(&s).is_ok(), ref_agent_namespace(&s), "agent ns {:?}", s);
        prop_assert_eq!(validate::namespace_ref(&s).is_ok(), ref_agent_namespace(&s), "namespace ref {:?}", s);
        prop_assert_eq!(validate::agent_id(&s).is_ok(), ref_agent_id(&s), "agent_id {:?}", s);
        prop_assert_eq!(validate::memory_id(&s).is_ok(), ref_client_id(&s, 128), "memory id {:?}", s);
        prop_assert_eq!(validate::client_id(&s, "session id").is_ok(), ref_client_id(&s, 256), "session id {:?}", s);
        prop_assert_eq!(validate::tags(std::slice::from_ref(&s)).is_ok(), ref_tag(&s), "tag {:?}", s);
        prop_assert_eq!(validate::key_name(&s).is_ok(), ref_key_name(&s), "key name {:?}", s);
    }

    #[test]
    fn a_tag_list_is_valid_iff_it_has_at_most_50_valid_tags(tags in proptest::collection::vec(text(), 0..55)) {
        let want = tags.len() <= 50 && tags.iter().all(|t| ref_tag(t));
        prop_assert_eq!(validate::tags(&tags).is_ok(), want);
    }
}
