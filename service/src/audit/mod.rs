//! The audit log: one JSON line per request and per business event, hash-chained (the REST
//! front writes request records through its audit middleware).
//!
//! Every line carries `prev`, the SHA-256 (hex) of the previous line's bytes, and a sequence
//! number; `loci audit verify FILE` recomputes the chain, so an edited, removed or reordered line
//! is detected (only cutting lines off the end leaves an intact, shorter chain). Secrets never
//! appear: keys are identified by id and name, headers other than `User-Agent` are not recorded,
//! and captured request and response bodies are redacted before they are truncated.
//!
//! Request records carry the fields of Dakera's example entry (seed 002): `timestamp`, `method`,
//! `path`, `status`, `latency_ms`, `key_name`, `key_scope`, `namespace`, `agent_id`, `ip`,
//! `user_agent`.

use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access::Principal;
use crate::error::ServiceError;

pub mod listing;
pub mod query;
pub mod rotate;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Field names whose values are replaced by "[redacted]" in captured bodies.
const SECRET_FIELDS: &[&str] = &[
    "key",
    "new_key",
    "old_key",
    "current_key",
    "secret",
    "password",
    "passphrase",
    "api_key",
    "encryption_key",
    "token",
    "root_api_key",
    "cluster_secret",
    "authorization",
];

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub enabled: bool,
    /// `None` or `-` = stdout.
    pub file: Option<PathBuf>,
    /// Request paths (prefixes) not logged.
    pub exclude_paths: Vec<String>,
    /// Record request bodies (`LOCI_AUDIT_REQUEST_BODY` / `DAKERA_AUDIT_REQUEST_BODY`).
    pub request_body: bool,
    /// Record response bodies (`LOCI_AUDIT_RESPONSE_BODY` / `DAKERA_AUDIT_RESPONSE_BODY`).
    pub response_body: bool,
    /// Recorded bodies are cut to this many bytes (`LOCI_AUDIT_MAX_BODY_SIZE`).
    pub max_body_size: usize,
    /// Rotate the file when it reaches this many bytes (0: never).
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub retain_files: usize,
    /// Rotated files older than this are deleted (None: kept by count only).
    pub retention: Option<std::time::Duration>,
}

pub const DEFAULT_MAX_BODY_SIZE: usize = 4096;

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            file: None,
            exclude_paths: vec!["/health".into(), "/metrics".into()],
            request_body: false,
            response_body: false,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_file_bytes: 0,
            retain_files: 10,
            retention: None,
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
    /// Bytes in the current file.
    bytes: u64,
}

pub struct AuditLog {
    pub config: AuditConfig,
    node_id: u64,
    chain: Option<Mutex<Chain>>,
    /// Where records also go as they are written (`GET /v1/audit/stream`).
    tap: std::sync::OnceLock<Arc<crate::events::EventHub>>,
}

fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

impl AuditLog {
    pub fn disabled() -> Arc<Self> {
        Arc::new(AuditLog { config: AuditConfig::default(), node_id: 0, chain: None, tap: Default::default() })
    }

    /// Open (appending to) the log; the chain continues from the file's last line.
    pub fn open(config: AuditConfig, node_id: u64) -> std::io::Result<Arc<Self>> {
        if !config.enabled {
            return Ok(Arc::new(AuditLog { config, node_id, chain: None, tap: Default::default() }));
        }
        let (sink, prev, seq, bytes) = match config.file.as_deref().filter(|p| p.as_os_str() != "-") {
            None => (Sink::Stdout, GENESIS.to_string(), 0, 0),
            Some(path) => {
                // The chain continues from the newest line: the file's, or the last rotated file's.
                let (prev, seq) = match last_link(path)? {
                    (p, 0) if p == GENESIS => match rotate::files_newest_first(path).get(1) {
                        Some(older) => last_link(older)?,
                        None => (p, 0),
                    },
                    link => link,
                };
                let f = open_log(path)?;
                let bytes = f.metadata()?.len();
                (Sink::File(f), prev, seq, bytes)
            }
        };
        Ok(Arc::new(AuditLog {
            config,
            node_id,
            chain: Some(Mutex::new(Chain { sink, prev, seq, bytes })),
            tap: Default::default(),
        }))
    }

