//! Access decisions: who a presented secret is ([`authenticate`]) and what that caller may do
//! ([`Principal`]).
//!
//! A secret resolves against the local catalogue replica (SHA-256, constant-time compare for the
//! root key, digest lookup for minted keys) into a [`Principal`]; every service call then asks it
//! for the scope it needs on the namespace it touches. A namespace the key holds no permission
//! on answers 403 without revealing whether it exists. How the secret arrives (headers, gRPC
//! metadata) is the fronts' business.

pub use loci_raft::catalogue::{ApiKeyEntry, Grant, Scope, pattern_contains, pattern_matches};
use loci_storage::model::now_secs;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::{Core, canonical_namespace};
use crate::error::ServiceError;

/// Which namespaces a key may touch, and with what scope.
#[derive(Clone, Debug, PartialEq)]
pub enum Grants {
    /// Every namespace, at the key's scope.
    All(Scope),
    /// Exactly these permissions.
    List(Vec<Grant>),
}

/// The authenticated caller of one request.
#[derive(Debug)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub scope: Scope,
    pub grants: Grants,
    pub expires_at: Option<u64>,
    pub is_root: bool,
    /// Namespaces this request asked for, and whether it was allowed (audit log and usage).
    touched: Mutex<Vec<(String, bool)>>,
}

pub const ROOT_KEY_ID: &str = "root";

/// How long after its last contact with the catalogue group a node still takes minted keys.
pub const CATALOGUE_FRESHNESS: std::time::Duration = std::time::Duration::from_secs(10);

impl Principal {
    pub fn new(
        key_id: String,
        name: String,
        scope: Scope,
        grants: Grants,
        expires_at: Option<u64>,
        is_root: bool,
    ) -> Self {
        Principal { key_id, name, scope, grants, expires_at, is_root, touched: Mutex::new(Vec::new()) }
    }

    pub fn root() -> Self {
        Self::new(ROOT_KEY_ID.into(), "root".into(), Scope::SuperAdmin, Grants::All(Scope::SuperAdmin), None, true)
    }

    pub fn from_entry(k: &ApiKeyEntry) -> Self {
        let grants = match &k.grants {
            None => Grants::All(k.scope),
            Some(list) => Grants::List(list.clone()),
        };
        Self::new(k.key_id.clone(), k.name.clone(), k.scope, grants, k.expires_at, false)
    }

    /// The strongest scope this key holds on `ns` (None = no access at all).
    pub fn scope_on(&self, ns: &str) -> Option<Scope> {
        let ns = canonical_namespace(ns);
        match &self.grants {
            Grants::All(s) => Some(*s),
            Grants::List(list) => list.iter().filter(|g| pattern_matches(&g.pattern, ns)).map(|g| g.scope).max(),
        }
    }

    /// May this key see that `ns` exists?
    pub fn can_see(&self, ns: &str) -> bool {
        self.scope_on(ns).is_some()
    }

    /// Does the key hold `need` on `ns`? (A check that is not recorded as an access.)
    pub fn allows(&self, ns: &str, need: Scope) -> bool {
        self.scope_on(ns).is_some_and(|s| s >= need)
    }

    /// Refuse unless the key holds `need` on `ns`.
    pub fn require(&self, ns: &str, need: Scope) -> Result<(), ServiceError> {
        let ns = canonical_namespace(ns);
        let res = match self.scope_on(ns) {
            None => Err(ServiceError::namespace_forbidden(ns)),
            Some(s) if s >= need => Ok(()),
            Some(_) => Err(ServiceError::insufficient_scope(need.as_str())),
        };
        let mut t = self.touched.lock();
        if !t.iter().any(|(x, _)| x == ns) && t.len() < 16 {
            t.push((ns.to_string(), res.is_ok()));
        }
        res
    }

    /// Node-wide operations (no namespace): needs the scope on every namespace.
    pub fn require_global(&self, need: Scope) -> Result<(), ServiceError> {
        match &self.grants {
            Grants::All(s) if *s >= need => Ok(()),
            _ => Err(ServiceError::insufficient_scope(need.as_str())),
        }
    }

