//! Backups: `POST|GET /v1/admin/backups`, `GET|DELETE /v1/admin/backups/{id}`, `POST
//! /v1/admin/backups/{id}/verify`, `GET /v1/admin/backups/{id}/download`, `POST
//! /v1/admin/backups/upload`, `POST /v1/admin/backups/restore`, `GET
//! /v1/admin/backups/restore/{id}`, `GET|POST /v1/admin/backups/schedule` (each also under
//! `/admin`). Transport only: the rules are `loci_service::backup`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use loci_service::backup::chunks::Compression;
use loci_service::backup::{CreateSpec, RestoreSpec};
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody};

fn unprocessable(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg)
}

/// Only `known` fields, else 422 naming the first unknown one.
fn only(body: &Map<String, Value>, known: &[&str]) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(unprocessable(format!("unknown field '{k}' (known: {})", known.join(", ")))),
        None => Ok(()),
    }
}

fn string_list(v: Option<&Value>, field: &str) -> ApiResult<Option<Vec<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| unprocessable(format!("{field} must be a list of names")))
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(_) => Err(unprocessable(format!("{field} must be a list of names"))),
    }
}

fn flag(v: Option<&Value>, field: &str) -> ApiResult<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(unprocessable(format!("{field} must be true or false"))),
    }
}

pub async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    only(&body, &["name", "backup_type", "namespaces", "encrypt", "compression"])?;
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return Err(unprocessable("name is required (a non-empty string)")),
    };
    let incremental = match body.get("backup_type").and_then(Value::as_str) {
        None => body
            .get("backup_type")
            .filter(|v| !v.is_null())
            .map_or(Ok(false), |_| Err(unprocessable("backup_type must be full, incremental or snapshot")))?,
        Some("full" | "snapshot") => false,
        Some("incremental") => true,
        Some(other) => {
            return Err(unprocessable(format!("backup_type '{other}' is not full, incremental or snapshot")));
        }
    };
    if flag(body.get("encrypt"), "encrypt")? == Some(false) {
        return Err(unprocessable("backups are always encrypted: encrypt must be true or left out"));
    }
    let compression = match body.get("compression") {
        None | Some(Value::Null) => Compression::default(),
        Some(Value::String(c)) => {
            Compression::parse(c).ok_or_else(|| unprocessable(format!("compression '{c}' is not none, zstd or lz4")))?
        }
        Some(_) => return Err(unprocessable("compression must be none, zstd or lz4")),
    };
    let namespaces = string_list(body.get("namespaces"), "namespaces")?.filter(|n| !n.is_empty());
    let spec = CreateSpec { name, incremental, namespaces, compression };
    let info = s.core.backups().create(&p, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"backup": info, "estimated_completion": null}))))
}

pub async fn list(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let all = s.core.backups().list(&p)?;
    Ok(Json(json!({"total": all.len(), "backups": all})))
}

pub async fn get(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.backups().get(&p, &id)?)))
}

pub async fn delete(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.core.backups().delete(&p, &id).await?))
}

pub async fn verify(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.backups().verify(&p, &id).await?)))
}

pub async fn restore(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    only(&body, &["backup_id", "target_namespaces", "namespace", "namespaces", "overwrite", "point_in_time"])?;
    let backup_id = match body.get("backup_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(unprocessable("backup_id is required")),
    };
    if body.get("point_in_time").is_some_and(|v| !v.is_null()) {
        return Err(unprocessable(
            "point_in_time is not supported: a backup restores to the point it was taken at (pick the backup by id)",
        ));
    }
    let mut namespaces = string_list(body.get("target_namespaces"), "target_namespaces")?;
    for alt in ["namespace", "namespaces"] {
        if let Some(more) = string_list(body.get(alt), alt)? {
            namespaces.get_or_insert_with(Vec::new).extend(more);
        }
    }
    let overwrite = flag(body.get("overwrite"), "overwrite")?.unwrap_or(false);
    let spec = RestoreSpec { backup_id, namespaces: namespaces.filter(|n| !n.is_empty()), overwrite };
    let info = s.core.backups().restore(&p, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(info))))
}

pub async fn restore_status(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.backups().restore_status(&p, &id)?)))
}

pub async fn get_schedule(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.backups().schedule(&p)?)))
}

pub async fn set_schedule(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.core.backups().set_schedule(&p, body)?)))
}

pub async fn download(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let rx = s.core.backups().download(&p, &id).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/gzip")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.loci-backup.gz\""))
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))
}

pub async fn upload(
    State(s): State<AppState>,
    Auth(p): Auth,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let info = s.core.backups().upload(&p, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(json!({"backup": info}))))
}