    /// Also hand every record written to `hub` (once; later calls are ignored).
    pub fn tap(&self, hub: Arc<crate::events::EventHub>) {
        let _ = self.tap.set(hub);
    }

    pub fn enabled(&self) -> bool {
        self.chain.is_some()
    }

    /// The file this node writes its records to (None: disabled, or written to stdout).
    pub fn file(&self) -> Option<&Path> {
        self.chain.as_ref()?;
        self.config.file.as_deref().filter(|p| p.as_os_str() != "-")
    }

    /// This node's records that match and are visible, newest first (blocking: file IO).
    /// `None` when the node has no file to read.
    pub fn read(
        &self,
        filter: &query::AuditFilter,
        vis: &query::Visibility,
        limit: usize,
    ) -> std::io::Result<Option<query::ScanResult>> {
        let Some(path) = self.file() else { return Ok(None) };
        // The current file, then the rotated ones, newest first, within one budget.
        let mut out = query::ScanResult::default();
        for f in rotate::files_newest_first(path) {
            let left = query::SCAN_BUDGET_BYTES.saturating_sub(out.scanned_bytes);
            if left == 0 {
                out.truncated = true;
                break;
            }
            let part = query::scan(&f, filter, vis, limit - out.records.len(), left)?;
            out.scanned_bytes += part.scanned_bytes;
            out.records.extend(part.records);
            out.oldest_scanned = part.oldest_scanned.or(out.oldest_scanned);
            if part.truncated {
                out.truncated = true;
                break;
            }
            if out.records.len() >= limit {
                break;
            }
        }
        Ok(Some(out))
    }

    pub fn excluded(&self, path: &str) -> bool {
        self.config.exclude_paths.iter().any(|p| path == p || path.starts_with(&format!("{p}/")))
    }

    /// Append one record (adds `timestamp`, `node`, `seq`, `prev`); rotate the file when it is
    /// full ([`rotate`]).
    pub fn write(&self, record: Value) {
        let Some(chain) = &self.chain else { return };
        let mut c = chain.lock();
        self.append(&mut c, record);
        let full = self.config.max_file_bytes > 0 && c.bytes >= self.config.max_file_bytes;
        if let (true, Sink::File(_), Some(path)) = (full, &c.sink, self.file()) {
            match self.rotate(&mut c, path) {
                Ok(deleted) => {
                    let deleted: Vec<String> = deleted.iter().map(|p| p.display().to_string()).collect();
                    self.append(
                        &mut c,
                        json!({"type": "event", "event": "audit_rotated", "key_id": null,
                               "details": {"previous_file": rotate::rotated(path, 1).display().to_string(), "deleted": deleted}}),
                    );
                }
                Err(e) => tracing::error!(error = %e, "audit log rotation failed; writing on to the same file"),
            }
        }
    }

    fn rotate(&self, c: &mut Chain, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        if let Sink::File(f) = &c.sink {
            f.sync_all()?;
        }
        let deleted = rotate::rotate(path, self.config.retain_files, self.config.retention)?;
        c.sink = Sink::File(open_log(path)?);
        c.bytes = 0;
        Ok(deleted)
    }

