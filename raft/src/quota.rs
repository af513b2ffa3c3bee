//! Operator ceilings per namespace pattern (issue 15, item 5): what the operator allows the
//! tenant behind a prefix (`acme-*`), which the tenant's own admins cannot exceed.
//!
//! A namespace's memory policy holds the tenant's *preferences* (its own `max_memories`, its
//! own rate limits); a [`Quota`] holds the operator's *limits*. What applies is the smaller of
//! the two. Counting ceilings (namespaces, keys) are checked when the catalogue applies the
//! command that would exceed them, so two concurrent creations can never both pass. Everything
//! here is pure: the catalogue calls it while applying a command.

use serde::{Deserialize, Serialize};

use crate::catalogue::{ApiKeyEntry, NamespaceEntry, pattern_contains, pattern_matches};

/// Bytes a quota pattern may have (a namespace name is at most 128, plus `*`).
pub const MAX_PATTERN_BYTES: usize = 129;
/// Quotas the catalogue holds.
pub const MAX_QUOTAS: usize = 10_000;

/// The operator's limits for every namespace `pattern` matches (an exact name, or a prefix
/// ending in `*`). `None` is no limit of that kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quota {
    pub pattern: String,
    /// Namespaces whose name it matches.
    #[serde(default)]
    pub max_namespaces: Option<u64>,
    /// Usable keys scoped inside the pattern (every grant within it): what its tenant admins
    /// can mint.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Per namespace: memories, distinct agents, sessions per agent.
    #[serde(default)]
    pub max_memories: Option<u64>,
    #[serde(default)]
    pub max_agents: Option<u64>,
    #[serde(default)]
    pub max_sessions_per_agent: Option<u64>,
    /// Per namespace: stores and recalls a minute (applied whether or not the namespace's own
    /// policy enables rate limiting).
    #[serde(default)]
    pub max_stores_per_minute: Option<u64>,
    #[serde(default)]
    pub max_recalls_per_minute: Option<u64>,
    #[serde(default)]
    pub updated_at: u64,
}

/// The per-namespace ceilings that apply to one namespace: the smallest of every quota whose
/// pattern matches it. Kept on the namespace entry (recomputed when quotas change), so every
/// check reads it from the entry it already has.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ceiling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memories: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agents: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_agent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stores_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recalls_per_minute: Option<u64>,
}

/// The smaller of two optional limits (`None` is no limit).
pub fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Ceiling {
    pub fn is_empty(&self) -> bool {
        *self == Ceiling::default()
    }
}

/// The ceiling of namespace `name` under `quotas`.
pub fn ceiling_of<'a>(name: &str, quotas: impl IntoIterator<Item = &'a Quota>) -> Ceiling {
    let mut c = Ceiling::default();
    for q in quotas.into_iter().filter(|q| pattern_matches(&q.pattern, name)) {
        c.max_memories = tighter(c.max_memories, q.max_memories);
        c.max_agents = tighter(c.max_agents, q.max_agents);
        c.max_sessions_per_agent = tighter(c.max_sessions_per_agent, q.max_sessions_per_agent);
        c.max_stores_per_minute = tighter(c.max_stores_per_minute, q.max_stores_per_minute);
        c.max_recalls_per_minute = tighter(c.max_recalls_per_minute, q.max_recalls_per_minute);
    }
    c
}

/// Whether key `k` counts against quota pattern `pattern`: a scoped key, every grant of which
/// lies inside the pattern, usable at `now` (a key rotated away counts while its grace lasts:
/// its secret still works). Global keys (the operator's) never count.
pub fn key_counts(k: &ApiKeyEntry, pattern: &str, now: u64) -> bool {
    let Some(grants) = &k.grants else { return false };
    !grants.is_empty() && grants.iter().all(|g| pattern_contains(pattern, &g.pattern)) && k.usable_at(now)
}

/// Why creating namespace `name` would exceed a quota, if it would.
pub fn refuse_namespace<'a>(
    name: &str,
    quotas: impl IntoIterator<Item = &'a Quota>,
    namespaces: impl Iterator<Item = &'a NamespaceEntry> + Clone,
) -> Option<String> {
    for q in quotas.into_iter().filter(|q| pattern_matches(&q.pattern, name)) {
        let Some(max) = q.max_namespaces else { continue };
        let held = namespaces.clone().filter(|n| pattern_matches(&q.pattern, &n.name)).count() as u64;
        if held >= max {
            return Some(format!(
                "the quota for '{}' allows {max} namespaces and {held} exist; namespace '{name}' was not created",
                q.pattern
            ));
        }
    }
    None
}

/// Why minting `new` at `now` would exceed a quota, if it would (also asked when a rotation
/// keeps the old secret working for a grace period, and when a key is narrowed into a pattern
/// it did not count against).
pub fn refuse_key<'a>(
    new: &ApiKeyEntry,
    now: u64,
    quotas: impl IntoIterator<Item = &'a Quota>,
    keys: impl Iterator<Item = &'a ApiKeyEntry> + Clone,
) -> Option<String> {
    for q in quotas.into_iter().filter(|q| key_counts(new, &q.pattern, now)) {
        let Some(max) = q.max_keys else { continue };
        let held = keys.clone().filter(|k| k.key_id != new.key_id && key_counts(k, &q.pattern, now)).count() as u64;
        if held >= max {
            return Some(format!(
                "the quota for '{}' allows {max} usable keys and {held} exist; the key was not created",
                q.pattern
            ));
        }
    }
    None
}

