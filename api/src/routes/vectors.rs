//! `/v1/namespaces/{ns}/…` for raw vectors and documents: upsert, query, batch query, delete,
//! bulk delete and update, count, export, the text routes (`upsert-text`, `query-text`,
//! `batch-query-text`), full-text (`fulltext/*`), `hybrid` and `cache/warm`. Transport only: the
//! bodies are parsed here, the work (scopes, validation, the data path) is
//! `loci_service::vectors`.

use axum::extract::{Path, State};
use loci_raft::catalogue::Scope;
use loci_service::canonical_namespace;
use loci_service::vectors::{DocumentIn, Match, QueryIn, VectorIn, model_name};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::NsClass;
use crate::state::AppState;
use crate::wire::{Json, JsonBody};

fn default_top_k() -> i64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_weight() -> f32 {
    0.5
}
fn default_export_top_k() -> i64 {
    1000
}

/// The namespace's own budget (its memory policy), for a key that may use the namespace at all:
/// a refused key learns nothing, not even through a 429.
async fn ns_budget(
    state: &AppState,
    p: &crate::auth::Principal,
    ns: &str,
    need: Scope,
    class: NsClass,
) -> ApiResult<()> {
    let name = canonical_namespace(ns);
    if !p.allows(name, need) {
        return Ok(());
    }
    match state.core.namespace(name) {
        Some(entry) => Ok(state.core.memories(&state.limiter).ns_limit(&entry, class).await?),
        None => Ok(()),
    }
}

/// An f32 as the JSON number of its shortest decimal form (`0.1`, not `0.10000000149011612`):
/// what the client sent comes back as it sent it, and parses back to the same f32.
fn short(x: f32) -> Value {
    // The shortest decimal of ±f32::MAX reads back as an f64 just past it: clamp, so that a
    // typed reader (gRPC's float fields) takes it.
    let limit = f32::MAX as f64;
    x.to_string()
        .parse::<f64>()
        .ok()
        .map(|f| f.clamp(-limit, limit))
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn short_all(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|x| short(*x)).collect())
}

/// A match as the clients read it: `metadata` and `vector` only when asked; `text` (and its
/// other name `content`) for records with text when `text_keys` says so.
fn match_json(m: &Match, include_metadata: bool, text_keys: &[&str]) -> Value {
    let mut v = json!({"id": m.id, "score": short(m.score)});
    if let Some(md) = m.metadata.as_ref().filter(|_| include_metadata) {
        v["metadata"] = md.clone();
    }
    if let Some(vec) = &m.vector {
        v["vector"] = short_all(vec);
    }
    if let Some(t) = &m.text {
        for k in text_keys {
            v[*k] = Value::from(t.as_str());
        }
    }
    if let Some(s) = m.vector_score {
        v["vector_score"] = short(s);
    }
    if let Some(s) = m.text_score {
        v["text_score"] = short(s);
    }
    v
}

#[derive(Deserialize)]
pub struct VectorBody {
    id: String,
    values: Vec<f32>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
pub struct UpsertBody {
    vectors: Vec<VectorBody>,
}

/// `POST /v1/namespaces/{ns}/vectors {vectors: [{id, values, metadata?}]}` → `{upserted_count}`.
pub async fn upsert(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<UpsertBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Write, NsClass::Store).await?;
    let vectors =
        body.vectors.into_iter().map(|v| VectorIn { id: v.id, values: v.values, metadata: v.metadata }).collect();
    let n = state.core.upsert_vectors(&p, &ns, vectors).await?;
    Ok(Json(json!({"upserted_count": n})))
}

#[derive(Deserialize)]
pub struct QueryBody {
    id: Option<String>,
    vector: Option<Vec<f32>>,
    #[serde(default = "default_top_k")]
    top_k: i64,
    filter: Option<Value>,
    #[serde(default = "default_true")]
    include_metadata: bool,
    #[serde(default, alias = "include_values")]
    include_vectors: bool,
}

impl QueryBody {
    fn into_query(self) -> QueryIn {
        QueryIn {
            vector: self.vector,
            text: None,
            top_k: self.top_k,
            filter: self.filter,
            include_vectors: self.include_vectors,
            records: self.include_metadata,
        }
    }
}

