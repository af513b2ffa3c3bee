//! Recall, search and batch recall.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use loci_storage::model::*;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, ScoredOut, parse_time};
use loci_service::validate;

#[derive(Deserialize)]
pub struct BatchRecallBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) filter: BatchFilter,
    pub(crate) limit: Option<i64>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// `POST /v1/memories/recall/batch`: filter listing, no embedding.
pub async fn recall_batch(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<BatchRecallBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    p.require(&t.namespace, Scope::Read)?;
    let limit = loci_service::memories::check_batch_limit(body.limit)?;
    let filter = body.filter.into_filter()?;
    let warnings = unknown_warnings(&body.extra);
    let Some(page) = state.core.memories(&state.limiter).recall_batch(&p, &t, filter, limit).await? else {
        return Ok(Json(serde_json::json!({"memories": [], "total": 0, "filtered": 0, "truncated": false})));
    };
    let (total, filtered, memories) = (page.total, page.filtered, page.memories);
    let mems: Vec<MemoryOut> = memories.iter().map(MemoryOut::from).collect();
    let mut out = serde_json::json!({
        "memories": serde_json::to_value(&mems).map_err(|e| ApiError::internal(e.to_string()))?,
        "total": total,
        "filtered": filtered,
        "truncated": filtered > limit as u64,
    });
    if let Some(w) = warnings {
        out["warnings"] = Value::from(w);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[allow(dead_code)] // compatibility fields are accepted and ignored
pub struct RecallBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    query: Option<String>,
    top_k: Option<i64>,
    memory_type: Option<String>,
    min_importance: Option<f64>,
    max_importance: Option<f64>,
    tags: Option<Vec<String>>,
    session_id: Option<String>,
    since: Option<Value>,
    until: Option<Value>,
    created_after: Option<Value>,
    created_before: Option<Value>,
    routing: Option<String>,
    fusion: Option<String>,
    vector_weight: Option<f32>,
    min_score: Option<f32>,
    importance_weighted: Option<bool>,
    #[serde(alias = "query_embedding")]
    embedding: Option<Vec<f32>>,
    sort_by: Option<String>,
    rerank_candidates: Option<i64>,
    lang: Option<String>,
    // `include_associated` and its bounds walk the knowledge graph; the others are accepted for
    // compatibility (Loci has no reranker or neighbourhood context).
    #[serde(default)]
    include_associated: Option<Value>,
    #[serde(default)]
    associated_memories_cap: Option<Value>,
    #[serde(default)]
    associated_memories_depth: Option<Value>,
    #[serde(default)]
    associated_memories_min_weight: Option<Value>,
    #[serde(default)]
    rerank: Option<Value>,
    #[serde(default)]
    iterations: Option<Value>,
    #[serde(default)]
    neighborhood: Option<Value>,
    #[serde(default)]
    neighborhood_mode: Option<Value>,
    #[serde(default)]
    include_summaries: Option<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// `include_associated` and its bounds: `(depth 1–3, cap ≤ 10, min_weight 0–1)`, or `None`.
fn associated_options(body: &RecallBody) -> ApiResult<Option<(usize, usize, f32)>> {
    match &body.include_associated {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        Some(_) => return Err(ApiError::bad_request("include_associated must be a boolean")),
    }
    let int = |v: &Option<Value>, name: &str, lo: i64, hi: i64, default: i64| -> ApiResult<usize> {
        match v {
            None | Some(Value::Null) => Ok(default as usize),
            Some(x) => match x.as_i64() {
                Some(n) if (lo..=hi).contains(&n) => Ok(n as usize),
                _ => Err(ApiError::bad_request(format!("{name} must be an integer between {lo} and {hi}"))),
            },
        }
    };
    let depth = int(&body.associated_memories_depth, "associated_memories_depth", 1, 3, 1)?;
    let cap = int(&body.associated_memories_cap, "associated_memories_cap", 1, 10, 10)?;
    let min_weight = match &body.associated_memories_min_weight {
        None | Some(Value::Null) => 0.0,
        Some(x) => match x.as_f64() {
            Some(w) if (0.0..=1.0).contains(&w) => w as f32,
            _ => return Err(ApiError::bad_request("associated_memories_min_weight must be between 0 and 1")),
        },
    };
    Ok(Some((depth, cap, min_weight)))
}

pub(crate) struct Prepared {
    pub(crate) target: Target,
    pub(crate) params: RecallParams,
    pub(crate) warnings: Option<Vec<String>>,
    pub(crate) sort: Option<SortBy>,
}

pub(crate) fn prepare(body: RecallBody, default_top_k: i64, record_access: bool) -> ApiResult<Prepared> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let top_k = validate::top_k(body.top_k.unwrap_or(default_top_k))?;
    if body.rerank_candidates.is_some_and(|c| c < 1) {
        return Err(ApiError::bad_request("rerank_candidates must be at least 1"));
    }
    if let Some(l) = &body.lang {
        validate::lang(l)?;
    }
    let mut filter = MemoryFilter {
        agent_id: t.agent_filter.clone(),
        memory_type: body.memory_type.as_deref().map(validate::memory_type).transpose()?,
        min_importance: body.min_importance,
        max_importance: body.max_importance,
        ..Default::default()
    };
    if let Some(tags) = body.tags.filter(|t| !t.is_empty()) {
        validate::tags(&tags)?;
        filter.tags_any = Some(tags);
    }
    if let Some(s) = body.session_id {
        validate::client_id(&s, "session_id")?;
        filter.session_id = Some(s);
    }
    filter.created_after = body.since.or(body.created_after).as_ref().map(|v| parse_time(v, "since")).transpose()?;
    filter.created_before = body.until.or(body.created_before).as_ref().map(|v| parse_time(v, "until")).transpose()?;
    let routing = match body.routing.as_deref() {
        None | Some("auto") => Routing::Auto,
        Some("vector") => Routing::Vector,
        Some("bm25") => Routing::Bm25,
        Some("hybrid") => Routing::Hybrid,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "unknown routing '{}': auto, vector, bm25 or hybrid",
                validate::printable(o)
            )));
        }
    };
    let fusion = match body.fusion.as_deref() {
        None | Some("minmax") => Fusion::Minmax,
        Some("rrf") => Fusion::Rrf,
        Some(o) => {
            return Err(ApiError::bad_request(format!("unknown fusion '{}': minmax or rrf", validate::printable(o))));
        }
    };
    if let Some(w) = body.vector_weight {
        if !(0.0..=1.0).contains(&w) {
            return Err(ApiError::bad_request("vector_weight must be between 0 and 1"));
        }
    }
    let sort = match body.sort_by.as_deref() {
        None => None,
        Some("created_at") => Some(SortBy::CreatedAtDesc),
        Some("last_accessed_at") => Some(SortBy::LastAccessedAt),
        Some("importance") => Some(SortBy::Importance),
        Some("access_count") => Some(SortBy::AccessCount),
        Some(o) => {
            return Err(ApiError::bad_request(format!("unknown sort_by '{}'", validate::printable(o))));
        }
    };
    Ok(Prepared {
        warnings: unknown_warnings(&body.extra),
        params: RecallParams {
            query: body.query.unwrap_or_default(),
            query_embedding: body.embedding,
            top_k,
            filter,
            routing,
            fusion,
            vector_weight: body.vector_weight,
            min_score: body.min_score,
            importance_weighted: body.importance_weighted.unwrap_or(true),
            record_access,
            decay: None,
        },
        target: t,
        sort,
    })
}

