//! `/v1/namespaces/*`: create (POST or PUT), list, get, delete (erasure), memory policy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use loci_raft::catalogue::{Distance, MemoryPolicy, NamespaceEntry, NamespaceKind};
use loci_storage::model::{DataOp, DataResult, NamespaceStats};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody};
use loci_service::core::{NamespaceSpec, canonical_namespace};
use loci_service::validate;

const MAX_DIMENSION: usize = 4096;

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let visible: Vec<NamespaceEntry> = state.core.namespaces().into_iter().filter(|e| p.can_see(&e.name)).collect();
    let names: Vec<&str> = visible.iter().map(|e| e.name.as_str()).collect();
    let kinds: serde_json::Map<String, Value> =
        visible.iter().map(|e| (e.name.clone(), Value::from(e.kind.as_str()))).collect();
    // Names stay strings (the Rust client decodes them so); descriptions ride alongside.
    let descriptions: serde_json::Map<String, Value> = visible
        .iter()
        .filter_map(|e| e.description.as_ref().map(|d| (e.name.clone(), Value::from(d.as_str()))))
        .collect();
    Ok(Json(serde_json::json!({ "namespaces": names, "kinds": kinds, "descriptions": descriptions })))
}

fn parse_distance(d: Option<&str>) -> ApiResult<Distance> {
    match d {
        None => Ok(Distance::Cosine),
        Some(s) => Distance::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown distance '{}': cosine, euclidean or dot_product",
                validate::printable(s)
            ))
        }),
    }
}

const MAX_DESCRIPTION_BYTES: usize = 1024;

fn check_description(d: &Option<String>) -> ApiResult<()> {
    if let Some(d) = d {
        if d.len() > MAX_DESCRIPTION_BYTES || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ApiError::bad_request(format!(
                "description must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"
            )));
        }
    }
    Ok(())
}

fn check_dimension(d: Option<i64>) -> ApiResult<usize> {
    match d {
        None => Err(ApiError::unprocessable("dimension is required")),
        Some(d) if d >= 1 && d as usize <= MAX_DIMENSION => Ok(d as usize),
        Some(d) => Err(ApiError::bad_request(format!("dimension must be between 1 and {MAX_DIMENSION}, got {d}"))),
    }
}

#[derive(Deserialize)]
pub struct EmbeddingSpecBody {
    provider: String,
    dimension: Option<i64>,
}

#[derive(Deserialize)]
pub struct CreateBody {
    #[serde(alias = "namespace")]
    pub(crate) name: Option<String>,
    #[serde(alias = "dimensions")]
    dimension: Option<i64>,
    distance: Option<String>,
    index_type: Option<String>,
    metadata: Option<Value>,
    embedding: Option<EmbeddingSpecBody>,
    /// Free text, stored and returned (GET and the list).
    description: Option<String>,
}

fn created_json(e: &NamespaceEntry, created: bool) -> Value {
    let mut v = serde_json::json!({
        "namespace": e.name,
        "dimension": e.dimension,
        "distance": e.distance.as_str(),
        "created": created,
        "kind": e.kind.as_str(),
        "vector_count": 0,
        "index_type": "hnsw",
    });
    if let Some(d) = &e.description {
        v["description"] = Value::from(d.as_str());
    }
    v
}

/// What a create body asks for, validated: distance, embedding provider, dimension.
pub(crate) fn create_spec(body: &CreateBody) -> ApiResult<(Distance, Option<String>, Option<usize>)> {
    if let Some(it) = body.index_type.as_deref() {
        if !matches!(it, "hnsw" | "flat") {
            return Err(ApiError::bad_request(format!(
                "unsupported index_type '{}': Loci offers hnsw",
                validate::printable(it)
            )));
        }
    }
    let distance = parse_distance(body.distance.as_deref())?;
    let (provider, dimension) = match &body.embedding {
        Some(spec) => {
            let d = match (spec.dimension, body.dimension) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ApiError::bad_request("embedding.dimension and dimension disagree"));
                }
                (None, None) => None,
                (a, b) => Some(check_dimension(a.or(b))?),
            };
            (Some(spec.provider.clone()), d)
        }
        // Without a dimension: the node's default embedder at its dimension.
        None => (None, body.dimension.map(|d| check_dimension(Some(d))).transpose()?),
    };
    if let Some(m) = &body.metadata {
        validate::namespace_metadata(m)?;
    }
    check_description(&body.description)?;
    Ok((distance, provider, dimension))
}

