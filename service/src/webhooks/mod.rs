//! Webhooks (seed 003's `webhook_url`): per namespace or namespace prefix, a URL that receives
//! each memory and namespace event of those namespaces as a signed POST ([`sign`]), retried
//! with back-off, logged, replayable ([`dispatch`]), and only to addresses the operator allows
//! ([`target`]). Managed by keys holding `admin` over the whole pattern: a tenant admin on
//! `acme-*` manages webhooks on `acme-*` or inside it, and sees no other.

pub mod dispatch;
pub mod sign;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{Command, CommandResult, Grant, Scope};
use loci_raft::webhooks::WebhookEntry;
use loci_storage::crypto::SecretKey;
use loci_storage::model::now_secs;
use serde::Serialize;

use crate::access::{Grants, Principal, pattern_contains};
use crate::cluster::Reach;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult, StatusCode};
pub use dispatch::{Delivery, DeliveryState, Dispatcher, WebhookConfig};

/// The event types a webhook can ask for.
pub const EVENT_TYPES: [&str; 10] = [
    "stored",
    "updated",
    "recalled",
    "forgotten",
    "importance_updated",
    "session_started",
    "session_ended",
    "namespace_created",
    "namespace_deleted",
    "vectors_mutated",
];

/// How long a member has to answer for its deliveries.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

/// The secret a receiver holds (the HMAC key is this string's bytes).
pub fn secret_string(raw: &[u8; 32]) -> String {
    format!("whsec_{}", hex::encode(raw))
}

/// A webhook to create.
#[derive(Clone, Debug, Default)]
pub struct WebhookSpec {
    pub url: String,
    /// A namespace or a prefix pattern (`acme-*`).
    pub pattern: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// A webhook as shown (never its secret).
#[derive(Clone, Debug, Serialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub namespace: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    pub created_at: u64,
    pub created_by: String,
}

impl From<&WebhookEntry> for WebhookView {
    fn from(w: &WebhookEntry) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            namespace: w.pattern.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            active: w.active,
            created_at: w.created_at,
            created_by: w.created_by.clone(),
        }
    }
}

/// Webhook calls of a node's service (borrowed from [`Core::webhooks`]).
#[derive(Clone, Copy)]
pub struct WebhookCalls<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    pub fn webhooks(self: &Arc<Self>) -> WebhookCalls<'_> {
        WebhookCalls { core: self }
    }
}

