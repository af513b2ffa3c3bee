//! Loci's fronts: the REST router (axum) and the public gRPC service (tonic). They are transport
//! only: parse the request, authenticate it (the key's meaning is decided by
//! `loci_service::access`), call the service (`loci_service::Core`), and map its error once
//! ([`ApiError`]). Nothing below calls back up into this crate.

/// Generated gRPC code (`proto/loci.proto`).
pub mod pb {
    tonic::include_proto!("loci.v1");
}
/// Generated gRPC code (`proto/dakera.proto`): the published Rust client's `dakera.v1`.
/// The encoded descriptors of the public gRPC services (`loci.v1`, `dakera.v1`), for server
/// reflection.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/public_descriptor.bin"));

pub mod pb_dakera {
    tonic::include_proto!("dakera.v1");
}
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod grpc_vectors;
pub mod middleware;
pub mod routes;
pub mod security;
pub mod state;
pub mod wire;

pub use middleware::{audit, auth, metrics, ratelimit, request_id};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware as layers;
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::{ApiError, ApiResult};

/// The largest backup archive `POST /v1/admin/backups/upload` takes (larger backups move by
/// copying the backup store directory).
pub const MAX_BACKUP_UPLOAD_BYTES: usize = 1 << 30;
pub use loci_service::{Core, CoreConfig};
pub use state::AppState;

use routes::{
    audit as audit_trail, backups, cluster, events, graph, keys, maintenance, memory, meta, namespaces, quotas,
    sessions, tokens, vectors, webhooks,
};

/// `GET /metrics` alone, without a key: for `--metrics-addr`, a listener on a private interface.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(meta::metrics_page)).with_state(state)
}

