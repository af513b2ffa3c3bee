//! `/v1/namespaces/*`: create (POST or PUT), list, get, delete (erasure), memory policy,
//! re-embedding. Transport only: the bodies parsed into `loci_service::namespaces` requests, the
//! calls on `core.ns()`, the answers rendered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use loci_raft::catalogue::MemoryPolicy;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody};
use loci_service::canonical_namespace;
pub use loci_service::namespaces::CreateRequest;
use loci_service::namespaces::{AdminConfig, CreateSpec, Created, EmbeddingChoice};

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let visible = state.core.ns().list(&p);
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

impl CreateBody {
    /// The typed request, for the namespace `name` (canonical).
    pub(crate) fn into_request(self, name: String) -> CreateRequest {
        CreateRequest {
            name,
            dimension: self.dimension,
            distance: self.distance,
            index_type: self.index_type,
            metadata: self.metadata,
            embedding: self.embedding.map(|e| EmbeddingChoice { provider: e.provider, dimension: e.dimension }),
            description: self.description,
        }
    }
}

fn created_json(c: &Created) -> Value {
    let e = &c.entry;
    let mut v = serde_json::json!({
        "namespace": e.name,
        "dimension": e.dimension,
        "distance": e.distance.as_str(),
        "created": c.created,
        "kind": e.kind.as_str(),
        "vector_count": 0,
        "index_type": "hnsw",
    });
    if let Some(d) = &e.description {
        v["description"] = Value::from(d.as_str());
    }
    v
}

fn created_status(c: &Created) -> StatusCode {
    if c.created { StatusCode::CREATED } else { StatusCode::OK }
}

/// What a create body asks for, validated: distance, embedding provider, dimension.
pub(crate) fn create_spec(body: CreateBody, name: String) -> ApiResult<CreateSpec> {
    Ok(loci_service::namespaces::create_spec(&body.into_request(name))?)
}

/// `POST /v1/namespaces {name, dimension, distance?, metadata?, embedding?}`
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let name = body.name.clone().ok_or_else(|| ApiError::bad_request("name is required"))?;
    let name = canonical_namespace(&name).to_string();
    let c = state.core.ns().create(&p, body.into_request(name)).await?;
    Ok((created_status(&c), Json(created_json(&c))))
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
    let c = state.core.ns().create(&p, body.into_request(name)).await?;
    Ok((created_status(&c), Json(created_json(&c))))
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
    let body: CreateBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let name = body.name.clone().ok_or_else(|| ApiError::bad_request("name is required"))?;
    let name = canonical_namespace(&name).to_string();
    // The scope before the config is parsed: a key without admin learns nothing more.
    state.core.ns().admit(&p, &name, Scope::Admin)?;
    let config = match config.filter(|c| !c.is_null()) {
        None => None,
        Some(c) => {
            let c: AdminConfigBody = serde_json::from_value(c).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid config ({e}); known fields: vector_index, encryption, distance, dimension"
                ))
            })?;
            Some(AdminConfig {
                vector_index: c.vector_index,
                encryption: c.encryption,
                distance: c.distance,
                dimension: c.dimension,
            })
        }
    };
    let c = state.core.ns().admin_create(&p, body.into_request(name), config).await?;
    let mut v = created_json(&c);
    v["encryption"] = serde_json::json!({"enabled": true, "algorithm": "AES-256-GCM"});
    Ok((created_status(&c), Json(v)))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let (entry, stats) = state.core.ns().get(&p, &ns).await?;
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
    let receipt = state.core.ns().delete(&p, &ns).await?;
    Ok(Json(serde_json::to_value(&receipt).map_err(|e| ApiError::internal(e.to_string()))?))
}

pub async fn get_policy(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(policy_json(&state.core.ns().policy(&p, &ns)?)?))
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
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("the memory policy must be a JSON object"));
    };
    let (policy, secret) = state.core.ns().set_policy(&p, &ns, fields).await?;
    let mut out = policy_json(&policy)?;
    if let Some(secret) = secret {
        // The signing secret of the webhook webhook_url created, shown once.
        out["webhook_secret"] = Value::String(secret);
    }
    Ok(Json(out))
}

/// A policy body merged over the stored policy, validated (the fuzz target's entry).
pub(crate) fn merge_policy(current: &MemoryPolicy, body: Value) -> ApiResult<MemoryPolicy> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("the memory policy must be a JSON object"));
    };
    Ok(loci_service::namespaces::merge_policy(current, fields)?)
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
    let (provider, dimension) = match body.embedding {
        Some(e) => (Some(e.provider), e.dimension),
        None => (body.provider, body.dimension),
    };
    let job = state.core.ns().start_reembed(&p, &ns, provider, dimension).await?;
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
    let entry = state.core.ns().visible(&p, &ns, Scope::Read)?;
    Ok(Json(reembed_json(&entry)))
}

/// A namespace's embedder and latest re-embedding job, as `GET /v1/namespaces/{ns}/reembed`
/// answers (and the gRPC `Reembed.Watch` streams).
pub fn reembed_json(entry: &loci_raft::catalogue::NamespaceEntry) -> Value {
    serde_json::json!({
        "namespace": entry.name,
        "embedding": {"provider": entry.embedder.provider, "dimension": entry.embedder.dimension, "generation": entry.embedder.generation},
        "job": entry.reembed.as_ref().map(loci_service::reembed::job_json),
    })
}

/// `GET /v1/admin/namespaces`: every namespace the key can see, with statistics (asked of each
/// namespace's primary; those that do not answer in 2 s are listed under `unavailable`).
pub async fn admin_list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let listing = state.core.ns().admin_list(&p).await?;
    let mut out = Vec::with_capacity(listing.namespaces.len());
    let mut total_vectors = 0u64;
    for (e, s) in &listing.namespaces {
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
    let unavailable: Vec<Value> =
        listing.unavailable.iter().map(|(ns, reason)| serde_json::json!({"namespace": ns, "reason": reason})).collect();
    let mut v = serde_json::json!({"namespaces": out, "total": out.len(), "total_vectors": total_vectors});
    if !unavailable.is_empty() {
        v["unavailable"] = Value::from(unavailable);
    }
    Ok(Json(v))
}