async fn create_common(
    state: &AppState,
    p: &crate::auth::Principal,
    name: &str,
    body: CreateBody,
) -> ApiResult<(StatusCode, Value)> {
    validate::namespace_name(name)?;
    p.require(name, Scope::Write)?;
    let (distance, provider, dimension) = create_spec(&body)?;
    let body_distance_given = body.distance.is_some();
    let (entry, created) = state
        .core
        .create_namespace(NamespaceSpec {
            name: name.to_string(),
            kind: NamespaceKind::Data,
            dimension,
            distance,
            embedder: provider.clone(),
            metadata: body.metadata,
            description: body.description,
        })
        .await?;
    if !created && body_distance_given && entry.distance != distance {
        return Err(ApiError::conflict(format!(
            "namespace '{name}' exists with distance {}; the distance of a namespace cannot change",
            entry.distance.as_str()
        )));
    }
    if !created {
        if let Some(p) = provider.as_deref() {
            // A malformed spec is a 400 whether or not the namespace exists.
            let wanted = state.core.embedder_spec(Some(p), dimension)?;
            if wanted.provider != entry.embedder.provider {
                return Err(ApiError::conflict(format!(
                    "namespace '{name}' embeds with {}; to switch, re-embed it: POST /v1/namespaces/{name}/reembed",
                    entry.embedder.provider
                )));
            }
        }
    }
    if !created && dimension.is_some_and(|d| d != entry.dimension) {
        return Err(ApiError::conflict(format!(
            "namespace '{name}' exists with dimension {}; to change it, re-embed: POST /v1/namespaces/{name}/reembed",
            entry.dimension
        )));
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, created_json(&entry, created)))
}

/// `POST /v1/namespaces {name, dimension, distance?, metadata?, embedding?}`
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let name = body.name.clone().ok_or_else(|| ApiError::bad_request("name is required"))?;
    let name = canonical_namespace(&name).to_string();
    let (status, v) = create_common(&state, &p, &name, body).await?;
    Ok((status, Json(v)))
}

/// `PUT /v1/namespaces/{ns} {dimension, distance?}`: upsert.
pub async fn put(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let name = canonical_namespace(&ns).to_string();
    if let Some(n) = &body.name {
        if canonical_namespace(n) != name {
            return Err(ApiError::bad_request("the body names a different namespace than the path"));
        }
    }
    let (status, v) = create_common(&state, &p, &name, body).await?;
    Ok((status, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfigBody {
    vector_index: Option<String>,
    encryption: Option<bool>,
    distance: Option<String>,
    dimension: Option<i64>,
}

/// `POST /admin/namespaces {name, description?, config?: {vector_index?, encryption?, distance?,
/// dimension?}}` (also under `/v1/admin`): create a namespace as an administrator (admin scope
/// on the name). Every namespace is encrypted at rest with its own key, so `encryption: false`
/// cannot be honoured and is refused rather than ignored.
pub async fn admin_create(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    };
    let config = fields.remove("config");
    let mut body: CreateBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let name = body.name.clone().ok_or_else(|| ApiError::bad_request("name is required"))?;
    let name = canonical_namespace(&name).to_string();
    validate::namespace_name(&name)?;
    p.require(&name, Scope::Admin)?;
    if let Some(c) = config.filter(|c| !c.is_null()) {
        let c: AdminConfigBody = serde_json::from_value(c).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid config ({e}); known fields: vector_index, encryption, distance, dimension"
            ))
        })?;
        if let Some(vi) = c.vector_index {
            if !matches!(vi.as_str(), "hnsw" | "flat") {
                return Err(ApiError::bad_request(format!(
                    "unsupported vector_index '{}': hnsw or flat",
                    validate::printable(&vi)
                )));
            }
            body.index_type.get_or_insert(vi);
        }
        if c.encryption == Some(false) {
            return Err(ApiError::bad_request(
                "encryption cannot be turned off: every Loci namespace is encrypted at rest (AES-256-GCM, its own data key)",
            ));
        }
        if let Some(d) = c.distance {
            if body.distance.as_deref().is_some_and(|b| b != d) {
                return Err(ApiError::bad_request("config.distance and distance disagree"));
            }
            body.distance = Some(d);
        }
        if let Some(d) = c.dimension {
            if body.dimension.is_some_and(|b| b != d) {
                return Err(ApiError::bad_request("config.dimension and dimension disagree"));
            }
            body.dimension = Some(d);
        }
    }
    let (status, mut v) = create_common(&state, &p, &name, body).await?;
    v["encryption"] = serde_json::json!({"enabled": true, "algorithm": "AES-256-GCM"});
    Ok((status, Json(v)))
}

