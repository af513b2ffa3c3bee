//! API keys: `/admin/keys…` (the Dakera key router), `/v1/namespaces/{ns}/keys…`
//! (namespace-scoped keys) and `POST /v1/api-keys` (per-namespace permissions), plus
//! encryption-key rotation.
//!
//! Internally a key is one list of grants (`None` = every namespace at the key's scope). Secrets
//! are 256-bit random, shown once, stored as SHA-256. Every path that mints or manages a key goes
//! through [`Principal::can_delegate`]: keys are only ever created or managed inside the caller's
//! own admin permissions and never with more scope. A role change is a new key: PATCH may rename
//! or narrow a key, never widen it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use loci_raft::catalogue::{ApiKeyEntry, Command, CommandResult, Grant, Scope};
use loci_storage::crypto::random_bytes;
use loci_storage::model::now_secs;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Auth, Principal, pattern_contains, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, parse_json};
use loci_service::canonical_namespace;
use loci_service::validate;

const MAX_GRANTS: usize = 64;
const MAX_GRACE_SECS: u64 = 604_800;
const WARNING: &str = "Store this key now: it is shown only once and cannot be recovered.";

fn new_secret() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    format!("dk_{}", hex::encode(b))
}

fn new_key_id() -> String {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    format!("dk_key_{}", hex::encode(b))
}

/// Refuse fields a create route doesn't know with 422 (as the published clients expect).
fn strict<T: serde::de::DeserializeOwned>(body: Value, allowed: &[&str]) -> ApiResult<T> {
    if let Value::Object(m) = &body {
        if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::unprocessable(format!("unknown field '{}'", validate::printable(k))));
        }
    }
    parse_json(&serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?)
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

fn parse_scope(s: &str) -> ApiResult<Scope> {
    Scope::parse(s).or_else(|| resource_scope(s)).ok_or_else(|| {
        ApiError::bad_request(format!("unknown scope '{}': read, write, admin or super_admin", validate::printable(s)))
    })
}

/// A grant pattern: a namespace name, or a prefix ending in `*`.
fn check_pattern(p: &str) -> ApiResult<String> {
    let p = canonical_namespace(p).to_string();
    if p.len() > validate::MAX_NAMESPACE_BYTES {
        return Err(ApiError::bad_request("namespace patterns are at most 128 characters"));
    }
    match p.strip_suffix('*') {
        Some(prefix) => {
            if prefix.contains('*')
                || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ApiError::bad_request(format!("invalid namespace pattern '{}'", validate::printable(&p))));
            }
        }
        None => validate::namespace_ref(&p)?,
    }
    Ok(p)
}

