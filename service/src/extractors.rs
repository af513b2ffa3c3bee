//! Entity extractors that are not built into storage: an OpenAI-compatible chat endpoint
//! (Ollama, vLLM, llama.cpp server, OpenAI) asked for the entities of a text as JSON. It runs
//! on the store's extraction queue, never on the write path; an explicit extraction
//! (`/v1/extract`, a memory's entities) calls it on the blocking pool.

use std::time::Duration;

use loci_storage::entities::{self, Entity};
use loci_storage::extract::EntityExtractor;
use loci_storage::{Result, StorageError};
use serde_json::{Value, json};

/// Characters of a text sent to the model at most (the rest is not looked at).
pub const MAX_TEXT_CHARS: usize = 8_000;
/// Entities one answer may name (the rest are dropped).
pub const MAX_ENTITIES: usize = 100;
/// Characters of one entity's text.
pub const MAX_VALUE_CHARS: usize = 200;

#[derive(Clone, Debug)]
pub struct OpenAiExtractorConfig {
    /// Base URL, e.g. `http://127.0.0.1:11434` (`/v1/chat/completions` is appended).
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
}

/// `openai-compatible`: POST a chat completion asking for `{"entities": [{"type", "text"}]}`.
pub struct OpenAiExtractor {
    pub config: OpenAiExtractorConfig,
    client: crate::upstream::LazyClient,
}

fn prompt(types: &[String]) -> String {
    let types = if types.is_empty() { entities::TYPES.join(", ") } else { types.join(", ") };
    format!(
        "Extract the named entities of the user's text. Entity types: {types} (org: organisations; \
         location: places; amount: sums of money). Answer with JSON only, exactly \
         {{\"entities\": [{{\"type\": \"<one of the types>\", \"text\": \"<the entity as written>\"}}]}}; \
         an empty list when there is none."
    )
}

/// The JSON of a model's answer: the whole text, or what a code fence or the outermost braces
/// hold.
fn json_of(content: &str) -> Option<Value> {
    let t = content.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let (start, end) = (t.find('{')?, t.rfind('}')?);
    (start < end).then(|| serde_json::from_str(&t[start..=end]).ok()).flatten()
}

/// The entities of a model's answer about `text`: known types only (wanted ones when `types`
/// is not empty), bounded in number and length, located in the text where it holds them.
pub fn parse_answer(content: &str, text: &str, types: &[String]) -> std::result::Result<Vec<Entity>, String> {
    let v = json_of(content).ok_or_else(|| "the model's answer is not JSON".to_string())?;
    let items = v.get("entities").and_then(Value::as_array).or_else(|| v.as_array()).ok_or("no `entities` list")?;
    let wanted: Vec<&str> = types.iter().filter_map(|t| entities::canonical_type(t)).collect();
    let mut out = Vec::new();
    for item in items.iter().take(MAX_ENTITIES) {
        let (Some(t), Some(value)) = (
            item.get("type").and_then(Value::as_str),
            item.get("text").or_else(|| item.get("value")).and_then(Value::as_str),
        ) else {
            continue;
        };
        let Some(t) = entities::canonical_type(t) else { continue };
        let value: String = value.trim().chars().take(MAX_VALUE_CHARS).collect();
        if value.is_empty() || (!wanted.is_empty() && !wanted.contains(&t)) {
            continue;
        }
        let (start, end) = text.find(&value).map_or((0, 0), |s| (s, s + value.len()));
        out.push(Entity { entity_type: t.to_string(), value, start, end, confidence: 0.8 });
    }
    out.sort_by_key(|e| e.start);
    Ok(out)
}

impl OpenAiExtractor {
    pub const NAME: &'static str = "openai-compatible";

    pub fn new(config: OpenAiExtractorConfig) -> Self {
        OpenAiExtractor { config, client: Default::default() }
    }

    fn call(&self, text: &str, types: &[String]) -> std::result::Result<Vec<Entity>, String> {
        let url = format!("{}/v1/chat/completions", self.config.url.trim_end_matches('/'));
        let sent: String = text.chars().take(MAX_TEXT_CHARS).collect();
        let body = json!({
            "model": self.config.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": prompt(types)},
                {"role": "user", "content": sent},
            ],
        });
        let answer = crate::upstream::post_json(
            self.client.get(self.config.timeout),
            &url,
            self.config.api_key.as_deref(),
            &body,
        )?;
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| format!("{url}: no `choices[0].message.content` in the answer"))?;
        parse_answer(content, text, types).map_err(|e| format!("{url}: {e}"))
    }
}

impl EntityExtractor for OpenAiExtractor {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn extract(&self, text: &str, types: &[String]) -> Result<Vec<Entity>> {
        crate::upstream::with_retries(self.config.retries, || self.call(text, types))
            .map_err(StorageError::ExtractorUpstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_bounded_and_filtered() {
        let text = "Anna Weber joined Initech in Lyon.";
        let answer = r#"Here: ```json
{"entities": [{"type": "PERSON", "text": "Anna Weber"}, {"type": "organization", "text": "Initech"},
 {"type": "spaceship", "text": "Enterprise"}, {"type": "place", "text": " Lyon "}, {"type": "org"}]}
```"#;
        let all = parse_answer(answer, text, &[]).unwrap();
        let got: Vec<(&str, &str, usize)> =
            all.iter().map(|e| (e.entity_type.as_str(), e.value.as_str(), e.start)).collect();
        assert_eq!(got, vec![("person", "Anna Weber", 0), ("org", "Initech", 18), ("location", "Lyon", 29)]);
        let orgs = parse_answer(answer, text, &["organisation".into()]).unwrap();
        assert_eq!(orgs.len(), 1);
        assert_eq!(orgs[0].value, "Initech");
        assert!(parse_answer("no idea", text, &[]).is_err());
        assert!(parse_answer(r#"{"answer": 1}"#, text, &[]).is_err());
        // A bare list is read too; a runaway answer is cut at MAX_ENTITIES and MAX_VALUE_CHARS.
        let many: Vec<Value> =
            (0..500).map(|i| json!({"type": "person", "text": format!("P{i}{}", "x".repeat(300))})).collect();
        let cut = parse_answer(&Value::Array(many).to_string(), text, &[]).unwrap();
        assert_eq!(cut.len(), MAX_ENTITIES);
        assert!(cut.iter().all(|e| e.value.chars().count() == MAX_VALUE_CHARS));
    }
}
