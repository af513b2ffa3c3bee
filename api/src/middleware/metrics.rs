//! Prometheus metrics: a process-wide recorder, request latency by route and status, and gauges
//! refreshed at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the global recorder once per process (several in-process nodes share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )
            .expect("static bucket list is valid");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be incomplete");
        }
        handle
    })
}

pub fn render(state: &AppState) -> String {
    let core = &state.core;
    let m = core.catalogue.raft.metrics().borrow().clone();
    let node = core.config.node_id.to_string();
    metrics::gauge!("loci_raft_term", "node" => node.clone()).set(m.current_term as f64);
    metrics::gauge!("loci_raft_applied_index", "node" => node.clone())
        .set(m.last_applied.map_or(0, |l| l.index) as f64);
    metrics::gauge!("loci_raft_is_leader", "node" => node.clone())
        .set(if m.current_leader == Some(core.config.node_id) { 1.0 } else { 0.0 });
    metrics::gauge!("loci_namespaces", "node" => node.clone()).set(core.catalogue.view.read().namespaces.len() as f64);
    metrics::gauge!("loci_loaded_memories", "node" => node.clone()).set(core.store.loaded_memories() as f64);
    let x = core.store.extraction_stats();
    metrics::gauge!("loci_entity_extraction_queue_depth", "node" => node.clone()).set(x.queued as f64);
    metrics::counter!("loci_entity_extractions_total", "node" => node.clone()).absolute(x.extracted);
    metrics::counter!("loci_entity_extraction_failures_total", "node" => node.clone()).absolute(x.failed);
    metrics::counter!("loci_entity_extractions_inline_total", "node" => node.clone()).absolute(x.inline);
    metrics::gauge!("loci_entity_extraction_busy_seconds", "node" => node).set(x.busy_seconds);
    core.cluster.export_metrics();
    handle().run_upkeep();
    handle().render()
}

/// Record latency and status of every request by its route template (bounded cardinality).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let node = state.core.config.node_id.to_string();
    metrics::histogram!("loci_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone(), "node" => node.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("loci_http_requests_total", "route" => route, "method" => method, "status" => status, "node" => node)
        .increment(1);
    resp
}