    /// May this key mint or manage a key with these permissions? Minting needs `admin` where the
    /// new key reaches, never yields more scope than the caller holds there, and a global key can
    /// only come from a global key.
    pub fn can_delegate(&self, scope: Scope, grants: &Option<Vec<Grant>>) -> Result<(), ServiceError> {
        match (&self.grants, grants) {
            (Grants::All(mine), _) => {
                if *mine < Scope::Admin {
                    return Err(ServiceError::insufficient_scope("admin"));
                }
                let wanted =
                    grants.as_ref().map_or(scope, |g| g.iter().map(|g| g.scope).max().unwrap_or(scope).max(scope));
                if wanted > *mine {
                    return Err(ServiceError::new(
                        crate::error::StatusCode::FORBIDDEN,
                        "INSUFFICIENT_SCOPE",
                        format!("cannot grant '{}' with a '{}' key", wanted.as_str(), mine.as_str()),
                    ));
                }
                Ok(())
            }
            (Grants::List(_), None) => Err(ServiceError::new(
                crate::error::StatusCode::FORBIDDEN,
                "INSUFFICIENT_SCOPE",
                "a namespace-restricted key cannot create or manage keys for every namespace",
            )),
            (Grants::List(mine), Some(wanted)) => {
                for w in wanted {
                    let ok = mine.iter().any(|m| {
                        m.scope >= Scope::Admin && m.scope >= w.scope && pattern_contains(&m.pattern, &w.pattern)
                    });
                    if !ok {
                        return Err(ServiceError::new(
                            crate::error::StatusCode::FORBIDDEN,
                            "NAMESPACE_ACCESS_DENIED",
                            format!(
                                "cannot grant '{}' on '{}': outside this key's own admin permissions",
                                w.scope.as_str(),
                                w.pattern
                            ),
                        ));
                    }
                }
                if scope == Scope::SuperAdmin {
                    return Err(ServiceError::insufficient_scope("super_admin"));
                }
                Ok(())
            }
        }
    }

    /// Every namespace the request asked for (allowed or refused): for the audit log.
    pub fn touched(&self) -> Vec<String> {
        self.touched.lock().iter().map(|(n, _)| n.clone()).collect()
    }

    /// Namespaces the request was allowed to use: for usage statistics the key itself can read
    /// (refused names must not leak back to it).
    pub fn granted(&self) -> Vec<String> {
        self.touched.lock().iter().filter(|(_, ok)| *ok).map(|(n, _)| n.clone()).collect()
    }
}

pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha256(s))
}

/// Resolve a secret to a principal.
pub fn authenticate(core: &Core, secret: &str) -> Result<Principal, ServiceError> {
    let digest = sha256(secret);
    if bool::from(digest.ct_eq(&core.root_key_digest)) {
        return Ok(Principal::root());
    }
    if let Some(jwt) = &core.jwt
        && crate::jwt::looks_like_jwt(secret)
    {
        return authenticate_token(core, jwt, secret);
    }
    let hex = hex::encode(digest);
    let cat = core.catalogue.view.read();
    let Some(k) = cat.key_by_secret_hash(&hex) else {
        return Err(ServiceError::invalid_key());
    };
    // The index is keyed by the digest; compare the stored digest in constant time anyway.
    if !bool::from(k.secret_sha256.as_bytes().ct_eq(hex.as_bytes())) {
        return Err(ServiceError::invalid_key());
    }
    let principal = admit(k, now_secs())?;
    // The catalogue this decision read: a change applied after it cannot make the node fresh.
    let applied = cat.applied_index;
    drop(cat);
    require_fresh(core, applied)?;
    Ok(principal)
}

/// A node cut off from the catalogue group may not know of a revocation: it stops taking
/// minted keys and tokens `CATALOGUE_FRESHNESS` after its last contact (the root key,
/// configured and never revoked, still works for the operator).
fn require_fresh(core: &Core, applied: u64) -> Result<(), ServiceError> {
    if !core.catalogue.is_fresh_at(CATALOGUE_FRESHNESS, applied) {
        return Err(ServiceError::unavailable(
            "this node has lost contact with the catalogue leader and cannot check keys; retry on another node",
        ));
    }
    Ok(())
}

