//! Input grammars and limits. Identifiers are checked strictly; memory content is data and is
//! stored exactly as sent.

use loci_storage::model::MemoryType;
use serde_json::Value;

use crate::error::{ServiceError, ServiceResult};

pub const MAX_NAMESPACE_BYTES: usize = 128;
pub const MAX_AGENT_ID_BYTES: usize = 256;
pub const MAX_ID_BYTES: usize = 128;
pub const MAX_TAGS: usize = 50;
/// Characters (Unicode scalar values) per tag, as Dakera's field-limit table says.
pub const MAX_TAG_CHARS: usize = 256;
/// Nesting levels of any JSON request body (the body itself is level 1).
pub const MAX_JSON_DEPTH: usize = 32;
pub const MAX_METADATA_FIELDS: usize = 100;
/// Memory ids one request may name (importance updates; as many as a batch store holds).
pub const MAX_BATCH_IDS: usize = 1000;
pub const MAX_METADATA_DEPTH: usize = 32;
pub const MAX_METADATA_KEY_BYTES: usize = 256;
/// A memory's metadata, encoded as compact JSON (it is stored, indexed for filters and carried
/// in every replication-log entry of the memory).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// A namespace's metadata, encoded as compact JSON: it lives in the Raft catalogue, replicated
/// to every node and held in every snapshot.
pub const MAX_NAMESPACE_METADATA_BYTES: usize = 8 * 1024;
/// Any string field of a memory policy (decay names, screening mode).
pub const MAX_POLICY_STRING_BYTES: usize = 64;
pub const MAX_TOP_K: usize = 10_000;
pub const MAX_BATCH: usize = 1_000;
pub const MAX_TTL_SECONDS: u64 = 100 * 365 * 86_400;

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Names of explicitly created namespaces: `[a-z0-9-]`, no leading or trailing hyphen, ≤ 128.
pub fn namespace_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAMESPACE_BYTES
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "invalid namespace name '{}': use 1-{MAX_NAMESPACE_BYTES} characters of [a-z0-9-], not starting or ending with '-'",
            printable(name)
        )))
    }
}

/// Namespaces named after an agent accept the agent-id grammar (`[A-Za-z0-9][A-Za-z0-9_.-]*`),
/// still within the namespace length limit.
pub fn namespace_name_for_agent(name: &str) -> ServiceResult<()> {
    if name.len() > MAX_NAMESPACE_BYTES {
        return Err(ServiceError::bad_request(format!(
            "namespace '{}…' is longer than {MAX_NAMESPACE_BYTES} bytes; pass a shorter agent_id or an explicit namespace",
            printable(&name.chars().take(32).collect::<String>())
        )));
    }
    agent_grammar(name, "namespace")
}

fn agent_grammar(s: &str, what: &str) -> ServiceResult<()> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(is_alnum) && chars.all(|c| is_alnum(c) || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "invalid {what} '{}': must start with a letter or digit and contain only [A-Za-z0-9_.-]",
            printable(s)
        )))
    }
}

/// Any name that may appear in a path: either grammar.
pub fn namespace_ref(name: &str) -> ServiceResult<()> {
    if name.is_empty() || name.len() > MAX_NAMESPACE_BYTES {
        return Err(ServiceError::bad_request(format!("invalid namespace name '{}'", printable(name))));
    }
    agent_grammar(name, "namespace")
}

pub fn agent_id(id: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::bad_request("agent_id must not be empty"));
    }
    if id.len() > MAX_AGENT_ID_BYTES {
        return Err(ServiceError::bad_request(format!("agent_id is longer than {MAX_AGENT_ID_BYTES} bytes")));
    }
    agent_grammar(id, "agent_id")
}

/// Session and memory ids chosen by clients: letters, digits and `_ . : @ -`.
pub fn client_id(id: &str, what: &str) -> ServiceResult<()> {
    let mut chars = id.chars();
    let ok = id.len() <= MAX_AGENT_ID_BYTES
        && chars.next().is_some_and(is_alnum)
        && chars.all(|c| is_alnum(c) || matches!(c, '_' | '.' | ':' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "invalid {what} '{}': use up to {MAX_AGENT_ID_BYTES} characters of [A-Za-z0-9_.:@-], starting with a letter or digit",
            printable(id)
        )))
    }
}