/// Does `p` administer every namespace `pattern` covers?
fn administers(p: &Principal, pattern: &str) -> bool {
    match &p.grants {
        Grants::All(s) => *s >= Scope::Admin,
        Grants::List(list) => {
            list.iter().any(|g: &Grant| g.scope >= Scope::Admin && pattern_contains(&g.pattern, pattern))
        }
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("webhook", format!("no webhook {id}"))
}

impl WebhookCalls<'_> {
    fn dispatcher(&self) -> ServiceResult<&Arc<Dispatcher>> {
        self.core
            .cluster
            .local
            .webhooks
            .as_ref()
            .ok_or_else(|| ServiceError::new(StatusCode::CONFLICT, "WEBHOOKS_DISABLED", "this node sends no webhooks"))
    }

    /// Create a webhook; answers it with its signing secret (shown once).
    pub async fn create(&self, p: &Principal, spec: WebhookSpec) -> ServiceResult<(WebhookView, String)> {
        let pattern = crate::keys::mint::check_pattern(&spec.pattern)?;
        if !administers(p, &pattern) {
            p.require(pattern.trim_end_matches('*'), Scope::Admin)?;
            return Err(ServiceError::insufficient_scope("admin"));
        }
        for t in &spec.events {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(ServiceError::bad_request(format!(
                    "unknown event type {t:?}; one of {}",
                    EVENT_TYPES.join(", ")
                )));
            }
        }
        if spec.events.len() > EVENT_TYPES.len() {
            return Err(ServiceError::bad_request("events lists a type twice"));
        }
        if spec.description.as_ref().is_some_and(|d| d.len() > 1024) {
            return Err(ServiceError::bad_request("description is longer than 1024 bytes"));
        }
        let target = target::parse(&spec.url).map_err(ServiceError::bad_request)?;
        let dispatcher = self.dispatcher()?;
        dispatcher
            .config
            .policy
            .vet(&target)
            .await
            .map_err(|why| ServiceError::new(StatusCode::BAD_REQUEST, "WEBHOOK_TARGET_REFUSED", why))?;
        let raw = SecretKey::random();
        let secret = secret_string(raw.as_bytes());
        let mut b = [0u8; 8];
        loci_storage::crypto::random_bytes(&mut b);
        let id_bits = u64::from_be_bytes(b);
        // Top bit set: never a namespace id (those keep their top bits clear).
        let aad = id_bits | 1 << 63;
        let wrapped = self.core.contexts.keyring().wrap(aad, 1, &raw);
        let entry = WebhookEntry {
            id: format!("wh_{:016x}", id_bits),
            pattern: pattern.clone(),
            url: target.url.to_string(),
            events: spec.events.clone(),
            description: spec.description.clone(),
            secret: wrapped,
            secret_aad: aad,
            created_at: now_secs(),
            created_by: p.key_id.clone(),
            active: true,
        };
        match self.core.write_everywhere(Command::PutWebhook { webhook: entry }, Reach::Every).await? {
            CommandResult::Webhook { webhook } => {
                self.core.audit.event(
                    "webhook_created",
                    Some(p),
                    serde_json::json!({"webhook_id": webhook.id, "namespace": webhook.pattern, "url": webhook.url}),
                );
                Ok((WebhookView::from(&webhook), secret))
            }
            CommandResult::Rejected(why) => Err(ServiceError::new(StatusCode::CONFLICT, "WEBHOOK_REFUSED", why)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// The webhooks `p` administers.
    pub fn list(&self, p: &Principal) -> ServiceResult<Vec<WebhookView>> {
        // Admin somewhere, as for the audit trail.
        crate::audit::query::Visibility::of(p)?;
        let cat = self.core.catalogue.view.read();
        Ok(cat.webhooks.values().filter(|w| administers(p, &w.pattern)).map(WebhookView::from).collect())
    }

    fn entry(&self, p: &Principal, id: &str) -> ServiceResult<WebhookEntry> {
        let w = self.core.catalogue.view.read().webhooks.get(id).cloned();
        // Another tenant's webhook is as absent as one that never existed.
        w.filter(|w| administers(p, &w.pattern)).ok_or_else(|| not_found(id))
    }

    pub fn get(&self, p: &Principal, id: &str) -> ServiceResult<WebhookView> {
        self.entry(p, id).map(|w| WebhookView::from(&w))
    }

    pub async fn delete(&self, p: &Principal, id: &str) -> ServiceResult<WebhookView> {
        self.entry(p, id)?;
        match self.core.write_everywhere(Command::DeleteWebhook { id: id.to_string() }, Reach::Every).await? {
            CommandResult::Webhook { webhook } => {
                self.core.audit.event(
                    "webhook_deleted",
                    Some(p),
                    serde_json::json!({"webhook_id": webhook.id, "namespace": webhook.pattern}),
                );
                Ok(WebhookView::from(&webhook))
            }
            CommandResult::NotFound(_) => Err(not_found(id)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// The webhook's deliveries on every member, newest first, and the members that did not
    /// answer.
    pub async fn deliveries(
        &self,
        p: &Principal,
        id: &str,
        limit: usize,
    ) -> ServiceResult<(Vec<Delivery>, Vec<(u64, String)>)> {
        self.entry(p, id)?;
        let limit = limit.clamp(1, 1000);
        let cluster = &self.core.cluster;
        let asks = cluster.members().into_iter().map(|n| async move {
            if n == cluster.node_id {
                return (n, Ok(cluster.local.webhooks.as_ref().map(|d| d.deliveries(id, limit)).unwrap_or_default()));
            }
            if !cluster.is_alive(n) {
                return (n, Err("not alive".to_string()));
            }
            (n, cluster.webhook_deliveries_on(n, id, limit, MEMBER_TIMEOUT).await.map_err(|e| e.to_string()))
        });
        let mut all = Vec::new();
        let mut missing = Vec::new();
        for (n, got) in futures::future::join_all(asks).await {
            match got {
                Ok(d) => all.extend(d),
                Err(why) => missing.push((n, why)),
            }
        }
        all.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok((all, missing))
    }

    /// Send a delivery again (as a new delivery, from the node that holds it).
    pub async fn replay(&self, p: &Principal, id: &str, delivery: &str) -> ServiceResult<Delivery> {
        self.entry(p, id)?;
        let missing = || ServiceError::not_found("delivery", format!("no delivery {delivery} of webhook {id}"));
        let (node, _) = dispatch::parse_delivery_id(delivery).ok_or_else(missing)?;
        let cluster = &self.core.cluster;
        let got = if node == cluster.node_id {
            self.dispatcher()?.replay(id, delivery)
        } else {
            if !cluster.members().contains(&node) {
                return Err(missing());
            }
            cluster.webhook_replay_on(node, id, delivery, MEMBER_TIMEOUT).await?
        };
        let d = got.ok_or_else(missing)?;
        self.core.audit.event(
            "webhook_replayed",
            Some(p),
            serde_json::json!({"webhook_id": id, "delivery": delivery, "replay": d.id}),
        );
        Ok(d)
    }
}
