//! `GET /v1/export` and `POST /v1/import`: a namespace's memories as JSON Lines (or CSV) out,
//! and JSON Lines in. The paging, batching and failure rules are
//! `loci_service::memories::transfer`; here the formats, the streaming and the per-line
//! validation (the store route's, line by line).

use std::collections::HashSet;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use loci_service::memories::jobs::ImportJob;
use loci_service::memories::transfer::{ExportPage, ImportFailure};
use loci_storage::model::{NewMemory, VectorHit};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{StoreItem, agent_of, new_memory, target};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, MemoryOut};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    agent_id: Option<String>,
    namespace: Option<String>,
    format: Option<String>,
    include_vectors: Option<bool>,
    /// Resume after this memory id (the last one received).
    after: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Jsonl,
    Csv,
    /// `{"memories": [...]}`
    Mem0,
    /// `{"messages": [...]}`
    Zep,
}

fn format_of(f: Option<&str>, what: &str) -> ApiResult<Format> {
    match f.unwrap_or("jsonl") {
        "jsonl" | "ndjson" => Ok(Format::Jsonl),
        "csv" => Ok(Format::Csv),
        "mem0" => Ok(Format::Mem0),
        "zep" => Ok(Format::Zep),
        other => Err(ApiError::bad_request(format!(
            "unknown {what} format '{}': jsonl, csv, mem0 or zep",
            loci_service::validate::printable(other)
        ))),
    }
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Mem0 => "mem0",
            Format::Zep => "zep",
        }
    }

    /// What the export writes before its first record and after its last.
    fn head_tail(self) -> (&'static str, &'static str) {
        match self {
            Format::Jsonl => ("", ""),
            Format::Csv => (CSV_COLUMNS, ""),
            Format::Mem0 => ("{\"memories\":[", "]}\n"),
            Format::Zep => ("{\"messages\":[", "]}\n"),
        }
    }
}

const CSV_COLUMNS: &str = "id,agent_id,content,memory_type,importance,tags,session_id,created_at,expires_at,metadata\n";

fn csv_cell(s: &str) -> String {
    // Every cell quoted; a leading formula character is neutralised for spreadsheets.
    let guarded = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

fn line(hit: &VectorHit, format: Format) -> ApiResult<String> {
    let r = &hit.record;
    match format {
        Format::Jsonl => {
            let mut v = serde_json::to_value(MemoryOut::from(r)).map_err(|e| ApiError::internal(e.to_string()))?;
            if let Some(vec) = &hit.vector {
                v["embedding"] = json!(vec);
            }
            Ok(format!("{v}\n"))
        }
        Format::Csv => {
            let cells = [
                csv_cell(&r.id),
                csv_cell(&r.agent_id),
                csv_cell(&r.content),
                csv_cell(r.memory_type.as_str()),
                r.importance.to_string(),
                csv_cell(&r.tags.join(";")),
                csv_cell(r.session_id.as_deref().unwrap_or("")),
                r.created_at.to_string(),
                r.expires_at.map(|e| e.to_string()).unwrap_or_default(),
                csv_cell(&r.metadata.as_ref().map(Value::to_string).unwrap_or_default()),
            ];
            Ok(format!("{}\n", cells.join(",")))
        }
        Format::Mem0 => Ok(super::formats::mem0_item(r).to_string()),
        Format::Zep => Ok(super::formats::zep_item(r).to_string()),
    }
}

/// A page's text; `written` counts the records before it (document items are comma-separated).
fn page_text(page: &ExportPage, format: Format, written: &mut u64) -> ApiResult<String> {
    let mut out = String::new();
    for hit in &page.items {
        if matches!(format, Format::Mem0 | Format::Zep) && *written > 0 {
            out.push(',');
        }
        out.push_str(&line(hit, format)?);
        *written += 1;
    }
    Ok(out)
}

/// `GET /v1/export`: the namespace's (or the agent's) memories in id order, streamed page by
/// page. A failure after the first page cuts the body short (the client sees an incomplete
/// transfer and resumes with `after`).
pub async fn export(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ExportParams>,
) -> ApiResult<Response> {
    let format = format_of(q.format.as_deref(), "export")?;
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    let vectors = q.include_vectors.unwrap_or(format == Format::Jsonl);
    // The first page before the answer starts, so a refusal is a status code.
    let first = state.core.memories(&state.limiter).export_page(&p, &t, q.after.clone(), vectors).await?;
    let (head_text, tail) = format.head_tail();
    let mut written = 0u64;
    let mut head = head_text.to_string();
    head.push_str(&page_text(&first, format, &mut written)?);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let (core, limiter, principal) = (state.core.clone(), state.limiter.clone(), p.clone());
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(head))).await.is_err() {
            return;
        }
        let mut more = first.more;
        let mut after = first.items.last().map(|h| h.record.id.clone());
        while more {
            let page = match core.memories(&limiter).export_page(&principal, &t, after.clone(), vectors).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                    return;
                }
            };
            let text = match page_text(&page, format, &mut written) {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
                    return;
                }
            };
            if tx.send(Ok(Bytes::from(text))).await.is_err() {
                return;
            }
            more = page.more && !page.items.is_empty();
            after = page.items.last().map(|h| h.record.id.clone()).or(after);
        }
        if !tail.is_empty() {
            let _ = tx.send(Ok(Bytes::from_static(tail.as_bytes()))).await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    let ct = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Jsonl => "application/x-ndjson",
        Format::Mem0 | Format::Zep => "application/json",
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    // The SDK reads how many records the export left out (none: every live memory is exported).
    resp.headers_mut().insert("x-dakera-export-skipped", HeaderValue::from_static("0"));
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    agent_id: Option<String>,
    namespace: Option<String>,
    format: Option<String>,
    /// Answer 202 with the job at once and import in the background.
    #[serde(alias = "async")]
    background: Option<bool>,
}

