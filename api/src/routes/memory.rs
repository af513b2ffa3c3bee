//! `/v1/memory/*` and `/v1/memories/*`: store, get, update, forget, recall, search, batches.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use loci_storage::model::*;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, ScoredOut, parse_time};
use loci_service::canonical_namespace;
use loci_service::validate;

/// Which namespace a request addresses and whether `agent_id` additionally filters within it.
///
/// The namespace is the request's `namespace` if given, else its `agent_id`; the clients'
/// `_dakera_agent_{x}` form means `x`. Within an explicitly named namespace, an `agent_id` that
/// differs from it narrows reads to that agent's memories.
pub struct Target {
    pub namespace: String,
    pub agent_filter: Option<String>,
}

pub fn target(namespace: Option<&str>, agent_id: Option<&str>) -> ApiResult<Target> {
    let agent = agent_id.map(canonical_namespace).filter(|a| !a.is_empty());
    match namespace.map(canonical_namespace).filter(|n| !n.is_empty()) {
        Some(ns) => {
            validate::namespace_ref(ns)?;
            if let Some(a) = agent {
                validate::agent_id(a)?;
            }
            Ok(Target { namespace: ns.to_string(), agent_filter: agent.filter(|a| *a != ns).map(str::to_string) })
        }
        None => {
            let a = agent.ok_or_else(|| ApiError::bad_request("agent_id (or namespace) is required"))?;
            validate::agent_id(a)?;
            validate::namespace_name_for_agent(a)?;
            Ok(Target { namespace: a.to_string(), agent_filter: None })
        }
    }
}

/// Fields the request named that Loci does not know (reported as `warnings`, never an error).
fn unknown_warnings(extra: &BTreeMap<String, Value>) -> Option<Vec<String>> {
    if extra.is_empty() { None } else { Some(extra.keys().map(|k| format!("unknown field '{k}' ignored")).collect()) }
}

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
    })
}

/// Apply the namespace's content screening: `flag` tags suspicious content, `block` refuses it.
fn screen(policy: &loci_raft::catalogue::MemoryPolicy, item: &mut NewMemory) -> ApiResult<()> {
    let mode = policy.content_screening.as_str();
    if mode == "off" {
        return Ok(());
    }
    let found = crate::security::screen(&item.content);
    if found.is_empty() {
        return Ok(());
    }
    if mode == "block" {
        return Err(ApiError::unprocessable(format!(
            "content refused by the namespace's content screening: looks like {} injection",
            found.join(", ")
        )));
    }
    for f in found {
        let tag = format!("screened:{f}");
        if !item.tags.contains(&tag) && item.tags.len() < validate::MAX_TAGS {
            item.tags.push(tag);
        }
    }
    Ok(())
}

pub(crate) async fn ns_limit(
    state: &AppState,
    entry: &loci_raft::catalogue::NamespaceEntry,
    class: crate::ratelimit::NsClass,
) -> ApiResult<()> {
    crate::ratelimit::check_namespace(state, &entry.policy, &entry.name, class).await.map_err(|resp| {
        let retry = resp
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        ApiError::rate_limited(retry, format!("rate limit exceeded for namespace '{}'", entry.name))
    })
}

