//! The import and export formats besides the export's own JSON Lines: CSV (the export's
//! columns), a Mem0 document (`{"memories": [...]}`) and a Zep document (`{"messages": [...]}`).
//! Pure conversions: items in, store bodies out (validated afterwards as any import line is);
//! records in, document items out.

use loci_storage::model::MemoryRecord;
use serde_json::{Map, Value, json};

/// An item that could not be read: (its number, from 1; code; message).
pub type Unreadable = (usize, &'static str, String);

/// The most items one document may hold (its size is bounded by the body limit too).
const MAX_ITEMS: usize = 1_000_000;

/// Unix seconds of an RFC 3339 / ISO 8601 time (a naive one is UTC), or of a number (seconds,
/// or milliseconds when it is past the year 33658).
pub fn unix_secs(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => {
            let x = n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?;
            Some(if x > 1_000_000_000_000 { x / 1000 } else { x })
        }
        Value::String(s) => {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return u64::try_from(t.timestamp()).ok();
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                    return u64::try_from(t.and_utc().timestamp()).ok();
                }
            }
            s.parse::<u64>().ok()
        }
        _ => None,
    }
}

fn iso(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The first of `keys` that `o` holds as a string.
fn text<'a>(o: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str))
}

/// A Mem0 memory as a store body: `memory` (or `text`, `content`) is the content, `user_id` (or
/// `agent_id`) the agent, `categories` the tags; `metadata`, `id` and `created_at` are kept.
fn from_mem0(o: &Map<String, Value>) -> Result<Value, String> {
    let content = text(o, &["memory", "text", "content", "data"]).ok_or("a Mem0 memory needs memory (its text)")?;
    let mut out = json!({"content": content});
    if let Some(id) = o.get("id").and_then(Value::as_str) {
        out["id"] = json!(id);
    }
    if let Some(a) = text(o, &["user_id", "agent_id"]) {
        out["agent_id"] = json!(a);
    }
    if let Some(m) = o.get("metadata").filter(|m| m.is_object()) {
        out["metadata"] = m.clone();
    }
    if let Some(c) = o.get("categories").and_then(Value::as_array) {
        out["tags"] = json!(c.iter().filter_map(Value::as_str).collect::<Vec<_>>());
    }
    if let Some(i) = o.get("importance").and_then(Value::as_f64) {
        out["importance"] = json!(i);
    }
    if let Some(t) = o.get("memory_type").and_then(Value::as_str) {
        out["memory_type"] = json!(t);
    }
    if let Some(t) = o.get("created_at").and_then(unix_secs) {
        out["created_at"] = json!(t);
    }
    Ok(out)
}

/// A Zep message as a store body: `content`, `uuid` (or `id`) the id, its `role` kept in the
/// metadata (`role`, `role_type`), its session as metadata `zep_session_id`.
fn from_zep(o: &Map<String, Value>) -> Result<Value, String> {
    let content = text(o, &["content", "text"]).ok_or("a Zep message needs content")?;
    let mut metadata = o.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    for k in ["role", "role_type"] {
        if let Some(r) = o.get(k).and_then(Value::as_str) {
            metadata.insert(k.to_string(), json!(r));
        }
    }
    if let Some(s) = o.get("session_id").and_then(Value::as_str) {
        metadata.insert("zep_session_id".into(), json!(s));
    }
    let mut out = json!({"content": content, "memory_type": "episodic"});
    if let Some(id) = text(o, &["uuid", "id"]) {
        out["id"] = json!(id);
    }
    if let Some(a) = text(o, &["agent_id", "user_id"]) {
        out["agent_id"] = json!(a);
    }
    if !metadata.is_empty() {
        out["metadata"] = Value::Object(metadata);
    }
    if let Some(t) = o.get("created_at").and_then(unix_secs) {
        out["created_at"] = json!(t);
    }
    Ok(out)
}