/// The go client's JSON body: `{data, format, agent_id?, namespace?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonImport {
    data: String,
    format: Option<String>,
    agent_id: Option<String>,
    namespace: Option<String>,
}

/// The import's text and the parameters the body adds: multipart (the first file field, as
/// the Python SDK sends), a JSON `{data, …}` body, or the raw JSON Lines.
async fn import_text(req: Request, state: &AppState) -> ApiResult<(String, Option<JsonImport>)> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let mut mp = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("not a multipart body: {e}")))?;
        while let Some(field) = mp.next_field().await.map_err(|e| ApiError::bad_request(format!("multipart: {e}")))? {
            if field.file_name().is_some() || field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|e| read_error(&e.to_string(), e.status().as_u16()))?;
                return Ok((utf8(bytes)?, None));
            }
        }
        return Err(ApiError::bad_request("the multipart body holds no file field"));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| read_error(&e.to_string(), e.status().as_u16()))?;
    // The go client's `{data, …}` wrapper; any other JSON is the import itself (a Mem0 or Zep
    // document).
    if ct.starts_with("application/json")
        && serde_json::from_slice::<Value>(&bytes).ok().is_some_and(|v| v.get("data").is_some_and(Value::is_string))
    {
        let j: JsonImport = crate::wire::parse_json(&bytes)?;
        return Ok((j.data.clone(), Some(j)));
    }
    Ok((utf8(bytes)?, None))
}

fn read_error(e: &str, status: u16) -> ApiError {
    if status == 413 {
        ApiError::payload_too_large("the import exceeds the configured body limit (LOCI_MAX_BODY_SIZE)")
    } else {
        ApiError::bad_request(format!("could not read the import: {e}"))
    }
}

fn utf8(b: Bytes) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| ApiError::bad_request("the import is not UTF-8 text"))
}

/// One failure of the report, as the clients read it.
fn failure_json(f: &ImportFailure) -> Value {
    json!({"line": f.line, "id": f.id, "code": f.code, "error": f.message})
}

fn failure(line: usize, id: Option<&str>, code: &str, message: &str) -> ImportFailure {
    ImportFailure { line, id: id.map(str::to_string), code: code.to_string(), message: message.to_string() }
}

/// `POST /v1/import`: JSON Lines, one memory a line in the export's shape (or the store
/// route's body). Every line is validated first; the valid ones are stored (see the service)
/// as a job: answered when done, or at once with `?background=true` (202; progress at
/// `GET /v1/import/{job_id}/status`).
pub async fn import(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ImportParams>,
    req: Request,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    let (text, body) = import_text(req, &state).await?;
    let format = body.as_ref().and_then(|b| b.format.clone()).or(q.format.clone());
    let format = format_of(format.as_deref(), "import")?;
    let namespace = body.as_ref().and_then(|b| b.namespace.clone()).or(q.namespace.clone());
    let agent = body.as_ref().and_then(|b| b.agent_id.clone()).or(q.agent_id.clone());
    let t = target(namespace.as_deref(), agent.as_deref())?;
    // Who may is decided before the lines are read.
    p.require(&t.namespace, loci_service::access::Scope::Write)?;
    let raw = raw_items(format, &text)?;
    let (items, invalid) = validate_items(&state, &t, agent.as_deref(), raw);
    let total = (items.len() + invalid.len()) as u64;
    let (run, started) = state.core.import_jobs().start(&p, &t.namespace, format.name(), total, invalid)?;
    if q.background == Some(true) {
        let s = state.clone();
        tokio::spawn(async move {
            let r = s.core.memories(&s.limiter).import(&p, &t, items, Some(&run)).await;
            run.finish(r.as_ref());
        });
        return Ok((axum::http::StatusCode::ACCEPTED, Json(job_json(&started))));
    }
    let r = state.core.memories(&state.limiter).import(&p, &t, items, Some(&run)).await;
    let job = run.finish(r.as_ref());
    r?;
    let job = job.ok_or_else(|| ApiError::internal("the import job vanished"))?;
    Ok((axum::http::StatusCode::OK, Json(job_json(&job))))
}