pub fn memory_id(id: &str) -> ServiceResult<()> {
    if id.len() > MAX_ID_BYTES {
        return Err(ServiceError::bad_request(format!("memory id is longer than {MAX_ID_BYTES} bytes")));
    }
    client_id(id, "memory id")
}

pub fn tags(tags: &[String]) -> ServiceResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(ServiceError::bad_request(format!("at most {MAX_TAGS} tags are allowed, got {}", tags.len())));
    }
    for t in tags {
        if t.is_empty() || t.chars().count() > MAX_TAG_CHARS {
            return Err(ServiceError::bad_request(format!("each tag must be 1-{MAX_TAG_CHARS} characters")));
        }
        if t.chars().any(|c| c.is_control()) {
            return Err(ServiceError::bad_request("tags must not contain control characters (NUL, CR, LF, ...)"));
        }
        if t == "dakera-curated" {
            return Err(ServiceError::bad_request("the tag 'dakera-curated' is reserved"));
        }
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Metadata: a JSON object, ≤ 100 top-level fields, nesting ≤ 32, keys without control
/// characters, no reserved `_dakera_*` keys except `_dakera_content_date` and `_dakera_lang`.
pub fn metadata(v: &Value) -> ServiceResult<()> {
    metadata_within(v, MAX_METADATA_BYTES)
}

/// A namespace's metadata: the rules of [`metadata`], within [`MAX_NAMESPACE_METADATA_BYTES`].
pub fn namespace_metadata(v: &Value) -> ServiceResult<()> {
    metadata_within(v, MAX_NAMESPACE_METADATA_BYTES)
}

fn metadata_within(v: &Value, max_bytes: usize) -> ServiceResult<()> {
    let Value::Object(map) = v else {
        return Err(ServiceError::bad_request("metadata must be a JSON object"));
    };
    if map.len() > MAX_METADATA_FIELDS {
        return Err(ServiceError::bad_request(format!("metadata has more than {MAX_METADATA_FIELDS} fields")));
    }
    if depth(v) > MAX_METADATA_DEPTH {
        return Err(ServiceError::bad_request(format!("metadata is nested deeper than {MAX_METADATA_DEPTH} levels")));
    }
    fn keys_ok(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().all(|(k, v)| {
                !k.is_empty() && k.len() <= MAX_METADATA_KEY_BYTES && !k.chars().any(|c| c.is_control()) && keys_ok(v)
            }),
            Value::Array(a) => a.iter().all(keys_ok),
            _ => true,
        }
    }
    if !keys_ok(v) {
        return Err(ServiceError::bad_request(format!(
            "metadata keys must be 1-{MAX_METADATA_KEY_BYTES} bytes without control characters"
        )));
    }
    let bytes = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if bytes > max_bytes {
        return Err(ServiceError::payload_too_large(format!(
            "metadata is {bytes} bytes encoded; at most {max_bytes} are allowed"
        )));
    }
    for k in map.keys() {
        // `_dakera_event_time` is written by the server; clients may send it back on update.
        if k.starts_with("_dakera_")
            && !matches!(k.as_str(), "_dakera_content_date" | "_dakera_lang" | "_dakera_event_time")
        {
            return Err(ServiceError::bad_request(format!("metadata key '{k}' is reserved")));
        }
    }
    Ok(())
}

pub fn importance(i: f64) -> ServiceResult<f64> {
    if !i.is_finite() || !(0.0..=1.0).contains(&i) {
        return Err(ServiceError::bad_request(format!("importance must be between 0 and 1, got {i}")));
    }
    Ok(i)
}

pub fn memory_type(s: &str) -> ServiceResult<MemoryType> {
    MemoryType::parse(s).ok_or_else(|| {
        ServiceError::bad_request(format!(
            "unknown memory_type '{}': expected episodic, semantic, procedural or working",
            printable(s)
        ))
    })
}

pub fn content(c: &str, max_bytes: usize) -> ServiceResult<()> {
    if c.is_empty() {
        return Err(ServiceError::bad_request("content must not be empty"));
    }
    if c.len() > max_bytes {
        return Err(ServiceError::payload_too_large(format!(
            "content is {} bytes; the limit is {max_bytes} bytes",
            c.len()
        )));
    }
    Ok(())
}

