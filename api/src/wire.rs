//! Wire helpers: a JSON body extractor with clear 4xx errors, the memory/session JSON shapes the
//! Dakera clients decode, and timestamp parsing.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use loci_storage::model::{MemoryRecord, ScoredMemory, Session, SessionInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body. An empty body counts as `{}` (the clients send bodyless POSTs with a JSON
/// content type); syntax and type errors are 400 with serde's message. Bodies declared as
/// multipart, text or XML are 415; other or missing content types (curl's form default) are
/// parsed as JSON.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let ct = ct.to_ascii_lowercase();
            if ct.starts_with("multipart/") || ct.starts_with("text/") || ct.contains("xml") {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    format!("expected Content-Type: application/json, got '{ct}'"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large("request body exceeds the configured limit (LOCI_MAX_BODY_SIZE)")
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Nesting depth of a JSON text (objects and arrays; strings are skipped), stopping early once
/// past `limit`.
fn json_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    return max;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A request body as [`JsonBody`] reads it: blank means `{}`, anything else must be JSON.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let slice: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) { b"{}" } else { bytes };
    parse_json(slice)
}

pub fn parse_json<T: DeserializeOwned>(slice: &[u8]) -> Result<T, ApiError> {
    let limit = loci_service::validate::MAX_JSON_DEPTH;
    if json_depth(slice, limit) > limit {
        return Err(ApiError::bad_request(format!("JSON body is nested deeper than {limit} levels")));
    }
    serde_json::from_slice(slice).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
            _ => "invalid request body",
        };
        ApiError::bad_request(format!("{kind}: {e}"))
    })
}

/// A JSON response from a typed value (serialised directly so f32 stays short).
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => ApiError::internal(format!("response encoding: {e}")).into_response(),
        }
    }
}

/// A memory as the clients decode it.
#[derive(Serialize)]
pub struct MemoryOut<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub agent_id: &'a str,
    pub content: &'a str,
    pub memory_type: &'static str,
    pub importance: f64,
    pub tags: &'a [String],
    pub metadata: &'a Option<serde_json::Value>,
    pub session_id: &'a Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_accessed_at: u64,
    pub access_count: u64,
    pub expires_at: Option<u64>,
}

impl<'a> From<&'a MemoryRecord> for MemoryOut<'a> {
    fn from(r: &'a MemoryRecord) -> Self {
        MemoryOut {
            id: &r.id,
            namespace: &r.namespace,
            agent_id: &r.agent_id,
            content: &r.content,
            memory_type: r.memory_type.as_str(),
            importance: r.importance,
            tags: &r.tags,
            metadata: &r.metadata,
            session_id: &r.session_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_accessed_at: r.last_accessed_at,
            access_count: r.access_count,
            expires_at: r.expires_at,
        }
    }
}

/// A recall / search hit: the memory wrapped with its scores.
#[derive(Serialize)]
pub struct ScoredOut<'a> {
    pub memory: MemoryOut<'a>,
    pub score: f64,
    pub weighted_score: f64,
    pub smart_score: f64,
    pub rank_score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_score: Option<f64>,
}

/// Scores are f32 internally; six decimals is all the precision they carry.
fn round6(x: f32) -> f64 {
    (x as f64 * 1e6).round() / 1e6
}

impl<'a> From<&'a ScoredMemory> for ScoredOut<'a> {
    fn from(s: &'a ScoredMemory) -> Self {
        ScoredOut {
            memory: MemoryOut::from(&s.memory),
            score: round6(s.relevance),
            weighted_score: round6(s.score),
            smart_score: round6(s.score),
            rank_score: round6(s.score),
            vector_score: s.vector_score.map(round6),
            text_score: s.text_score.map(round6),
        }
    }
}

#[derive(Serialize)]
pub struct SessionOut<'a> {
    pub id: &'a str,
    pub agent_id: &'a str,
    pub started_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: &'a Option<serde_json::Value>,
    pub memory_count: u64,
    pub last_activity_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_reason: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
}

impl<'a> SessionOut<'a> {
    pub fn new(s: &'a Session, memory_count: u64) -> Self {
        SessionOut {
            id: &s.id,
            agent_id: &s.agent_id,
            started_at: s.started_at,
            ended_at: s.ended_at,
            summary: &s.summary,
            metadata: &s.metadata,
            memory_count,
            last_activity_at: s.last_activity_at,
            ended_reason: &s.ended_reason,
            idle_timeout_secs: s.idle_timeout_secs,
        }
    }
}

impl<'a> From<&'a SessionInfo> for SessionOut<'a> {
    fn from(i: &'a SessionInfo) -> Self {
        SessionOut::new(&i.session, i.memory_count)
    }
}

/// Unix seconds from an integer, a float, an RFC 3339 timestamp or a `YYYY-MM-DD` date.
pub fn parse_time(v: &serde_json::Value, field: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_request(format!("{field} must be Unix seconds or an ISO-8601 / RFC 3339 timestamp"));
    match v {
        serde_json::Value::Number(n) => {
            let f = n.as_f64().ok_or_else(bad)?;
            if f < 0.0 || !f.is_finite() {
                return Err(ApiError::bad_request(format!("{field} must not be before 1970")));
            }
            Ok(f as u64)
        }
        serde_json::Value::String(s) => parse_time_str(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

pub fn parse_time_str(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return u64::try_from(dt.timestamp()).ok();
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return u64::try_from(dt.and_utc().timestamp()).ok();
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return u64::try_from(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp()).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn times() {
        assert_eq!(parse_time_str("2019-05-01T00:00:00+00:00"), Some(1_556_668_800));
        assert_eq!(parse_time_str("2023-05-20T02:21:00Z"), Some(1_684_549_260));
        assert_eq!(parse_time_str("2019-05-01"), Some(1_556_668_800));
        assert_eq!(parse_time_str("1684549260"), Some(1_684_549_260));
        assert_eq!(parse_time_str("yesterday"), None);
    }

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[{{{"}]}"#, 100), 3);
        assert_eq!(json_depth(br#"{"a": "\"[["}"#, 100), 1);
        let deep = "[".repeat(33) + &"]".repeat(33);
        assert!(parse_json::<Value>(deep.as_bytes()).is_err());
        let ok = "[".repeat(32) + &"]".repeat(32);
        assert!(parse_json::<Value>(ok.as_bytes()).is_ok());
    }
}