/// Why a quota cannot be stored, if it cannot: a pattern of a namespace name, or a prefix
/// ending in `*`, of bounded length.
pub fn check_quota(q: &Quota) -> Result<(), String> {
    let p = &q.pattern;
    if p.is_empty() || p.len() > MAX_PATTERN_BYTES {
        return Err(format!("pattern must be 1 to {MAX_PATTERN_BYTES} bytes"));
    }
    let body = p.strip_suffix('*').unwrap_or(p);
    if body.contains('*') {
        return Err("pattern may hold '*' only at its end".into());
    }
    if !body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')) {
        return Err("pattern holds a character no namespace name can hold".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Grant, Scope};

    fn quota(pattern: &str) -> Quota {
        Quota { pattern: pattern.into(), ..Default::default() }
    }

    fn key(id: &str, grants: Option<Vec<&str>>) -> ApiKeyEntry {
        ApiKeyEntry {
            key_id: id.into(),
            name: id.into(),
            secret_sha256: id.into(),
            scope: Scope::Write,
            grants: grants.map(|g| g.into_iter().map(|p| Grant { pattern: p.into(), scope: Scope::Write }).collect()),
            created_by: "root".into(),
            created_at: 100,
            expires_at: None,
            active: true,
            deactivated_at: None,
            rotated_to: None,
        }
    }

    #[test]
    fn the_tightest_matching_quota_wins_field_by_field() {
        let a = Quota { max_memories: Some(100), max_stores_per_minute: Some(60), ..quota("acme-*") };
        let b = Quota { max_memories: Some(10), ..quota("acme-prod-*") };
        let other = Quota { max_memories: Some(1), ..quota("beta-*") };
        let qs = [a, b, other];
        let c = ceiling_of("acme-prod-1", &qs);
        assert_eq!(c.max_memories, Some(10));
        assert_eq!(c.max_stores_per_minute, Some(60));
        assert_eq!(ceiling_of("acme-dev", &qs).max_memories, Some(100));
        assert!(ceiling_of("gamma", &qs).is_empty());
        assert_eq!(tighter(None, Some(3)), Some(3));
        assert_eq!(tighter(None, None), None);
    }

    #[test]
    fn keys_count_only_when_scoped_inside_the_pattern_and_usable() {
        assert!(key_counts(&key("a", Some(vec!["acme-*"])), "acme-*", 100));
        assert!(key_counts(&key("a", Some(vec!["acme-x", "acme-y-*"])), "acme-*", 100));
        assert!(!key_counts(&key("a", Some(vec!["acme-x", "beta"])), "acme-*", 100), "reaches outside");
        assert!(!key_counts(&key("a", None), "acme-*", 100), "a global key is the operator's");
        assert!(!key_counts(&key("a", Some(vec!["acme*"])), "acme-*", 100), "wider than the pattern");
        let mut gone = key("a", Some(vec!["acme-*"]));
        gone.active = false;
        assert!(!key_counts(&gone, "acme-*", 100));
        let mut expired = key("a", Some(vec!["acme-*"]));
        expired.expires_at = Some(100);
        assert!(!key_counts(&expired, "acme-*", 100));
    }

    #[test]
    fn counting_ceilings_refuse_the_one_past_the_limit() {
        let qs = [Quota { max_keys: Some(2), ..quota("acme-*") }];
        let held = [key("k1", Some(vec!["acme-*"])), key("k2", Some(vec!["acme-a"])), key("g", None)];
        assert!(refuse_key(&key("k3", Some(vec!["acme-b"])), 100, &qs, held.iter()).is_some());
        assert!(refuse_key(&key("k3", Some(vec!["beta"])), 100, &qs, held.iter()).is_none(), "another tenant");
        assert!(refuse_key(&key("k3", Some(vec!["acme-b"])), 100, &qs, held[..1].iter()).is_none());
        // A key rotated away counts while its grace lasts, and a key never counts against itself.
        let mut rotated = key("k2", Some(vec!["acme-a"]));
        rotated.rotated_to = Some("k3".into());
        rotated.expires_at = Some(200);
        assert!(key_counts(&rotated, "acme-*", 150));
        assert!(!key_counts(&rotated, "acme-*", 200));
        assert!(refuse_key(&held[1], 100, &qs, held.iter()).is_none(), "k2 narrowed in place is still one of two");
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_quota(&quota("acme-*")).is_ok());
        assert!(check_quota(&quota("acme")).is_ok());
        assert!(check_quota(&quota("")).is_err());
        assert!(check_quota(&quota("a*b*")).is_err());
        assert!(check_quota(&quota("acme space")).is_err());
        assert!(check_quota(&quota(&"a".repeat(200))).is_err());
    }
}
