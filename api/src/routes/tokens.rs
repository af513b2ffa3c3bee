//! The bearer-token deny list: `GET /admin/tokens/denials`, `POST /admin/tokens/denials
//! {jti|kid|sub, until?, reason?}`, `DELETE /admin/tokens/denials/{id}`. Transport only: the
//! rules are in `loci_service::jwt::denials` and `loci_raft::denials`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use loci_service::jwt::denials::DenyRequest;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::{Json, JsonBody, parse_json};

pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let denials = state.core.token_denials().list(&p)?;
    Ok(Json(json!({"denials": denials.iter().map(render).collect::<Vec<_>>(), "total": denials.len()})))
}

pub async fn deny(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Who may is decided before the body is interpreted.
    state.core.token_denials().list(&p)?;
    let bytes = serde_json::to_vec(&body).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    let r: DenyRequest = parse_json(&bytes)?;
    let d = state.core.token_denials().deny(&p, r).await?;
    Ok((StatusCode::CREATED, Json(render(&d))))
}

pub async fn remove(State(state): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let d = state.core.token_denials().remove(&p, &id).await?;
    Ok(Json(json!({"success": true, "id": d.id()})))
}

fn render(d: &loci_raft::denials::TokenDenial) -> Value {
    json!({
        "id": d.id(),
        "kind": d.kind.as_str(),
        "value": d.value,
        "until": d.until,
        "reason": d.reason,
        "created_at": d.created_at,
        "created_by": d.created_by,
    })
}
