//! The catalogue's webhooks: per namespace pattern, a target URL that receives signed
//! deliveries of that namespace's events. The signing secret is held wrapped under the
//! cluster's key-encryption key, like a namespace's data key (re-wrapped by a rotation).

use std::collections::BTreeMap;

use loci_storage::crypto::WrappedKey;
use serde::{Deserialize, Serialize};

/// The most webhooks the catalogue holds.
pub const MAX_WEBHOOKS: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEntry {
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// The namespace, or a prefix pattern (`acme-*`), whose events it receives.
    pub pattern: String,
    pub url: String,
    /// Event types it receives (empty: every memory and namespace event).
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The signing secret, wrapped under the KEK with `secret_aad` as its id.
    pub secret: WrappedKey,
    pub secret_aad: u64,
    pub created_at: u64,
    pub created_by: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Add `w` (its id must be new); refused when the list is full.
pub fn put(list: &mut BTreeMap<String, WebhookEntry>, w: WebhookEntry) -> Result<WebhookEntry, String> {
    if list.contains_key(&w.id) {
        return Err(format!("webhook {} exists", w.id));
    }
    if list.len() >= MAX_WEBHOOKS {
        return Err(format!("the catalogue holds {MAX_WEBHOOKS} webhooks; delete some"));
    }
    list.insert(w.id.clone(), w.clone());
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(id: &str) -> WebhookEntry {
        WebhookEntry {
            id: id.into(),
            pattern: "acme-*".into(),
            url: "https://example.com/hook".into(),
            events: vec![],
            description: None,
            secret: WrappedKey { kek_version: 1, dek_version: 1, sealed: vec![1, 2] },
            secret_aad: 1 << 63,
            created_at: 1,
            created_by: "k".into(),
            active: true,
        }
    }

    #[test]
    fn ids_are_unique_and_the_list_is_bounded() {
        let mut list = BTreeMap::new();
        assert!(put(&mut list, hook("wh_1")).is_ok());
        assert!(put(&mut list, hook("wh_1")).is_err(), "a second webhook of one id");
        for i in 2..=MAX_WEBHOOKS {
            assert!(put(&mut list, hook(&format!("wh_{i}"))).is_ok());
        }
        assert!(put(&mut list, hook("wh_x")).is_err());
        assert_eq!(list.len(), MAX_WEBHOOKS);
    }

    #[test]
    fn an_entry_without_the_later_fields_reads_as_active() {
        let mut v = serde_json::to_value(hook("wh_1")).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("active");
            m.remove("events");
        }
        let back: WebhookEntry = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.active && back.events.is_empty());
    }
}
