//! `/v1/sessions/*` and `/v1/agents/*`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use loci_raft::catalogue::{Command, CommandResult, NamespaceEntry};
use loci_storage::model::*;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Principal, Scope};
use crate::error::{ApiError, ApiResult};
use crate::routes::memory::target;
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, SessionOut};
use loci_service::canonical_namespace;
use loci_service::validate;

const MAX_IDLE_TIMEOUT_SECS: u64 = 2_592_000;
/// Namespaces one listing without a namespace (`GET /v1/agents`, `GET /v1/sessions`) visits at
/// most: the work of one request stays bounded however many namespaces a key reads.
pub const MAX_FANOUT_NAMESPACES: usize = 1000;

fn to_value<T: serde::Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize)]
pub struct StartBody {
    pub(crate) agent_id: Option<String>,
    pub(crate) namespace: Option<String>,
    metadata: Option<Value>,
    idle_timeout_secs: Option<u64>,
    id: Option<String>,
}

pub async fn start(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<StartBody>,
) -> ApiResult<impl IntoResponse> {
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    p.require(&t.namespace, Scope::Write)?;
    let agent =
        body.agent_id.as_deref().map(canonical_namespace).filter(|a| !a.is_empty()).unwrap_or(&t.namespace).to_string();
    let idle_timeout_secs = body.idle_timeout_secs;
    let (metadata, id) = start_fields(body)?;
    let id = id.unwrap_or_else(loci_storage::store::new_session_id);
    let entry = state.core.namespace_for_write(&t.namespace).await?;
    // Session ids are per namespace: another tenant's session of the same id neither blocks
    // this one nor is revealed. Only a namespace this key can see that already holds the id is
    // refused, so that the id keeps naming one session for this key.
    let elsewhere =
        state.core.catalogue.view.read().session_namespaces(&id).any(|ns| ns != entry.name && p.can_see(ns));
    if elsewhere {
        return Err(ApiError::conflict(format!(
            "session {} already exists in another namespace this key can reach",
            validate::printable(&id)
        )));
    }
    match state
        .core
        .catalogue
        .write(Command::RegisterSession { session_id: id.clone(), namespace: entry.name.clone() })
        .await?
    {
        CommandResult::Ok => {}
        CommandResult::Rejected(m) => return Err(ApiError::conflict(m)),
        other => {
            return Err(ApiError::internal(format!("unexpected catalogue answer {other:?}")));
        }
    }
    let op = DataOp::StartSession { id: Some(id), agent_id: agent, metadata, idle_timeout_secs };
    let DataResult::Session(info) = state.core.exec(&entry, op).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok((StatusCode::OK, Json(serde_json::json!({ "session": to_value(&SessionOut::from(&info))? }))))
}

/// A session start body's metadata and client-chosen id, validated.
pub(crate) fn start_fields(body: StartBody) -> ApiResult<(Option<Value>, Option<String>)> {
    if body.idle_timeout_secs.is_some_and(|s| s > MAX_IDLE_TIMEOUT_SECS) {
        return Err(ApiError::bad_request(format!("idle_timeout_secs must be at most {MAX_IDLE_TIMEOUT_SECS}")));
    }
    let metadata = match body.metadata {
        Some(Value::Null) | None => None,
        Some(m) => {
            validate::metadata(&m)?;
            Some(m)
        }
    };
    if let Some(id) = &body.id {
        validate::client_id(id, "session id")?;
    }
    Ok((metadata, body.id))
}

/// The namespace holding a session, after checking the key may touch it at `need`.
fn session_namespace(state: &AppState, p: &Principal, id: &str, need: Scope) -> ApiResult<Option<NamespaceEntry>> {
    validate::client_id(id, "session id").map_err(|_| ApiError::not_found("session", "session not found"))?;
    // Sessions of this id in namespaces the key cannot see are indistinguishable from none.
    let visible: Vec<String> = state
        .core
        .catalogue
        .view
        .read()
        .session_namespaces(id)
        .filter(|ns| p.can_see(ns))
        .map(str::to_string)
        .collect();
    let ns = match visible.as_slice() {
        [] => return Ok(None),
        [one] => one.clone(),
        // Only when two keys with overlapping reach chose the same id in two namespaces.
        _ => {
            return Err(ApiError::conflict(format!(
                "session {} exists in more than one namespace this key can reach",
                validate::printable(id)
            )));
        }
    };
    p.require(&ns, need)?;
    Ok(state.core.namespace(&ns))
}

#[derive(Deserialize, Default)]
pub struct EndBody {
    summary: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    auto_summarize: Option<Value>,
}

pub async fn end(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndBody>,
) -> ApiResult<Json<Value>> {
    let Some(entry) = session_namespace(&state, &p, &id, Scope::Write)? else {
        return Err(ApiError::not_found("session", format!("session {} not found", validate::printable(&id))));
    };
    let DataResult::Session(info) = state.core.exec(&entry, DataOp::EndSession { id, summary: body.summary }).await?
    else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok(Json(serde_json::json!({ "session": to_value(&SessionOut::from(&info))?, "memory_count": info.memory_count })))
}

