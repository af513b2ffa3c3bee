//! Memory maintenance over REST: deduplication and its trash, consolidation and summaries,
//! feedback on importance, and the cluster's decay and autopilot settings. Transport only: the
//! rules are in `loci_service::maintenance`.

use axum::extract::{Path, Query, State};
use loci_raft::maintenance::{AutopilotConfig, DedupMode};
use loci_service::memories::{Target, target};
use loci_storage::decay::{DecayConfig, DecayStrategy};
use loci_storage::model::{MemoryRecord, MemoryType, NewMemory, TrashKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut};

fn memory_json(m: &MemoryRecord) -> ApiResult<Value> {
    serde_json::to_value(MemoryOut::from(m)).map_err(|e| ApiError::internal(e.to_string()))
}

fn memory_type(raw: Option<&str>) -> ApiResult<Option<MemoryType>> {
    raw.map(|t| loci_service::validate::memory_type(t).map_err(ApiError::from)).transpose()
}

#[derive(Deserialize)]
pub struct DedupBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    threshold: Option<f64>,
    memory_type: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/knowledge/deduplicate {agent_id, threshold?, memory_type?, dry_run}`: unless a dry
/// run, the duplicates move to the trash (restorable; `GET /v1/memory/deduplicated`).
pub async fn deduplicate(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<DedupBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let r = state
        .core
        .maintenance()
        .deduplicate(&p, &t, b.threshold, memory_type(b.memory_type.as_deref())?, b.dry_run)
        .await?;
    let found: usize = r.groups.iter().map(|g| g.duplicate_ids.len()).sum();
    Ok(Json(json!({
        "groups": r.groups, "duplicates_found": found, "duplicates_merged": r.moved,
        "duplicates_skipped_changed": r.skipped_changed, "memories_scanned": r.scanned, "dry_run": b.dry_run,
    })))
}

#[derive(Deserialize)]
pub struct ConsolidateBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    memory_ids: Option<Vec<String>>,
    threshold: Option<f64>,
    target_type: Option<String>,
    /// The Rust client and CLI send it: a dry run reports the group and merges nothing.
    #[serde(default)]
    dry_run: bool,
    /// Older clients send these; they are ignored.
    #[serde(flatten)]
    _ignored: Map<String, Value>,
}

/// `POST /v1/memory/consolidate {agent_id, memory_ids?, threshold?, target_type?}`: these
/// memories, or the agent's largest group of alike ones, merged into one new memory that names
/// its sources (`metadata._loci_consolidated_from`); the sources move to the trash.
pub async fn consolidate(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<ConsolidateBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let agent = loci_service::memories::agent_of(&t, b.agent_id.as_deref());
    let m = state.core.maintenance();
    if b.dry_run {
        let r = m.deduplicate(&p, &t, b.threshold, None, true).await?;
        let group = r.groups.iter().max_by_key(|g| g.duplicate_ids.len());
        let ids: Vec<String> = group
            .map(|g| std::iter::once(g.canonical_id.clone()).chain(g.duplicate_ids.iter().cloned()).collect())
            .unwrap_or_default();
        return Ok(Json(json!({
            "consolidated_memory": null, "source_memory_ids": ids, "memories_removed": 0,
            "consolidated_count": 0, "removed_count": 0, "new_memories": [], "dry_run": true,
        })));
    }
    let c = m.consolidate(&p, &t, &agent, b.memory_ids, b.threshold, memory_type(b.target_type.as_deref())?).await?;
    let merged = c.memory.as_ref().map(memory_json).transpose()?;
    let removed = if c.memory.is_some() { c.source_ids.len() } else { 0 };
    Ok(Json(json!({
        "consolidated_memory": merged, "source_memory_ids": c.source_ids, "memories_removed": removed,
        "consolidated_count": usize::from(c.memory.is_some()), "removed_count": removed,
        "new_memories": c.memory.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/agents/{agent}/consolidate`: the agent's largest group of alike memories merged.
pub async fn consolidate_agent(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = target(None, Some(&agent))?;
    let agent = loci_service::canonical_namespace(&agent).to_string();
    let c = state.core.maintenance().consolidate(&p, &t, &agent, None, None, None).await?;
    let anchors: Vec<String> = c.memory.iter().map(|m| m.id.clone()).collect();
    Ok(Json(json!({
        "agent_id": agent, "clusters_found": anchors.len(), "memories_deprecated": c.source_ids.len(),
        "anchor_ids": anchors, "deprecated_ids": c.source_ids,
    })))
}

#[derive(Deserialize)]
pub struct SummarizeBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    memory_ids: Vec<String>,
    target_type: Option<String>,
}