/// A JWT bearer token: signature and registered claims, then the grants its claims map to,
/// then the catalogue's deny list (by `jti`, signing key id, subject).
fn authenticate_token(core: &Core, jwt: &crate::jwt::JwtVerifier, token: &str) -> Result<Principal, ServiceError> {
    let verified = jwt.verify(token)?;
    let principal = jwt.principal(&verified)?;
    let cat = core.catalogue.view.read();
    let c = &verified.claims;
    if let Some(d) =
        loci_raft::denials::denied(&cat.token_denials, c.jti.as_deref(), verified.kid.as_deref(), &c.sub, now_secs())
    {
        return Err(ServiceError::new(
            crate::error::StatusCode::UNAUTHORIZED,
            "TOKEN_REVOKED",
            format!("the token has been revoked ({} denied)", d.kind.as_str()),
        ));
    }
    let applied = cat.applied_index;
    drop(cat);
    require_fresh(core, applied)?;
    Ok(principal)
}

/// A minted key found by its secret, at time `now`: refused when deactivated or expired.
pub fn admit(k: &ApiKeyEntry, now: u64) -> Result<Principal, ServiceError> {
    if !k.active {
        return Err(ServiceError::new(
            crate::error::StatusCode::UNAUTHORIZED,
            "INVALID_API_KEY",
            "API key has been revoked",
        ));
    }
    if k.expires_at.is_some_and(|e| e <= now) {
        return Err(ServiceError::key_expired());
    }
    Ok(Principal::from_entry(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(grants: Vec<(&str, Scope)>) -> Principal {
        Principal::new(
            "k".into(),
            "k".into(),
            Scope::Admin,
            Grants::List(grants.into_iter().map(|(p, s)| Grant { pattern: p.into(), scope: s }).collect()),
            None,
            false,
        )
    }

    #[test]
    fn scopes_are_hierarchical_and_patterns_match_prefixes() {
        let p = key(vec![("user-a", Scope::Write), ("shared-*", Scope::Read)]);
        assert!(p.require("user-a", Scope::Read).is_ok());
        assert!(p.require("user-a", Scope::Write).is_ok());
        assert!(p.require("_dakera_agent_user-a", Scope::Write).is_ok());
        assert_eq!(p.require("user-a", Scope::Admin).unwrap_err().code, "INSUFFICIENT_SCOPE");
        assert!(p.require("shared-org", Scope::Read).is_ok());
        assert_eq!(p.require("shared-org", Scope::Write).unwrap_err().code, "INSUFFICIENT_SCOPE");
        assert_eq!(p.require("user-b", Scope::Read).unwrap_err().code, "NAMESPACE_ACCESS_DENIED");
        assert!(!p.can_see("user-ab"));
        assert!(p.require_global(Scope::Read).is_err());
        assert!(Principal::root().require_global(Scope::SuperAdmin).is_ok());
        assert_eq!(p.touched(), vec!["user-a", "shared-org", "user-b"]);
    }

    #[test]
    fn delegation_stays_inside_the_callers_prefix_and_scope() {
        let acme = key(vec![("acme-*", Scope::Admin)]);
        let g = |p: &str, s| Some(vec![Grant { pattern: p.into(), scope: s }]);
        assert!(acme.can_delegate(Scope::Write, &g("acme-x", Scope::Write)).is_ok());
        assert!(acme.can_delegate(Scope::Admin, &g("acme-team-*", Scope::Admin)).is_ok());
        assert!(acme.can_delegate(Scope::Read, &g("other", Scope::Read)).is_err());
        assert!(acme.can_delegate(Scope::Read, &g("acm*", Scope::Read)).is_err());
        assert!(acme.can_delegate(Scope::SuperAdmin, &g("acme-x", Scope::SuperAdmin)).is_err());
        assert!(acme.can_delegate(Scope::Read, &None).is_err());
        let writer = key(vec![("acme-*", Scope::Write)]);
        assert!(writer.can_delegate(Scope::Read, &g("acme-x", Scope::Read)).is_err());
        assert!(Principal::root().can_delegate(Scope::SuperAdmin, &None).is_ok());
    }
}