fn visible_entry(state: &AppState, p: &crate::auth::Principal, ns: &str, need: Scope) -> ApiResult<NamespaceEntry> {
    let name = canonical_namespace(ns);
    validate::namespace_ref(name).map_err(|_| ApiError::namespace_not_found(&validate::printable(name)))?;
    // Authorisation first: a key without access learns nothing about existence.
    p.require(name, need)?;
    state.core.namespace(name).ok_or_else(|| ApiError::namespace_not_found(name))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let entry = visible_entry(&state, &p, &ns, Scope::Read)?;
    let stats = match state.core.exec(&entry, DataOp::Stats).await? {
        DataResult::Stats(s) => s,
        _ => NamespaceStats::default(),
    };
    Ok(Json(serde_json::json!({
        "namespace": entry.name,
        "kind": entry.kind.as_str(),
        "dimension": entry.dimension,
        "distance": entry.distance.as_str(),
        "index_type": "hnsw",
        "vector_count": stats.vector_count,
        "memory_count": stats.memory_count,
        "session_count": stats.session_count,
        "estimated_storage_bytes": stats.estimated_storage_bytes,
        "embedding": {"provider": entry.embedder.provider, "dimension": entry.embedder.dimension},
        "reembed": entry.reembed.as_ref().map(loci_service::reembed::job_json),
        "metadata": entry.metadata,
        "description": entry.description,
        "created_at": entry.created_at,
    })))
}

/// `DELETE /v1/namespaces/{ns}`: GDPR erasure; answers a deletion receipt.
pub async fn delete(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let entry = visible_entry(&state, &p, &ns, Scope::Admin)?;
    let receipt = state.core.delete_namespace(&entry.name).await?;
    Ok(Json(serde_json::to_value(&receipt).map_err(|e| ApiError::internal(e.to_string()))?))
}

pub async fn get_policy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = visible_entry(&state, &p, &ns, Scope::Read)?;
    Ok(Json(policy_json(&entry.policy)?))
}

fn policy_json(p: &MemoryPolicy) -> ApiResult<Value> {
    let mut v = serde_json::to_value(p).map_err(|e| ApiError::internal(e.to_string()))?;
    // Clients decode absent fields as defaults but choke on nulls: drop them.
    if let Value::Object(m) = &mut v {
        m.retain(|_, v| !v.is_null());
    }
    Ok(v)
}

pub async fn put_policy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let entry = visible_entry(&state, &p, &ns, Scope::Admin)?;
    let policy = merge_policy(&entry.policy, body)?;
    let entry = state.core.set_policy(&entry.name, policy).await?;
    Ok(Json(policy_json(&entry.policy)?))
}

/// A policy body merged over the stored policy, validated.
pub(crate) fn merge_policy(current: &MemoryPolicy, body: Value) -> ApiResult<MemoryPolicy> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("the memory policy must be a JSON object"));
    };
    // Start from the stored policy so a partial body changes only what it names.
    let mut merged = serde_json::to_value(current).map_err(|e| ApiError::internal(e.to_string()))?;
    let known: Vec<String> = match &merged {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for (k, v) in fields {
        if k == "consolidated_count" {
            continue;
        }
        // The multi-tenant settings' names (docs/multi-tenancy.md) name Loci's fields.
        let k = match k.as_str() {
            "max_users" => "max_agents".to_string(),
            "max_conversations_per_user" => "max_sessions_per_agent".to_string(),
            _ => k,
        };
        if !known.contains(&k) {
            return Err(ApiError::bad_request(format!("unknown memory policy field '{}'", validate::printable(&k))));
        }
        merged[k] = v;
    }
    let policy: MemoryPolicy =
        serde_json::from_value(merged).map_err(|e| ApiError::bad_request(format!("invalid memory policy: {e}")))?;
    if !matches!(policy.content_screening.as_str(), "off" | "flag" | "block") {
        return Err(ApiError::bad_request("content_screening must be off, flag or block"));
    }
    // Every string of a policy is a short name; the policy is a catalogue entry on every node.
    if let Value::Object(m) = serde_json::to_value(&policy).map_err(|e| ApiError::internal(e.to_string()))? {
        for (k, v) in m {
            if v.as_str().is_some_and(|s| s.len() > validate::MAX_POLICY_STRING_BYTES) {
                return Err(ApiError::bad_request(format!(
                    "{k} must be at most {} bytes",
                    validate::MAX_POLICY_STRING_BYTES
                )));
            }
        }
    }
    for (name, v) in [
        ("max_memories", policy.max_memories),
        ("max_agents", policy.max_agents),
        ("max_sessions_per_agent", policy.max_sessions_per_agent),
        ("retention_days", policy.retention_days),
        ("retention_seconds", policy.retention_seconds),
        ("write_quorum", policy.write_quorum.map(|q| q as u64)),
    ] {
        if v == Some(0) {
            return Err(ApiError::bad_request(format!("{name} must be at least 1 (omit it for no limit)")));
        }
    }
    Ok(policy)
}

