//! Event streams as Server-Sent Events: `GET /v1/events/stream` (memory events, the SDK's
//! `stream_memory_events`), `GET /v1/namespaces/{ns}/events` (`stream_namespace_events`),
//! `GET /ops/events` (`stream_global_events`), `GET /v1/audit/stream` (`stream_audit_events`).
//! Transport only: who sees what and the cluster-wide subscription are
//! `loci_service::events`.
//!
//! Every event carries an `id:`; a client that reconnects with it (`Last-Event-ID`, or
//! `?last_event_id=`) resumes exactly after it on every node. `:` comments keep the connection
//! alive.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::StreamExt;
use loci_service::audit::listing::redact_foreign_caller;
use loci_service::audit::query::{Visibility, to_event};
use loci_service::events::stream::{Item, Position, Subscribe, read_view};
use loci_service::events::{EventKind, Filter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The paths that take the key as `?api_key=` (the js client's EventSource cannot set headers).
pub const STREAM_PATHS: [&str; 3] = ["/v1/events/stream", "/ops/events", "/v1/audit/stream"];

pub fn is_stream_path(path: &str) -> bool {
    STREAM_PATHS.contains(&path) || (path.starts_with("/v1/namespaces/") && path.ends_with("/events"))
}

const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    namespace: Option<String>,
    agent_id: Option<String>,
    /// One type or several, comma-separated.
    #[serde(alias = "event_types", alias = "types")]
    event_type: Option<String>,
    last_event_id: Option<String>,
    /// Read by the authentication layer.
    #[allow(dead_code)]
    api_key: Option<String>,
}

impl StreamParams {
    fn types(&self) -> Vec<String> {
        self.event_type
            .as_deref()
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn from(&self, headers: &HeaderMap) -> ApiResult<Option<Position>> {
        let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        match self.last_event_id.as_deref().or(header).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(id) => Ok(Some(Position::parse(id)?)),
        }
    }
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// How the items of one stream become SSE events.
#[derive(Clone)]
enum Shape {
    /// `MemoryEvent`: `event_type` names it.
    Memory,
    /// `DakeraEvent`: `type` names it.
    Namespace,
    /// The SDK's `AuditEvent`; a tenant admin's view hides other tenants' callers.
    Audit { own: Option<std::collections::HashSet<String>> },
}

fn lagged(node: u64, dropped: u64) -> Value {
    let hint = "events were overwritten before this subscriber read them; re-read the state it needs";
    // Both names of the type: the clients read `type` (DakeraEvent) or `event_type` (MemoryEvent).
    json!({"type": "stream_lagged", "event_type": "stream_lagged", "dropped": dropped, "node": node,
           "hint": hint, "timestamp": chrono::Utc::now().timestamp()})
}

fn to_sse(shape: &Shape, item: Item) -> SseEvent {
    let (name, data, id) = match item {
        Item::Lagged { node, dropped, id } => ("stream_lagged".to_string(), lagged(node, dropped), id),
        Item::Event { event, id } => {
            let data = match shape {
                Shape::Audit { own } => {
                    let mut rec = event.data;
                    if let Some(own) = own {
                        redact_foreign_caller(&mut rec, own);
                    }
                    let mut ev = to_event(&rec);
                    // The clients read audit stream events as DakeraEvents, named by `type`.
                    ev["type"] = ev["event_type"].clone();
                    ev
                }
                _ => event.data,
            };
            (event.event_type, data, id)
        }
    };
    SseEvent::default().event(name).id(id).data(data.to_string())
}

/// An event stream as the routes answer it.
pub type EventSse =
    Sse<axum::response::sse::KeepAliveStream<futures::stream::BoxStream<'static, Result<SseEvent, Infallible>>>>;

fn sse(shape: Shape, first: Option<Value>, rx: tokio::sync::mpsc::Receiver<Item>) -> EventSse {
    let hello = futures::stream::iter(
        first.map(|v| Ok::<_, Infallible>(SseEvent::default().event("connected").data(v.to_string()))),
    );
    let items =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| Ok::<_, Infallible>(to_sse(&shape, item)));
    Sse::new(hello.chain(items).boxed()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

/// Subscribe `p` with `filter` (resuming where the request says) and answer the stream.
async fn open(
    s: &AppState,
    p: &loci_service::access::Principal,
    headers: &HeaderMap,
    q: &StreamParams,
    filter: Filter,
    shape: Shape,
    hello: Option<Value>,
) -> ApiResult<EventSse> {
    let rx = s.core.events().subscribe(p, Subscribe { filter, from: q.from(headers)? }).await?;
    Ok(sse(shape, hello, rx))
}

/// `GET /v1/events/stream`: memory events of the namespaces the key may read.
pub async fn memory_stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> ApiResult<EventSse> {
    let filter = Filter {
        kinds: EventKind::mask(&[EventKind::Memory]),
        within: read_view(&p),
        namespace: nonempty(&q.namespace).map(|n| loci_service::core::canonical_namespace(&n).to_string()),
        agent_id: nonempty(&q.agent_id),
        event_types: q.types(),
    };
    let hello = json!({"type": "connected", "event_type": "connected", "timestamp": chrono::Utc::now().timestamp(),
                       "agent_id": q.agent_id});
    open(&s, &p, &headers, &q, filter, Shape::Memory, Some(hello)).await
}

/// `GET /v1/namespaces/{ns}/events`: that namespace's events (`read` on it).
pub async fn namespace_stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> ApiResult<EventSse> {
    if q.namespace.is_some() {
        return Err(ApiError::bad_request("the namespace is the path's; drop ?namespace="));
    }
    let ns = loci_service::core::canonical_namespace(&ns).to_string();
    let filter = Filter {
        kinds: EventKind::mask(&[EventKind::Namespace]),
        within: read_view(&p),
        namespace: Some(ns),
        agent_id: None,
        event_types: q.types(),
    };
    open(&s, &p, &headers, &q, filter, Shape::Namespace, None).await
}

/// `GET /ops/events`: namespace events of every namespace the key administers.
pub async fn ops_stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> ApiResult<EventSse> {
    let filter = Filter {
        kinds: EventKind::mask(&[EventKind::Namespace]),
        // The namespaces it administers.
        within: Visibility::of(&p)?,
        namespace: nonempty(&q.namespace),
        agent_id: None,
        event_types: q.types(),
    };
    if let Some(ns) = &filter.namespace {
        p.require(ns, loci_raft::catalogue::Scope::Admin)?;
    }
    open(&s, &p, &headers, &q, filter, Shape::Namespace, None).await
}

/// `GET /v1/audit/stream`: audit records as they are written, in the view of `GET /v1/audit`.
pub async fn audit_stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> ApiResult<EventSse> {
    let within = Visibility::of(&p)?;
    let own = match &within {
        Visibility::All => None,
        Visibility::Within(patterns) => Some(s.core.audit_log().own_keys(&p, patterns)),
    };
    let filter = Filter {
        kinds: EventKind::mask(&[EventKind::Audit]),
        within,
        namespace: nonempty(&q.namespace),
        agent_id: nonempty(&q.agent_id),
        event_types: q.types(),
    };
    open(&s, &p, &headers, &q, filter, Shape::Audit { own }, None).await
}
