//! API keys: `/admin/keys…` (the Dakera key router), `/v1/namespaces/{ns}/keys…`
//! (namespace-scoped keys) and `POST /v1/api-keys` (per-namespace permissions), plus
//! encryption-key rotation.
//!
//! Transport only: each handler reads its JSON body (unknown fields are 422), builds the typed
//! request, calls the service's key management (`loci_service::keys`, `core.keys()`: every
//! decision — who may mint or manage which key, narrowing, rotation — and every catalogue write
//! and audit event is there), and renders the answer. Checks the service makes on the path (a
//! namespace the caller administers, a key it may see) come before the body is read, as before.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use loci_raft::catalogue::ApiKeyEntry;
use loci_service::keys::{
    AdminKeySpec, EncryptionRotation, KeyUpdate, NamespaceKeySpec, Permission, PermissionsKeySpec, Revocation, Revoked,
};
use loci_storage::model::now_secs;
use serde::Deserialize;
use serde_json::{Value, json};

pub use loci_service::keys::KeyRequest;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, parse_json};
use loci_service::validate;

const WARNING: &str = "Store this key now: it is shown only once and cannot be recovered.";

/// Refuse fields a create route doesn't know with 422 (as the published clients expect).
fn strict<T: serde::de::DeserializeOwned>(body: Value, allowed: &[&str]) -> ApiResult<T> {
    if let Value::Object(m) = &body {
        if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::unprocessable(format!("unknown field '{}'", validate::printable(k))));
        }
    }
    parse_json(&serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?)
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

fn revoked_json(r: &Revoked) -> Value {
    let done = match r.how {
        Revocation::Delete => "deleted",
        Revocation::Deactivate => "deactivated",
    };
    json!({"success": true, "message": format!("API key {} {}", r.key_id, done)})
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
    let minted = state.core.keys().create(&p, r).await?;
    let mut v = key_json(&state, &minted.entry);
    v["key"] = json!(minted.secret);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /admin/keys`'s body.
pub(crate) fn create_request(body: Value) -> ApiResult<KeyRequest> {
    let b: CreateKeyBody = strict(body, &["name", "scope", "namespaces", "namespace", "expires_in_days"])?;
    Ok(KeyRequest::from_admin(AdminKeySpec {
        name: b.name,
        scope: b.scope,
        namespaces: b.namespaces,
        namespace: b.namespace,
        expires_in_days: b.expires_in_days,
    })?)
}

#[derive(Deserialize)]
struct PermissionBody {
    namespace: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct ApiKeysBody {
    #[serde(alias = "name")]
    label: String,
    permissions: Vec<PermissionBody>,
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
    let minted = state.core.keys().create(&p, r).await?;
    let mut v = key_json(&state, &minted.entry);
    v["key"] = json!(minted.secret);
    v["label"] = json!(minted.entry.name);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /v1/api-keys`'s body.
pub(crate) fn api_keys_request(body: Value) -> ApiResult<KeyRequest> {
    let b: ApiKeysBody = strict(body, &["label", "name", "permissions", "expires_in_days", "expires_at"])?;
    Ok(KeyRequest::from_permissions(PermissionsKeySpec {
        label: b.label,
        permissions: b
            .permissions
            .into_iter()
            .map(|p| Permission { namespace: p.namespace, scopes: p.scopes })
            .collect(),
        expires_in_days: b.expires_in_days,
        expires_at: b.expires_at,
    })?)
}

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let keys = state.core.keys().list(&p)?;
    let list: Vec<Value> = keys.iter().map(|k| key_json(&state, k)).collect();
    Ok(Json(json!({"total": list.len(), "keys": list})))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let k = state.core.keys().get(&p, &id)?;
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

/// `PATCH /admin/keys/{id}`'s body.
pub(crate) fn update_body(body: Value) -> ApiResult<KeyUpdate> {
    let b: UpdateBody = strict(body, &["name", "namespaces"])?;
    Ok(KeyUpdate { name: b.name, namespaces: b.namespaces })
}

pub async fn update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let u = update_body(body)?;
    let k = state.core.keys().update(&p, &id, u).await?;
    Ok(Json(key_json(&state, &k)))
}