#[derive(Deserialize)]
pub struct ReembedBody {
    embedding: Option<EmbeddingSpecBody>,
    provider: Option<String>,
    dimension: Option<i64>,
}

/// `POST /v1/namespaces/{ns}/reembed {embedding: {provider, dimension?}}`: switch the namespace
/// to another embedder by re-embedding everything in the background (202 with the job).
pub async fn start_reembed(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<ReembedBody>,
) -> ApiResult<impl IntoResponse> {
    let entry = visible_entry(&state, &p, &ns, Scope::Admin)?;
    let (provider, dimension) = match body.embedding {
        Some(e) => (Some(e.provider), e.dimension),
        None => (body.provider, body.dimension),
    };
    let provider = provider.ok_or_else(|| ApiError::bad_request("embedding.provider is required"))?;
    let dimension = match dimension {
        Some(d) => Some(check_dimension(Some(d))?),
        None => None,
    };
    let target = state.core.embedder_spec(Some(&provider), dimension)?;
    let job = state.core.start_reembed(entry, target).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"namespace": canonical_namespace(&ns), "job": loci_service::reembed::job_json(&job)})),
    ))
}

/// `GET /v1/namespaces/{ns}/reembed`: the latest re-embedding job (`null` when none ran).
pub async fn get_reembed(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    let entry = visible_entry(&state, &p, &ns, Scope::Read)?;
    Ok(Json(serde_json::json!({
        "namespace": entry.name,
        "embedding": {"provider": entry.embedder.provider, "dimension": entry.embedder.dimension, "generation": entry.embedder.generation},
        "job": entry.reembed.as_ref().map(loci_service::reembed::job_json),
    })))
}

/// `GET /v1/admin/namespaces`: every namespace the key can see, with statistics (asked of each
/// namespace's primary; those that do not answer in 2 s are listed under `unavailable`).
pub async fn admin_list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::Admin)?;
    let visible: Vec<NamespaceEntry> = state.core.namespaces().into_iter().filter(|e| p.can_see(&e.name)).collect();
    let mut out = Vec::with_capacity(visible.len());
    let mut unavailable = Vec::new();
    let mut total_vectors = 0u64;
    for e in visible {
        let stats = tokio::time::timeout(std::time::Duration::from_secs(2), state.core.exec(&e, DataOp::Stats)).await;
        let s = match stats {
            Ok(Ok(DataResult::Stats(s))) => s,
            Ok(Err(err)) => {
                unavailable.push(serde_json::json!({"namespace": e.name, "reason": err.message}));
                continue;
            }
            _ => {
                unavailable.push(serde_json::json!({"namespace": e.name, "reason": "no answer within 2 s"}));
                continue;
            }
        };
        total_vectors += s.vector_count;
        out.push(serde_json::json!({
            "name": e.name,
            "vector_count": s.vector_count,
            "dimension": e.dimension,
            "index_type": "hnsw",
            "storage_bytes": s.estimated_storage_bytes,
            "document_count": s.memory_count,
            "created_at": e.created_at,
            "index_stats": {
                "index_type": "hnsw",
                "is_built": true,
                "size_bytes": s.vector_count * 4 * e.dimension as u64,
                "indexed_vectors": s.vector_count,
            },
            "kind": e.kind.as_str(),
        }));
    }
    let mut v = serde_json::json!({"namespaces": out, "total": out.len(), "total_vectors": total_vectors});
    if !unavailable.is_empty() {
        v["unavailable"] = Value::from(unavailable);
    }
    Ok(Json(v))
}