pub(crate) fn agent_of(t: &Target, agent_id: Option<&str>) -> String {
    agent_id
        .map(canonical_namespace)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| t.namespace.clone())
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
    let mut new = new_memory(state.core.config.max_content_bytes, item, &agent, None)?;
    let entry = state.core.namespace_for_write(&t.namespace).await?;
    screen(&entry.policy, &mut new)?;
    ns_limit(&state, &entry, crate::ratelimit::NsClass::Store).await?;
    let started = Instant::now();
    let DataResult::Stored(recs) = state.core.exec(&entry, DataOp::Store { items: vec![new] }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    let rec = recs.into_iter().next().ok_or_else(|| ApiError::internal("nothing stored"))?;
    let mut out = serde_json::json!({
        "memory": serde_json::to_value(MemoryOut::from(&rec)).map_err(|e| ApiError::internal(e.to_string()))?,
        "embedding_time_ms": started.elapsed().as_millis() as u64,
    });
    if let Some(sid) = &rec.session_id {
        if let Some(ended) = session_ended(&state, &entry, sid).await {
            out["session_state"] = Value::from(if ended { "ended" } else { "active" });
        }
    }
    if let Some(w) = warnings {
        out["warnings"] = Value::from(w);
    }
    Ok(Json(out))
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
    if body.memories.is_empty() || body.memories.len() > validate::MAX_BATCH {
        return Err(ApiError::bad_request(format!("memories must hold 1-{} items", validate::MAX_BATCH)));
    }
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
    let (mut items, warnings) = batch_items(state.core.config.max_content_bytes, &t, body)?;
    let entry = state.core.namespace_for_write(&t.namespace).await?;
    for item in items.iter_mut() {
        screen(&entry.policy, item)?;
    }
    ns_limit(&state, &entry, crate::ratelimit::NsClass::Store).await?;
    let started = Instant::now();
    let DataResult::Stored(recs) = state.core.exec(&entry, DataOp::Store { items }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    let stored: Vec<Value> = recs
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "content": r.content, "agent_id": r.agent_id, "tags": r.tags,
                "importance": r.importance, "created_at": r.created_at,
            })
        })
        .collect();
    // Sessions the memories were stored into that had already ended (the clients report them).
    let mut ended_sessions = Vec::new();
    let sessions: std::collections::BTreeSet<&str> = recs.iter().filter_map(|r| r.session_id.as_deref()).collect();
    for sid in sessions {
        if session_ended(&state, &entry, sid).await == Some(true) {
            ended_sessions.push(sid.to_string());
        }
    }
    let mut out = serde_json::json!({
        "stored_count": stored.len(),
        "stored": stored,
        "total_embedding_time_ms": started.elapsed().as_millis() as u64,
        "ended_sessions": ended_sessions,
    });
    if !warnings.is_empty() {
        out["warnings"] = Value::from(warnings);
    }
    Ok(Json(out))
}

#[derive(Deserialize, Default)]
pub struct NsQuery {
    pub agent_id: Option<String>,
    pub namespace: Option<String>,
}

