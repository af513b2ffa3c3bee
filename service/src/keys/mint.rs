//! Minting: secrets and key ids, scope names and namespace patterns, the three ways a request
//! asks for a key (the Dakera key router, per-namespace permissions, a namespace's own keys),
//! and [`Keys::create`].

use crate::cluster::Reach;
use loci_raft::catalogue::{ApiKeyEntry, Command, CommandResult, Grant, Scope};
use loci_storage::crypto::random_bytes;
use loci_storage::model::now_secs;
use serde_json::json;

use super::Keys;
use crate::access::{Principal, sha256_hex};
use crate::core::canonical_namespace;
use crate::error::{ServiceError, ServiceResult};
use crate::validate;

/// At most this many grants (namespaces or permissions) per key.
pub const MAX_GRANTS: usize = 64;

/// A new secret: `dk_` + 64 hex characters (256 random bits).
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    format!("dk_{}", hex::encode(b))
}

/// A new key id: `dk_key_` + 16 hex characters.
pub fn new_key_id() -> String {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    format!("dk_key_{}", hex::encode(b))
}

/// Resource-style scope names (`memory:read`, `conversations:write`, `tenant:admin`, as in
/// docs/multi-tenancy.md) name Loci's levels: `…:read` is read, `…:write` is write,
/// `tenant:admin` is admin. The resource part does not narrow anything: a key's namespaces do.
fn resource_scope(s: &str) -> Option<Scope> {
    let (resource, action) = s.split_once(':')?;
    if !matches!(resource, "memory" | "users" | "conversations" | "tenant") {
        return None;
    }
    match action {
        "read" => Some(Scope::Read),
        "write" => Some(Scope::Write),
        "admin" if resource == "tenant" => Some(Scope::Admin),
        _ => None,
    }
}

/// A scope name: `read`, `write`, `admin`, `super_admin`, or a resource-style name.
pub fn parse_scope(s: &str) -> ServiceResult<Scope> {
    Scope::parse(s).or_else(|| resource_scope(s)).ok_or_else(|| {
        ServiceError::bad_request(format!(
            "unknown scope '{}': read, write, admin or super_admin",
            validate::printable(s)
        ))
    })
}

/// A grant pattern: a namespace name, or a prefix ending in `*`.
pub fn check_pattern(p: &str) -> ServiceResult<String> {
    let p = canonical_namespace(p).to_string();
    if p.len() > validate::MAX_NAMESPACE_BYTES {
        return Err(ServiceError::bad_request("namespace patterns are at most 128 characters"));
    }
    match p.strip_suffix('*') {
        Some(prefix) => {
            if prefix.contains('*')
                || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ServiceError::bad_request(format!(
                    "invalid namespace pattern '{}'",
                    validate::printable(&p)
                )));
            }
        }
        None => validate::namespace_ref(&p)?,
    }
    Ok(p)
}

/// Dakera's `namespaces` field: absent/null or `["*"]` = every namespace, `[]` = none.
pub fn grants_from_namespaces(scope: Scope, namespaces: Option<Vec<String>>) -> ServiceResult<Option<Vec<Grant>>> {
    match namespaces {
        None => Ok(None),
        Some(list) if list.iter().any(|n| n == "*") => Ok(None),
        Some(list) => {
            if list.len() > MAX_GRANTS {
                return Err(ServiceError::bad_request(format!("at most {MAX_GRANTS} namespaces per key")));
            }
            let mut out: Vec<Grant> = Vec::new();
            for n in list {
                let pattern = check_pattern(&n)?;
                if !out.iter().any(|g| g.pattern == pattern) {
                    out.push(Grant { pattern, scope });
                }
            }
            Ok(Some(out))
        }
    }
}

fn expiry(days: Option<u64>) -> ServiceResult<Option<u64>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=3650).contains(&d) => Ok(Some(now_secs() + d * 86_400)),
        Some(_) => Err(ServiceError::bad_request("expires_in_days must be between 1 and 3650")),
    }
}

/// A key to mint, validated (the caller's right to delegate it is checked by [`Keys::create`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRequest {
    pub name: String,
    pub scope: Scope,
    pub grants: Option<Vec<Grant>>,
    pub expires_at: Option<u64>,
}

/// A key as the Dakera key router asks for it (`POST /admin/keys`).
#[derive(Clone, Debug, Default)]
pub struct AdminKeySpec {
    pub name: String,
    /// Default `read`.
    pub scope: Option<String>,
    /// Absent or `["*"]` = every namespace.
    pub namespaces: Option<Vec<String>>,
    /// One namespace (the Dakera security guide's form): the same as `namespaces: [it]`.
    pub namespace: Option<String>,
    pub expires_in_days: Option<u64>,
}

/// One entry of [`PermissionsKeySpec::permissions`]: a namespace (or prefix pattern) and the
/// scopes the key holds on it (the strongest one counts).
#[derive(Clone, Debug, Default)]
pub struct Permission {
    pub namespace: String,
    pub scopes: Vec<String>,
}

/// A key with per-namespace permissions (`POST /v1/api-keys`).
#[derive(Clone, Debug, Default)]
pub struct PermissionsKeySpec {
    pub label: String,
    pub permissions: Vec<Permission>,
    pub expires_in_days: Option<u64>,
    /// Unix seconds, in the future; wins over `expires_in_days`.
    pub expires_at: Option<u64>,
}

/// A key of one namespace, possibly reaching a few more (`POST /v1/namespaces/{ns}/keys`).
#[derive(Clone, Debug, Default)]
pub struct NamespaceKeySpec {
    pub name: String,
    /// `read` (the default), `write` or `admin`.
    pub scope: Option<String>,
    pub extra_namespaces: Option<Vec<String>>,
    pub expires_in_days: Option<u64>,
}

