//! The audit middleware: one hash-chained record per REST request (the chain, redaction and
//! verification are the service's `loci_service::audit`). Request records carry the fields of
//! Dakera's example entry (seed 002): `timestamp`, `method`, `path`, `status`, `latency_ms`,
//! `key_name`, `key_scope`, `namespace`, `agent_id`, `ip`, `user_agent`; a request a typed gRPC
//! call stood for also names the RPC (`grpc_method`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;
use loci_service::access::Principal;
use loci_service::audit::{capture, put_capture};

/// The API key secret a request presents (bearer, `X-API-Key` or `?api_key=`), to keep it out of
/// captured bodies.
fn presented_secrets(req: &Request) -> Vec<String> {
    let h = req.headers();
    let mut out = Vec::new();
    if let Some(v) = h.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") { v[7..].trim() } else { v };
        out.push(token.to_string());
    }
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        out.push(v.trim().to_string());
    }
    if let Some(v) = query_param(req.uri().query(), "api_key") {
        out.push(v);
    }
    // Very short strings would redact ordinary words; keys are at least 8 characters.
    out.retain(|s| s.len() >= 8);
    out
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `agent_id` of a request: the `/v1/agents/{id}/…` path, the `agent_id` query parameter, or the
/// body's top-level `agent_id`.
fn path_or_query_agent(path: &str, query: Option<&str>) -> Option<String> {
    let from_path = path.strip_prefix("/v1/agents/").and_then(|rest| rest.split('/').next()).filter(|s| !s.is_empty());
    from_path.map(percent_decode).or_else(|| query_param(query, "agent_id"))
}

fn body_agent(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        agent_id: Option<Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.agent_id.and_then(|v| v.as_str().map(str::to_string))
}

const MAX_USER_AGENT: usize = 512;

/// Middleware: one audit record per request, plus per-key usage counters.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let started = Instant::now();
    // A typed gRPC call answered as this request (set by the gRPC front only).
    let grpc_method = req.extensions().get::<crate::grpc::rest::GrpcMethod>().map(|g| g.0);
    let audit = state.audit.clone();
    let logging = audit.enabled() && !audit.excluded(&path);
    if !logging {
        let principal_slot = req.extensions().get::<Arc<Principal>>().cloned();
        let resp = next.run(req).await;
        let principal = principal_slot.or_else(|| resp.extensions().get::<Arc<Principal>>().cloned());
        if let Some(p) = &principal {
            state.usage.record(&p.key_id, &path, &p.granted(), resp.status().as_u16(), started.elapsed());
        }
        return resp;
    }
    let user_agent = req.headers().get(axum::http::header::USER_AGENT).map(|v| {
        let s = String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mut cut = s.len().min(MAX_USER_AGENT);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s[..cut].to_string()
    });
    let secrets = presented_secrets(&req);
    let mut agent_id = path_or_query_agent(&path, req.uri().query());
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.core.config.max_body_bytes).await {
        Ok(b) => b,
        // Too large (or unreadable): refuse as the handler would have, and record the refusal.
        Err(_) => {
            let resp = axum::response::IntoResponse::into_response(ApiError::payload_too_large(
                "request body exceeds the configured limit (LOCI_MAX_BODY_SIZE)",
            ));
            let elapsed = started.elapsed();
            audit.write(json!({
                "type": "request",
                "method": method,
                "path": path,
                "status": resp.status().as_u16(),
                "latency_ms": elapsed.as_millis() as u64,
                "latency_us": elapsed.as_micros() as u64,
                "ip": ip,
                "user_agent": user_agent,
                "agent_id": agent_id,
                "key_id": null, "key_name": null, "key_scope": null, "namespace": null, "namespaces": null,
            }));
            return resp;
        }
    };
    if agent_id.is_none() && !bytes.is_empty() {
        agent_id = body_agent(&bytes);
    }
    let req_capture =
        if audit.config.request_body { capture(&bytes, audit.config.max_body_size, &secrets) } else { None };
    let req = Request::from_parts(parts, Body::from(bytes));
    let principal_slot = req.extensions().get::<Arc<Principal>>().cloned();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    let principal = principal_slot.or_else(|| resp.extensions().get::<Arc<Principal>>().cloned());
    let mut resp_capture = None;
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if audit.config.response_body && is_json {
        let (parts, body) = resp.into_parts();
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not read a response body for the audit log");
                axum::body::Bytes::new()
            }
        };
        resp_capture = capture(&bytes, audit.config.max_body_size, &secrets);
        resp = Response::from_parts(parts, Body::from(bytes));
    }
    let elapsed = started.elapsed();
    if let Some(p) = &principal {
        state.usage.record(&p.key_id, &path, &p.granted(), status, elapsed);
    }
    let touched = principal.as_ref().map(|p| p.touched());
    let mut rec = json!({
        "type": "request",
        "method": method,
        "path": path,
        "status": status,
        "latency_ms": elapsed.as_millis() as u64,
        "latency_us": elapsed.as_micros() as u64,
        "ip": ip,
        "user_agent": user_agent,
        "agent_id": agent_id,
        "key_id": principal.as_ref().map(|p| p.key_id.clone()),
        "key_name": principal.as_ref().map(|p| p.name.clone()),
        "key_scope": principal.as_ref().map(|p| p.scope.as_str()),
        "namespace": touched.as_ref().and_then(|t| t.first().cloned()),
        "namespaces": touched,
        "request_id": resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
    });
    if let Some(m) = grpc_method {
        rec["grpc_method"] = Value::from(m);
    }
    put_capture(&mut rec, "request", req_capture);
    put_capture(&mut rec, "response", resp_capture);
    audit.write(rec);
    resp
}
