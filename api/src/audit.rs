//! Audit log: one JSON line per request and per business event, hash-chained.
//!
//! Every line carries `prev`, the SHA-256 (hex) of the previous line's bytes, and a sequence
//! number; `loci audit verify FILE` recomputes the chain, so an edited, removed or reordered line
//! is detected (only cutting lines off the end leaves an intact, shorter chain). Secrets never
//! appear: keys are identified by id, and captured request bodies are redacted.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Field names whose values are replaced by "[redacted]" in captured bodies.
const SECRET_FIELDS: &[&str] =
    &["key", "new_key", "secret", "password", "api_key", "encryption_key", "token", "root_api_key"];

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub enabled: bool,
    /// `None` or `-` = stdout.
    pub file: Option<PathBuf>,
    /// Request paths (prefixes) not logged.
    pub exclude_paths: Vec<String>,
    /// Capture request bodies up to this many bytes (0 = never).
    pub capture_body_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            file: None,
            exclude_paths: vec!["/health".into(), "/metrics".into()],
            capture_body_bytes: 0,
        }
    }
}

enum Sink {
    Stdout,
    File(File),
}

struct Chain {
    sink: Sink,
    prev: String,
    seq: u64,
}

pub struct AuditLog {
    config: AuditConfig,
    node_id: u64,
    chain: Option<Mutex<Chain>>,
}

fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

impl AuditLog {
    pub fn disabled() -> Arc<Self> {
        Arc::new(AuditLog { config: AuditConfig::default(), node_id: 0, chain: None })
    }

    /// Open (appending to) the log; the chain continues from the file's last line.
    pub fn open(config: AuditConfig, node_id: u64) -> std::io::Result<Arc<Self>> {
        if !config.enabled {
            return Ok(Arc::new(AuditLog { config, node_id, chain: None }));
        }
        let (sink, prev, seq) = match config.file.as_deref().filter(|p| p.as_os_str() != "-") {
            None => (Sink::Stdout, GENESIS.to_string(), 0),
            Some(path) => {
                let (prev, seq) = last_link(path)?;
                use std::os::unix::fs::OpenOptionsExt;
                // It may hold captured request bodies: owner-only.
                let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
                (Sink::File(f), prev, seq)
            }
        };
        Ok(Arc::new(AuditLog { config, node_id, chain: Some(Mutex::new(Chain { sink, prev, seq })) }))
    }

    pub fn enabled(&self) -> bool {
        self.chain.is_some()
    }

    fn excluded(&self, path: &str) -> bool {
        self.config.exclude_paths.iter().any(|p| path == p || path.starts_with(&format!("{p}/")))
    }

    /// Append one record (adds `ts`, `node`, `seq`, `prev`).
    pub fn write(&self, mut record: Value) {
        let Some(chain) = &self.chain else { return };
        let mut c = chain.lock();
        c.seq += 1;
        record["ts"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        record["node"] = json!(self.node_id);
        record["seq"] = json!(c.seq);
        record["prev"] = json!(c.prev);
        let line = record.to_string();
        let res = match &mut c.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|_| out.flush())
            }
            Sink::File(f) => writeln!(f, "{line}"),
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "audit log write failed");
        }
        c.prev = line_hash(&line);
    }

    /// A business event: key created/rotated/revoked, namespace created/deleted, policy changed,
    /// encryption rotated, ...
    pub fn event(&self, event: &str, principal: Option<&Principal>, details: Value) {
        if !self.enabled() {
            return;
        }
        self.write(json!({
            "type": "event",
            "event": event,
            "key_id": principal.map(|p| p.key_id.clone()),
            "details": details,
        }));
    }

    pub fn auth_failure(&self, method: &str, path: &str, err: &ApiError) {
        if !self.enabled() {
            return;
        }
        self.write(json!({"type": "event", "event": "auth_failure", "method": method, "path": path, "code": err.code}));
    }
}

/// (hash of the last line, its seq) of an existing log, or genesis.
fn last_link(path: &Path) -> std::io::Result<(String, u64)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((GENESIS.to_string(), 0)),
        Err(e) => return Err(e),
    };
    let mut last = None;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    Ok(match last {
        None => (GENESIS.to_string(), 0),
        Some(l) => {
            let seq = serde_json::from_str::<Value>(&l).ok().and_then(|v| v["seq"].as_u64()).unwrap_or(0);
            (line_hash(&l), seq)
        }
    })
}

/// Outcome of verifying a log file.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { lines: u64 },
    Broken { line: u64, reason: String },
}

