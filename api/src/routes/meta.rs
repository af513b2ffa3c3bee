//! Health, readiness, capabilities, whoami and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::Json;

fn uptime(state: &AppState) -> u64 {
    state.core.started_at.elapsed().as_secs()
}

pub async fn health(State(state): State<AppState>) -> Response {
    let embedder = &state.core.config.default_embedder;
    let mut body = serde_json::json!({
        "service": "loci",
        "status": "healthy",
        "version": state.core.config.version,
        "node_id": state.core.config.node_id,
        "uptime_seconds": uptime(&state),
        "embedder": embedder,
    });
    if embedder == loci_storage::embed::HashEmbedder::PROVIDER {
        body["config_warnings"] = serde_json::json!([
            "no embedding model is loaded: new namespaces use the hashed n-gram fallback (run `loci model fetch`)"
        ]);
    }
    Json(body).into_response()
}

pub async fn live(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({"alive": true, "version": state.core.config.version, "uptime_seconds": uptime(&state)}))
        .into_response()
}

/// 200 once the node has a catalogue leader and serves requests; 503 + Retry-After before.
pub async fn ready(State(state): State<AppState>) -> Response {
    let leader = state.core.catalogue.raft.metrics().borrow().current_leader;
    // Fresh: heard from the catalogue group recently enough to take minted keys (a node that
    // is not would answer them 503, so it is not ready either).
    let fresh = state.core.catalogue.is_fresh(loci_service::access::CATALOGUE_FRESHNESS);
    if state.core.is_ready() && leader.is_some() && fresh {
        Json(serde_json::json!({
            "ready": true,
            "version": state.core.config.version,
            "checks": {
                "storage": {"status": "ok"},
                "catalogue": {"status": "ok", "leader": leader},
                "embedding_engine": {"status": "ok"},
            }
        }))
        .into_response()
    } else {
        let reason = if leader.is_none() {
            "the catalogue has no leader yet"
        } else if !fresh {
            "the catalogue has not heard from its group within 10 s"
        } else {
            "starting"
        };
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "starting": true, "reason": reason})),
        )
            .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        resp
    }
}

pub async fn capabilities(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let c = &state.core.config;
    let mut models = vec![serde_json::json!({
        "name": "hash", "aliases": [], "dimension": c.default_dimension, "max_seq_length": 100000,
        "effective_max_seq_length": 100000, "active": c.default_embedder == "hash", "modality": "text"
    })];
    if state.core.has_minilm() {
        models.push(serde_json::json!({
            "name": loci_storage::minilm::PROVIDER, "aliases": ["minilm", loci_storage::minilm::MODEL_NAME],
            "dimension": loci_storage::minilm::DIMENSION, "max_seq_length": 256, "effective_max_seq_length": 256,
            "active": c.default_embedder == loci_storage::minilm::PROVIDER, "modality": "text"
        }));
    }
    Ok(Json(serde_json::json!({
        "capabilities_version": 1,
        "server_version": c.version,
        "api_versions": ["v1"],
        "default_model": c.default_embedder,
        "models": models,
        "index_kinds": ["hnsw", "fulltext"],
        "vector_index_kinds": ["hnsw"],
        "live_vector_index_kinds": ["hnsw", "fulltext"],
        "distance_metrics": ["cosine", "euclidean", "dot_product"],
        "search_mode": "hybrid",
        "search_modes_accepted": ["hybrid", "float"],
        "fulltext_language": "en",
        "query_languages": ["en"],
        // Only namespaces this key can see.
        "reembed_pending": state.core.namespaces().iter().any(|n| {
            p.can_see(&n.name) && n.reembed.as_ref().is_some_and(|j| j.state == "running")
        }),
        "auth": {"prefix_patterns": true, "sessions_by_agent": true, "key_update": true, "rotation_grace_max_secs": 604800, "max_grants": 64, "max_grant_len": 128},
        "naming": {
            "agent_id_pattern": "[A-Za-z0-9][A-Za-z0-9_.-]*",
            "agent_id_max_bytes": loci_service::validate::MAX_AGENT_ID_BYTES,
            "session_id_pattern": "[A-Za-z0-9][A-Za-z0-9_.:@-]*",
            "session_id_max_bytes": loci_service::validate::MAX_AGENT_ID_BYTES,
            "agent_namespace_prefix": loci_service::AGENT_NAMESPACE_PREFIX,
            "agent_namespace_max_bytes": loci_service::validate::MAX_NAMESPACE_BYTES,
            "namespace_pattern": "[a-z0-9]([a-z0-9-]*[a-z0-9])?",
            "namespace_max_bytes": loci_service::validate::MAX_NAMESPACE_BYTES,
            "reserved_prefixes": ["_dakera_"],
            "internal_namespaces": [],
            "internal_prefixes": []
        },
        "sessions": {"idle_timeout_secs": 0, "max_idle_timeout_secs": 2592000, "touch": true, "ended_reason": true},
    })))
}

pub async fn whoami(Auth(p): Auth) -> ApiResult<Json<Value>> {
    let namespaces: Value = match &p.grants {
        crate::auth::Grants::All(_) => Value::Null,
        crate::auth::Grants::List(l) => Value::from(l.iter().map(|g| g.pattern.clone()).collect::<Vec<_>>()),
    };
    Ok(Json(serde_json::json!({
        "key_id": p.key_id,
        "name": p.name,
        "scope": p.scope.as_str(),
        "namespaces": namespaces,
        "unrestricted": matches!(p.grants, crate::auth::Grants::All(_)),
        "expires_at": p.expires_at,
        "grants_version": 1,
        "inert_namespaces": [],
        "auth_enabled": true,
    })))
}

pub async fn metrics(
    State(state): State<AppState>,
    principal: Option<axum::Extension<std::sync::Arc<crate::auth::Principal>>>,
) -> Response {
    if state.metrics_auth {
        // The auth layer has authenticated the request; the page is cluster-wide.
        let allowed = principal.is_some_and(|p| p.require_global(loci_raft::catalogue::Scope::Read).is_ok());
        if !allowed {
            return crate::error::ApiError::insufficient_scope("read on every namespace").into_response();
        }
    }
    metrics_page(State(state)).await
}

/// `/metrics` without a key (the `--metrics-addr` listener).
pub async fn metrics_page(State(state): State<AppState>) -> Response {
    let body = crate::metrics::render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Any unknown route: the structured 404 the clients parse.
pub async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::not_found("route", "no such route")
}
