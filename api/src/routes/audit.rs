//! The audit trail as an API: `GET /v1/audit` (the SDK's `list_audit_events`), `GET
//! /v1/audit/export?format=json|csv|chain` (`export_audit`). Transport only: who sees what and
//! the cluster-wide read are `loci_service::audit::{query, listing}`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loci_service::audit::listing::AuditPage;
use loci_service::audit::query::{
    AuditFilter, Cursor, DEFAULT_LIMIT, MAX_EXPORT_LIMIT, MAX_LIMIT, Visibility, to_event,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::Json;

/// The query string of both routes (`from`/`to` are Unix milliseconds, inclusive).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    agent_id: Option<String>,
    event_type: Option<String>,
    key_id: Option<String>,
    namespace: Option<String>,
    method: Option<String>,
    #[serde(alias = "path")]
    path_prefix: Option<String>,
    status: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    node: Option<u64>,
    cursor: Option<String>,
    limit: Option<usize>,
    format: Option<String>,
}

impl AuditParams {
    fn filter(&self) -> ApiResult<AuditFilter> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(AuditFilter {
            event_type: nonempty(&self.event_type),
            key_id: nonempty(&self.key_id),
            namespace: nonempty(&self.namespace),
            agent_id: nonempty(&self.agent_id),
            method: nonempty(&self.method),
            path_prefix: nonempty(&self.path_prefix),
            status: nonempty(&self.status),
            from_ms: self.from,
            to_ms: self.to,
            node: self.node,
            before: self.cursor.as_deref().filter(|c| !c.is_empty()).map(Cursor::parse).transpose()?,
        })
    }

    fn limit(&self, default: usize, max: usize) -> ApiResult<usize> {
        match self.limit {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(format!("limit must be between 1 and {max}, got {n}"))),
        }
    }
}

fn page_json(page: &AuditPage) -> Value {
    let events: Vec<Value> = page.records.iter().map(to_event).collect();
    json!({
        "count": events.len(),
        "events": events,
        "next_cursor": page.next_cursor.map(|c| c.encode()),
        // The SDK's name for it.
        "cursor": page.next_cursor.map(|c| c.encode()),
        "complete": page.unavailable.is_empty(),
        "nodes": {
            "answered": page.answered,
            "without_audit_file": page.without_file,
            "unavailable": page.unavailable.iter().map(|(n, why)| json!({"node": n, "reason": why})).collect::<Vec<_>>(),
        },
    })
}

/// `GET /v1/audit`: one page, newest first.
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<Value>> {
    if q.format.is_some() {
        return Err(ApiError::bad_request("'format' is a parameter of /v1/audit/export"));
    }
    let page = state.core.audit_log().list(&p, q.filter()?, q.limit(DEFAULT_LIMIT, MAX_LIMIT)?).await?;
    Ok(Json(page_json(&page)))
}

const CSV_COLUMNS: &[&str] =
    &["timestamp", "node", "id", "event_type", "key_id", "namespace", "agent_id", "method", "path", "status", "reason"];

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Quote everything that could split a field or start a spreadsheet formula.
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(['=', '+', '-', '@']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /v1/audit/export`: `json` (`{events, count}`, default), `csv`, or `chain` (this node's
/// file as written, oldest first, for `loci audit verify --url`; global admin, no filters).
/// `json` and `csv` answer one page of up to `limit` (default and most 10,000) with the next
/// page's cursor in `X-Loci-Next-Cursor`.
pub async fn export(State(state): State<AppState>, Auth(p): Auth, Query(q): Query<AuditParams>) -> ApiResult<Response> {
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if format == "chain" {
        return chain(&state, &p, &q).await;
    }
    if format != "json" && format != "csv" {
        return Err(ApiError::bad_request(format!("unknown format '{format}': json, csv or chain")));
    }
    let page = state.core.audit_log().list(&p, q.filter()?, q.limit(MAX_EXPORT_LIMIT, MAX_EXPORT_LIMIT)?).await?;
    let body = page_json(&page);
    let mut resp = if format == "json" {
        Json(json!({"events": body["events"], "count": body["count"], "next_cursor": body["next_cursor"]}))
            .into_response()
    } else {
        let mut out = CSV_COLUMNS.join(",");
        out.push('\n');
        for e in body["events"].as_array().into_iter().flatten() {
            let row: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&e[*c])).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        let mut r = out.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        r
    };
    if let Some(c) = page.next_cursor.and_then(|c| HeaderValue::from_str(&c.encode()).ok()) {
        resp.headers_mut().insert("x-loci-next-cursor", c);
    }
    if !page.unavailable.is_empty() {
        resp.headers_mut().insert("x-loci-audit-incomplete", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

async fn chain(state: &AppState, p: &loci_service::access::Principal, q: &AuditParams) -> ApiResult<Response> {
    if Visibility::of(p)? != Visibility::All {
        return Err(ApiError::from(loci_service::ServiceError::insufficient_scope("admin")));
    }
    let filtered = q.filter()? != AuditFilter { node: q.node, ..Default::default() } || q.limit.is_some();
    if filtered {
        return Err(ApiError::bad_request("format=chain exports the whole file: no filters, cursor or limit"));
    }
    let me = state.core.config.node_id;
    if q.node.is_some_and(|n| n != me) {
        return Err(ApiError::bad_request(format!(
            "format=chain exports the file of the node answering (node {me}): ask node {} itself",
            q.node.unwrap_or(me)
        )));
    }
    let Some(path) = state.audit.file().map(std::path::Path::to_path_buf) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "AUDIT_LOG_UNAVAILABLE",
            "this node writes no audit file (LOCI_AUDIT_ENABLED with LOCI_AUDIT_FILE)",
        ));
    };
    // The rotated files, oldest first, then the current one: one chain.
    let mut reader = tokio::task::spawn_blocking(move || loci_service::audit::chain_reader(&path))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("opening the audit log: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(axum::body::Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r.headers_mut().insert("x-loci-node", HeaderValue::from(me));
    Ok(r)
}