/// Every REST route of a node.
pub fn router(state: AppState) -> Router {
    let node = HeaderValue::from_str(&state.core.config.node_id.to_string()).unwrap_or(HeaderValue::from_static("0"));
    let max_body = state.core.config.max_body_bytes;
    let mut router = Router::new()
        .route("/health", get(meta::health))
        .route("/health/live", get(meta::live))
        .route("/health/ready", get(meta::ready))
        .route("/metrics", get(meta::metrics))
        .route("/v1/capabilities", get(meta::capabilities))
        .route("/v1/auth/whoami", get(meta::whoami))
        .route("/v1/memory/store", post(memory::store))
        .route("/v1/memory/recall", post(memory::recall))
        .route("/v1/memory/search", post(memory::search))
        .route("/v1/memory/get/{id}", get(memory::get))
        .route("/v1/memory/update/{id}", put(memory::update))
        .route("/v1/memory/forget", post(memory::forget))
        .route("/v1/memory/importance", post(memory::set_importance))
        .route("/v1/memories/store/batch", post(memory::store_batch))
        .route("/v1/memories/recall/batch", post(memory::recall_batch))
        .route("/v1/memories/forget/batch", axum::routing::delete(memory::forget_batch).post(memory::forget_batch))
        .route("/v1/memories/{id}/importance", axum::routing::patch(memory::patch_importance))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/start", post(sessions::start))
        .route("/v1/sessions/{id}", get(sessions::get))
        .route("/v1/sessions/{id}/end", post(sessions::end))
        .route("/v1/sessions/{id}/touch", post(sessions::touch))
        .route("/v1/sessions/{id}/memories", get(sessions::memories))
        .route("/v1/agents", get(sessions::list_agents).post(sessions::create_agent))
        .route("/v1/agents/{id}/stats", get(sessions::agent_stats))
        .route("/v1/agents/{id}/memories", get(sessions::agent_memories))
        .route("/v1/agents/{id}/sessions", get(sessions::agent_sessions))
        .route("/v1/namespaces", get(namespaces::list).post(namespaces::create))
        .route("/v1/namespaces/{ns}", get(namespaces::get).put(namespaces::put).delete(namespaces::delete))
        .route("/v1/namespaces/{ns}/memory_policy", get(namespaces::get_policy).put(namespaces::put_policy))
        .route("/v1/admin/namespaces", get(namespaces::admin_list).post(namespaces::admin_create))
        .route("/v1/admin/namespaces/{ns}", axum::routing::delete(namespaces::delete))
        .route("/admin/namespaces", get(namespaces::admin_list).post(namespaces::admin_create))
        .route("/admin/namespaces/{ns}", axum::routing::delete(namespaces::delete))
        .route("/v1/namespaces/{ns}/reembed", get(namespaces::get_reembed).post(namespaces::start_reembed))
        .route("/v1/namespaces/{ns}/keys", get(keys::ns_list).post(keys::ns_create))
        .route("/v1/namespaces/{ns}/keys/{id}", axum::routing::patch(keys::ns_update).delete(keys::ns_delete))
        .route("/v1/namespaces/{ns}/keys/{id}/usage", get(keys::ns_usage))
        .route("/admin/quotas", get(quotas::list).put(quotas::set))
        .route("/admin/quotas/{pattern}", get(quotas::get).delete(quotas::delete))
        .route("/admin/tokens/denials", get(tokens::list).post(tokens::deny))
        .route("/v1/export", get(memory::transfer::export))
        .route("/v1/import", post(memory::transfer::import))
        .route("/v1/import/{job}/status", get(memory::transfer::status))
        .route("/v1/audit", get(audit_trail::list))
        .route("/v1/audit/export", get(audit_trail::export))
        .route("/v1/audit/stream", get(events::audit_stream))
        .route("/v1/events/stream", get(events::memory_stream))
        .route("/v1/namespaces/{ns}/events", get(events::namespace_stream))
        .route("/ops/events", get(events::ops_stream))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", get(webhooks::get).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery}/replay", post(webhooks::replay))
        .route("/admin/tokens/denials/{id}", axum::routing::delete(tokens::remove))
        .route("/admin/keys", get(keys::list).post(keys::create))
        .route("/admin/keys/{id}", get(keys::get).patch(keys::update).delete(keys::delete))
        .route("/admin/keys/{id}/deactivate", post(keys::deactivate))
        .route("/admin/keys/{id}/rotate", post(keys::rotate))
        .route("/admin/keys/{id}/usage", get(keys::usage))
        .route("/v1/api-keys", get(keys::list).post(keys::create_with_permissions))
        .route("/admin/encryption/rotate", post(keys::rotate_encryption))
        .route("/admin/encryption/rotate-key", post(keys::rotate_encryption))
        .route("/v1/admin/encryption/rotate", post(keys::rotate_encryption))
        .route("/v1/admin/encryption/rotate-key", post(keys::rotate_encryption))
        .route("/v1/namespaces/{ns}/placement", get(cluster::placement))
        .route("/v1/namespaces/{ns}/vectors", post(vectors::upsert))
        .route("/v1/namespaces/{ns}/query", post(vectors::query))
        .route("/v1/namespaces/{ns}/batch-query", post(vectors::batch_query))
        .route("/v1/namespaces/{ns}/vectors/delete", post(vectors::delete))
        .route("/v1/namespaces/{ns}/vectors/bulk-delete", post(vectors::bulk_delete))
        .route("/v1/namespaces/{ns}/vectors/bulk-update", post(vectors::bulk_update))
        .route("/v1/namespaces/{ns}/vectors/count", post(vectors::count))
        .route("/v1/namespaces/{ns}/export", post(vectors::export))
        .route("/v1/namespaces/{ns}/upsert-text", post(vectors::upsert_text))
        .route("/v1/namespaces/{ns}/query-text", post(vectors::query_text))
        .route("/v1/namespaces/{ns}/batch-query-text", post(vectors::batch_query_text))
        .route("/v1/namespaces/{ns}/fulltext/index", post(vectors::fulltext_index))
        .route("/v1/namespaces/{ns}/fulltext/search", post(vectors::fulltext_search))
        .route("/v1/namespaces/{ns}/fulltext/delete", post(vectors::fulltext_delete))
        .route("/v1/namespaces/{ns}/fulltext/stats", get(vectors::fulltext_stats))
        .route("/v1/namespaces/{ns}/hybrid", post(vectors::hybrid))
        .route("/v1/namespaces/{ns}/cache/warm", post(vectors::warm))
        .route("/v1/memories/{id}/links", post(graph::link).delete(graph::unlink))
        .route("/v1/memories/{id}/graph", get(graph::memory_graph))
        .route("/v1/memories/{id}/path", get(graph::memory_path))
        .route("/v1/agents/{id}/graph/export", get(graph::agent_export))
        .route("/v1/knowledge/query", get(graph::knowledge_query))
        .route("/v1/knowledge/path", get(graph::knowledge_path))
        .route("/v1/knowledge/export", get(graph::knowledge_export))
        .route("/v1/knowledge/graph", post(graph::knowledge_graph))
        .route("/v1/knowledge/graph/full", post(graph::full_graph))
        .route("/v1/knowledge/summarize", post(maintenance::summarize))
        .route("/v1/knowledge/deduplicate", post(maintenance::deduplicate))
        .route("/v1/memories/extract", post(graph::extract))
        .route("/v1/extract", post(graph::extract))
        .route("/v1/memory/entities/{id}", get(graph::memory_entities))
        .route("/v1/namespaces/{ns}/config", get(graph::get_config).put(graph::put_config).patch(graph::patch_config))
        .route("/v1/namespaces/{ns}/extractor", get(graph::get_extractor).patch(graph::patch_extractor))
        .route("/v1/memory/consolidate", post(maintenance::consolidate))
        .route("/v1/agents/{id}/consolidate", post(maintenance::consolidate_agent))
        .route("/v1/memory/deduplicated", get(maintenance::list_trash))
        .route("/v1/memory/deduplicated/{id}/restore", post(maintenance::restore))
        .route("/v1/memory/feedback", post(maintenance::feedback))
        .route("/v1/agents/{id}/feedback/summary", get(maintenance::feedback_summary))
        .route("/v1/feedback/health", get(maintenance::feedback_health))
        .route("/v1/memories/{id}/feedback", post(maintenance::feedback_on).get(maintenance::feedback_history));
    // Every admin route is served under both `/admin/...` and `/v1/admin/...` (as Dakera does).
    for prefix in ["/admin", "/v1/admin"] {
        router = router
            .route(&format!("{prefix}/cluster/status"), get(cluster::status))
            .route(&format!("{prefix}/cluster/nodes"), get(cluster::nodes))
            .route(&format!("{prefix}/cluster/shards"), get(cluster::shards))
            .route(&format!("{prefix}/cluster/replication"), get(cluster::replication))
            .route(&format!("{prefix}/cluster/shards/rebalance"), post(cluster::rebalance))
            .route(&format!("{prefix}/cluster/nodes/{{node}}/drain"), post(cluster::drain))
            .route(&format!("{prefix}/cluster/nodes/{{node}}/undrain"), post(cluster::undrain))
            .route(&format!("{prefix}/cluster/nodes/{{node}}"), axum::routing::delete(cluster::remove))
            .route(&format!("{prefix}/cluster/init"), post(cluster::init))
            .route(&format!("{prefix}/cluster/join"), post(cluster::join))
            .route(&format!("{prefix}/cluster/leave"), post(cluster::leave))
            .route(&format!("{prefix}/autopilot/status"), get(maintenance::autopilot_status))
            .route(&format!("{prefix}/autopilot/config"), axum::routing::put(maintenance::autopilot_config))
            .route(&format!("{prefix}/autopilot/trigger"), post(maintenance::autopilot_trigger))
            .route(&format!("{prefix}/decay/config"), get(maintenance::decay_config).put(maintenance::decay_update))
            .route(&format!("{prefix}/decay/stats"), get(maintenance::decay_stats))
            .route(&format!("{prefix}/backups"), get(backups::list).post(backups::create))
            .route(&format!("{prefix}/backups/schedule"), get(backups::get_schedule).post(backups::set_schedule))
            .route(&format!("{prefix}/backups/restore"), post(backups::restore))
            .route(&format!("{prefix}/backups/restore/{{id}}"), get(backups::restore_status))
            .route(
                &format!("{prefix}/backups/upload"),
                post(backups::upload).layer(DefaultBodyLimit::max(MAX_BACKUP_UPLOAD_BYTES)),
            )
            .route(&format!("{prefix}/backups/{{id}}"), get(backups::get).delete(backups::delete))
            .route(&format!("{prefix}/backups/{{id}}/verify"), post(backups::verify))
            .route(&format!("{prefix}/backups/{{id}}/download"), get(backups::download));
    }
    let mut router = router
        .fallback(meta::not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            )
        })
        // Inner to outer: per-key rate limit, authentication, audit + usage, metrics, headers.
        .layer(layers::from_fn_with_state(state.clone(), ratelimit::layer))
        .layer(layers::from_fn_with_state(state.clone(), auth::layer))
        .layer(layers::from_fn_with_state(state.clone(), audit::layer))
        .layer(layers::from_fn_with_state(state.clone(), metrics::track))
        .layer(layers::from_fn(request_id::layer))
        .layer(SetResponseHeaderLayer::overriding(HeaderName::from_static("x-loci-node"), node));
    for (name, value) in state.http.headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    if let Some(cors) = state.http.cors() {
        router = router.layer(cors);
    }
    router.layer(DefaultBodyLimit::max(max_body)).layer(CatchPanicLayer::new()).with_state(state)
}