/// Dakera's `namespaces` field: absent/null or `["*"]` = every namespace, `[]` = none.
fn grants_from_namespaces(scope: Scope, namespaces: Option<Vec<String>>) -> ApiResult<Option<Vec<Grant>>> {
    match namespaces {
        None => Ok(None),
        Some(list) if list.iter().any(|n| n == "*") => Ok(None),
        Some(list) => {
            if list.len() > MAX_GRANTS {
                return Err(ApiError::bad_request(format!("at most {MAX_GRANTS} namespaces per key")));
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

fn key_json(state: &AppState, k: &ApiKeyEntry) -> Value {
    let namespaces: Value = match &k.grants {
        None => Value::Null,
        Some(g) => json!(g.iter().map(|g| g.pattern.clone()).collect::<Vec<_>>()),
    };
    let permissions: Value = match &k.grants {
        None => json!([{"namespace": "*", "scopes": [k.scope.as_str()]}]),
        Some(g) => {
            json!(g.iter().map(|g| json!({"namespace": g.pattern, "scopes": [g.scope.as_str()]})).collect::<Vec<_>>())
        }
    };
    json!({
        "key_id": k.key_id,
        "name": k.name,
        "scope": k.scope.as_str(),
        "namespaces": namespaces,
        "permissions": permissions,
        "created_at": k.created_at,
        "created_by": k.created_by,
        "expires_at": k.expires_at,
        "active": k.usable_at(now_secs()),
        "grants_version": 1,
        "inert_namespaces": [],
        "last_used_at": state.usage.last_used_at(&k.key_id),
    })
}

async fn mint(
    state: &AppState,
    p: &Principal,
    name: String,
    scope: Scope,
    grants: Option<Vec<Grant>>,
    expires_at: Option<u64>,
) -> ApiResult<(ApiKeyEntry, String)> {
    validate::key_name(&name)?;
    p.can_delegate(scope, &grants)?;
    for _ in 0..3 {
        let secret = new_secret();
        let entry = ApiKeyEntry {
            key_id: new_key_id(),
            name: name.clone(),
            secret_sha256: sha256_hex(&secret),
            scope,
            grants: grants.clone(),
            created_by: p.key_id.clone(),
            created_at: now_secs(),
            expires_at,
            active: true,
            deactivated_at: None,
            rotated_to: None,
        };
        match state.core.write_everywhere(Command::CreateKey { entry }).await? {
            CommandResult::Key { entry } => {
                state.audit.event(
                    "key_created",
                    Some(p),
                    json!({"created_key_id": entry.key_id, "name": entry.name, "scope": entry.scope.as_str(),
                           "namespaces": entry.grants.as_ref().map(|g| g.iter().map(|g| g.pattern.clone()).collect::<Vec<_>>())}),
                );
                return Ok((entry, secret));
            }
            CommandResult::Rejected(_) => continue,
            other => return Err(ApiError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }
    Err(ApiError::internal("could not allocate a key id"))
}

fn expiry(days: Option<u64>) -> ApiResult<Option<u64>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=3650).contains(&d) => Ok(Some(now_secs() + d * 86_400)),
        Some(_) => Err(ApiError::bad_request("expires_in_days must be between 1 and 3650")),
    }
}

/// A key a create route's body asks for, validated (the caller's right to delegate it is checked
/// when minting).
#[derive(Debug)]
pub struct KeyRequest {
    pub name: String,
    pub scope: Scope,
    pub grants: Option<Vec<Grant>>,
    pub expires_at: Option<u64>,
}

#[derive(Deserialize)]
struct CreateKeyBody {
    name: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    /// One namespace (the Dakera security guide's form): the same as `namespaces: [it]`.
    #[serde(default)]
    namespace: Option<String>,
    expires_in_days: Option<u64>,
}

/// `POST /admin/keys {name, scope, namespaces?, namespace?, expires_in_days?}`
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let r = create_request(body)?;
    let (entry, secret) = mint(&state, &p, r.name, r.scope, r.grants, r.expires_at).await?;
    let mut v = key_json(&state, &entry);
    v["key"] = json!(secret);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /admin/keys`'s body.
pub(crate) fn create_request(body: Value) -> ApiResult<KeyRequest> {
    let b: CreateKeyBody = strict(body, &["name", "scope", "namespaces", "namespace", "expires_in_days"])?;
    let scope = parse_scope(b.scope.as_deref().unwrap_or("read"))?;
    // Seed 002's `"namespace": "tenant-a"`: one namespace, the same as `namespaces: [it]`.
    let namespaces = match (b.namespaces, b.namespace) {
        (list, None) => list,
        (_, Some(one)) if canonical_namespace(&one) == "*" || one.is_empty() => {
            return Err(ApiError::bad_request(
                "namespace names one namespace; omit it (and namespaces) for a key on every namespace",
            ));
        }
        (None, Some(one)) => Some(vec![one]),
        (Some(mut list), Some(one)) => {
            if list.iter().any(|n| n == "*") {
                return Err(ApiError::bad_request("namespace and namespaces [\"*\"] contradict each other"));
            }
            list.insert(0, one);
            Some(list)
        }
    };
    let grants = grants_from_namespaces(scope, namespaces)?;
    let expires_at = expiry(b.expires_in_days)?;
    validate::key_name(&b.name)?;
    Ok(KeyRequest { name: b.name, scope, grants, expires_at })
}

#[derive(Deserialize)]
struct Permission {
    namespace: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct ApiKeysBody {
    #[serde(alias = "name")]
    label: String,
    permissions: Vec<Permission>,
    expires_in_days: Option<u64>,
    expires_at: Option<u64>,
}

/// `POST /v1/api-keys {label, permissions: [{namespace, scopes}]}`: per-namespace permissions.
pub async fn create_with_permissions(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let r = api_keys_request(body)?;
    let (entry, secret) = mint(&state, &p, r.name, r.scope, r.grants, r.expires_at).await?;
    let mut v = key_json(&state, &entry);
    v["key"] = json!(secret);
    v["label"] = json!(entry.name);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /v1/api-keys`'s body.
pub(crate) fn api_keys_request(body: Value) -> ApiResult<KeyRequest> {
    let b: ApiKeysBody = strict(body, &["label", "name", "permissions", "expires_in_days", "expires_at"])?;
    if b.permissions.is_empty() || b.permissions.len() > MAX_GRANTS {
        return Err(ApiError::bad_request(format!("permissions must hold 1-{MAX_GRANTS} entries")));
    }
    let mut grants: Vec<Grant> = Vec::new();
    for perm in &b.permissions {
        if perm.scopes.is_empty() {
            return Err(ApiError::bad_request("each permission needs at least one scope"));
        }
        let mut level = Scope::Read;
        for s in &perm.scopes {
            level = level.max(parse_scope(s)?);
        }
        if canonical_namespace(&perm.namespace) == "*" {
            return Err(ApiError::bad_request("use POST /admin/keys without namespaces for a key on every namespace"));
        }
        let pattern = check_pattern(&perm.namespace)?;
        match grants.iter_mut().find(|g| g.pattern == pattern) {
            Some(g) => g.scope = g.scope.max(level),
            None => grants.push(Grant { pattern, scope: level }),
        }
    }
    let scope = grants.iter().map(|g| g.scope).max().unwrap_or(Scope::Read);
    let expires_at = match (b.expires_at, b.expires_in_days) {
        (Some(at), _) if at > now_secs() => Some(at),
        (Some(_), _) => return Err(ApiError::bad_request("expires_at must be in the future")),
        (None, d) => expiry(d)?,
    };
    validate::key_name(&b.label)?;
    Ok(KeyRequest { name: b.label, scope, grants: Some(grants), expires_at })
}

/// The key, if the caller may manage it (otherwise 404: existence is not revealed).
fn managed(state: &AppState, p: &Principal, key_id: &str) -> ApiResult<ApiKeyEntry> {
    managed_as(state, p, key_id, true)
}

/// Who manages whom. A key may look at itself (`readonly`). It changes (rotates, deactivates,
/// deletes, renames, re-scopes) only keys strictly below it: never itself, and never a key that
/// could in turn manage it (the same or a wider reach, e.g. a sibling tenant admin of the same
/// prefix). So a leaked tenant-admin key cannot rotate itself away with zero grace nor revoke its
/// siblings: the owner, holding a wider key (or the root key), stays in control. A global
/// `super_admin` key is the operator's ("key management", seed 002) and manages every other key
/// but itself; the root key, which no key can change, is above it.
fn managed_as(state: &AppState, p: &Principal, key_id: &str, readonly: bool) -> ApiResult<ApiKeyEntry> {
    let not_found = || ApiError::not_found("api_key", format!("API key {} not found", validate::printable(key_id)));
    let k = state.core.catalogue.view.read().keys.get(key_id).cloned().ok_or_else(not_found)?;
    if readonly && p.key_id == k.key_id {
        return Ok(k);
    }
    p.can_delegate(k.scope, &k.grants).map_err(|_| not_found())?;
    if !readonly && !p.is_root && manages_back(&k, p) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_SCOPE",
            "a key cannot change itself or a key with the same or a wider reach; a wider key (or the root key) can",
        ));
    }
    Ok(k)
}