/// `POST /v1/namespaces/{ns}/query` → `{results: [{id, score, metadata?, vector?}], search_time_ms}`.
/// `distance_metric` and `consistency` are accepted and ignored (the namespace's metric is used;
/// every read is served by the namespace's primary).
pub async fn query(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<QueryBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let started = std::time::Instant::now();
    let include_metadata = body.include_metadata;
    let matches = state.core.query_vectors(&p, &ns, body.into_query()).await?;
    let results: Vec<Value> = matches.iter().map(|m| match_json(m, include_metadata, &[])).collect();
    Ok(Json(json!({
        "results": results,
        "search_time_ms": started.elapsed().as_millis() as u64,
    })))
}

#[derive(Deserialize)]
pub struct BatchQueryBody {
    queries: Vec<QueryBody>,
}

/// `POST /v1/namespaces/{ns}/batch-query {queries: [...]}` → `{results: [{id?, results, latency_ms,
/// search_time_ms}], total_latency_ms, query_count}`.
pub async fn batch_query(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<BatchQueryBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let started = std::time::Instant::now();
    let shape: Vec<(Option<String>, bool)> = body.queries.iter().map(|q| (q.id.clone(), q.include_metadata)).collect();
    let queries = body.queries.into_iter().map(QueryBody::into_query).collect();
    let answers = state.core.batch_query_vectors(&p, &ns, queries).await?;
    let results: Vec<Value> = answers
        .iter()
        .zip(shape)
        .map(|((matches, ms), (id, include_metadata))| {
            let mut v = json!({
                "results": matches.iter().map(|m| match_json(m, include_metadata, &[])).collect::<Vec<_>>(),
                "latency_ms": ms,
                "search_time_ms": *ms as u64,
            });
            if let Some(id) = id {
                v["id"] = Value::from(id);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "query_count": results.len(),
        "results": results,
        "total_latency_ms": started.elapsed().as_secs_f64() * 1000.0,
    })))
}

#[derive(Deserialize)]
pub struct IdsBody {
    ids: Vec<String>,
}

/// `POST /v1/namespaces/{ns}/vectors/delete {ids}` → `{deleted_count}`.
pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<IdsBody>,
) -> ApiResult<Json<Value>> {
    let n = state.core.delete_vectors(&p, &ns, body.ids).await?;
    Ok(Json(json!({"deleted_count": n})))
}

#[derive(Deserialize)]
pub struct FilterBody {
    #[serde(default)]
    filter: Value,
}

/// `POST /v1/namespaces/{ns}/vectors/bulk-delete {filter}` → `{deleted, failed, errors}`; at most
/// 10,000 per call (`remaining` says how many still match).
pub async fn bulk_delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<FilterBody>,
) -> ApiResult<Json<Value>> {
    let (deleted, remaining) = state.core.bulk_delete_vectors(&p, &ns, &body.filter).await?;
    Ok(Json(json!({"deleted": deleted, "failed": 0, "errors": [], "remaining": remaining})))
}

#[derive(Deserialize)]
pub struct BulkUpdateBody {
    #[serde(default)]
    filter: Value,
    update: Value,
}

/// `POST /v1/namespaces/{ns}/vectors/bulk-update {filter, update}` → `{updated, failed, errors}`;
/// `update` holds the metadata fields to set (`null` removes one); at most 10,000 per call.
pub async fn bulk_update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<BulkUpdateBody>,
) -> ApiResult<Json<Value>> {
    let (updated, errors, beyond) = state.core.bulk_update_vectors(&p, &ns, &body.filter, body.update).await?;
    Ok(Json(json!({"updated": updated, "failed": errors.len(), "errors": errors, "remaining": beyond})))
}

#[derive(Deserialize)]
pub struct CountBody {
    filter: Option<Value>,
}

/// `POST /v1/namespaces/{ns}/vectors/count {filter?}` → `{count, namespace}`.
pub async fn count(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<CountBody>,
) -> ApiResult<Json<Value>> {
    let (name, n) = state.core.count_vectors(&p, &ns, body.filter.as_ref()).await?;
    Ok(Json(json!({"count": n, "namespace": name})))
}