    fn append(&self, c: &mut Chain, mut record: Value) {
        c.seq += 1;
        record["timestamp"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
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
        c.bytes += line.len() as u64 + 1;
        c.prev = line_hash(&line);
        if let Some(hub) = self.tap.get() {
            let ev = query::to_event(&record);
            let namespace = query::namespaces_of(&record).first().map(|n| n.to_string());
            hub.publish([crate::events::NewEvent {
                kind: crate::events::EventKind::Audit,
                event_type: ev["event_type"].as_str().unwrap_or("request").to_string(),
                namespace,
                ns_id: 0,
                agent_id: ev["agent_id"].as_str().map(str::to_string),
                data: record,
            }]);
        }
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

    pub fn auth_failure(&self, method: &str, path: &str, err: &ServiceError) {
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

fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // It may hold captured request bodies: owner-only.
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Verify a log file together with its rotated files (`FILE.n` … `FILE.1`, `FILE`) as one chain.
pub fn verify(path: &Path) -> std::io::Result<Verdict> {
    verify_reader(BufReader::new(chain_reader(path)?))
}

/// The log's files, oldest first, as one reader (what `format=chain` serves).
pub fn chain_reader(path: &Path) -> std::io::Result<ChainReader> {
    let mut files = rotate::files_newest_first(path);
    files.reverse();
    if files.is_empty() {
        // As before rotation existed: a missing file is an error to report.
        File::open(path)?;
    }
    let opened = files.into_iter().map(File::open).collect::<std::io::Result<Vec<_>>>()?;
    Ok(ChainReader { files: opened.into_iter().collect() })
}

/// A log's files read one after the other.
pub struct ChainReader {
    files: std::collections::VecDeque<File>,
}

impl std::io::Read for ChainReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(f) = self.files.front_mut() {
            match f.read(buf)? {
                0 => {
                    self.files.pop_front();
                }
                n => return Ok(n),
            }
        }
        Ok(0)
    }
}

/// [`verify`] over any reader of the log's lines (a file, or a node's `format=chain` export).
pub fn verify_reader(f: impl BufRead) -> std::io::Result<Verdict> {
    let mut prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut n = 0;
    for line in f.lines() {
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
        // The chain starts at genesis, or (the files before it deleted by retention) at the
        // `audit_rotated` record that opens a file; anywhere else a link must match.
        let anchored = n == 1 && v["event"].as_str() == Some("audit_rotated");
        if p != prev && !anchored {
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

/// Replace secret fields by name, and any occurrence of the request's own API key secret inside
/// string values, by "[redacted]".
pub fn redact(v: &mut Value, secrets: &[String]) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) {
                    *val = json!("[redacted]");
                } else {
                    redact(val, secrets);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, secrets)),
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "[redacted]");
                }
            }
        }
        _ => {}
    }
}

/// A captured body: the redacted JSON when it fits in `max` bytes (compact form), else the first
/// `max` bytes of that text as a string. Bodies that are not JSON are not recorded (they could
/// hold a secret that redaction cannot find): only their size.
pub struct Captured {
    body: Value,
    bytes: usize,
    truncated: bool,
}

pub fn capture(bytes: &[u8], max: usize, secrets: &[String]) -> Option<Captured> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return Some(Captured { body: Value::Null, bytes: bytes.len(), truncated: false });
    };
    redact(&mut v, secrets);
    let text = v.to_string();
    if text.len() <= max {
        return Some(Captured { body: v, bytes: bytes.len(), truncated: false });
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(Captured { body: Value::String(text[..cut].to_string()), bytes: bytes.len(), truncated: true })
}

pub fn put_capture(rec: &mut Value, prefix: &str, c: Option<Captured>) {
    if let Some(c) = c {
        rec[format!("{prefix}_body")] = c.body;
        rec[format!("{prefix}_body_bytes")] = json!(c.bytes);
        rec[format!("{prefix}_body_truncated")] = json!(c.truncated);
    }
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
        redact(&mut v, &[]);
        assert_eq!(v, json!({"name": "k", "new_key": "[redacted]", "nested": [{"key": "[redacted]", "ok": 1}]}));
        // The seed's rotation body (seed 002 line 94).
        let mut v = json!({"old_key": "current-passphrase", "new_key": "new-passphrase"});
        redact(&mut v, &[]);
        assert_eq!(v, json!({"old_key": "[redacted]", "new_key": "[redacted]"}));
        let mut v = json!({"content": "my key is dk_0123456789abcdef, keep it"});
        redact(&mut v, &["dk_0123456789abcdef".to_string()]);
        assert_eq!(v, json!({"content": "my key is [redacted], keep it"}));
    }
}
