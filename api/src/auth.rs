//! Authentication and authorisation.
//!
//! Keys arrive as `X-API-Key` (takes precedence) or `Authorization: Bearer`. A request is
//! authenticated against the local catalogue replica into a [`Principal`]; every handler then
//! asks the principal for the scope it needs on the namespace it touches. A namespace the key
//! holds no grant on answers 403 without revealing whether it exists.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Hierarchical: each scope includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
    SuperAdmin,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::SuperAdmin => "super_admin",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            "super_admin" => Some(Scope::SuperAdmin),
            _ => None,
        }
    }
}

/// Which namespaces a key may touch, and with what scope.
#[derive(Clone, Debug, PartialEq)]
pub enum Grants {
    /// Every namespace, at the key's scope.
    All(Scope),
    /// `(namespace or "prefix*" pattern, scope)` pairs.
    List(Vec<(String, Scope)>),
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub scope: Scope,
    pub grants: Grants,
    pub expires_at: Option<u64>,
    pub is_root: bool,
}

pub const ROOT_KEY_ID: &str = "root";

pub fn pattern_matches(pattern: &str, ns: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => ns.starts_with(prefix),
        None => pattern == ns,
    }
}

impl Principal {
    pub fn root() -> Self {
        Principal {
            key_id: ROOT_KEY_ID.into(),
            name: "root".into(),
            scope: Scope::SuperAdmin,
            grants: Grants::All(Scope::SuperAdmin),
            expires_at: None,
            is_root: true,
        }
    }

    /// The strongest scope this key holds on `ns` (None = no access at all).
    pub fn scope_on(&self, ns: &str) -> Option<Scope> {
        match &self.grants {
            Grants::All(s) => Some(*s),
            Grants::List(list) => list
                .iter()
                .filter(|(p, _)| pattern_matches(p, ns))
                .map(|(_, s)| *s)
                .max(),
        }
    }

    /// May this key see that `ns` exists?
    pub fn can_see(&self, ns: &str) -> bool {
        self.scope_on(ns).is_some()
    }

    /// Refuse unless the key holds `need` on `ns`.
    pub fn require(&self, ns: &str, need: Scope) -> Result<(), ApiError> {
        match self.scope_on(ns) {
            None => Err(ApiError::namespace_forbidden(ns)),
            Some(s) if s >= need => Ok(()),
            Some(_) => Err(ApiError::insufficient_scope(need.as_str())),
        }
    }

    /// Node-wide operations (no namespace): needs the global scope and no namespace pinning.
    pub fn require_global(&self, need: Scope) -> Result<(), ApiError> {
        match &self.grants {
            Grants::All(s) if *s >= need => Ok(()),
            _ => Err(ApiError::insufficient_scope(need.as_str())),
        }
    }
}

pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The secret presented by the request, if any.
pub fn presented_key(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    let auth = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let k = rest.trim();
        if !k.is_empty() {
            return Some(k.to_string());
        }
    }
    None
}

/// Resolve a secret to a principal (constant-time comparison of SHA-256 digests).
pub fn authenticate(state: &AppState, secret: &str) -> Result<Principal, ApiError> {
    let digest = sha256(secret);
    if bool::from(digest.ct_eq(&state.core.root_key_digest)) {
        return Ok(Principal::root());
    }
    Err(ApiError::invalid_key())
}

/// Extractor: every route except `/health*` and `/metrics` takes one.
pub struct Auth(pub Arc<Principal>);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Arc<Principal>>() {
            return Ok(Auth(p.clone()));
        }
        let Some(secret) = presented_key(parts) else {
            return Err(ApiError::unauthenticated(
                "an API key is required (Authorization: Bearer <key> or X-API-Key)",
            ));
        };
        let p = Arc::new(authenticate(state, &secret)?);
        parts.extensions.insert(p.clone());
        Ok(Auth(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_hierarchical_and_patterns_match_prefixes() {
        let p = Principal {
            key_id: "k".into(),
            name: "k".into(),
            scope: Scope::Write,
            grants: Grants::List(vec![
                ("user-a".into(), Scope::Write),
                ("shared-*".into(), Scope::Read),
            ]),
            expires_at: None,
            is_root: false,
        };
        assert!(p.require("user-a", Scope::Read).is_ok());
        assert!(p.require("user-a", Scope::Write).is_ok());
        assert_eq!(
            p.require("user-a", Scope::Admin).unwrap_err().code,
            "INSUFFICIENT_SCOPE"
        );
        assert!(p.require("shared-org", Scope::Read).is_ok());
        assert_eq!(
            p.require("shared-org", Scope::Write).unwrap_err().code,
            "INSUFFICIENT_SCOPE"
        );
        assert_eq!(
            p.require("user-b", Scope::Read).unwrap_err().code,
            "NAMESPACE_ACCESS_DENIED"
        );
        assert!(!p.can_see("user-ab"));
        assert!(p.require_global(Scope::Read).is_err());
        assert!(Principal::root().require_global(Scope::SuperAdmin).is_ok());
    }
}