pub fn verify(path: &Path) -> std::io::Result<Verdict> {
    let f = File::open(path)?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut n = 0;
    for line in BufReader::new(f).lines() {
        let line = line?;
        n += 1;
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return Ok(Verdict::Broken { line: n, reason: format!("not JSON: {e}") }),
        };
        let Some(p) = v["prev"].as_str() else {
            return Ok(Verdict::Broken { line: n, reason: "no prev hash".into() });
        };
        let seq = v["seq"].as_u64().unwrap_or(0);
        // A log continued across restarts starts its chain from the file's last line, so the
        // very first line is the only one allowed to start from genesis.
        if p != prev {
            return Ok(Verdict::Broken {
                line: n,
                reason: "prev hash does not match the previous line (a line was edited, removed or reordered)".into(),
            });
        }
        if let Some(e) = expected_seq {
            if seq != e {
                return Ok(Verdict::Broken { line: n, reason: format!("sequence {seq}, expected {e}") });
            }
        }
        expected_seq = Some(seq + 1);
        prev = line_hash(&line);
    }
    Ok(Verdict::Intact { lines: n })
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) {
                    *val = json!("[redacted]");
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Middleware: one audit record per request, plus per-key usage counters.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let started = Instant::now();
    let audit = state.audit.clone();
    let logging = audit.enabled() && !audit.excluded(&path);
    let mut body_capture = None;
    let req = if logging && audit.config.capture_body_bytes > 0 {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, state.core.config.max_body_bytes).await {
            Ok(b) => b,
            // Too large (or unreadable): refuse as the handler would have.
            Err(_) => {
                return axum::response::IntoResponse::into_response(ApiError::payload_too_large(
                    "request body exceeds the configured limit (LOCI_MAX_BODY_SIZE)",
                ));
            }
        };
        let take = &bytes[..bytes.len().min(audit.config.capture_body_bytes)];
        body_capture = Some(match serde_json::from_slice::<Value>(take) {
            Ok(mut v) => {
                redact(&mut v);
                v
            }
            // Truncated or non-JSON bodies are not kept verbatim: they might hold a secret.
            Err(_) => json!({"truncated": bytes.len() > take.len(), "bytes": bytes.len()}),
        });
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let principal_slot = req.extensions().get::<std::sync::Arc<Principal>>().cloned();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let principal = principal_slot.or_else(|| resp.extensions().get::<std::sync::Arc<Principal>>().cloned());
    if let Some(p) = &principal {
        state.usage.record(&p.key_id, &path, &p.granted(), status, elapsed);
    }
    if logging {
        let mut rec = json!({
            "type": "request",
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "ip": ip,
            "key_id": principal.as_ref().map(|p| p.key_id.clone()),
            "scope": principal.as_ref().map(|p| p.scope.as_str()),
            "namespaces": principal.as_ref().map(|p| p.touched()),
            "request_id": resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        });
        if let Some(b) = body_capture {
            rec["body"] = b;
        }
        audit.write(rec);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_edit_removal_and_reorder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let cfg = AuditConfig { enabled: true, file: Some(path.clone()), ..Default::default() };
        let log = AuditLog::open(cfg.clone(), 1).unwrap();
        for i in 0..5 {
            log.event("test", None, json!({"i": i}));
        }
        drop(log);
        // Reopening continues the chain.
        let log = AuditLog::open(cfg, 1).unwrap();
        log.event("after-restart", None, json!({}));
        drop(log);
        assert_eq!(verify(&path).unwrap(), Verdict::Intact { lines: 6 });
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        let edited = original.replace("\"i\":2", "\"i\":9");
        std::fs::write(&path, edited).unwrap();
        assert!(matches!(verify(&path).unwrap(), Verdict::Broken { line: 4, .. }));

        let removed: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| *l).collect();
        std::fs::write(&path, removed.join("\n") + "\n").unwrap();
        assert!(matches!(verify(&path).unwrap(), Verdict::Broken { line: 2, .. }));

        let mut reordered = lines.clone();
        reordered.swap(2, 3);
        std::fs::write(&path, reordered.join("\n") + "\n").unwrap();
        assert!(matches!(verify(&path).unwrap(), Verdict::Broken { .. }));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut v = json!({"name": "k", "new_key": "s3cret", "nested": [{"key": "x", "ok": 1}]});
        redact(&mut v);
        assert_eq!(v, json!({"name": "k", "new_key": "[redacted]", "nested": [{"key": "[redacted]", "ok": 1}]}));
    }
}
