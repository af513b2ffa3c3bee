//! `POST /v1/memory/store` and `POST /v1/memories/store/batch`: the bodies validated into
//! `NewMemory`s; screening and storing are `loci_service::memories`.

use std::collections::BTreeMap;

use axum::extract::State;
use loci_storage::model::*;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, parse_time};
use loci_service::validate;

#[derive(Deserialize)]
pub struct StoreItem {
    pub id: Option<String>,
    pub agent_id: Option<String>,
    pub namespace: Option<String>,
    pub content: Option<String>,
    pub memory_type: Option<String>,
    pub importance: Option<f64>,
    pub tags: Option<Vec<String>>,
    pub session_id: Option<String>,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<i64>,
    pub lang: Option<String>,
    pub event_time: Option<Value>,
    pub embedding: Option<Vec<f32>>,
    pub attachment_ref: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Validate one store item into a domain value.
pub(crate) fn new_memory(
    max_content_bytes: usize,
    item: StoreItem,
    agent_id: &str,
    batch_lang: Option<&str>,
) -> ApiResult<NewMemory> {
    let content = item.content.ok_or_else(|| ApiError::bad_request("content is required"))?;
    validate::content(&content, max_content_bytes)?;
    let memory_type = match item.memory_type.as_deref() {
        Some(t) => validate::memory_type(t)?,
        None => MemoryType::Episodic,
    };
    let importance = validate::importance(item.importance.unwrap_or(0.5))?;
    let tags = item.tags.unwrap_or_default();
    validate::tags(&tags)?;
    if let Some(id) = &item.id {
        validate::memory_id(id)?;
    }
    if let Some(s) = &item.session_id {
        validate::client_id(s, "session_id")?;
    }
    if item.attachment_ref.is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "FEATURE_DISABLED",
            "attachments are not supported by Loci",
        ));
    }
    let mut metadata = match item.metadata {
        Some(Value::Null) | None => None,
        Some(m) => {
            validate::metadata(&m)?;
            Some(m)
        }
    };
    let now = now_secs();
    if let Some(t) = item.event_time {
        let secs = parse_time(&t, "event_time")?;
        if secs > now + 86_400 {
            return Err(ApiError::bad_request("event_time is more than 24 hours in the future"));
        }
        metadata.get_or_insert_with(|| Value::Object(Default::default()))["_dakera_event_time"] = Value::from(secs);
    }
    if let Some(l) = item.lang.as_deref().or(batch_lang) {
        validate::lang(l)?;
        metadata.get_or_insert_with(|| Value::Object(Default::default()))["_dakera_lang"] = Value::from(l);
    }
    let expires_at = match (item.expires_at, item.ttl_seconds) {
        (Some(at), _) => {
            if at <= now as i64 {
                return Err(ApiError::bad_request("expires_at must be in the future"));
            }
            Some(at as u64)
        }
        (None, Some(ttl)) => {
            if ttl <= 0 || ttl as u64 > validate::MAX_TTL_SECONDS {
                return Err(ApiError::bad_request("ttl_seconds must be between 1 and 100 years"));
            }
            Some(now + ttl as u64)
        }
        (None, None) => None,
    };
    Ok(NewMemory {
        id: item.id,
        agent_id: agent_id.to_string(),
        content,
        memory_type,
        importance,
        tags,
        metadata,
        session_id: item.session_id,
        expires_at,
        embedding: item.embedding,
        created_at: None,
    })
}

pub async fn store(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(mut item): JsonBody<StoreItem>,
) -> ApiResult<Json<Value>> {
    let t = target(item.namespace.as_deref(), item.agent_id.as_deref())?;
    p.require(&t.namespace, Scope::Write)?;
    let agent = agent_of(&t, item.agent_id.as_deref());
    let warnings = unknown_warnings(&std::mem::take(&mut item.extra));
    let new = new_memory(state.core.config.max_content_bytes, item, &agent, None)?;
    let stored = state.core.memories(&state.limiter).store(&p, &t, new).await?;
    let mut out = serde_json::json!({
        "memory": serde_json::to_value(MemoryOut::from(&stored.record)).map_err(|e| ApiError::internal(e.to_string()))?,
        "embedding_time_ms": stored.took.as_millis() as u64,
    });
    if let Some(ended) = stored.session_ended {
        out["session_state"] = Value::from(if ended { "ended" } else { "active" });
    }
    if let Some(w) = warnings {
        out["warnings"] = Value::from(w);
    }
    if let (Some(cut), Value::Object(m)) = (stored.truncated, &mut out) {
        m.extend(truncation_json(&cut));
    }
    Ok(Json(out))
}

/// The truncation report of one memory (`windows` 0: the tail is not embedded separately; it is
/// in the text index).
fn truncation_json(cut: &loci_storage::embed::Truncation) -> serde_json::Map<String, Value> {
    let v = serde_json::json!({
        "truncated": true,
        "content_tokens": cut.content_tokens,
        "embedded_tokens": cut.embedded_tokens,
        "max_tokens": cut.max_tokens,
        "tokens_estimated": cut.estimated,
        "windows": 0,
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

#[derive(Deserialize)]
pub struct BatchStoreBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    memories: Vec<StoreItem>,
    lang: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// A batch store's items, validated (after the target and the key's scope were checked), and the
/// warnings about unknown fields.
pub(crate) fn batch_items(
    max_content_bytes: usize,
    t: &Target,
    body: BatchStoreBody,
) -> ApiResult<(Vec<NewMemory>, Vec<String>)> {
    loci_service::memories::check_batch_len(body.memories.len())?;
    let agent = agent_of(t, body.agent_id.as_deref());
    let mut warnings: Vec<String> = unknown_warnings(&body.extra).unwrap_or_default();
    let mut items: Vec<NewMemory> = Vec::with_capacity(body.memories.len());
    for (i, mut item) in body.memories.into_iter().enumerate() {
        if let Some(w) = unknown_warnings(&std::mem::take(&mut item.extra)) {
            warnings.extend(w.into_iter().map(|w| format!("memories[{i}]: {w}")));
        }
        item.agent_id = None;
        items.push(new_memory(max_content_bytes, item, &agent, body.lang.as_deref()).map_err(|mut e| {
            e.message = format!("memories[{i}]: {}", e.message);
            e
        })?);
    }
    Ok((items, warnings))
}

pub async fn store_batch(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<BatchStoreBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    p.require(&t.namespace, Scope::Write)?;
    let (items, warnings) = batch_items(state.core.config.max_content_bytes, &t, body)?;
    let batch = state.core.memories(&state.limiter).store_batch(&p, &t, items).await?;
    let stored: Vec<Value> = batch
        .records
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "content": r.content, "agent_id": r.agent_id, "tags": r.tags,
                "importance": r.importance, "created_at": r.created_at,
            })
        })
        .collect();
    let mut out = serde_json::json!({
        "stored_count": stored.len(),
        "stored": stored,
        "total_embedding_time_ms": batch.took.as_millis() as u64,
        "ended_sessions": batch.ended_sessions,
    });
    if !warnings.is_empty() {
        out["warnings"] = Value::from(warnings);
    }
    if !batch.truncated.is_empty() {
        let cuts: Vec<Value> = batch
            .truncated
            .iter()
            .map(|(id, cut)| {
                let mut m = truncation_json(cut);
                m.insert("id".into(), Value::from(id.as_str()));
                Value::Object(m)
            })
            .collect();
        out["truncated"] = Value::from(cuts);
    }
    Ok(Json(out))
}
