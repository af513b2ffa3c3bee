//! Get, update, importance and forget (one, by filter, in batches).

use axum::extract::{Path, Query, State};
use loci_storage::model::*;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, parse_time};
use loci_service::validate;

#[derive(Deserialize, Default)]
pub struct NsQuery {
    pub agent_id: Option<String>,
    pub namespace: Option<String>,
}

pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
) -> ApiResult<Json<Value>> {
    let m = state.core.memories(&state.limiter).get(&p, &id, q.namespace.as_deref(), q.agent_id.as_deref()).await?;
    Ok(Json(serde_json::to_value(MemoryOut::from(&m)).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[derive(Deserialize)]
pub struct UpdateBody {
    pub(crate) content: Option<String>,
    metadata: Option<Value>,
    memory_type: Option<String>,
    lang: Option<String>,
    importance: Option<f64>,
    tags: Option<Vec<String>>,
    ttl_seconds: Option<i64>,
    expires_at: Option<i64>,
    embedding: Option<Vec<f32>>,
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
}

/// An update body, validated into the patch it applies.
pub(crate) fn update_patch(max_content_bytes: usize, body: UpdateBody) -> ApiResult<MemoryPatch> {
    if let Some(c) = &body.content {
        validate::content(c, max_content_bytes)?;
    }
    let memory_type = body.memory_type.as_deref().map(validate::memory_type).transpose()?;
    let importance = body.importance.map(validate::importance).transpose()?;
    if let Some(tags) = &body.tags {
        validate::tags(tags)?;
    }
    let metadata = match body.metadata {
        Some(Value::Null) | None => None,
        Some(m) => {
            validate::metadata(&m)?;
            Some(m)
        }
    };
    if let Some(l) = &body.lang {
        validate::lang(l)?;
    }
    let now = now_secs();
    let expires_at = match (body.expires_at, body.ttl_seconds) {
        (Some(at), _) if at > now as i64 => Some(Some(at as u64)),
        (Some(_), _) => return Err(ApiError::bad_request("expires_at must be in the future")),
        (None, Some(ttl)) if ttl > 0 && (ttl as u64) <= validate::MAX_TTL_SECONDS => Some(Some(now + ttl as u64)),
        (None, Some(_)) => {
            return Err(ApiError::bad_request("ttl_seconds must be between 1 and 100 years"));
        }
        (None, None) => None,
    };
    Ok(MemoryPatch {
        content: body.content,
        memory_type,
        importance,
        tags: body.tags,
        metadata,
        expires_at,
        embedding: body.embedding,
        lang: body.lang,
    })
}

pub async fn update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    validate::memory_id(&id)?;
    let t = target(
        q.namespace.as_deref().or(body.namespace.as_deref()),
        q.agent_id.as_deref().filter(|a| !a.is_empty()).or(body.agent_id.as_deref()),
    )?;
    let patch = update_patch(state.core.config.max_content_bytes, body)?;
    let m = state.core.memories(&state.limiter).update(&p, &t, &id, patch).await?;
    Ok(Json(serde_json::to_value(MemoryOut::from(&m)).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[derive(Deserialize)]
pub struct ImportanceBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    memory_id: Option<String>,
    memory_ids: Option<Vec<String>>,
    importance: f64,
}

/// The importance and the ids an importance body names, validated.
pub(crate) fn importance_ids(body: ImportanceBody) -> ApiResult<(f64, Vec<String>)> {
    let importance = validate::importance(body.importance)?;
    let mut ids: Vec<String> = body.memory_ids.unwrap_or_default();
    ids.extend(body.memory_id);
    if ids.is_empty() {
        return Err(ApiError::bad_request("memory_id or memory_ids is required"));
    }
    if ids.len() > validate::MAX_BATCH_IDS {
        return Err(ApiError::bad_request(format!(
            "at most {} memory ids per request, not {}",
            validate::MAX_BATCH_IDS,
            ids.len()
        )));
    }
    for id in &ids {
        validate::memory_id(id)?;
    }
    // Each id once, in the order given.
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    Ok((importance, ids))
}

/// `POST /v1/memory/importance`: one id (`memory_id`) or several (`memory_ids`).
pub async fn set_importance(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<ImportanceBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let (importance, ids) = importance_ids(body)?;
    let count = ids.len();
    let updated = state.core.memories(&state.limiter).set_importance(&p, &t, ids, importance).await?;
    Ok(Json(serde_json::json!({
        "memory_id": updated[0],
        "memory_ids": updated,
        "importance": importance,
        "updated_count": count,
    })))
}

#[derive(Deserialize)]
pub struct PatchImportanceBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    importance: f64,
}

/// `PATCH /v1/memories/{id}/importance` → the updated memory.
pub async fn patch_importance(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchImportanceBody>,
) -> ApiResult<Json<Value>> {
    validate::memory_id(&id)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let importance = validate::importance(body.importance)?;
    let patch = MemoryPatch { importance: Some(importance), ..Default::default() };
    let m = state.core.memories(&state.limiter).update(&p, &t, &id, patch).await?;
    Ok(Json(serde_json::to_value(MemoryOut::from(&m)).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[derive(Deserialize)]
pub struct ForgetBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    memory_ids: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    session_id: Option<String>,
    before_timestamp: Option<Value>,
    memory_type: Option<String>,
    below_importance: Option<f64>,
}

pub async fn forget(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<ForgetBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let filter = forget_body_filter(body)?;
    let n = state.core.memories(&state.limiter).forget(&p, &t, filter).await?;
    Ok(Json(serde_json::json!({ "deleted_count": n })))
}

/// A forget body's filter (the target's agent filter is added later).
pub(crate) fn forget_body_filter(body: ForgetBody) -> ApiResult<MemoryFilter> {
    let mut filter = MemoryFilter::default();
    if let Some(ids) = body.memory_ids.filter(|v| !v.is_empty()) {
        for id in &ids {
            validate::memory_id(id)?;
        }
        filter.ids = Some(ids);
    }
    if let Some(tags) = body.tags.filter(|v| !v.is_empty()) {
        validate::tags(&tags)?;
        filter.tags_any = Some(tags);
    }
    if let Some(s) = body.session_id {
        validate::client_id(&s, "session_id")?;
        filter.session_id = Some(s);
    }
    if let Some(ts) = body.before_timestamp {
        filter.created_before = Some(parse_time(&ts, "before_timestamp")?);
    }
    if let Some(mt) = body.memory_type {
        filter.memory_type = Some(validate::memory_type(&mt)?);
    }
    if let Some(b) = body.below_importance {
        // strictly below: the filter's max is inclusive, so step just under.
        filter.max_importance = Some(b - f64::EPSILON);
    }
    Ok(filter)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BatchFilter {
    tags: Option<Vec<String>>,
    min_importance: Option<f64>,
    max_importance: Option<f64>,
    created_after: Option<Value>,
    created_before: Option<Value>,
    memory_type: Option<String>,
    session_id: Option<String>,
    memory_ids: Option<Vec<String>>,
}

impl BatchFilter {
    pub(crate) fn into_filter(self) -> ApiResult<MemoryFilter> {
        let mut f = MemoryFilter::default();
        if let Some(t) = self.tags.filter(|t| !t.is_empty()) {
            validate::tags(&t)?;
            f.tags_all = Some(t);
        }
        f.min_importance = self.min_importance;
        f.max_importance = self.max_importance;
        f.created_after = self.created_after.as_ref().map(|v| parse_time(v, "created_after")).transpose()?;
        f.created_before = self.created_before.as_ref().map(|v| parse_time(v, "created_before")).transpose()?;
        f.memory_type = self.memory_type.as_deref().map(validate::memory_type).transpose()?;
        if let Some(s) = self.session_id {
            validate::client_id(&s, "session_id")?;
            f.session_id = Some(s);
        }
        if let Some(ids) = self.memory_ids.filter(|v| !v.is_empty()) {
            f.ids = Some(ids);
        }
        Ok(f)
    }
}

#[derive(Deserialize)]
pub struct BatchForgetBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) filter: BatchFilter,
    /// Ids at the top level (`{"agent_id", "memory_ids"}`), as the Dakera security guide sends
    /// them; the same as `filter.memory_ids`.
    pub(crate) memory_ids: Option<Vec<String>>,
}

pub async fn forget_batch(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<BatchForgetBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let mut batch = body.filter;
    if let Some(ids) = body.memory_ids.filter(|v| !v.is_empty()) {
        if batch.memory_ids.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request("give memory_ids at the top level or in filter, not both"));
        }
        for id in &ids {
            validate::memory_id(id)?;
        }
        batch.memory_ids = Some(ids);
    }
    let filter = batch.into_filter()?;
    let n = state.core.memories(&state.limiter).forget(&p, &t, filter).await?;
    Ok(Json(serde_json::json!({ "deleted_count": n })))
}