/// Find the namespace holding `id` among those the key can read (agent-less get).
async fn locate(
    state: &AppState,
    p: &crate::auth::Principal,
    id: &str,
) -> ApiResult<(loci_raft::catalogue::NamespaceEntry, MemoryRecord)> {
    let mut hits = Vec::new();
    for entry in state.core.namespaces() {
        if !p.allows(&entry.name, Scope::Read) {
            continue;
        }
        match state.core.exec(&entry, DataOp::Get { id: id.to_string(), record_access: false }).await {
            Ok(DataResult::Memory(m)) => hits.push((entry, m)),
            Ok(_) | Err(_) => {}
        }
        if hits.len() > 1 {
            break;
        }
    }
    match hits.len() {
        0 => Err(ApiError::not_found("memory", format!("memory {id} not found"))),
        1 => Ok(hits.remove(0)),
        _ => Err(ApiError::bad_request(format!(
            "memory id {id} exists in several namespaces ({}, {}); pass ?agent_id= or ?namespace=",
            hits[0].0.name, hits[1].0.name
        ))),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
) -> ApiResult<Json<Value>> {
    validate::memory_id(&id)
        .map_err(|_| ApiError::not_found("memory", format!("memory {} not found", validate::printable(&id))))?;
    if q.agent_id.as_deref().unwrap_or("").is_empty() && q.namespace.as_deref().unwrap_or("").is_empty() {
        let (_, m) = locate(&state, &p, &id).await?;
        return Ok(Json(serde_json::to_value(MemoryOut::from(&m)).map_err(|e| ApiError::internal(e.to_string()))?));
    }
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    p.require(&t.namespace, Scope::Read)?;
    let entry = state
        .core
        .namespace(&t.namespace)
        .ok_or_else(|| ApiError::not_found("memory", format!("memory {id} not found")))?;
    let DataResult::Memory(m) = state.core.exec(&entry, DataOp::Get { id: id.clone(), record_access: true }).await?
    else {
        return Err(ApiError::internal("unexpected result"));
    };
    if t.agent_filter.as_ref().is_some_and(|a| a != &m.agent_id) {
        return Err(ApiError::not_found("memory", format!("memory {id} not found")));
    }
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

async fn update_in(
    state: &AppState,
    p: &crate::auth::Principal,
    t: &Target,
    id: &str,
    patch: MemoryPatch,
) -> ApiResult<MemoryRecord> {
    p.require(&t.namespace, Scope::Write)?;
    let entry = state
        .core
        .namespace(&t.namespace)
        .ok_or_else(|| ApiError::not_found("memory", format!("memory {id} not found")))?;
    if let Some(agent) = &t.agent_filter {
        let DataResult::Memory(m) =
            state.core.exec(&entry, DataOp::Get { id: id.to_string(), record_access: false }).await?
        else {
            return Err(ApiError::internal("unexpected result"));
        };
        if &m.agent_id != agent {
            return Err(ApiError::not_found("memory", format!("memory {id} not found")));
        }
    }
    let DataResult::Memory(m) = state.core.exec(&entry, DataOp::Update { id: id.to_string(), patch }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok(m)
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
    let m = update_in(&state, &p, &t, &id, patch).await?;
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
    p.require(&t.namespace, Scope::Write)?;
    let entry = state
        .core
        .namespace(&t.namespace)
        .ok_or_else(|| ApiError::not_found("memory", format!("memory {} not found", ids[0])))?;
    // One write for every id (one log entry, one fsync, replicated once), all or nothing.
    let op = DataOp::SetImportance { ids: ids.clone(), importance, agent: t.agent_filter.clone() };
    let DataResult::Memories { memories, .. } = state.core.exec(&entry, op).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    let updated: Vec<String> = memories.into_iter().map(|m| m.id).collect();
    Ok(Json(serde_json::json!({
        "memory_id": updated[0],
        "memory_ids": updated,
        "importance": importance,
        "updated_count": ids.len(),
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
    let m = update_in(&state, &p, &t, &id, MemoryPatch { importance: Some(importance), ..Default::default() }).await?;
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

/// Delete by ids and/or filter; refuses to delete everything by accident.
async fn forget_filter(
    state: &AppState,
    p: &crate::auth::Principal,
    t: &Target,
    mut filter: MemoryFilter,
) -> ApiResult<u64> {
    p.require(&t.namespace, Scope::Write)?;
    if filter.is_empty() {
        return Err(ApiError::bad_request(
            "at least one of memory_ids, tags, session_id, before_timestamp, memory_type, below_importance is required",
        ));
    }
    filter.agent_id = t.agent_filter.clone();
    let Some(entry) = state.core.namespace(&t.namespace) else {
        return Ok(0);
    };
    match state.core.exec(&entry, DataOp::Forget { filter }).await? {
        DataResult::Deleted(n) => Ok(n),
        _ => Err(ApiError::internal("unexpected result")),
    }
}

pub async fn forget(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<ForgetBody>,
) -> ApiResult<Json<Value>> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let n = forget_filter(&state, &p, &t, forget_body_filter(body)?).await?;
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
    let n = forget_filter(&state, &p, &t, batch.into_filter()?).await?;
    Ok(Json(serde_json::json!({ "deleted_count": n })))
}

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
    let limit = body.limit.unwrap_or(100);
    if !(1..=validate::MAX_TOP_K as i64).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {}", validate::MAX_TOP_K)));
    }
    let mut filter = body.filter.into_filter()?;
    filter.agent_id = t.agent_filter.clone();
    let warnings = unknown_warnings(&body.extra);
    let Some(entry) = state.core.namespace(&t.namespace) else {
        return Ok(Json(serde_json::json!({"memories": [], "total": 0, "filtered": 0, "truncated": false})));
    };
    let total = match state.core.exec(&entry, DataOp::Stats).await? {
        DataResult::Stats(s) => s.memory_count,
        _ => 0,
    };
    let DataResult::Memories { memories, total: filtered } = state
        .core
        .exec(&entry, DataOp::List { filter, sort: SortBy::CreatedAtDesc, limit: limit as usize, offset: 0 })
        .await?
    else {
        return Err(ApiError::internal("unexpected result"));
    };
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
    // Accepted for compatibility; Loci has no reranker, knowledge graph or neighbourhood context.
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
    let prep = prepare(body, 10, true)?;
    if prep.params.query.trim().is_empty() && prep.params.query_embedding.is_none() {
        return Err(ApiError::bad_request("query is required"));
    }
    p.require(&prep.target.namespace, Scope::Read)?;
    let started = Instant::now();
    let hits = match state.core.namespace(&prep.target.namespace) {
        None => Vec::new(),
        Some(entry) => match {
            ns_limit(&state, &entry, crate::ratelimit::NsClass::Recall).await?;
            state.core.exec(&entry, DataOp::Recall(prep.params)).await?
        } {
            DataResult::Recalled(h) => h,
            _ => return Err(ApiError::internal("unexpected result")),
        },
    };
    let elapsed = started.elapsed().as_millis() as u64;
    let mut out = serde_json::json!({
        "memories": scored_json(&hits)?,
        "query_embedding_time_ms": 0,
        "search_time_ms": elapsed,
        "rerank_report": {"applied": false, "candidates": hits.len(), "skipped": "Loci has no cross-encoder reranker", "capped": false},
    });
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
    p.require(&prep.target.namespace, Scope::Read)?;
    let Some(entry) = state.core.namespace(&prep.target.namespace) else {
        return Ok(Json(serde_json::json!({"memories": [], "total_count": 0})));
    };
    let hits: Vec<ScoredMemory> = if prep.params.query.trim().is_empty() && prep.params.query_embedding.is_none() {
        let op = DataOp::List {
            filter: prep.params.filter.clone(),
            sort: prep.sort.unwrap_or_default(),
            limit: prep.params.top_k,
            offset: 0,
        };
        match state.core.exec(&entry, op).await? {
            DataResult::Memories { memories, .. } => memories
                .into_iter()
                .map(|m| ScoredMemory { memory: m, score: 1.0, relevance: 1.0, vector_score: None, text_score: None })
                .collect(),
            _ => return Err(ApiError::internal("unexpected result")),
        }
    } else {
        ns_limit(&state, &entry, crate::ratelimit::NsClass::Recall).await?;
        let mut hits = match state.core.exec(&entry, DataOp::Recall(prep.params)).await? {
            DataResult::Recalled(h) => h,
            _ => return Err(ApiError::internal("unexpected result")),
        };
        if let Some(sort) = prep.sort {
            hits.sort_by(|a, b| match sort {
                SortBy::Importance => b.memory.importance.total_cmp(&a.memory.importance),
                SortBy::LastAccessedAt => b.memory.last_accessed_at.cmp(&a.memory.last_accessed_at),
                SortBy::AccessCount => b.memory.access_count.cmp(&a.memory.access_count),
                SortBy::CreatedAtAsc => a.memory.created_at.cmp(&b.memory.created_at),
                SortBy::CreatedAtDesc => b.memory.created_at.cmp(&a.memory.created_at),
            });
        }
        hits
    };
    let mut out = serde_json::json!({ "memories": scored_json(&hits)?, "total_count": hits.len() });
    if let Some(w) = prep.warnings {
        out["warnings"] = Value::from(w);
    }
    Ok(Json(out))
}

/// Whether a session has ended (`None`: no such session).
async fn session_ended(state: &AppState, entry: &loci_raft::catalogue::NamespaceEntry, id: &str) -> Option<bool> {
    match state.core.exec(entry, DataOp::GetSession { id: id.to_string() }).await {
        Ok(DataResult::Session(info)) => Some(info.session.ended_at.is_some()),
        _ => None,
    }
}
