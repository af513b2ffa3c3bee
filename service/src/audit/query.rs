//! Reading the audit log back (`GET /v1/audit`): which records a caller may see, which match a
//! filter, the SDK's event shape, and a newest-first scan of a node's file with a byte budget.
//!
//! The decisions ([`visible`], [`AuditFilter::matches`], [`to_event`], [`Cursor`]) are IO-free;
//! [`scan`] reads a file backwards in blocks, so a query costs what it reads (at most
//! [`SCAN_BUDGET_BYTES`] a node), not the size of the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use loci_raft::catalogue::{Grant, Scope, pattern_matches};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::{Grants, Principal};
use crate::error::{ServiceError, ServiceResult};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// The most records one export page holds (the SDK's default for `export_audit`).
pub const MAX_EXPORT_LIMIT: usize = 10_000;
/// The most bytes of its file one node reads for one query; a query that reaches it answers
/// what it found with a cursor to go on from.
pub const SCAN_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// Lines longer than this are skipped by the scan (a record is a few KiB; bodies are capped).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
const BLOCK: u64 = 64 * 1024;

/// Who sees which records: a global admin every record; a key with `admin` on some patterns
/// the request records whose every namespace falls inside them (a record naming a namespace
/// outside, or none, is another tenant's or the operator's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Visibility {
    All,
    Within(Vec<String>),
}

impl Visibility {
    /// The caller's view, or 403 when it holds `admin` nowhere.
    pub fn of(p: &Principal) -> ServiceResult<Self> {
        match &p.grants {
            Grants::All(s) if *s >= Scope::Admin => Ok(Visibility::All),
            Grants::All(_) => Err(ServiceError::insufficient_scope("admin")),
            Grants::List(list) => {
                let mine: Vec<String> =
                    list.iter().filter(|g: &&Grant| g.scope >= Scope::Admin).map(|g| g.pattern.clone()).collect();
                if mine.is_empty() {
                    return Err(ServiceError::insufficient_scope("admin"));
                }
                Ok(Visibility::Within(mine))
            }
        }
    }
}

/// The namespaces a record names.
pub fn namespaces_of(rec: &Value) -> Vec<&str> {
    let mut out: Vec<&str> =
        rec["namespaces"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if let Some(n) = rec["namespace"].as_str()
        && !out.contains(&n)
    {
        out.push(n);
    }
    out
}

/// May a caller with this view see the record?
pub fn visible(rec: &Value, vis: &Visibility) -> bool {
    match vis {
        Visibility::All => true,
        Visibility::Within(patterns) => {
            let names = namespaces_of(rec);
            !names.is_empty() && names.iter().all(|n| patterns.iter().any(|p| pattern_matches(p, n)))
        }
    }
}

/// Milliseconds since the epoch of a record's RFC 3339 `timestamp`.
pub fn timestamp_ms(rec: &Value) -> Option<i64> {
    let t = rec["timestamp"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp_millis())
}

/// A position in the cluster's merged, newest-first order: (timestamp ms, node, seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub ts_ms: i64,
    pub node: u64,
    pub seq: u64,
}

impl Cursor {
    pub fn of(rec: &Value) -> Option<Cursor> {
        Some(Cursor { ts_ms: timestamp_ms(rec)?, node: rec["node"].as_u64()?, seq: rec["seq"].as_u64()? })
    }

