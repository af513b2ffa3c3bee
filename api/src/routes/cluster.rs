//! `/v1/admin/cluster/*` (also under `/admin/cluster/*`): cluster status and operations.
//! Node-wide routes: they need a global admin key (super_admin for changes).

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Auth, Scope};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::{Json, JsonBody};
use loci_service::cluster::ClusterAction;

async fn run(state: &AppState, action: ClusterAction) -> ApiResult<Json<Value>> {
    Ok(Json(state.core.cluster_action(action).await?))
}

pub async fn status(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::Admin)?;
    run(&state, ClusterAction::Status).await
}

pub async fn nodes(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::Admin)?;
    run(&state, ClusterAction::Nodes).await
}

pub async fn shards(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::Admin)?;
    run(&state, ClusterAction::Shards).await
}

pub async fn replication(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::Admin)?;
    run(&state, ClusterAction::Replication).await
}

#[derive(Deserialize, Default)]
pub struct RebalanceBody {
    #[serde(default)]
    dry_run: bool,
}

pub async fn rebalance(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<RebalanceBody>,
) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Rebalance { dry_run: b.dry_run }).await
}

pub async fn drain(State(state): State<AppState>, Auth(p): Auth, Path(node): Path<u64>) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Drain { node }).await
}

pub async fn undrain(State(state): State<AppState>, Auth(p): Auth, Path(node): Path<u64>) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Undrain { node }).await
}

pub async fn remove(State(state): State<AppState>, Auth(p): Auth, Path(node): Path<u64>) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Remove { node }).await
}

pub async fn placement(State(state): State<AppState>, Auth(p): Auth, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let ns = loci_service::canonical_namespace(&ns).to_string();
    p.require(&ns, Scope::Read)?;
    run(&state, ClusterAction::Placement { namespace: ns }).await
}

pub async fn init(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Init).await
}

#[derive(Deserialize)]
pub struct JoinBody {
    seed: String,
}

pub async fn join(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<JoinBody>,
) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Join { seed: b.seed }).await
}

pub async fn leave(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    p.require_global(Scope::SuperAdmin)?;
    run(&state, ClusterAction::Leave).await
}
