//! From a verified token's claims to the grants of a [`Principal`] (IO-free).
//!
//! The claim shape (`docs/security.md`, "JWT bearer tokens"):
//!
//! ```json
//! { "iss": "https://idp.example", "aud": "loci", "sub": "alice", "exp": 1767225600,
//!   "loci": { "grants": [ { "namespace": "user-alice", "scope": "write" },
//!                         { "namespace": "shared-*",   "scope": "read"  } ] } }
//! ```
//!
//! A token without the grants claim gets the operator's subject template instead
//! (`LOCI_JWT_SUBJECT_NAMESPACE=user-{sub}` at `LOCI_JWT_SUBJECT_SCOPE`), or is refused. Every
//! grant must fit inside the operator's ceiling (`LOCI_JWT_ALLOWED_NAMESPACES`, `LOCI_JWT_MAX_SCOPE`);
//! a token claiming more is refused whole rather than silently narrowed. A token never holds a
//! global grant: node-wide operations and `super_admin` stay with API keys.

use loci_raft::catalogue::{Grant, Scope, pattern_contains};
use serde::Deserialize;

use crate::access::{Grants, Principal};
use crate::error::{ServiceError, ServiceResult};
use crate::keys::mint::{check_pattern, parse_scope};

/// The most grants one token may carry (as for API keys).
pub const MAX_TOKEN_GRANTS: usize = crate::keys::mint::MAX_GRANTS;
/// Subjects are identities, not patterns: at most this long, and of the agent-id grammar.
pub const MAX_SUBJECT_BYTES: usize = 128;

/// What the operator lets tokens of the configured issuer hold.
#[derive(Clone, Debug)]
pub struct GrantPolicy {
    /// The claim holding `{"grants": [...]}` (default `loci`; an IdP may need a URL-shaped name).
    pub claim: String,
    /// Template of the namespace a token without the grants claim gets, with `{sub}`.
    pub subject_namespace: Option<String>,
    /// The scope of that namespace.
    pub subject_scope: Scope,
    /// Patterns every grant must fall inside (`*` = anywhere).
    pub allowed: Vec<String>,
    /// The strongest scope a token may hold (never `super_admin`).
    pub max_scope: Scope,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        GrantPolicy {
            claim: "loci".into(),
            subject_namespace: None,
            subject_scope: Scope::Write,
            allowed: vec!["*".into()],
            max_scope: Scope::Admin,
        }
    }
}

/// The claims Loci reads (the registered ones are checked by the verifier before this).
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub jti: Option<String>,
    /// Everything else, for the grants claim (whose name is configured).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsClaim {
    grants: Vec<GrantClaim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantClaim {
    #[serde(alias = "pattern")]
    namespace: String,
    scope: String,
}

pub fn invalid_token(why: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(crate::error::StatusCode::UNAUTHORIZED, "INVALID_TOKEN", format!("invalid token: {why}"))
}

/// The subject as an identity: the agent-id grammar, bounded (so `{sub}` can never widen a
/// template into a prefix pattern such as `user-*`).
fn check_subject(sub: &str) -> ServiceResult<()> {
    let mut chars = sub.chars();
    let ok = sub.len() <= MAX_SUBJECT_BYTES
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid_token(format!(
            "the subject must be 1-{MAX_SUBJECT_BYTES} characters of [A-Za-z0-9_.-] starting with a letter or digit"
        )))
    }
}

/// The grants `claims` give under `policy`, or why the token is refused (401 `INVALID_TOKEN`).
pub fn grants_of(claims: &Claims, policy: &GrantPolicy) -> ServiceResult<Vec<Grant>> {
    check_subject(&claims.sub)?;
    let wanted: Vec<(String, Scope)> = match claims.rest.get(&policy.claim) {
        Some(v) => {
            let g: GrantsClaim = serde_json::from_value(v.clone()).map_err(|e| {
                invalid_token(format!(
                    "the '{}' claim must be {{\"grants\": [{{\"namespace\", \"scope\"}}]}}: {e}",
                    policy.claim
                ))
            })?;
            if g.grants.len() > MAX_TOKEN_GRANTS {
                return Err(invalid_token(format!("at most {MAX_TOKEN_GRANTS} grants per token")));
            }
            let mut out = Vec::with_capacity(g.grants.len());
            for gc in g.grants {
                let pattern = check_pattern(&gc.namespace).map_err(|e| invalid_token(e.message))?;
                let scope = parse_scope(&gc.scope).map_err(|e| invalid_token(e.message))?;
                out.push((pattern, scope));
            }
            out
        }
        None => match &policy.subject_namespace {
            Some(template) => {
                let ns = template.replace("{sub}", &claims.sub);
                let pattern = check_pattern(&ns).map_err(|e| invalid_token(e.message))?;
                vec![(pattern, policy.subject_scope)]
            }
            None => {
                return Err(invalid_token(format!(
                    "the token carries no '{}' grants claim and no subject namespace is configured",
                    policy.claim
                )));
            }
        },
    };
    if wanted.is_empty() {
        return Err(invalid_token("the token grants no namespace"));
    }
    let mut grants: Vec<Grant> = Vec::with_capacity(wanted.len());
    for (pattern, scope) in wanted {
        if scope > policy.max_scope || scope == Scope::SuperAdmin {
            return Err(invalid_token(format!(
                "a token may hold at most '{}', not '{}'",
                policy.max_scope.as_str(),
                scope.as_str()
            )));
        }
        if !policy.allowed.iter().any(|a| pattern_contains(a, &pattern)) {
            return Err(invalid_token(format!(
                "'{}' is outside the namespaces tokens may be granted",
                crate::validate::printable(&pattern)
            )));
        }
        match grants.iter_mut().find(|g| g.pattern == pattern) {
            Some(g) => g.scope = g.scope.max(scope),
            None => grants.push(Grant { pattern, scope }),
        }
    }
    Ok(grants)
}