    /// `ts.node.seq`, as the API hands it out.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.ts_ms, self.node, self.seq)
    }

    pub fn parse(s: &str) -> ServiceResult<Cursor> {
        let bad = || ServiceError::bad_request("invalid 'cursor': pass the 'next_cursor' of the previous page");
        let mut parts = s.split('.');
        let (Some(t), Some(n), Some(q), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(Cursor {
            ts_ms: t.parse().map_err(|_| bad())?,
            node: n.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// What `GET /v1/audit` filters on (every field optional; all given must hold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// `request`, `auth_failure`, or an event name such as `key_created`.
    pub event_type: Option<String>,
    pub key_id: Option<String>,
    pub namespace: Option<String>,
    pub agent_id: Option<String>,
    pub method: Option<String>,
    /// Records whose path starts with this.
    pub path_prefix: Option<String>,
    /// An exact status (`403`) or a class (`4xx`).
    pub status: Option<String>,
    /// Inclusive bounds, Unix milliseconds.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only this node's records.
    pub node: Option<u64>,
    /// Only records after this position in the newest-first order (the next page).
    pub before: Option<Cursor>,
}

impl AuditFilter {
    /// Refuse filters that cannot mean anything.
    pub fn check(&self) -> ServiceResult<()> {
        if let Some(s) = &self.status {
            let ok = s.len() == 3
                && s.as_bytes()[0].is_ascii_digit()
                && (s[1..].bytes().all(|b| b.is_ascii_digit()) || s[1..].eq_ignore_ascii_case("xx"));
            if !ok {
                return Err(ServiceError::bad_request("'status' is a status code (403) or a class (4xx)"));
            }
        }
        if let (Some(f), Some(t)) = (self.from_ms, self.to_ms)
            && f > t
        {
            return Err(ServiceError::bad_request("'from' is after 'to'"));
        }
        Ok(())
    }

    pub fn matches(&self, rec: &Value) -> bool {
        let s = |k: &str| rec[k].as_str();
        if let Some(t) = &self.event_type {
            let ty = if s("type") == Some("request") { Some("request") } else { s("event") };
            if ty != Some(t.as_str()) {
                return false;
            }
        }
        if self.key_id.as_deref().is_some_and(|k| s("key_id") != Some(k)) {
            return false;
        }
        if let Some(ns) = &self.namespace
            && !namespaces_of(rec).contains(&ns.as_str())
        {
            return false;
        }
        if self.agent_id.as_deref().is_some_and(|a| s("agent_id") != Some(a)) {
            return false;
        }
        if self.method.as_deref().is_some_and(|m| !s("method").is_some_and(|x| x.eq_ignore_ascii_case(m))) {
            return false;
        }
        if self.path_prefix.as_deref().is_some_and(|p| !s("path").is_some_and(|x| x.starts_with(p))) {
            return false;
        }
        if let Some(want) = &self.status {
            let Some(got) = rec["status"].as_u64() else { return false };
            let got = got.to_string();
            let ok = if want[1..].eq_ignore_ascii_case("xx") { got.starts_with(&want[..1]) } else { &got == want };
            if !ok {
                return false;
            }
        }
        if self.node.is_some_and(|n| rec["node"].as_u64() != Some(n)) {
            return false;
        }
        if self.from_ms.is_some() || self.to_ms.is_some() || self.before.is_some() {
            let Some(ts) = timestamp_ms(rec) else { return false };
            if self.from_ms.is_some_and(|f| ts < f) || self.to_ms.is_some_and(|t| ts > t) {
                return false;
            }
            if let Some(b) = self.before
                && Cursor::of(rec).is_none_or(|c| c >= b)
            {
                return false;
            }
        }
        true
    }
}

/// A record in the shape of the SDK's `AuditEvent`: `id`, `event_type`, `agent_id`,
/// `memory_id`, `session_id`, `importance`, `namespace`, `timestamp` (ms), `reason`, `details`
/// (the whole record), plus `node`, `key_id`, `method`, `path`, `status` and `cursor`.
pub fn to_event(rec: &Value) -> Value {
    let is_request = rec["type"].as_str() == Some("request");
    let event_type = if is_request { json!("request") } else { rec["event"].clone() };
    let d = &rec["details"];
    let pick = |k: &str| if rec[k].is_null() { d[k].clone() } else { rec[k].clone() };
    json!({
        "id": rec["seq"],
        "event_type": event_type,
        "agent_id": pick("agent_id"),
        "memory_id": pick("memory_id"),
        "session_id": pick("session_id"),
        "importance": pick("importance"),
        "namespace": pick("namespace"),
        "timestamp": timestamp_ms(rec),
        "reason": if rec["code"].is_null() { d["reason"].clone() } else { rec["code"].clone() },
        "key_id": rec["key_id"],
        "method": rec["method"],
        "path": rec["path"],
        "status": rec["status"],
        "node": rec["node"],
        "cursor": Cursor::of(rec).map(|c| c.encode()),
        "details": rec,
    })
}

/// What one node's scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Matching, visible records, newest first.
    pub records: Vec<Value>,
    /// The budget ran out before the start of the file: older records may match.
    pub truncated: bool,
    pub scanned_bytes: u64,
    /// The oldest record read (matching or not): with `truncated`, nothing older was seen.
    pub oldest_scanned: Option<Cursor>,
}

/// Read `path` from its end, keeping up to `limit` records that match `filter` and are
/// `visible`, reading at most `budget` bytes. Lines that are not JSON are skipped.
pub fn scan(
    path: &Path,
    filter: &AuditFilter,
    vis: &Visibility,
    limit: usize,
    budget: u64,
) -> std::io::Result<ScanResult> {
    let mut out = ScanResult::default();
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut pos = f.seek(SeekFrom::End(0))?;
    // Bytes after the last line break seen so far (the end of an earlier line).
    let mut tail: Vec<u8> = Vec::new();
    let mut skipping = false;
    while pos > 0 && out.records.len() < limit {
        if out.scanned_bytes >= budget {
            out.truncated = true;
            break;
        }
        let n = BLOCK.min(pos);
        pos -= n;
        let mut block = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut block)?;
        out.scanned_bytes += n;
        block.extend_from_slice(&tail);
        tail.clear();
        // Every complete line of this block, last first; the first piece may continue before.
        let mut end = block.len();
        while let Some(i) = block[..end].iter().rposition(|&b| b == b'\n') {
            if !skipping {
                take(&block[i + 1..end], filter, vis, &mut out);
            }
            skipping = false;
            end = i;
            if out.records.len() >= limit {
                return Ok(out);
            }
        }
        if end > MAX_LINE_BYTES {
            skipping = true;
        } else if !skipping {
            tail = block[..end].to_vec();
        }
    }
    if pos == 0 && !skipping && out.records.len() < limit {
        take(&tail, filter, vis, &mut out);
    }
    Ok(out)
}

fn take(line: &[u8], filter: &AuditFilter, vis: &Visibility, out: &mut ScanResult) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let Ok(rec) = serde_json::from_slice::<Value>(line) else { return };
    if let Some(c) = Cursor::of(&rec) {
        out.oldest_scanned = Some(c);
    }
    if filter.matches(&rec) && visible(&rec, vis) {
        out.records.push(rec);
    }
}