/// Bytes of an extractive summary at most.
const MAX_SUMMARY_BYTES: usize = 4_000;

/// `POST /v1/knowledge/summarize {agent_id, memory_ids (≥2), target_type?}`: a new memory
/// holding the first sentence of each source (extractive, no model), the sources kept.
pub async fn summarize(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<SummarizeBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    if b.memory_ids.len() < 2 || b.memory_ids.len() > 100 {
        return Err(ApiError::bad_request("memory_ids must name 2 to 100 memories"));
    }
    let mems = state.core.memories(&state.limiter);
    let mut sources = Vec::with_capacity(b.memory_ids.len());
    for id in &b.memory_ids {
        sources.push(mems.get(&p, id, b.namespace.as_deref(), b.agent_id.as_deref()).await?);
    }
    sources.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    let mut summary = String::new();
    for s in &sources {
        let first = s.content.split_inclusive(['.', '!', '?', '\n']).next().unwrap_or(&s.content).trim();
        if summary.len() + first.len() + 1 > MAX_SUMMARY_BYTES {
            break;
        }
        if !summary.contains(first) {
            if !summary.is_empty() {
                summary.push(' ');
            }
            summary.push_str(first);
        }
    }
    let agent = loci_service::memories::agent_of(&t, b.agent_id.as_deref());
    let mut item = NewMemory::text(agent, summary.clone());
    item.memory_type = memory_type(b.target_type.as_deref())?.unwrap_or(MemoryType::Semantic);
    item.importance = sources.iter().map(|s| s.importance).fold(0.0, f64::max);
    item.metadata = Some(json!({"_loci_summary_of": sources.iter().map(|s| s.id.clone()).collect::<Vec<_>>()}));
    let stored = mems.store(&p, &t, item).await?;
    Ok(Json(json!({
        "summary_memory": memory_json(&stored.record)?, "summary": summary, "new_memory_id": stored.record.id,
        "source_count": sources.len(),
    })))
}

#[derive(Deserialize, Default)]
pub struct AgentQuery {
    agent_id: Option<String>,
    namespace: Option<String>,
}

fn agent_target(q: &AgentQuery) -> ApiResult<Target> {
    Ok(target(q.namespace.as_deref(), q.agent_id.as_deref())?)
}

/// `GET /v1/memory/deduplicated?agent_id=`: the trash, newest first.
pub async fn list_trash(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
) -> ApiResult<Json<Value>> {
    let t = agent_target(&q)?;
    let rows = state.core.maintenance().trash(&p, &t).await?;
    let memories: Vec<Value> = rows
        .iter()
        .map(|e| {
            let mut v = json!({
                "id": e.record.id, "kind": match e.kind { TrashKind::Deduplication => "deduplication", TrashKind::Consolidation => "consolidation" },
                "survivor_id": e.survivor_id, "deleted_at": e.deleted_at, "restorable_until": e.restorable_until,
                "content": e.record.content,
            });
            if let Some(s) = &e.record.session_id {
                v["session_id"] = Value::from(s.as_str());
            }
            v
        })
        .collect();
    let agent = q.agent_id.as_deref().map(loci_service::canonical_namespace).unwrap_or(&t.namespace).to_string();
    Ok(Json(json!({"agent_id": agent, "count": memories.len(), "memories": memories})))
}

/// `POST /v1/memory/deduplicated/{id}/restore?agent_id=` (no body): the memory, live again.
pub async fn restore(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<AgentQuery>,
    JsonBody(b): JsonBody<AgentQuery>,
) -> ApiResult<Json<Value>> {
    // The clients send the agent in the query; the typed gRPC front sends it in the body.
    let q = AgentQuery { agent_id: q.agent_id.or(b.agent_id), namespace: q.namespace.or(b.namespace) };
    let t = agent_target(&q)?;
    let m = state.core.maintenance().restore(&p, &t, &id).await?;
    Ok(Json(memory_json(&m)?))
}

#[derive(Deserialize)]
pub struct FeedbackBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    memory_id: Option<String>,
    signal: Option<String>,
    feedback: Option<String>,
}

async fn apply_feedback(
    state: &AppState,
    p: &loci_service::access::Principal,
    id: &str,
    b: FeedbackBody,
) -> ApiResult<Value> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let signal = b.signal.or(b.feedback).ok_or_else(|| ApiError::bad_request("signal is required"))?;
    let (m, _, signal) = state.core.maintenance().feedback(p, &t, id, &signal).await?;
    Ok(json!({"memory_id": m.id, "new_importance": m.importance, "signal": signal}))
}

