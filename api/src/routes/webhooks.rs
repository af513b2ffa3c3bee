//! Webhooks: `POST /v1/webhooks {url, namespace, events?, description?}` (answers the signing
//! secret once), `GET /v1/webhooks`, `GET|DELETE /v1/webhooks/{id}`, `GET
//! /v1/webhooks/{id}/deliveries?limit=`, `POST /v1/webhooks/{id}/deliveries/{delivery}/replay`.
//! Transport only: the rules are `loci_service::webhooks`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use loci_service::webhooks::{Delivery, WebhookSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    /// A namespace or a prefix pattern (`acme-*`).
    #[serde(alias = "pattern")]
    namespace: String,
    #[serde(default)]
    events: Vec<String>,
    description: Option<String>,
}

pub async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec =
        WebhookSpec { url: body.url, pattern: body.namespace, events: body.events, description: body.description };
    let (view, secret) = s.core.webhooks().create(&p, spec).await?;
    let mut out = json!(view);
    out["secret"] = json!(secret);
    out["signature"] = json!({
        "header": "X-Loci-Signature",
        "timestamp_header": "X-Loci-Timestamp",
        "scheme": "v1=hex(HMAC-SHA256(secret, timestamp + \".\" + body))",
    });
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let hooks = s.core.webhooks().list(&p)?;
    Ok(Json(json!({"webhooks": hooks, "count": hooks.len()})))
}

pub async fn get(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.webhooks().get(&p, &id)?)))
}

pub async fn delete(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let w = s.core.webhooks().delete(&p, &id).await?;
    Ok(Json(json!({"deleted": true, "id": w.id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    limit: Option<usize>,
}

fn render(d: &Delivery) -> Value {
    json!(d)
}

pub async fn deliveries(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<DeliveryParams>,
) -> ApiResult<Json<Value>> {
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(n) => return Err(ApiError::bad_request(format!("limit must be between 1 and 1000, got {n}"))),
    };
    let (list, missing) = s.core.webhooks().deliveries(&p, &id, limit).await?;
    Ok(Json(json!({
        "deliveries": list.iter().map(render).collect::<Vec<_>>(),
        "count": list.len(),
        "complete": missing.is_empty(),
        "unavailable": missing.iter().map(|(n, why)| json!({"node": n, "reason": why})).collect::<Vec<_>>(),
    })))
}

pub async fn replay(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let d = s.core.webhooks().replay(&p, &id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"delivery": render(&d)}))))
}