/// The items of a Mem0 (`{"memories"|"results": [...]}`) or Zep (`{"messages": [...]}`)
/// document, or of a bare array, as store bodies.
pub fn document_items(format: &str, text: &str) -> Result<Vec<Result<Value, Unreadable>>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("the {format} document is not JSON: {e}"))?;
    let list = match (&doc, format) {
        (Value::Array(a), _) => a,
        (Value::Object(o), "zep") => {
            o.get("messages").and_then(Value::as_array).ok_or("a Zep document holds messages: [...]")?
        }
        (Value::Object(o), _) => o
            .get("memories")
            .or_else(|| o.get("results"))
            .and_then(Value::as_array)
            .ok_or("a Mem0 document holds memories: [...]")?,
        _ => return Err(format!("the {format} document is not an object or an array")),
    };
    if list.len() > MAX_ITEMS {
        return Err(format!("at most {MAX_ITEMS} items a document"));
    }
    Ok(list
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let n = i + 1;
            let o = item.as_object().ok_or((n, "INVALID_ITEM", "an item is not a JSON object".to_string()))?;
            let r = if format == "zep" { from_zep(o) } else { from_mem0(o) };
            r.map_err(|e| (n, "INVALID_ITEM", e))
        })
        .collect())
}

/// The rows of the export's CSV (a header row naming the columns; `id`, `agent_id`, `content`,
/// `memory_type`, `importance`, `tags` (`;`-separated), `session_id`, `created_at`, `expires_at`,
/// `metadata` (JSON); unknown columns refused) as store bodies. Row numbers count the header as 1.
pub fn csv_items(text: &str) -> Result<Vec<Result<Value, Unreadable>>, String> {
    let mut rd = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let headers: Vec<String> =
        rd.headers().map_err(|e| format!("the CSV header: {e}"))?.iter().map(|h| h.trim().to_string()).collect();
    const KNOWN: [&str; 10] = [
        "id",
        "agent_id",
        "content",
        "memory_type",
        "importance",
        "tags",
        "session_id",
        "created_at",
        "expires_at",
        "metadata",
    ];
    if let Some(h) = headers.iter().find(|h| !KNOWN.contains(&h.as_str())) {
        return Err(format!("unknown CSV column {h:?}; the columns are {}", KNOWN.join(",")));
    }
    if !headers.iter().any(|h| h == "content") {
        return Err("the CSV has no content column".into());
    }
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let n = i + 2;
        if out.len() >= MAX_ITEMS {
            return Err(format!("at most {MAX_ITEMS} rows"));
        }
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.push(Err((n, "INVALID_CSV", e.to_string())));
                continue;
            }
        };
        out.push(csv_row(&headers, &rec).map_err(|e| (n, "INVALID_CSV", e)));
    }
    Ok(out)
}

/// The export writes a leading `'` before `=`, `+`, `-`, `@` (spreadsheet formulas): undone here.
fn unguard(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => s,
    }
}

fn csv_row(headers: &[String], rec: &csv::StringRecord) -> Result<Value, String> {
    let mut out = Map::new();
    for (h, cell) in headers.iter().zip(rec.iter()) {
        let cell = unguard(cell);
        if cell.is_empty() {
            continue;
        }
        let v = match h.as_str() {
            "importance" => json!(cell.parse::<f64>().map_err(|_| format!("importance {cell:?} is not a number"))?),
            "created_at" | "expires_at" => {
                json!(unix_secs(&json!(cell)).ok_or_else(|| format!("{h} {cell:?} is not a time"))?)
            }
            "tags" => json!(cell.split(';').filter(|t| !t.is_empty()).collect::<Vec<_>>()),
            "metadata" => serde_json::from_str(cell).map_err(|e| format!("metadata is not JSON: {e}"))?,
            _ => json!(cell),
        };
        out.insert(h.clone(), v);
    }
    Ok(Value::Object(out))
}

/// A record as a Mem0 memory.
pub fn mem0_item(r: &MemoryRecord) -> Value {
    json!({
        "id": r.id,
        "memory": r.content,
        "user_id": r.agent_id,
        "agent_id": r.agent_id,
        "metadata": r.metadata,
        "categories": r.tags,
        "memory_type": r.memory_type.as_str(),
        "importance": r.importance,
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
    })
}