/// What the key ids of token principals start with.
pub const TOKEN_KEY_PREFIX: &str = "jwt:";

/// The key id a token's requests are known by (audit, rate limits).
pub fn token_key_id(sub: &str) -> String {
    format!("{TOKEN_KEY_PREFIX}{sub}")
}

/// The principal of a verified token.
pub fn principal(claims: &Claims, policy: &GrantPolicy) -> ServiceResult<Principal> {
    let grants = grants_of(claims, policy)?;
    let scope = grants.iter().map(|g| g.scope).max().unwrap_or(Scope::Read);
    Ok(Principal::new(
        token_key_id(&claims.sub),
        claims.sub.clone(),
        scope,
        Grants::List(grants),
        Some(claims.exp),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    fn g(p: &str, s: Scope) -> Grant {
        Grant { pattern: p.into(), scope: s }
    }

    #[test]
    fn explicit_grants_become_a_namespace_restricted_principal() {
        let c = claims(json!({"sub": "alice", "exp": 10, "loci": {"grants": [
            {"namespace": "user-alice", "scope": "write"},
            {"pattern": "shared-*", "scope": "read"},
            {"namespace": "user-alice", "scope": "read"}
        ]}}));
        let grants = grants_of(&c, &GrantPolicy::default()).unwrap();
        assert_eq!(grants, vec![g("user-alice", Scope::Write), g("shared-*", Scope::Read)]);
        let p = principal(&c, &GrantPolicy::default()).unwrap();
        assert_eq!(p.key_id, "jwt:alice");
        assert_eq!(p.expires_at, Some(10));
        assert!(p.allows("user-alice", Scope::Write));
        assert!(p.allows("shared-docs", Scope::Read));
        assert!(!p.allows("shared-docs", Scope::Write));
        assert!(!p.can_see("user-bob"));
        // Never global, whatever it claims.
        assert!(p.require_global(Scope::Read).is_err());
    }

    #[test]
    fn the_subject_template_applies_only_without_the_claim() {
        let policy = GrantPolicy { subject_namespace: Some("user-{sub}".into()), ..Default::default() };
        let c = claims(json!({"sub": "bob", "exp": 10}));
        assert_eq!(grants_of(&c, &policy).unwrap(), vec![g("user-bob", Scope::Write)]);
        let none = grants_of(&c, &GrantPolicy::default()).unwrap_err();
        assert_eq!((none.status.as_u16(), &*none.code), (401, "INVALID_TOKEN"));
        // A subject cannot turn the template into a prefix or a path.
        for sub in ["*", "a*", "../x", "", "a b", &"x".repeat(129)] {
            let c = claims(json!({"sub": sub, "exp": 10}));
            assert_eq!(grants_of(&c, &policy).unwrap_err().code, "INVALID_TOKEN", "{sub:?}");
        }
    }

    #[test]
    fn grants_beyond_the_ceiling_refuse_the_whole_token() {
        let policy = GrantPolicy { allowed: vec!["app-*".into()], max_scope: Scope::Write, ..Default::default() };
        let ok = claims(json!({"sub": "a", "exp": 1, "loci": {"grants": [{"namespace": "app-1", "scope": "write"}]}}));
        assert!(grants_of(&ok, &policy).is_ok());
        for (ns, scope) in
            [("other", "read"), ("app*", "read"), ("*", "read"), ("app-1", "admin"), ("app-1", "super_admin")]
        {
            let c = claims(json!({"sub": "a", "exp": 1, "loci": {"grants": [
                {"namespace": "app-2", "scope": "read"}, {"namespace": ns, "scope": scope}]}}));
            assert_eq!(grants_of(&c, &policy).unwrap_err().code, "INVALID_TOKEN", "{ns} {scope}");
        }
        // super_admin is refused even under the widest ceiling.
        let wide = GrantPolicy { max_scope: Scope::SuperAdmin, ..Default::default() };
        let c = claims(json!({"sub": "a", "exp": 1, "loci": {"grants": [{"namespace": "x", "scope": "super_admin"}]}}));
        assert!(grants_of(&c, &wide).is_err());
    }

    #[test]
    fn malformed_grant_claims_are_refused() {
        for v in [
            json!({"grants": "x"}),
            json!({"grants": []}),
            json!({"grants": [{"namespace": "a"}]}),
            json!({"grants": [{"namespace": "a", "scope": "owner"}]}),
            json!({"grants": [{"namespace": "a b", "scope": "read"}]}),
            json!({"grants": [{"namespace": "a", "scope": "read", "extra": 1}]}),
            json!({"grant": []}),
            json!({"grants": (0..=MAX_TOKEN_GRANTS).map(|i| json!({"namespace": format!("n{i}"), "scope": "read"})).collect::<Vec<_>>()}),
        ] {
            let c = claims(json!({"sub": "a", "exp": 1, "loci": v.clone()}));
            assert_eq!(grants_of(&c, &GrantPolicy::default()).unwrap_err().code, "INVALID_TOKEN", "{v}");
        }
        // The claim name is the operator's.
        let policy = GrantPolicy { claim: "https://loci.dev/claims".into(), ..Default::default() };
        let c = claims(
            json!({"sub": "a", "exp": 1, "https://loci.dev/claims": {"grants": [{"namespace": "a", "scope": "read"}]}}),
        );
        assert_eq!(grants_of(&c, &policy).unwrap(), vec![g("a", Scope::Read)]);
    }
}