pub async fn delete(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let r = state.core.keys().revoke(&p, &id, Revocation::Delete).await?;
    Ok(Json(revoked_json(&r)))
}

pub async fn deactivate(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = state.core.keys().revoke(&p, &id, Revocation::Deactivate).await?;
    Ok(Json(revoked_json(&r)))
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
    let r = state.core.keys().rotate(&p, &id, b.grace_secs).await?;
    Ok(Json(json!({
        "new_key": r.secret,
        "key_id": r.entry.key_id,
        "old_key_id": r.old_key_id,
        "old_key_expires_at": r.old_key_expires_at,
        "warning": WARNING,
    })))
}

pub async fn usage(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let report = state.core.keys().usage(&p, &id, &state.usage)?;
    Ok(Json(serde_json::to_value(report).map_err(|e| ApiError::internal(e.to_string()))?))
}

// ------------------------------------------------------------------ namespace-scoped keys

#[derive(Deserialize)]
struct NsKeyBody {
    name: String,
    scope: Option<String>,
    extra_namespaces: Option<Vec<String>>,
    expires_in_days: Option<u64>,
}

pub async fn ns_create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let keys = state.core.keys();
    let ns = keys.namespace_admin(&p, &ns)?;
    let r = ns_key_request(&ns, body)?;
    let minted = keys.create(&p, r).await?;
    let mut v = key_json(&state, &minted.entry);
    v["key"] = json!(minted.secret);
    v["namespace"] = json!(ns);
    v["warning"] = json!(WARNING);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /v1/namespaces/{ns}/keys`'s body (`ns` already checked).
pub(crate) fn ns_key_request(ns: &str, body: Value) -> ApiResult<KeyRequest> {
    let b: NsKeyBody = strict(body, &["name", "scope", "extra_namespaces", "expires_in_days"])?;
    Ok(KeyRequest::for_namespace(
        ns,
        NamespaceKeySpec {
            name: b.name,
            scope: b.scope,
            extra_namespaces: b.extra_namespaces,
            expires_in_days: b.expires_in_days,
        },
    )?)
}

pub async fn ns_list(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let (ns, keys) = state.core.keys().list_in_namespace(&p, &ns)?;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut v = key_json(&state, k);
            v["namespace"] = json!(ns);
            v
        })
        .collect();
    Ok(Json(json!({"namespace": ns, "total": keys.len(), "keys": keys})))
}

pub async fn ns_delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = state.core.keys().delete_in_namespace(&p, &ns, &id).await?;
    Ok(Json(revoked_json(&r)))
}

pub async fn ns_update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let keys = state.core.keys();
    keys.get_in_namespace(&p, &ns, &id)?;
    let u = update_body(body)?;
    let k = keys.update(&p, &id, u).await?;
    Ok(Json(key_json(&state, &k)))
}

pub async fn ns_usage(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (ns, r) = state.core.keys().usage_in_namespace(&p, &ns, &id, &state.usage)?;
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
    let keys = state.core.keys();
    keys.may_rotate_encryption(&p)?;
    let b: RotateEncryptionBody = strict(body, &["new_key", "old_key", "namespace", "wait_secs"])?;
    let done = keys
        .rotate_encryption(&p, EncryptionRotation { new_key: b.new_key, old_key: b.old_key, namespace: b.namespace })
        .await?;
    let mut v = serde_json::to_value(&done.report).map_err(|e| ApiError::internal(e.to_string()))?;
    v["action_required"] =
        json!("restart every node with the new LOCI_ENCRYPTION_KEY; the previous key no longer unlocks this cluster");
    if let Some(generated) = done.generated_key {
        v["new_key"] = json!(generated);
        v["warning"] = json!(WARNING);
    }
    Ok(Json(v))
}