#[derive(Deserialize)]
pub struct ExportBody {
    #[serde(default = "default_export_top_k", alias = "limit")]
    top_k: i64,
    filter: Option<Value>,
    cursor: Option<String>,
    #[serde(default = "default_true")]
    include_vectors: bool,
    #[serde(default = "default_true")]
    include_metadata: bool,
}

/// `POST /v1/namespaces/{ns}/export {top_k? (or limit), cursor?, filter?, include_vectors?,
/// include_metadata?}` →
/// `{vectors: [{id, values?, metadata?, text?}], next_cursor?, total_count, returned_count}`.
pub async fn export(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<ExportBody>,
) -> ApiResult<Json<Value>> {
    let page =
        state.core.export_vectors(&p, &ns, body.cursor, body.top_k, body.include_vectors, body.filter.as_ref()).await?;
    let vectors: Vec<Value> = page
        .items
        .iter()
        .map(|m| {
            let mut v = json!({"id": m.id});
            if let Some(values) = &m.vector {
                v["values"] = short_all(values);
            }
            if let Some(md) = m.metadata.as_ref().filter(|_| body.include_metadata) {
                v["metadata"] = md.clone();
            }
            if let Some(t) = &m.text {
                v["text"] = Value::from(t.as_str());
            }
            v
        })
        .collect();
    let mut out = json!({"returned_count": vectors.len(), "vectors": vectors, "total_count": page.total});
    if let Some(c) = page.next_cursor {
        out["next_cursor"] = Value::from(c);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct DocumentBody {
    id: String,
    #[serde(alias = "content")]
    text: String,
    metadata: Option<Value>,
    ttl_seconds: Option<i64>,
}

#[derive(Deserialize)]
pub struct DocumentsBody {
    documents: Vec<DocumentBody>,
    /// Accepted and ignored: the namespace's own embedder embeds (the answer names it).
    #[allow(dead_code)]
    model: Option<Value>,
}

fn documents(body: DocumentsBody) -> Vec<DocumentIn> {
    body.documents
        .into_iter()
        .map(|d| DocumentIn {
            id: d.id,
            text: d.text,
            metadata: d.metadata,
            ttl_seconds: d.ttl_seconds,
            tags: Vec::new(),
        })
        .collect()
}

/// The namespace's content screening on documents, as on memories: `block` refuses the request
/// (422, nothing written), `flag` tags the record `screened:<kind>`. Only for a key that may
/// write the namespace (anyone else gets the service's 403, and learns nothing of the policy).
fn screen_documents(state: &AppState, p: &crate::auth::Principal, ns: &str, docs: &mut [DocumentIn]) -> ApiResult<()> {
    let name = canonical_namespace(ns);
    if !p.allows(name, Scope::Write) {
        return Ok(());
    }
    let Some(entry) = state.core.namespace(name) else {
        return Ok(());
    };
    let mode = entry.policy.content_screening.as_str();
    if mode == "off" {
        return Ok(());
    }
    for (i, d) in docs.iter_mut().enumerate() {
        let found = crate::security::screen(&d.text);
        if found.is_empty() {
            continue;
        }
        if mode == "block" {
            return Err(ApiError::unprocessable(format!(
                "documents[{i}]: content refused by the namespace's content screening: looks like {} injection",
                found.join(", ")
            )));
        }
        d.tags.extend(found.into_iter().map(|f| format!("screened:{f}")));
    }
    Ok(())
}

/// `POST /v1/namespaces/{ns}/upsert-text {documents: [{id, text, metadata?, ttl_seconds?}]}` →
/// `{upserted_count, tokens_processed, model, embedding_time_ms}`.
pub async fn upsert_text(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<DocumentsBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Write, NsClass::Store).await?;
    let mut docs = documents(body);
    screen_documents(&state, &p, &ns, &mut docs)?;
    let r = state.core.upsert_documents(&p, &ns, docs).await?;
    Ok(Json(json!({
        "upserted_count": r.count,
        "tokens_processed": r.tokens,
        "model": r.model,
        "embedding_time_ms": r.took_ms,
    })))
}

/// `POST /v1/namespaces/{ns}/fulltext/index {documents: [{id, text, metadata?}]}` →
/// `{indexed_count}`. A document is one record: indexed for BM25 and embedded like `upsert-text`.
pub async fn fulltext_index(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<DocumentsBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Write, NsClass::Store).await?;
    let mut docs = documents(body);
    screen_documents(&state, &p, &ns, &mut docs)?;
    let r = state.core.upsert_documents(&p, &ns, docs).await?;
    Ok(Json(json!({"indexed_count": r.count})))
}