/// Could key `k` manage a key with `p`'s scope and grants (is `k` at least `p`'s peer)?
fn manages_back(k: &ApiKeyEntry, p: &Principal) -> bool {
    let mine = match &p.grants {
        crate::auth::Grants::All(_) => None,
        crate::auth::Grants::List(list) => Some(list.clone()),
    };
    if k.key_id == p.key_id {
        return true;
    }
    let operator = matches!(p.grants, crate::auth::Grants::All(Scope::SuperAdmin));
    !operator && Principal::from_entry(k).can_delegate(p.scope, &mine).is_ok()
}

fn manageable_keys(state: &AppState, p: &Principal) -> Vec<ApiKeyEntry> {
    state
        .core
        .catalogue
        .view
        .read()
        .keys
        .values()
        .filter(|k| p.can_delegate(k.scope, &k.grants).is_ok())
        .cloned()
        .collect()
}

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    if p.require_global(Scope::Admin).is_err()
        && !matches!(&p.grants, crate::auth::Grants::List(g) if g.iter().any(|g| g.scope >= Scope::Admin))
    {
        return Err(ApiError::insufficient_scope("admin"));
    }
    let mut keys = manageable_keys(&state, &p);
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
    let list: Vec<Value> = keys.iter().map(|k| key_json(&state, k)).collect();
    Ok(Json(json!({"total": list.len(), "keys": list})))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let k = managed(&state, &p, &id)?;
    Ok(Json(key_json(&state, &k)))
}