/// A record as a Zep message (the role a Zep import kept, else `user`).
pub fn zep_item(r: &MemoryRecord) -> Value {
    let role = r.metadata.as_ref().and_then(|m| m.get("role")).and_then(Value::as_str).unwrap_or("user");
    json!({
        "uuid": r.id,
        "role": role,
        "role_type": role,
        "content": r.content,
        "metadata": r.metadata,
        "agent_id": r.agent_id,
        "created_at": iso(r.created_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_unix_seconds() {
        assert_eq!(unix_secs(&json!("2024-01-02T03:04:05Z")), Some(1_704_164_645));
        assert_eq!(unix_secs(&json!("2024-01-02T03:04:05.123456-07:00")), Some(1_704_189_845));
        assert_eq!(unix_secs(&json!("2024-01-02T03:04:05.5")), Some(1_704_164_645));
        assert_eq!(unix_secs(&json!(1_704_164_645)), Some(1_704_164_645));
        assert_eq!(unix_secs(&json!(1_704_164_645_000u64)), Some(1_704_164_645), "milliseconds");
        assert_eq!(unix_secs(&json!("yesterday")), None);
        assert_eq!(unix_secs(&json!(-5)), None);
    }

    #[test]
    fn mem0_and_zep_documents_become_store_bodies() {
        let doc = r#"{"memories": [
            {"id": "m1", "memory": "likes tea", "user_id": "alice", "categories": ["food"], "created_at": "2024-01-02T03:04:05Z", "metadata": {"k": 1}},
            {"id": "m2", "hash": "x"},
            "not an object"
        ]}"#;
        let items = document_items("mem0", doc).unwrap_or_default();
        assert_eq!(items.len(), 3);
        let a = items[0].clone().unwrap_or_default();
        assert_eq!(
            a,
            json!({"content": "likes tea", "id": "m1", "agent_id": "alice", "tags": ["food"], "created_at": 1_704_164_645, "metadata": {"k": 1}})
        );
        assert!(matches!(&items[1], Err((2, "INVALID_ITEM", _))));
        assert!(matches!(&items[2], Err((3, "INVALID_ITEM", _))));
        let zep = r#"{"messages": [{"uuid": "z1", "role": "assistant", "content": "hello", "session_id": "s9"}]}"#;
        let z = document_items("zep", zep).unwrap_or_default()[0].clone().unwrap_or_default();
        assert_eq!(z["id"], "z1");
        assert_eq!(z["metadata"], json!({"role": "assistant", "zep_session_id": "s9"}));
        assert!(document_items("zep", r#"{"memories": []}"#).is_err(), "a Zep document holds messages");
        assert!(document_items("mem0", "[1,").is_err());
    }

    #[test]
    fn the_exports_csv_reads_back_and_bad_rows_are_reported_by_row() {
        let text = "id,agent_id,content,memory_type,importance,tags,session_id,created_at,expires_at,metadata\n\
                    \"a1\",\"bob\",\"'=SUM(A1)\",\"semantic\",0.5,\"x;y\",\"\",1704164645,,\"{\"\"k\"\":1}\"\n\
                    \"a2\",\"bob\",\"line\nbreak\",\"episodic\",high,\"\",\"\",1,,\"\"\n";
        let rows = csv_items(text).unwrap_or_default();
        assert_eq!(rows.len(), 2);
        let a = rows[0].clone().unwrap_or_default();
        assert_eq!(a["content"], "=SUM(A1)", "the formula guard is undone");
        assert_eq!(a["tags"], json!(["x", "y"]));
        assert_eq!(a["metadata"], json!({"k": 1}));
        assert_eq!(a["created_at"], 1_704_164_645);
        assert!(a.get("session_id").is_none(), "empty cells are absent");
        assert!(matches!(&rows[1], Err((3, "INVALID_CSV", m)) if m.contains("importance")));
        assert!(csv_items("id,colour\n1,red\n").is_err(), "unknown columns are refused");
        assert!(csv_items("id\n1\n").is_err(), "content is required");
    }
}