fn scored_json(hits: &[ScoredMemory]) -> ApiResult<Value> {
    let out: Vec<ScoredOut> = hits.iter().map(ScoredOut::from).collect();
    serde_json::to_value(&out).map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn recall(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<RecallBody>,
) -> ApiResult<Json<Value>> {
    let assoc = associated_options(&body)?;
    let prep = prepare(body, 10, true)?;
    let started = Instant::now();
    let hits = state.core.memories(&state.limiter).recall(&p, &prep.target, prep.params).await?;
    let elapsed = started.elapsed().as_millis() as u64;
    let mut out = serde_json::json!({
        "memories": scored_json(&hits)?,
        "query_embedding_time_ms": 0,
        "search_time_ms": elapsed,
        "rerank_report": {"applied": false, "candidates": hits.len(), "skipped": "Loci has no cross-encoder reranker", "capped": false},
    });
    if let Some((depth, cap, min_weight)) = assoc {
        let roots = hits.iter().map(|h| h.memory.id.clone()).collect();
        let found = state.core.graph(&state.limiter).associated(&prep.target, roots, depth, cap, min_weight).await?;
        let list: Vec<Value> = found
            .iter()
            .map(|(m, depth, weight)| {
                serde_json::json!({"memory": MemoryOut::from(m), "score": weight, "weighted_score": weight, "smart_score": weight,
                    "rank_score": weight, "depth": depth, "retrieval": "associated"})
            })
            .collect();
        out["associated_memories"] = Value::from(list);
    }
    if let Some(w) = prep.warnings {
        out["warnings"] = Value::from(w);
    }
    Ok(Json(out))
}

/// `POST /v1/memory/search`: like recall without recording access; without a query it lists.
pub async fn search(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<RecallBody>,
) -> ApiResult<Json<Value>> {
    let prep = prepare(body, 10, false)?;
    let found = state.core.memories(&state.limiter).search(&p, &prep.target, prep.params, prep.sort).await?;
    let Some(hits) = found else {
        return Ok(Json(serde_json::json!({"memories": [], "total_count": 0})));
    };
    let mut out = serde_json::json!({ "memories": scored_json(&hits)?, "total_count": hits.len() });
    if let Some(w) = prep.warnings {
        out["warnings"] = Value::from(w);
    }
    Ok(Json(out))
}