#[derive(Deserialize)]
pub struct QueryTextBody {
    text: String,
    #[serde(default = "default_top_k")]
    top_k: i64,
    filter: Option<Value>,
    #[serde(default = "default_true")]
    include_text: bool,
    #[serde(default)]
    include_vectors: bool,
    #[allow(dead_code)]
    model: Option<Value>,
}

fn model_of(state: &AppState, ns: &str) -> String {
    state.core.namespace(ns).map(|e| model_name(&e)).unwrap_or_default()
}

/// `POST /v1/namespaces/{ns}/query-text {text, top_k?, filter?, include_text?, include_vectors?}`
/// → `{results: [{id, score, text?, metadata?, vector?}], model, embedding_time_ms, search_time_ms}`.
pub async fn query_text(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<QueryTextBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let started = std::time::Instant::now();
    let q = QueryIn {
        vector: None,
        text: Some(body.text),
        top_k: body.top_k,
        filter: body.filter,
        include_vectors: body.include_vectors,
        records: true,
    };
    let matches = state.core.query_vectors(&p, &ns, q).await?;
    let keys: &[&str] = if body.include_text { &["text"] } else { &[] };
    let results: Vec<Value> = matches.iter().map(|m| match_json(m, true, keys)).collect();
    Ok(Json(json!({
        "results": results,
        "model": model_of(&state, canonical_namespace(&ns)),
        "embedding_time_ms": 0,
        "search_time_ms": started.elapsed().as_millis() as u64,
    })))
}

#[derive(Deserialize)]
pub struct BatchQueryTextBody {
    queries: Vec<String>,
    #[serde(default = "default_top_k")]
    top_k: i64,
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
    #[allow(dead_code)]
    model: Option<Value>,
}

/// `POST /v1/namespaces/{ns}/batch-query-text {queries: [text], top_k?, filter?, include_vectors?}`
/// → `{results: [[…]], model, embedding_time_ms, search_time_ms}`.
pub async fn batch_query_text(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<BatchQueryTextBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let started = std::time::Instant::now();
    let queries = body
        .queries
        .into_iter()
        .map(|t| QueryIn {
            vector: None,
            text: Some(t),
            top_k: body.top_k,
            filter: body.filter.clone(),
            include_vectors: body.include_vectors,
            records: true,
        })
        .collect();
    let answers = state.core.batch_query_vectors(&p, &ns, queries).await?;
    let results: Vec<Vec<Value>> =
        answers.iter().map(|(ms, _)| ms.iter().map(|m| match_json(m, true, &["text"])).collect()).collect();
    Ok(Json(json!({
        "results": results,
        "model": model_of(&state, canonical_namespace(&ns)),
        "embedding_time_ms": 0,
        "search_time_ms": started.elapsed().as_millis() as u64,
    })))
}

#[derive(Deserialize)]
pub struct SearchBody {
    query: String,
    #[serde(default = "default_top_k")]
    top_k: i64,
    filter: Option<Value>,
}

/// `POST /v1/namespaces/{ns}/fulltext/search {query, top_k?, filter?}` →
/// `{results: [{id, score, text, content, metadata?}]}` (scores are raw BM25).
pub async fn fulltext_search(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<SearchBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let matches = state.core.fulltext_search(&p, &ns, &body.query, body.top_k, body.filter.as_ref()).await?;
    let results: Vec<Value> = matches
        .iter()
        .map(|m| {
            let mut v = match_json(m, true, &["text", "content"]);
            if let Value::Object(o) = &mut v {
                o.remove("text_score");
            }
            v
        })
        .collect();
    Ok(Json(json!({"results": results})))
}