/// `POST /v1/memory/feedback {agent_id, memory_id, signal}`.
pub async fn feedback(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<FeedbackBody>,
) -> ApiResult<Json<Value>> {
    let id = b.memory_id.clone().ok_or_else(|| ApiError::bad_request("memory_id is required"))?;
    Ok(Json(apply_feedback(&state, &p, &id, b).await?))
}

/// `POST /v1/memories/{id}/feedback {agent_id, signal}`.
pub async fn feedback_on(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<FeedbackBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(apply_feedback(&state, &p, &id, b).await?))
}

/// `GET /v1/memories/{id}/feedback?agent_id=` (agent_id required): oldest first.
pub async fn feedback_history(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<AgentQuery>,
) -> ApiResult<Json<Value>> {
    if q.agent_id.as_deref().unwrap_or("").is_empty() && q.namespace.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::bad_request("agent_id is required"));
    }
    let t = agent_target(&q)?;
    let entries = state.core.maintenance().feedback_history(&p, &t, &id).await?;
    Ok(Json(json!({"memory_id": id, "entries": entries})))
}

/// `GET /v1/agents/{agent}/feedback/summary`.
pub async fn feedback_summary(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
    Query(q): Query<AgentQuery>,
) -> ApiResult<Json<Value>> {
    let t = target(q.namespace.as_deref(), Some(&agent))?;
    let agent = loci_service::memories::agent_of(&t, Some(&agent));
    let s = state.core.maintenance().feedback_summary(&p, &t, &agent).await?;
    Ok(Json(json!({
        "agent_id": agent, "upvotes": s.upvotes, "downvotes": s.downvotes, "flags": s.flags,
        "total_feedback": s.upvotes + s.downvotes + s.flags, "health_score": s.health_score(),
    })))
}

/// `GET /v1/feedback/health?agent_id=`.
pub async fn feedback_health(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
) -> ApiResult<Json<Value>> {
    let t = agent_target(&q)?;
    let agent = loci_service::memories::agent_of(&t, q.agent_id.as_deref());
    let s = state.core.maintenance().feedback_summary(&p, &t, &agent).await?;
    Ok(Json(json!({
        "agent_id": agent, "health_score": s.health_score(), "memory_count": s.memory_count,
        "avg_importance": s.avg_importance,
    })))
}

fn autopilot_json(c: &AutopilotConfig) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// `GET /v1/admin/autopilot/status`: the cluster's settings and this node's last pass.
pub async fn autopilot_status(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(loci_raft::catalogue::Scope::Read)?;
    let m = state.core.maintenance();
    let (runs, last) = m.last_run();
    let mut out = json!({
        "enabled": m.settings().autopilot.enabled,
        "config": autopilot_json(&m.settings().autopilot),
        "runs": runs,
        "total_dedup_removed": last.as_ref().map_or(0, |r| r.duplicates_moved),
        "total_consolidated": last.as_ref().map_or(0, |r| r.memories_consolidated),
    });
    if let Some(r) = &last {
        out["last_dedup_at"] = Value::from(r.finished_at);
        out["last_consolidation_at"] = Value::from(r.finished_at);
        out["last_dedup"] = json!({"namespaces_processed": r.namespaces, "memories_scanned": r.scanned,
            "duplicates_removed": r.duplicates_moved, "duplicates_found": r.duplicates_found});
        out["last_consolidation"] = json!({"namespaces_processed": r.namespaces, "memories_scanned": r.scanned,
            "clusters_merged": r.consolidations, "memories_consolidated": r.memories_consolidated});
        out["last_run"] = serde_json::to_value(r).unwrap_or(Value::Null);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotPatch {
    enabled: Option<bool>,
    dedup_threshold: Option<f64>,
    dedup_min_text_overlap: Option<f64>,
    dedup_interval_hours: Option<u64>,
    consolidation_interval_hours: Option<u64>,
    consolidation_threshold: Option<f64>,
    dedup_mode: Option<String>,
    dedup_cross_session: Option<bool>,
    consolidate_cross_session: Option<bool>,
    trash_retention_hours: Option<u64>,
    max_scan: Option<u64>,
}

/// `PUT /v1/admin/autopilot/config`: changes the keys the body names (global admin).
pub async fn autopilot_config(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<AutopilotPatch>,
) -> ApiResult<Json<Value>> {
    p.require_global(loci_raft::catalogue::Scope::Admin)?;
    let m = state.core.maintenance();
    let mut settings = m.settings();
    let c = &mut settings.autopilot;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = b.$f { c.$f = v; } )* };
    }
    set!(
        enabled,
        dedup_threshold,
        dedup_min_text_overlap,
        dedup_interval_hours,
        consolidation_interval_hours,
        consolidation_threshold,
        dedup_cross_session,
        consolidate_cross_session,
        trash_retention_hours,
        max_scan
    );
    if let Some(mode) = b.dedup_mode.as_deref() {
        c.dedup_mode = match mode {
            "off" => DedupMode::Off,
            "report" => DedupMode::Report,
            "merge" => DedupMode::Merge,
            _ => return Err(ApiError::bad_request("dedup_mode must be off, report or merge")),
        };
    }
    let stored = m.set_settings(&p, settings).await?;
    Ok(Json(
        json!({"success": true, "config": autopilot_json(&stored.autopilot), "message": "autopilot settings updated"}),
    ))
}

