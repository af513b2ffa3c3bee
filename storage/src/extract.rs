//! Entity extractors: what turns a memory's text into the entities it mentions. The built-in
//! one is the rule-based extractor of [`crate::entities`] (no model, no network,
//! microseconds); others (an OpenAI-compatible chat endpoint) plug in behind the same trait.
//! A store never calls one on its write path: extraction runs on the store's extraction
//! queue (see `store/extraction.rs`).

use std::sync::Arc;

use crate::entities::{self, Entity};
use crate::error::Result;

pub trait EntityExtractor: Send + Sync {
    /// Stable name (`rules`, `openai-compatible`), shown in the namespace's extractor settings.
    fn name(&self) -> &str;
    /// The entities `text` mentions, of `types` (wire names of [`entities::TYPES`]; all of
    /// them when empty), in text order.
    fn extract(&self, text: &str, types: &[String]) -> Result<Vec<Entity>>;
}

pub type SharedExtractor = Arc<dyn EntityExtractor>;

/// The built-in rule-based extractor ([`entities::extract`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules;

impl Rules {
    pub const NAME: &'static str = "rules";
}

impl EntityExtractor for Rules {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn extract(&self, text: &str, types: &[String]) -> Result<Vec<Entity>> {
        Ok(entities::extract(text, types))
    }
}

/// The default extractor.
pub fn rules() -> SharedExtractor {
    Arc::new(Rules)
}

/// The keys of what an extractor found (what the entity index records): type and lower-cased
/// value, sorted, once each; entities of unknown types dropped.
pub fn keys(found: &[Entity]) -> Vec<String> {
    let mut keys: Vec<String> = found
        .iter()
        .filter_map(|e| {
            let t = entities::canonical_type(&e.entity_type)?;
            let v = e.value.trim();
            (!v.is_empty()).then(|| format!("{t}:{}", v.to_lowercase()))
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_keys_match_the_entity_index() {
        let text = "Alice Martin met Bob at Acme Corp in Paris on 2024-05-01; mail alice@example.org.";
        let found = Rules.extract(text, &[]).unwrap();
        assert!(!found.is_empty());
        assert_eq!(keys(&found), entities::EntityIndex::keys_of(text));
    }

    #[test]
    fn keys_drop_unknown_types_and_blank_values_and_canonicalise() {
        let e = |t: &str, v: &str| Entity { entity_type: t.into(), value: v.into(), start: 0, end: 0, confidence: 1.0 };
        let found = [e("PERSON", "Alice"), e("person", " alice "), e("spaceship", "Enterprise"), e("org", "  ")];
        assert_eq!(keys(&found), vec!["person:alice".to_string()]);
    }
}