pub fn top_k(k: i64) -> ServiceResult<usize> {
    if k < 1 || k as usize > MAX_TOP_K {
        return Err(ServiceError::bad_request(format!("top_k must be between 1 and {MAX_TOP_K}, got {k}")));
    }
    Ok(k as usize)
}

/// The ISO 639-1 language codes.
const ISO_639_1: &str = "aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu";

pub fn lang(l: &str) -> ServiceResult<()> {
    let known = |code: &str| code.len() == 2 && ISO_639_1.split(' ').any(|c| c == code);
    let ok = match l.split_once('-') {
        None => known(l),
        Some((a, b)) => known(a) && b.len() == 2 && b.chars().all(|c| c.is_ascii_alphabetic()),
    };
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!("unsupported lang '{}': use an ISO 639-1 code", printable(l))))
    }
}

/// Echo user input in messages without control characters.
pub fn printable(s: &str) -> String {
    s.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_grammar() {
        assert!(namespace_name("user-a").is_ok());
        assert!(namespace_name("acme-42").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", &"a".repeat(129), "a\0b"] {
            assert!(namespace_name(bad).is_err(), "{bad:?}");
        }
        assert!(namespace_name_for_agent("Agent_1.x").is_ok());
        assert!(namespace_name_for_agent("_x").is_err());
    }

    /// Found by `make fuzz` (target `names`): the message of a too-long name cut it at byte 32,
    /// which panicked when that byte fell inside a multi-byte character.
    #[test]
    fn a_long_non_ascii_name_is_refused_not_a_panic() {
        let name = format!("{}{}", "a".repeat(31), "é".repeat(60));
        let e = namespace_name_for_agent(&name).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.starts_with(&format!("namespace '{}é…'", "a".repeat(31))), "{}", e.message);
        // The crashing input as the fuzzer found it.
        let found = "_da0kera$agent_\u{fffd}".to_string() + &"\u{fffd}".repeat(60) + "u\u{fffd}era~";
        assert!(namespace_name_for_agent(&found).is_err());
    }

    #[test]
    fn metadata_rules() {
        assert!(metadata(&serde_json::json!({"a": {"b": [1, 2]}})).is_ok());
        assert!(metadata(&serde_json::json!([1])).is_err());
        assert!(metadata(&serde_json::json!({"_dakera_x": 1})).is_err());
        assert!(metadata(&serde_json::json!({"_dakera_lang": "en"})).is_ok());
        for good in ["en", "de", "pt-BR", "zh"] {
            assert!(lang(good).is_ok(), "{good}");
        }
        for bad in ["xx", "EN", "eng", "de-", "", "qq-US"] {
            assert!(lang(bad).is_err(), "{bad}");
        }
        let mut deep = serde_json::json!(1);
        for _ in 0..40 {
            deep = serde_json::json!({ "k": deep });
        }
        assert!(metadata(&deep).is_err());
        assert!(metadata(&serde_json::json!({"a\nb": 1})).is_err());
    }

    #[test]
    fn ids_and_tags() {
        assert!(client_id("urn:chat:42", "session id").is_ok());
        assert!(client_id("a\r\nb", "session id").is_err());
        assert!(tags(&["ok".into()]).is_ok());
        assert!(tags(&["a\0".into()]).is_err());
        assert!(tags(&vec!["t".to_string(); 51]).is_err());
        assert!(tags(&vec!["t".to_string(); 50]).is_ok());
        // 256 characters are allowed even when they take more bytes.
        assert!(tags(&["é".repeat(256)]).is_ok());
        assert!(tags(&["é".repeat(257)]).is_err());
        assert!(importance(1.5).is_err());
        assert!(importance(f64::NAN).is_err());
        assert!(memory_type("dream").is_err());
    }
}

/// Longest API key name (or label).
pub const MAX_KEY_NAME: usize = 128;

/// An API key's name: 1–128 characters, none of them control characters.
pub fn key_name(name: &str) -> ServiceResult<()> {
    if name.trim().is_empty() || name.len() > MAX_KEY_NAME || name.chars().any(|c| c.is_control()) {
        return Err(ServiceError::bad_request(format!(
            "key name must be 1-{MAX_KEY_NAME} characters without control characters"
        )));
    }
    Ok(())
}