/// `POST /v1/namespaces/{ns}/fulltext/delete {ids}` → `{deleted_count}` (the records go from
/// every index: a document is one record).
pub async fn fulltext_delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<IdsBody>,
) -> ApiResult<Json<Value>> {
    let n = state.core.delete_vectors(&p, &ns, body.ids).await?;
    Ok(Json(json!({"deleted_count": n})))
}

/// `GET /v1/namespaces/{ns}/fulltext/stats` → `{document_count, unique_terms, avg_doc_length}`.
pub async fn fulltext_stats(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = state.core.fulltext_stats(&p, &ns).await?;
    Ok(Json(json!({
        "document_count": s.documents,
        "unique_terms": s.unique_terms,
        "avg_doc_length": s.avg_doc_length,
        "documents_examined": s.examined,
    })))
}

#[derive(Deserialize)]
pub struct HybridBody {
    #[serde(alias = "query")]
    text: String,
    vector: Option<Vec<f32>>,
    #[serde(default = "default_top_k")]
    top_k: i64,
    #[serde(default = "default_weight")]
    vector_weight: f32,
    filter: Option<Value>,
}

/// `POST /v1/namespaces/{ns}/hybrid {text, vector?, top_k?, vector_weight?, filter?}` →
/// `{results: [{id, score, vector_score?, text_score?, content?, metadata?}]}`.
pub async fn hybrid(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<HybridBody>,
) -> ApiResult<Json<Value>> {
    ns_budget(&state, &p, &ns, Scope::Read, NsClass::Recall).await?;
    let matches = state
        .core
        .hybrid_search(&p, &ns, &body.text, body.vector, body.top_k, body.vector_weight, body.filter.as_ref())
        .await?;
    let results: Vec<Value> = matches.iter().map(|m| match_json(m, true, &["content"])).collect();
    Ok(Json(json!({"results": results})))
}

#[derive(Deserialize)]
pub struct WarmBody {
    vector_ids: Option<Vec<String>>,
    priority: Option<String>,
    target_tier: Option<String>,
}

/// `POST /v1/namespaces/{ns}/cache/warm {vector_ids?, priority?, target_tier?, …}`: loads the
/// namespace on its primary (vectors are held in memory once loaded) and counts what exists.
pub async fn warm(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody<WarmBody>,
) -> ApiResult<Json<Value>> {
    let priority = body.priority.unwrap_or_else(|| "normal".into());
    if !matches!(priority.as_str(), "critical" | "high" | "normal" | "low" | "background") {
        return Err(ApiError::bad_request("priority must be critical, high, normal, low or background"));
    }
    let tier = body.target_tier.unwrap_or_else(|| "l2".into());
    if !matches!(tier.as_str(), "l1" | "l2" | "both") {
        return Err(ApiError::bad_request("target_tier must be l1, l2 or both"));
    }
    let (warmed, skipped) = state.core.warm_vectors(&p, &ns, body.vector_ids).await?;
    Ok(Json(json!({
        "success": true,
        "entries_warmed": warmed,
        "entries_skipped": skipped,
        "message": format!("{warmed} records are in memory on the namespace's primary"),
        "target_tier": tier,
        "priority": priority,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_keep_their_short_form_and_round_trip() {
        assert_eq!(short(0.1).to_string(), "0.1");
        assert_eq!(short(1.0).to_string(), "1.0");
        for x in [0.1f32, 1.0 / 3.0, -2.5e-8, 123_456.79] {
            assert_eq!(short(x).as_f64().map(|f| f as f32), Some(x));
        }
        assert_eq!(short(f32::NAN), Value::Null);
        let m = Match {
            id: "a".into(),
            score: 0.5,
            metadata: Some(json!({"k": 1})),
            text: Some("t".into()),
            vector: None,
            vector_score: None,
            text_score: Some(2.0),
        };
        assert_eq!(match_json(&m, false, &[]), json!({"id": "a", "score": 0.5, "text_score": 2.0}));
        assert_eq!(match_json(&m, true, &["content"])["content"], "t");
    }
}