#[derive(Deserialize)]
pub(crate) struct UpdateBody {
    name: Option<String>,
    /// Absent = unchanged; `null` = every namespace; a list = exactly those.
    #[serde(default, deserialize_with = "double_option")]
    namespaces: Option<Option<Vec<String>>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Vec<String>>>, D::Error> {
    Ok(Some(Option::<Vec<String>>::deserialize(d)?))
}

/// Every permission of `new` is already held by `old` (so an update never widens a key).
pub(crate) fn narrows(old: &Option<Vec<Grant>>, new: &Option<Vec<Grant>>) -> bool {
    match (old, new) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(n)) => {
            n.iter().all(|g| o.iter().any(|og| og.scope >= g.scope && pattern_contains(&og.pattern, &g.pattern)))
        }
    }
}

async fn update_key(state: &AppState, p: &Principal, id: &str, body: UpdateBody) -> ApiResult<Value> {
    if id == crate::auth::ROOT_KEY_ID {
        return Err(ApiError::bad_request("the root key is configured, not managed"));
    }
    let k = managed_as(state, p, id, false)?;
    if !k.usable_at(now_secs()) {
        return Err(ApiError::conflict("the key is not active"));
    }
    let grants = updated_grants(&k, &body)?;
    if let Some(g) = &grants {
        p.can_delegate(k.scope, g)?;
    }
    match state.core.write_everywhere(Command::UpdateKey { key_id: k.key_id.clone(), name: body.name, grants }).await? {
        CommandResult::Key { entry } => {
            state.audit.event("key_updated", Some(p), json!({"updated_key_id": entry.key_id}));
            Ok(key_json(state, &entry))
        }
        CommandResult::NotFound(_) => Err(ApiError::not_found("api_key", "API key not found")),
        other => Err(ApiError::internal(format!("unexpected catalogue answer {other:?}"))),
    }
}

/// An update body checked against the key it changes: the new name is valid, and the new grants
/// (`None` = unchanged) keep each kept namespace's scope and never widen the key.
pub(crate) fn updated_grants(k: &ApiKeyEntry, body: &UpdateBody) -> ApiResult<Option<Option<Vec<Grant>>>> {
    if body.name.is_none() && body.namespaces.is_none() {
        return Err(ApiError::bad_request("nothing to update: give name and/or namespaces"));
    }
    if let Some(n) = &body.name {
        validate::key_name(n)?;
    }
    Ok(match body.namespaces.clone() {
        None => None,
        Some(ns) => {
            let mut g = grants_from_namespaces(k.scope, ns)?;
            // Each kept namespace keeps the scope it had (keys from /v1/api-keys mix scopes).
            if let (Some(new), Some(old)) = (g.as_mut(), k.grants.as_ref()) {
                for grant in new.iter_mut() {
                    if let Some(s) =
                        old.iter().filter(|o| pattern_contains(&o.pattern, &grant.pattern)).map(|o| o.scope).max()
                    {
                        grant.scope = s;
                    }
                }
            }
            if !narrows(&k.grants, &g) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "INSUFFICIENT_SCOPE",
                    "a key's permissions can only be narrowed in place; a wider role needs a new key",
                ));
            }
            Some(g)
        }
    })
}

/// `PATCH /admin/keys/{id}`'s body.
pub(crate) fn update_body(body: Value) -> ApiResult<UpdateBody> {
    strict(body, &["name", "namespaces"])
}

pub async fn update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let b = update_body(body)?;
    Ok(Json(update_key(&state, &p, &id, b).await?))
}