#[derive(Deserialize)]
pub struct TriggerBody {
    action: Option<String>,
}

/// `POST /v1/admin/autopilot/trigger {action: dedup|consolidate|all}`: a pass now, over this
/// node's primaries, in the configured dedup mode.
pub async fn autopilot_trigger(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<TriggerBody>,
) -> ApiResult<Json<Value>> {
    let m = state.core.maintenance();
    let asked = b.action.unwrap_or_else(|| "all".into());
    let r = m.trigger(&p, &asked).await?;
    // The canonical name (the Rust client's enum knows only these three).
    let action = match asked.as_str() {
        "dedup" | "deduplicate" => "dedup",
        "consolidate" | "consolidation" => "consolidate",
        _ => "all",
    };
    let mode = serde_json::to_value(m.settings().autopilot.dedup_mode).unwrap_or(Value::Null);
    let mut out = json!({"success": r.errors.is_empty(), "action": action,
        "message": format!("{} namespaces processed", r.namespaces), "report": r});
    if action != "consolidate" {
        out["dedup"] = json!({"namespaces_processed": r.namespaces, "memories_scanned": r.scanned,
            "duplicates_removed": r.duplicates_moved, "duplicates_found": r.duplicates_found, "mode": mode});
    }
    if action != "dedup" {
        out["consolidation"] = json!({"namespaces_processed": r.namespaces, "memories_scanned": r.scanned,
            "clusters_merged": r.consolidations, "memories_consolidated": r.memories_consolidated});
    }
    Ok(Json(out))
}

fn decay_json(d: &DecayConfig) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// `GET /v1/admin/decay/config`: the cluster's default decay (namespaces may set their own in
/// their memory policy's `decay`).
pub async fn decay_config(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(loci_raft::catalogue::Scope::Read)?;
    Ok(Json(decay_json(&state.core.maintenance().settings().decay)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecayPatch {
    enabled: Option<bool>,
    strategy: Option<String>,
    half_life_hours: Option<f64>,
    min_importance: Option<f64>,
    access_boost: Option<f64>,
}

/// `PUT /v1/admin/decay/config`: changes the keys the body names (global admin).
pub async fn decay_update(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<DecayPatch>,
) -> ApiResult<Json<Value>> {
    p.require_global(loci_raft::catalogue::Scope::Admin)?;
    let m = state.core.maintenance();
    let mut settings = m.settings();
    let d = &mut settings.decay;
    if let Some(s) = b.strategy.as_deref() {
        d.strategy = DecayStrategy::parse(s)
            .ok_or_else(|| ApiError::bad_request("strategy must be exponential, linear or step"))?;
        // Naming a strategy turns decay on unless the body says otherwise.
        d.enabled = true;
    }
    if let Some(v) = b.half_life_hours {
        d.half_life_hours = v;
        d.enabled = true;
    }
    if let Some(v) = b.min_importance {
        d.min_importance = v;
    }
    if let Some(v) = b.access_boost {
        d.access_boost = v;
    }
    if let Some(e) = b.enabled {
        d.enabled = e;
    }
    let stored = m.set_settings(&p, settings).await?;
    Ok(Json(json!({"success": true, "config": decay_json(&stored.decay), "message": "decay settings updated"})))
}

#[derive(Deserialize, Default)]
pub struct StatsQuery {
    namespace: Option<String>,
}

/// `GET /v1/admin/decay/stats[?namespace=]`: how decay leaves the memories now.
pub async fn decay_stats(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let m = state.core.maintenance();
    let cycle = m.decay_stats(&p, q.namespace.as_deref()).await?;
    let (cycles, _) = m.decay_cycles();
    Ok(Json(json!({
        "total_decayed": cycle.decayed, "total_deleted": 0, "cycles_run": cycles, "last_run_at": cycle.at,
        "last_cycle": {"namespaces_processed": cycle.namespaces, "memories_processed": cycle.memories,
            "memories_decayed": cycle.decayed, "memories_deleted": 0,
            "avg_importance": cycle.avg_importance, "avg_effective_importance": cycle.avg_effective_importance},
        "enabled": m.settings().decay.enabled,
    })))
}
