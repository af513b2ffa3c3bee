//! The operator's quotas: `GET /admin/quotas`, `PUT /admin/quotas {pattern, max_…}`,
//! `GET|DELETE /admin/quotas/{pattern}`. Transport only: the rules are in
//! `loci_service::quotas` and `loci_raft::quota`.

use axum::extract::{Path, State};
use loci_service::quotas::QuotaRequest;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::{Json, JsonBody, parse_json};

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let quotas = state.core.quotas().list(&p)?;
    Ok(Json(json!({"quotas": quotas, "total": quotas.len()})))
}

pub async fn get(State(state): State<AppState>, Auth(p): Auth, Path(pattern): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.core.quotas().get(&p, &pattern)?)))
}

pub async fn set(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    // Who may is decided before the body is interpreted.
    state.core.quotas().list(&p)?;
    let bytes = serde_json::to_vec(&body).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    let r: QuotaRequest = parse_json(&bytes)?;
    Ok(Json(json!(state.core.quotas().set(&p, r).await?)))
}

pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(pattern): Path<String>,
) -> ApiResult<Json<Value>> {
    state.core.quotas().delete(&p, &pattern).await?;
    Ok(Json(json!({"success": true, "pattern": pattern})))
}