async fn revoke(state: &AppState, p: &Principal, id: &str, hard: bool) -> ApiResult<Value> {
    let k = managed_as(state, p, id, false)?;
    let cmd = if hard {
        Command::DeleteKey { key_id: k.key_id.clone() }
    } else {
        Command::DeactivateKey { key_id: k.key_id.clone(), at: now_secs() }
    };
    // Returns once applied on this node: the key is refused here from now on.
    state.core.write_everywhere(cmd).await?;
    state.audit.event(if hard { "key_deleted" } else { "key_revoked" }, Some(p), json!({"revoked_key_id": k.key_id}));
    Ok(
        json!({"success": true, "message": format!("API key {} {}", k.key_id, if hard { "deleted" } else { "deactivated" })}),
    )
}

pub async fn delete(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(revoke(&state, &p, &id, true).await?))
}

pub async fn deactivate(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(revoke(&state, &p, &id, false).await?))
}

#[derive(Deserialize, Default)]
struct RotateBody {
    grace_secs: Option<u64>,
}

/// Revoke and reissue in one call: same name, scope, permissions and expiry; the old secret stops
/// at once, or after `grace_secs`.
pub async fn rotate(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let b: RotateBody = strict(body, &["grace_secs"])?;
    let grace = b.grace_secs.unwrap_or(0);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::bad_request(format!("grace_secs must be at most {MAX_GRACE_SECS}")));
    }
    let old = managed_as(&state, &p, &id, false)?;
    if !old.usable_at(now_secs()) {
        return Err(ApiError::conflict("the key is not active"));
    }
    if let Some(next) = &old.rotated_to {
        return Err(ApiError::conflict(format!("the key was already rotated (to {next}); rotate that key instead")));
    }
    let secret = new_secret();
    let now = now_secs();
    let new_entry = ApiKeyEntry {
        key_id: new_key_id(),
        secret_sha256: sha256_hex(&secret),
        created_by: p.key_id.clone(),
        created_at: now,
        active: true,
        deactivated_at: None,
        rotated_to: None,
        ..old.clone()
    };
    let old_expires_at = now + grace;
    match state
        .core
        .write_everywhere(Command::RotateKey { old_key_id: old.key_id.clone(), new_entry, old_expires_at })
        .await?
    {
        CommandResult::Key { entry } => {
            state.audit.event(
                "key_rotated",
                Some(&p),
                json!({"old_key_id": old.key_id, "new_key_id": entry.key_id, "grace_secs": grace}),
            );
            Ok(Json(json!({
                "new_key": secret,
                "key_id": entry.key_id,
                "old_key_id": old.key_id,
                "old_key_expires_at": old_expires_at.min(old.expires_at.unwrap_or(u64::MAX)),
                "warning": WARNING,
            })))
        }
        CommandResult::Rejected(m) => Err(ApiError::conflict(m)),
        CommandResult::NotFound(_) => Err(ApiError::not_found("api_key", "API key not found")),
        other => Err(ApiError::internal(format!("unexpected catalogue answer {other:?}"))),
    }
}

pub async fn usage(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let k = managed(&state, &p, &id)?;
    Ok(Json(serde_json::to_value(state.usage.report(&k.key_id)).map_err(|e| ApiError::internal(e.to_string()))?))
}

// ------------------------------------------------------------------ namespace-scoped keys

#[derive(Deserialize)]
struct NsKeyBody {
    name: String,
    scope: Option<String>,
    extra_namespaces: Option<Vec<String>>,
    expires_in_days: Option<u64>,
}

fn ns_path(p: &Principal, ns: &str) -> ApiResult<String> {
    let ns = canonical_namespace(ns).to_string();
    validate::namespace_ref(&ns)?;
    p.require(&ns, Scope::Admin)?;
    Ok(ns)
}