/// One node's part of a page: its records (newest first) and, when its scan ran out of budget,
/// the oldest position it read.
#[derive(Debug, Default)]
pub struct Part {
    pub records: Vec<Value>,
    pub stopped_at: Option<Cursor>,
}

/// Merge per-node answers into one newest-first page of at most `limit` records. A node that
/// stopped early has not looked below where it stopped, so the page ends there: records of
/// other nodes older than that come on a later page (none is skipped by paging).
pub fn merge(parts: Vec<Part>, limit: usize) -> Vec<Value> {
    let bound = parts.iter().filter_map(|p| p.stopped_at).max();
    let mut all: Vec<(Cursor, Value)> = parts
        .into_iter()
        .flat_map(|p| p.records)
        .filter_map(|r| Cursor::of(&r).map(|c| (c, r)))
        .filter(|(c, _)| bound.is_none_or(|b| *c >= b))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0));
    all.dedup_by(|a, b| a.0 == b.0);
    all.into_iter().take(limit).map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, ms: i64, extra: Value) -> Value {
        let ts =
            chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut r = json!({"type": "request", "timestamp": ts, "node": 1, "seq": seq, "method": "POST",
                           "path": "/v1/memory/store", "status": 200, "key_id": "k1"});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    #[test]
    fn tenant_admins_see_only_records_wholly_inside_their_patterns() {
        let mine = Visibility::Within(vec!["acme-*".into()]);
        assert!(visible(&rec(1, 0, json!({"namespace": "acme-a", "namespaces": ["acme-a"]})), &mine));
        assert!(!visible(&rec(1, 0, json!({"namespace": "globex", "namespaces": ["globex"]})), &mine));
        // A request that touched a tenant's namespace and another's names both: not shown.
        assert!(!visible(&rec(1, 0, json!({"namespace": "acme-a", "namespaces": ["acme-a", "globex"]})), &mine));
        assert!(!visible(&rec(1, 0, json!({})), &mine), "no namespace: node-wide");
        assert!(!visible(&json!({"type": "event", "event": "key_created"}), &mine));
        assert!(visible(&json!({"type": "event", "event": "key_created"}), &Visibility::All));
    }

    #[test]
    fn the_view_follows_the_keys_admin_grants() {
        let p = |g: Grants| Principal::new("k".into(), "k".into(), Scope::Admin, g, None, false);
        let grant = |pat: &str, s| Grant { pattern: pat.into(), scope: s };
        assert_eq!(Visibility::of(&Principal::root()).unwrap(), Visibility::All);
        assert!(Visibility::of(&p(Grants::All(Scope::Write))).is_err());
        assert!(Visibility::of(&p(Grants::List(vec![grant("a", Scope::Write)]))).is_err());
        assert_eq!(
            Visibility::of(&p(Grants::List(vec![grant("a-*", Scope::Admin), grant("b", Scope::Read)]))).unwrap(),
            Visibility::Within(vec!["a-*".into()])
        );
    }

    #[test]
    fn filters_combine() {
        let r = rec(5, 1_000, json!({"namespace": "ns", "agent_id": "ag", "status": 403}));
        let f = |v: Value| -> AuditFilter { serde_json::from_value(v).unwrap() };
        assert!(f(json!({})).matches(&r));
        assert!(f(json!({"event_type": "request", "namespace": "ns", "agent_id": "ag", "status": "4xx"})).matches(&r));
        assert!(f(json!({"status": "403", "method": "post", "path_prefix": "/v1/memory"})).matches(&r));
        assert!(f(json!({"from_ms": 1000, "to_ms": 1000})).matches(&r), "bounds are inclusive");
        for miss in [
            json!({"event_type": "key_created"}),
            json!({"key_id": "k2"}),
            json!({"namespace": "other"}),
            json!({"status": "5xx"}),
            json!({"status": "404"}),
            json!({"from_ms": 1001}),
            json!({"to_ms": 999}),
            json!({"node": 2}),
            json!({"before": {"ts_ms": 1000, "node": 1, "seq": 5}}),
        ] {
            assert!(!f(miss.clone()).matches(&r), "{miss}");
        }
        assert!(f(json!({"before": {"ts_ms": 1000, "node": 1, "seq": 6}})).matches(&r));
        assert!(AuditFilter { status: Some("4x".into()), ..Default::default() }.check().is_err());
        assert!(AuditFilter { from_ms: Some(2), to_ms: Some(1), ..Default::default() }.check().is_err());
    }

    #[test]
    fn events_have_the_sdk_shape() {
        let e = to_event(&rec(7, 1_234, json!({"namespace": "ns", "agent_id": "ag"})));
        assert_eq!(
            (e["id"].as_u64(), e["event_type"].as_str(), e["timestamp"].as_i64()),
            (Some(7), Some("request"), Some(1234))
        );
        assert_eq!((e["namespace"].as_str(), e["agent_id"].as_str()), (Some("ns"), Some("ag")));
        assert_eq!(e["cursor"], "1234.1.7");
        let ev = to_event(&json!({"type": "event", "event": "auth_failure", "code": "INVALID_API_KEY",
                                  "timestamp": "2026-01-01T00:00:00.000Z", "node": 2, "seq": 1}));
        assert_eq!((ev["event_type"].as_str(), ev["reason"].as_str()), (Some("auth_failure"), Some("INVALID_API_KEY")));
        assert_eq!(Cursor::parse("1234.1.7").unwrap(), Cursor { ts_ms: 1234, node: 1, seq: 7 });
        for bad in ["", "1.2", "a.b.c", "1.2.3.4"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_scan_reads_newest_first_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = String::new();
        // Lines spanning several blocks, one of them not JSON, a blank one.
        for i in 1..=3000u64 {
            let ns = if i % 2 == 0 { "even" } else { "odd" };
            text.push_str(&rec(i, i as i64, json!({"namespace": ns, "pad": "x".repeat(100)})).to_string());
            text.push('\n');
            if i == 1500 {
                text.push_str("not json\n\n");
            }
        }
        std::fs::write(&path, &text).unwrap();
        let all = AuditFilter::default();
        let r = scan(&path, &all, &Visibility::All, 10_000, u64::MAX).unwrap();
        assert_eq!(r.records.len(), 3000);
        assert!(!r.truncated);
        let seqs: Vec<u64> = r.records.iter().map(|x| x["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=3000).rev().collect::<Vec<_>>(), "every line once, newest first");

        let odd = AuditFilter { namespace: Some("odd".into()), ..Default::default() };
        let r = scan(&path, &odd, &Visibility::All, 5, u64::MAX).unwrap();
        assert_eq!(
            r.records.iter().map(|x| x["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
            vec![2999, 2997, 2995, 2993, 2991]
        );
        // The next page starts after the last record of this one.
        let next = AuditFilter { before: Cursor::of(&r.records[4]), ..odd.clone() };
        let r2 = scan(&path, &next, &Visibility::All, 2, u64::MAX).unwrap();
        assert_eq!(r2.records.iter().map(|x| x["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2989, 2987]);

        let tenant = Visibility::Within(vec!["even".into()]);
        let r = scan(&path, &all, &tenant, 10_000, u64::MAX).unwrap();
        assert_eq!(r.records.len(), 1500);
        assert!(r.records.iter().all(|x| x["namespace"] == "even"));

        let r = scan(&path, &all, &Visibility::All, 10_000, 2 * BLOCK).unwrap();
        assert!(r.truncated && r.scanned_bytes <= 2 * BLOCK && !r.records.is_empty());
        assert!(scan(&dir.path().join("missing"), &all, &Visibility::All, 10, u64::MAX).unwrap().records.is_empty());
    }

    #[test]
    fn pages_merge_across_nodes_newest_first() {
        let a = vec![rec(3, 30, json!({})), rec(1, 10, json!({}))];
        let mut b1 = rec(2, 30, json!({}));
        b1["node"] = json!(2);
        let key = |m: &[Value]| {
            m.iter().map(|r| (r["node"].as_u64().unwrap(), r["seq"].as_u64().unwrap())).collect::<Vec<_>>()
        };
        let part = |records: Vec<Value>| Part { records, stopped_at: None };
        let merged = merge(vec![part(a.clone()), part(vec![b1.clone()])], 2);
        assert_eq!(key(&merged), vec![(2, 2), (1, 3)]);
        // Node 2 stopped reading at ts 20: node 1's record at ts 10 waits for the next page.
        let stopped = Part { records: vec![b1], stopped_at: Some(Cursor { ts_ms: 20, node: 2, seq: 1 }) };
        assert_eq!(key(&merge(vec![part(a), stopped], 10)), vec![(2, 2), (1, 3)]);
    }
}
