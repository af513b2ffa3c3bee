//! Property tests of the access-control decision against an independent reference written from
//! docs/security.md ("Grants and patterns", "Refusals"):
//!
//! * a deactivated key, or one whose `expires_at` is at or before now, is refused outright;
//! * a leading `_dakera_agent_` is stripped from the request's namespace;
//! * a global key (no grants) holds its scope on every namespace;
//! * otherwise the key's scope on a namespace is the highest scope among its grants whose pattern
//!   matches: a pattern ending in `*` matches every name that starts with the text before the
//!   `*` (that text itself included), any other pattern matches only the identical name; no
//!   match is no access (403 `NAMESPACE_ACCESS_DENIED`);
//! * scopes are ordered read < write < admin < super_admin and each includes those below: a
//!   request needing `need` passes iff the key's scope there is at least `need` (else 403
//!   `INSUFFICIENT_SCOPE`);
//! * node-wide routes need a global key of at least the scope.

use proptest::prelude::*;

use crate::access::{ApiKeyEntry, Grant, Principal, Scope, admit};

const AGENT_PREFIX: &str = "_dakera_agent_";

/// The rank of a scope in the documented order.
fn rank(s: &str) -> u8 {
    match s {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        "super_admin" => 4,
        other => panic!("not a scope: {other}"),
    }
}

fn ref_pattern_matches(pattern: &str, ns: &str) -> bool {
    if pattern.ends_with('*') {
        let prefix = &pattern.as_bytes()[..pattern.len() - 1];
        ns.len() >= prefix.len() && &ns.as_bytes()[..prefix.len()] == prefix
    } else {
        pattern == ns
    }
}

#[derive(Debug, PartialEq)]
enum Decision {
    Allowed,
    Refused401,
    NoGrant,
    TooLow,
}

/// The documented rule, from the key's raw fields (scope names as text).
fn reference(
    active: bool,
    expires_at: Option<u64>,
    now: u64,
    key_scope: &str,
    grants: Option<&[(String, &str)]>,
    ns: &str,
    need: &str,
) -> Decision {
    if !active || expires_at.is_some_and(|e| e <= now) {
        return Decision::Refused401;
    }
    let ns = ns.strip_prefix(AGENT_PREFIX).unwrap_or(ns);
    let held = match grants {
        None => Some(rank(key_scope)),
        Some(list) => list.iter().filter(|(p, _)| ref_pattern_matches(p, ns)).map(|(_, s)| rank(s)).max(),
    };
    match held {
        None => Decision::NoGrant,
        Some(h) if h >= rank(need) => Decision::Allowed,
        Some(_) => Decision::TooLow,
    }
}

const SCOPES: [&str; 4] = ["read", "write", "admin", "super_admin"];

/// Names from a small alphabet so that patterns and namespaces often overlap.
fn name() -> impl Strategy<Value = String> {
    "[ab][ab.-]{0,4}"
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![name(), name().prop_map(|n| format!("{n}*")), Just("*".to_string()), Just("a*".to_string())]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![4 => name(), 1 => name().prop_map(|n| format!("{AGENT_PREFIX}{n}"))]
}

fn scope_idx() -> impl Strategy<Value = usize> {
    0usize..4
}

fn parse(s: &str) -> Scope {
    Scope::parse(s).expect("a documented scope")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn a_request_is_allowed_iff_the_documented_rule_says_so(
        active in any::<bool>(),
        expires_at in proptest::option::of(0u64..20),
        now in 0u64..20,
        key_scope in scope_idx(),
        grants in proptest::option::of(proptest::collection::vec((pattern(), scope_idx()), 0..5)),
        ns in namespace(),
        need in scope_idx(),
    ) {
        let grants_text: Option<Vec<(String, &str)>> =
            grants.as_ref().map(|g| g.iter().map(|(p, s)| (p.clone(), SCOPES[*s])).collect());
        let entry = ApiKeyEntry {
            key_id: "dk_key_0".into(),
            name: "k".into(),
            secret_sha256: String::new(),
            scope: parse(SCOPES[key_scope]),
            grants: grants.as_ref().map(|g| {
                g.iter().map(|(p, s)| Grant { pattern: p.clone(), scope: parse(SCOPES[*s]) }).collect()
            }),
            created_by: "root".into(),
            created_at: 0,
            expires_at,
            active,
            deactivated_at: None,
            rotated_to: None,
        };
        let want = reference(active, expires_at, now, SCOPES[key_scope], grants_text.as_deref(), &ns, SCOPES[need]);
        let got = match admit(&entry, now) {
            Err(e) => {
                prop_assert_eq!(e.status.as_u16(), 401);
                let code = if active { "API_KEY_EXPIRED" } else { "INVALID_API_KEY" };
                prop_assert_eq!(e.code.as_ref(), code);
                Decision::Refused401
            }
            Ok(p) => {
                let need = parse(SCOPES[need]);
                let decision = match p.require(&ns, need) {
                    Ok(()) => Decision::Allowed,
                    Err(e) if e.code == "NAMESPACE_ACCESS_DENIED" => Decision::NoGrant,
                    Err(e) if e.code == "INSUFFICIENT_SCOPE" => Decision::TooLow,
                    Err(e) => panic!("unexpected refusal {e:?}"),
                };
                // The unrecorded check and visibility agree with the recorded one.
                prop_assert_eq!(p.allows(&ns, need), decision == Decision::Allowed);
                prop_assert_eq!(p.can_see(&ns), decision != Decision::NoGrant);
                decision
            }
        };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn node_wide_routes_need_a_global_key_of_the_scope(
        key_scope in scope_idx(),
        global in any::<bool>(),
        need in scope_idx(),
    ) {
        let grants = if global {
            crate::access::Grants::All(parse(SCOPES[key_scope]))
        } else {
            crate::access::Grants::List(vec![Grant { pattern: "*".into(), scope: parse(SCOPES[key_scope]) }])
        };
        let p = Principal::new("k".into(), "k".into(), parse(SCOPES[key_scope]), grants, None, false);
        let want = global && rank(SCOPES[key_scope]) >= rank(SCOPES[need]);
        prop_assert_eq!(p.require_global(parse(SCOPES[need])).is_ok(), want);
    }
}