pub async fn ns_create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let ns = ns_path(&p, &ns)?;
    let r = ns_key_request(&ns, body)?;
    let (entry, secret) = mint(&state, &p, r.name, r.scope, r.grants, r.expires_at).await?;
    let mut v = key_json(&state, &entry);
    v["key"] = json!(secret);
    v["namespace"] = json!(ns);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /v1/namespaces/{ns}/keys`'s body (`ns` already checked).
pub(crate) fn ns_key_request(ns: &str, body: Value) -> ApiResult<KeyRequest> {
    let b: NsKeyBody = strict(body, &["name", "scope", "extra_namespaces", "expires_in_days"])?;
    let scope = parse_scope(b.scope.as_deref().unwrap_or("read"))?;
    if scope > Scope::Admin {
        return Err(ApiError::bad_request("namespace keys are read, write or admin"));
    }
    let mut names = vec![ns.to_string()];
    let extra = b.extra_namespaces.unwrap_or_default();
    if extra.iter().any(|n| canonical_namespace(n) == "*") {
        return Err(ApiError::bad_request("a namespace key cannot be granted every namespace"));
    }
    names.extend(extra);
    let grants = grants_from_namespaces(scope, Some(names))?;
    let expires_at = expiry(b.expires_in_days)?;
    validate::key_name(&b.name)?;
    Ok(KeyRequest { name: b.name, scope, grants, expires_at })
}

pub async fn ns_list(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let ns = ns_path(&p, &ns)?;
    let keys: Vec<Value> = manageable_keys(&state, &p)
        .iter()
        .filter(|k| k.grants.as_ref().is_some_and(|g| g.iter().any(|g| crate::auth::pattern_matches(&g.pattern, &ns))))
        .map(|k| {
            let mut v = key_json(&state, k);
            v["namespace"] = json!(ns);
            v
        })
        .collect();
    Ok(Json(json!({"namespace": ns, "total": keys.len(), "keys": keys})))
}

fn ns_managed(state: &AppState, p: &Principal, ns: &str, id: &str) -> ApiResult<ApiKeyEntry> {
    let k = managed(state, p, id)?;
    if !k.grants.as_ref().is_some_and(|g| g.iter().any(|g| crate::auth::pattern_matches(&g.pattern, ns))) {
        return Err(ApiError::not_found("api_key", "API key not found in this namespace"));
    }
    Ok(k)
}

pub async fn ns_delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let ns = ns_path(&p, &ns)?;
    ns_managed(&state, &p, &ns, &id)?;
    Ok(Json(revoke(&state, &p, &id, true).await?))
}

pub async fn ns_update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let ns = ns_path(&p, &ns)?;
    ns_managed(&state, &p, &ns, &id)?;
    let b = update_body(body)?;
    Ok(Json(update_key(&state, &p, &id, b).await?))
}

pub async fn ns_usage(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let ns = ns_path(&p, &ns)?;
    let k = ns_managed(&state, &p, &ns, &id)?;
    let r = state.usage.report(&k.key_id);
    Ok(Json(json!({
        "key_id": r.key_id,
        "namespace": ns,
        "total_requests": r.total_requests,
        "successful_requests": r.successful_requests,
        "failed_requests": r.failed_requests,
        "bytes_transferred": r.bytes_transferred,
        "avg_latency_ms": r.avg_latency_ms,
    })))
}

// ------------------------------------------------------------------ encryption

#[derive(Deserialize)]
struct RotateEncryptionBody {
    new_key: Option<String>,
    /// When given, must be the current master key (else 403 and nothing changes).
    old_key: Option<String>,
    namespace: Option<String>,
    #[allow(dead_code)]
    wait_secs: Option<u64>,
}

/// `POST /admin/encryption/rotate` (and the Dakera `…/rotate-key` paths): re-wrap every data key
/// under a new master key. Without `new_key` one is generated and returned once.
pub async fn rotate_encryption(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    let b: RotateEncryptionBody = strict(body, &["new_key", "old_key", "namespace", "wait_secs"])?;
    if b.namespace.is_some() {
        return Err(ApiError::not_implemented(
            "per-namespace key rotation is not offered: rotate the master key (no namespace) to re-wrap every data key",
        ));
    }
    let (secret_text, generated) = match b.new_key.filter(|k| !k.is_empty()) {
        Some(k) => (k, false),
        None => (loci_storage::crypto::MasterSecret::generate_hex(), true),
    };
    let secret =
        loci_storage::crypto::MasterSecret::parse(&secret_text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let old = match b.old_key {
        Some(k) => Some(loci_storage::crypto::MasterSecret::parse(&k).map_err(|_| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "ENCRYPTION_KEY_MISMATCH",
                "old_key is not the current master key; nothing was changed",
            )
        })?),
        None => None,
    };
    let report = state.core.rotate_encryption(&secret, old).await?;
    let mut v = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    v["action_required"] =
        json!("restart every node with the new LOCI_ENCRYPTION_KEY; the previous key no longer unlocks this cluster");
    if generated {
        v["new_key"] = json!(secret_text);
        v["warning"] = json!(WARNING);
    }
    Ok(Json(v))
}