pub async fn touch(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let Some(entry) = session_namespace(&state, &p, &id, Scope::Write)? else {
        return Err(ApiError::not_found("session", "session not found"));
    };
    let DataResult::Session(info) = state.core.exec(&entry, DataOp::TouchSession { id }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    let state_word = if info.session.ended_at.is_some() { "ended" } else { "active" };
    Ok(Json(serde_json::json!({ "session": to_value(&SessionOut::from(&info))?, "session_state": state_word })))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let Some(entry) = session_namespace(&state, &p, &id, Scope::Read)? else {
        return Err(ApiError::not_found("session", "session not found"));
    };
    let DataResult::Session(info) = state.core.exec(&entry, DataOp::GetSession { id }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok(Json(to_value(&SessionOut::from(&info))?))
}

#[derive(Deserialize)]
pub struct ListQuery {
    agent_id: Option<String>,
    namespace: Option<String>,
    active_only: Option<bool>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_sessions_in(
    state: &AppState,
    entry: &NamespaceEntry,
    agent: Option<String>,
    active_only: bool,
    limit: usize,
    offset: usize,
) -> ApiResult<(Vec<SessionInfo>, u64)> {
    match state.core.exec(entry, DataOp::ListSessions { agent_id: agent, active_only, limit, offset }).await? {
        DataResult::Sessions { sessions, total } => Ok((sessions, total)),
        _ => Err(ApiError::internal("unexpected result")),
    }
}

pub async fn list(State(state): State<AppState>, Auth(p): Auth, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let active_only = q.active_only.unwrap_or(false);
    let mut truncated = false;
    let (sessions, total) = if q.agent_id.is_some() || q.namespace.is_some() {
        let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
        p.require(&t.namespace, Scope::Read)?;
        match state.core.namespace(&t.namespace) {
            None => (Vec::new(), 0),
            Some(e) => list_sessions_in(&state, &e, t.agent_filter, active_only, limit, offset).await?,
        }
    } else {
        // Every session the key can read, newest first: from each namespace only its newest
        // `offset + limit` (enough for the page), from at most MAX_FANOUT_NAMESPACES namespaces.
        let names: std::collections::BTreeSet<String> =
            state.core.catalogue.view.read().sessions.values().flatten().filter(|ns| p.can_see(ns)).cloned().collect();
        truncated = names.len() > MAX_FANOUT_NAMESPACES;
        let want = offset.saturating_add(limit);
        let mut all = Vec::new();
        let mut total = 0;
        for ns in names.into_iter().take(MAX_FANOUT_NAMESPACES) {
            if let Some(e) = state.core.namespace(&ns) {
                let (page, n) = list_sessions_in(&state, &e, None, active_only, want, 0).await?;
                total += n;
                all.extend(page);
            }
        }
        all.sort_by(|a, b| b.session.started_at.cmp(&a.session.started_at));
        (all.into_iter().skip(offset).take(limit).collect(), total)
    };
    let out: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    let mut body = serde_json::json!({ "sessions": to_value(&out)?, "total": total });
    if truncated {
        // Ask per namespace (`namespace` or `agent_id`) for the rest.
        body["namespaces_truncated"] = Value::from(true);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    memory_type: Option<String>,
    active_only: Option<bool>,
    /// Cut each memory's content to this many characters (1-10000), adding `content_len` and
    /// `content_truncated`.
    content_preview_chars: Option<i64>,
}

impl PageQuery {
    fn preview(&self) -> ApiResult<Option<usize>> {
        match self.content_preview_chars {
            None => Ok(None),
            Some(n) if (1..=10_000).contains(&n) => Ok(Some(n as usize)),
            Some(n) => {
                Err(ApiError::bad_request(format!("content_preview_chars must be between 1 and 10000, got {n}")))
            }
        }
    }
}

/// Memories as the clients see them, with content cut to `preview` characters if asked.
fn memories_json(memories: &[loci_storage::model::MemoryRecord], preview: Option<usize>) -> ApiResult<Value> {
    let mut out = Vec::with_capacity(memories.len());
    for m in memories {
        let mut v = to_value(&MemoryOut::from(m))?;
        if let Some(n) = preview {
            let len = m.content.chars().count();
            if len > n {
                v["content"] = Value::from(m.content.chars().take(n).collect::<String>());
            }
            v["content_len"] = Value::from(len);
            v["content_truncated"] = Value::from(len > n);
        }
        out.push(v);
    }
    Ok(Value::Array(out))
}

pub async fn memories(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let preview = q.preview()?;
    let Some(entry) = session_namespace(&state, &p, &id, Scope::Read)? else {
        return Err(ApiError::not_found("session", "session not found"));
    };
    let DataResult::Session(info) = state.core.exec(&entry, DataOp::GetSession { id: id.clone() }).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    let filter = MemoryFilter { session_id: Some(id), ..Default::default() };
    let op = DataOp::List {
        filter,
        sort: SortBy::CreatedAtAsc,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        offset: q.offset.unwrap_or(0),
    };
    let DataResult::Memories { memories, total } = state.core.exec(&entry, op).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok(Json(serde_json::json!({
        "session": to_value(&SessionOut::from(&info))?,
        "memories": memories_json(&memories, preview)?,
        "total": total,
    })))
}

// ---------------------------------------------------------------- agents

/// `GET /v1/agents`: every agent in the namespaces the key can read (a bare array).
/// `GET /v1/agents`: the agents of the namespaces the key reads, from at most
/// [`MAX_FANOUT_NAMESPACES`] of them (by name; `x-loci-namespaces-truncated: true` when there are
/// more), eight at a time.
pub async fn list_agents(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    use futures::StreamExt;
    let mut readable: Vec<NamespaceEntry> =
        state.core.namespaces().into_iter().filter(|e| p.allows(&e.name, Scope::Read)).collect();
    readable.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = readable.len() > MAX_FANOUT_NAMESPACES;
    readable.truncate(MAX_FANOUT_NAMESPACES);
    let answers: Vec<ApiResult<DataResult>> = futures::stream::iter(readable)
        .map(|entry| {
            let core = state.core.clone();
            async move { Ok(core.exec(&entry, DataOp::ListAgents).await?) }
        })
        .buffered(8)
        .collect()
        .await;
    let mut out: Vec<AgentSummary> = Vec::new();
    for a in answers {
        if let DataResult::Agents(list) = a? {
            out.extend(list);
        }
    }
    let mut headers = axum::http::HeaderMap::new();
    if truncated {
        headers.insert("x-loci-namespaces-truncated", axum::http::HeaderValue::from_static("true"));
    }
    Ok((headers, Json(to_value(&out)?)))
}

fn agent_namespace(p: &Principal, agent: &str) -> ApiResult<String> {
    let t = target(None, Some(agent))?;
    p.require(&t.namespace, Scope::Read)?;
    Ok(t.namespace)
}

pub async fn agent_stats(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
) -> ApiResult<Json<Value>> {
    let ns = agent_namespace(&p, &agent)?;
    let agent = canonical_namespace(&agent).to_string();
    let stats = match state.core.namespace(&ns) {
        None => AgentStats { agent_id: agent.clone(), ..Default::default() },
        // The agent's namespace as a whole (memories stored there under other agent ids count too,
        // as /v1/agents/{id}/memories lists them).
        Some(e) => match state.core.exec(&e, DataOp::AgentStats { agent_id: None }).await? {
            DataResult::AgentStats(s) => s,
            _ => return Err(ApiError::internal("unexpected result")),
        },
    };
    let mut v = to_value(&stats)?;
    if stats.memories_by_type.is_empty() {
        v["memories_by_type"] = serde_json::json!({"episodic": 0, "semantic": 0, "procedural": 0, "working": 0});
    }
    Ok(Json(v))
}

pub async fn agent_memories(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let preview = q.preview()?;
    let ns = agent_namespace(&p, &agent)?;
    let Some(entry) = state.core.namespace(&ns) else {
        return Ok(Json(Value::Array(Vec::new())));
    };
    let filter = MemoryFilter {
        memory_type: q.memory_type.as_deref().map(validate::memory_type).transpose()?,
        ..Default::default()
    };
    let op = DataOp::List {
        filter,
        sort: SortBy::CreatedAtDesc,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
        offset: q.offset.unwrap_or(0),
    };
    let DataResult::Memories { memories, .. } = state.core.exec(&entry, op).await? else {
        return Err(ApiError::internal("unexpected result"));
    };
    Ok(Json(memories_json(&memories, preview)?))
}

pub async fn agent_sessions(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let ns = agent_namespace(&p, &agent)?;
    let Some(entry) = state.core.namespace(&ns) else {
        return Ok(Json(Value::Array(Vec::new())));
    };
    let (sessions, _) = list_sessions_in(
        &state,
        &entry,
        None,
        q.active_only.unwrap_or(false),
        q.limit.unwrap_or(100).clamp(1, 1000),
        q.offset.unwrap_or(0),
    )
    .await?;
    let out: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
    Ok(Json(to_value(&out)?))
}

#[derive(Deserialize)]
pub struct CreateAgentBody {
    agent_id: String,
}

/// `POST /v1/agents`: create the agent's namespace ahead of its first memory.
pub async fn create_agent(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<CreateAgentBody>,
) -> ApiResult<impl IntoResponse> {
    let t = target(None, Some(&body.agent_id))?;
    p.require(&t.namespace, Scope::Write)?;
    let existed = state.core.namespace(&t.namespace).is_some();
    let entry = state.core.namespace_for_write(&t.namespace).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((
        status,
        Json(serde_json::json!({
            "agent_id": canonical_namespace(&body.agent_id),
            // The clients name an agent's namespace with the agent prefix.
            "namespace": format!("{}{}", loci_service::AGENT_NAMESPACE_PREFIX, entry.name),
            "created": !existed,
            "dimension": entry.dimension,
            "model": entry.embedder.provider,
        })),
    ))
}