impl KeyRequest {
    /// The Dakera key router's form.
    pub fn from_admin(spec: AdminKeySpec) -> ServiceResult<Self> {
        let scope = parse_scope(spec.scope.as_deref().unwrap_or("read"))?;
        // Seed 002's `"namespace": "tenant-a"`: one namespace, the same as `namespaces: [it]`.
        let namespaces = match (spec.namespaces, spec.namespace) {
            (list, None) => list,
            (_, Some(one)) if canonical_namespace(&one) == "*" || one.is_empty() => {
                return Err(ServiceError::bad_request(
                    "namespace names one namespace; omit it (and namespaces) for a key on every namespace",
                ));
            }
            (None, Some(one)) => Some(vec![one]),
            (Some(mut list), Some(one)) => {
                if list.iter().any(|n| n == "*") {
                    return Err(ServiceError::bad_request("namespace and namespaces [\"*\"] contradict each other"));
                }
                list.insert(0, one);
                Some(list)
            }
        };
        let grants = grants_from_namespaces(scope, namespaces)?;
        let expires_at = expiry(spec.expires_in_days)?;
        validate::key_name(&spec.name)?;
        Ok(KeyRequest { name: spec.name, scope, grants, expires_at })
    }

    /// Per-namespace permissions: the key's scope is the strongest one it holds anywhere.
    pub fn from_permissions(spec: PermissionsKeySpec) -> ServiceResult<Self> {
        if spec.permissions.is_empty() || spec.permissions.len() > MAX_GRANTS {
            return Err(ServiceError::bad_request(format!("permissions must hold 1-{MAX_GRANTS} entries")));
        }
        let mut grants: Vec<Grant> = Vec::new();
        for perm in &spec.permissions {
            if perm.scopes.is_empty() {
                return Err(ServiceError::bad_request("each permission needs at least one scope"));
            }
            let mut level = Scope::Read;
            for s in &perm.scopes {
                level = level.max(parse_scope(s)?);
            }
            if canonical_namespace(&perm.namespace) == "*" {
                return Err(ServiceError::bad_request(
                    "use POST /admin/keys without namespaces for a key on every namespace",
                ));
            }
            let pattern = check_pattern(&perm.namespace)?;
            match grants.iter_mut().find(|g| g.pattern == pattern) {
                Some(g) => g.scope = g.scope.max(level),
                None => grants.push(Grant { pattern, scope: level }),
            }
        }
        let scope = grants.iter().map(|g| g.scope).max().unwrap_or(Scope::Read);
        let expires_at = match (spec.expires_at, spec.expires_in_days) {
            (Some(at), _) if at > now_secs() => Some(at),
            (Some(_), _) => return Err(ServiceError::bad_request("expires_at must be in the future")),
            (None, d) => expiry(d)?,
        };
        validate::key_name(&spec.label)?;
        Ok(KeyRequest { name: spec.label, scope, grants: Some(grants), expires_at })
    }

    /// A namespace's key; `ns` is the namespace the caller administers (see
    /// [`Keys::namespace_admin`]), always the first grant.
    pub fn for_namespace(ns: &str, spec: NamespaceKeySpec) -> ServiceResult<Self> {
        let scope = parse_scope(spec.scope.as_deref().unwrap_or("read"))?;
        if scope > Scope::Admin {
            return Err(ServiceError::bad_request("namespace keys are read, write or admin"));
        }
        let mut names = vec![ns.to_string()];
        let extra = spec.extra_namespaces.unwrap_or_default();
        if extra.iter().any(|n| canonical_namespace(n) == "*") {
            return Err(ServiceError::bad_request("a namespace key cannot be granted every namespace"));
        }
        names.extend(extra);
        let grants = grants_from_namespaces(scope, Some(names))?;
        let expires_at = expiry(spec.expires_in_days)?;
        validate::key_name(&spec.name)?;
        Ok(KeyRequest { name: spec.name, scope, grants, expires_at })
    }
}

/// A minted key and its secret (shown once: the catalogue keeps only its digest).
#[derive(Clone)]
pub struct MintedKey {
    pub entry: ApiKeyEntry,
    pub secret: String,
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey").field("entry", &self.entry).field("secret", &"[redacted]").finish()
    }
}

impl Keys<'_> {
    /// Mint a key inside `p`'s own admin permissions (audit event `key_created`).
    pub async fn create(&self, p: &Principal, r: KeyRequest) -> ServiceResult<MintedKey> {
        validate::key_name(&r.name)?;
        p.can_delegate(r.scope, &r.grants)?;
        for _ in 0..3 {
            let secret = new_secret();
            let entry = ApiKeyEntry {
                key_id: new_key_id(),
                name: r.name.clone(),
                secret_sha256: sha256_hex(&secret),
                scope: r.scope,
                grants: r.grants.clone(),
                created_by: p.key_id.clone(),
                created_at: now_secs(),
                expires_at: r.expires_at,
                active: true,
                deactivated_at: None,
                rotated_to: None,
            };
            match self.core.write_everywhere(Command::CreateKey { entry }, Reach::Alive).await? {
                CommandResult::Key { entry } => {
                    self.audit(
                        "key_created",
                        p,
                        json!({"created_key_id": entry.key_id, "name": entry.name, "scope": entry.scope.as_str(),
                               "namespaces": entry.grants.as_ref().map(|g| g.iter().map(|g| g.pattern.clone()).collect::<Vec<_>>())}),
                    );
                    return Ok(MintedKey { entry, secret });
                }
                // An id or digest collision: try again with new random values.
                CommandResult::Rejected(_) => continue,
                CommandResult::QuotaExceeded(why) => return Err(ServiceError::quota_exceeded(why)),
                other => return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
            }
        }
        Err(ServiceError::internal("could not allocate a key id"))
    }
}