/// `GET /v1/import/{job_id}/status` (the SDK's `import_job_status`): the key that started it,
/// or an admin of its namespace, from any node.
pub async fn status(
    State(state): State<AppState>,
    Auth(p): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(job_json(&state.core.import_status(&p, &id).await?)))
}

/// The import's items as JSON values, numbered (lines for JSON Lines and CSV, positions for
/// documents); a document that cannot be read at all is 400 with nothing imported.
fn raw_items(format: Format, text: &str) -> ApiResult<Vec<(usize, Result<Value, ImportFailure>)>> {
    let unreadable = |(n, code, msg): super::formats::Unreadable| (n, Err(failure(n, None, code, &msg)));
    Ok(match format {
        Format::Jsonl => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let n = i + 1;
                (n, serde_json::from_str::<Value>(l).map_err(|e| failure(n, None, "INVALID_JSON", &e.to_string())))
            })
            .collect(),
        Format::Csv => super::formats::csv_items(text)
            .map_err(ApiError::bad_request)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok(v) => (i + 2, Ok(v)),
                Err(u) => unreadable(u),
            })
            .collect(),
        Format::Mem0 | Format::Zep => super::formats::document_items(format.name(), text)
            .map_err(ApiError::bad_request)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok(v) => (i + 1, Ok(v)),
                Err(u) => unreadable(u),
            })
            .collect(),
    })
}

fn validate_items(
    state: &AppState,
    t: &super::Target,
    agent: Option<&str>,
    raw: Vec<(usize, Result<Value, ImportFailure>)>,
) -> (Vec<(usize, NewMemory)>, Vec<ImportFailure>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (n, v) in raw {
        let v = match v {
            Ok(v) => v,
            Err(f) => {
                errors.push(f);
                continue;
            }
        };
        let mut item: StoreItem = match serde_json::from_value(v) {
            Ok(item) => item,
            Err(e) => {
                errors.push(failure(n, None, "INVALID_JSON", &e.to_string()));
                continue;
            }
        };
        let id = item.id.clone();
        if let Some(id) = &id
            && !seen.insert(id.clone())
        {
            errors.push(failure(n, Some(id), "DUPLICATE_ID", "the same id appears earlier in this import"));
            continue;
        }
        // The export's read-only fields; the creation time is kept.
        let created_at = item.extra.remove("created_at").and_then(|v| v.as_u64());
        item.extra.clear();
        item.namespace = None;
        // Into an agent: every line becomes the agent's; into a namespace: each keeps its own.
        let owner = agent.map(str::to_string).or_else(|| item.agent_id.clone());
        let owner = agent_of(t, owner.as_deref());
        match new_memory(state.core.config.max_content_bytes, item, &owner, None) {
            Ok(mut m) => {
                m.created_at = created_at;
                items.push((n, m));
            }
            Err(e) => errors.push(failure(n, id.as_deref(), &e.code, &e.message)),
        }
    }
    (items, errors)
}

/// A job in the shape of the SDK's `MemoryImportResponse` and `ImportJobStatus`.
fn job_json(j: &ImportJob) -> Value {
    json!({
        "job_id": j.job_id,
        "status": j.status,
        "format": j.format,
        "namespace": j.namespace,
        "total": j.total,
        "imported": j.imported,
        "skipped": j.skipped,
        "imported_count": j.imported,
        "skipped_count": j.skipped,
        "errors": j.errors.iter().map(failure_json).collect::<Vec<_>>(),
        "errors_omitted": j.errors_omitted,
        "complete": j.complete(),
        "stopped": j.stopped.as_ref().map(|(code, message)| json!({"code": code, "error": message, "not_attempted": j.not_attempted})),
        "started_at": j.started_at,
        "finished_at": j.finished_at,
    })
}
