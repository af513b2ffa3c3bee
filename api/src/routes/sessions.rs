//! `/v1/sessions/*` and `/v1/agents/*`. Transport only: the calls are on `core.sessions()`
//! (`loci_service::sessions`, which decides), the answers rendered.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::routes::memory::{agent_of, target};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut, SessionOut};
use loci_service::canonical_namespace;
use loci_service::validate;

const MAX_IDLE_TIMEOUT_SECS: u64 = 2_592_000;
pub use loci_service::sessions::MAX_FANOUT_NAMESPACES;

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
    let agent = agent_of(&t, body.agent_id.as_deref());
    let idle_timeout_secs = body.idle_timeout_secs;
    let (metadata, id) = start_fields(body)?;
    let info = state.core.sessions().start(&p, &t, agent, id, metadata, idle_timeout_secs).await?;
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
    let info = state.core.sessions().end(&p, &id, body.summary).await?;
    Ok(Json(serde_json::json!({ "session": to_value(&SessionOut::from(&info))?, "memory_count": info.memory_count })))
}

pub async fn touch(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let info = state.core.sessions().touch(&p, &id).await?;
    let state_word = if info.session.ended_at.is_some() { "ended" } else { "active" };
    Ok(Json(serde_json::json!({ "session": to_value(&SessionOut::from(&info))?, "session_state": state_word })))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let info = state.core.sessions().get(&p, &id).await?;
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

pub async fn list(State(state): State<AppState>, Auth(p): Auth, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let page = state
        .core
        .sessions()
        .list(&p, q.namespace.as_deref(), q.agent_id.as_deref(), q.active_only.unwrap_or(false), q.limit, q.offset)
        .await?;
    let (sessions, total, truncated) = (page.sessions, page.total, page.namespaces_truncated);
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
    let page = state.core.sessions().memories(&p, &id, q.limit, q.offset).await?;
    let (info, memories, total) = (page.session, page.memories, page.total);
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
    let (out, truncated) = state.core.sessions().list_agents(&p).await?;
    let mut headers = axum::http::HeaderMap::new();
    if truncated {
        headers.insert("x-loci-namespaces-truncated", axum::http::HeaderValue::from_static("true"));
    }
    Ok((headers, Json(to_value(&out)?)))
}

pub async fn agent_stats(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
) -> ApiResult<Json<Value>> {
    let stats = state.core.sessions().agent_stats(&p, &agent).await?;
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
    let memories =
        state.core.sessions().agent_memories(&p, &agent, q.memory_type.as_deref(), q.limit, q.offset).await?;
    Ok(Json(memories_json(&memories, preview)?))
}

pub async fn agent_sessions(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let sessions =
        state.core.sessions().agent_sessions(&p, &agent, q.active_only.unwrap_or(false), q.limit, q.offset).await?;
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
    let (entry, created) = state.core.sessions().create_agent(&p, &body.agent_id).await?;
    let existed = !created;
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
