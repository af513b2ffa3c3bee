//! Deliveries on one node: the node's own events (those of the requests it served, see
//! [`crate::events`]) are matched against the catalogue's webhooks, queued, POSTed signed, and
//! retried with exponential back-off until the target answers 2xx or the attempts run out.
//! Every delivery, with each attempt, stays in the node's delivery log (bounded; finished
//! deliveries leave it oldest first) where it can be read and replayed.
//!
//! Bounds: at most `queue` deliveries wait at once; a delivery that finds the queue full is
//! logged `dropped` and not sent. Deliveries are held in memory: those still pending when the
//! node stops are not sent (at-least-once while the node runs, not across a crash).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loci_raft::CatalogueNode;
use loci_raft::webhooks::WebhookEntry;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use super::target::{SafeResolver, TargetPolicy};
use crate::access::pattern_matches;
use crate::audit::query::Visibility;
use crate::contexts::Contexts;
use crate::events::{Event, EventHub, EventKind, Filter, MAX_POLL};

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub policy: TargetPolicy,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled before each next one, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Deliveries waiting at once, at most.
    pub queue: usize,
    /// Finished deliveries kept in the log.
    pub log: usize,
    /// One attempt's deadline.
    pub timeout: Duration,
    /// Attempts in flight at once.
    pub workers: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: TargetPolicy::default(),
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            queue: 10_000,
            log: 1_000,
            timeout: Duration::from_secs(10),
            workers: 4,
        }
    }
}

impl WebhookConfig {
    /// The wait after failed attempt `n` (1-based), or None when it was the last.
    pub fn backoff(&self, n: u32) -> Option<Duration> {
        if n >= self.max_attempts {
            return None;
        }
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        Some(self.retry_base.saturating_mul(factor).min(self.retry_max))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: u64,
    /// The target's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Every attempt failed (or the webhook was deleted meanwhile).
    Failed,
    /// The queue was full: never sent.
    Dropped,
}

/// One delivery and its attempts (`GET /v1/webhooks/{id}/deliveries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub namespace: Option<String>,
    pub node: u64,
    pub created_at_ms: u64,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at_ms: Option<u64>,
    /// The delivery this one replays.
    pub replay_of: Option<String>,
    /// The body POSTed (the same bytes on every attempt).
    pub payload: serde_json::Value,
}

/// `dlv_<node>_<seq>`: the node that holds the delivery, and its number there.
pub fn delivery_id(node: u64, seq: u64) -> String {
    format!("dlv_{node}_{seq}")
}

pub fn parse_delivery_id(id: &str) -> Option<(u64, u64)> {
    let rest = id.strip_prefix("dlv_")?;
    let (n, s) = rest.split_once('_')?;
    Some((n.parse().ok()?, s.parse().ok()?))
}

/// A delivery due now.
struct Due {
    seq: u64,
    body: Arc<Vec<u8>>,
    webhook: String,
    delivery: String,
    event_type: String,
}

struct Slot {
    delivery: Delivery,
    body: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Book {
    slots: BTreeMap<u64, Slot>,
    /// (due, seq) of pending deliveries.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: usize,
    next_seq: u64,
}

/// One node's webhook deliveries.
pub struct Dispatcher {
    node: u64,
    pub config: WebhookConfig,
    client: reqwest::Client,
    catalogue: Arc<CatalogueNode>,
    contexts: Arc<Contexts>,
    book: Mutex<Book>,
    wake: tokio::sync::Notify,
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

impl Dispatcher {
    pub fn new(
        node: u64,
        config: WebhookConfig,
        catalogue: Arc<CatalogueNode>,
        contexts: Arc<Contexts>,
    ) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("loci-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(SafeResolver { policy: Arc::new(config.policy.clone()) }))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Arc::new(Dispatcher {
            node,
            config,
            client,
            catalogue,
            contexts,
            book: Mutex::new(Book { next_seq: 1, ..Default::default() }),
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// The webhooks an event goes to.
    pub fn matching(hooks: &[WebhookEntry], e: &Event) -> Vec<WebhookEntry> {
        let Some(ns) = e.namespace.as_deref() else { return Vec::new() };
        hooks
            .iter()
            .filter(|w| w.active && pattern_matches(&w.pattern, ns))
            .filter(|w| w.events.is_empty() || w.events.contains(&e.event_type))
            .cloned()
            .collect()
    }

    fn payload(id: &str, w: &WebhookEntry, e: &Event) -> serde_json::Value {
        json!({
            "id": id,
            "webhook_id": w.id,
            "type": e.event_type,
            "event_type": e.event_type,
            "namespace": e.namespace,
            "node": e.node,
            "created_at": e.at_ms / 1000,
            "data": e.data,
        })
    }

    /// Queue a delivery of `payload` (built for the id it gets) to `w`.
    fn enqueue(
        &self,
        w: &WebhookEntry,
        event_type: &str,
        namespace: Option<String>,
        replay_of: Option<String>,
        payload: impl FnOnce(&str) -> serde_json::Value,
    ) -> Delivery {
        let mut b = self.book.lock();
        let seq = b.next_seq;
        b.next_seq += 1;
        let id = delivery_id(self.node, seq);
        let payload = payload(&id);
        let full = b.pending >= self.config.queue;
        let delivery = Delivery {
            id,
            webhook_id: w.id.clone(),
            event_type: event_type.to_string(),
            namespace,
            node: self.node,
            created_at_ms: now_ms(),
            state: if full { DeliveryState::Dropped } else { DeliveryState::Pending },
            attempts: Vec::new(),
            next_attempt_at_ms: (!full).then(now_ms),
            replay_of,
            payload,
        };
        let body = Arc::new(delivery.payload.to_string().into_bytes());
        if full {
            metrics::counter!("loci_webhook_deliveries_total", "outcome" => "dropped").increment(1);
        } else {
            b.pending += 1;
            b.due.push(Reverse((Instant::now(), seq)));
        }
        b.slots.insert(seq, Slot { delivery: delivery.clone(), body });
        // Keep the log bounded: finished deliveries leave oldest first.
        let cap = self.config.log + self.config.queue;
        while b.slots.len() > cap {
            let Some(old) = b.slots.iter().find(|(_, s)| s.delivery.state != DeliveryState::Pending).map(|(k, _)| *k)
            else {
                break;
            };
            b.slots.remove(&old);
        }
        drop(b);
        self.wake.notify_one();
        delivery
    }

    /// Queue the deliveries of a node event.
    pub fn offer(&self, hooks: &[WebhookEntry], e: &Event) {
        for w in Self::matching(hooks, e) {
            self.enqueue(&w, &e.event_type, e.namespace.clone(), None, |id| Self::payload(id, &w, e));
        }
    }

    /// Send a delivery again, as a new delivery with the same payload (freshly signed).
    pub fn replay(&self, webhook_id: &str, delivery: &str) -> Option<Delivery> {
        let (node, seq) = parse_delivery_id(delivery)?;
        if node != self.node {
            return None;
        }
        let old = {
            let b = self.book.lock();
            let s = b.slots.get(&seq)?;
            (s.delivery.webhook_id == webhook_id).then(|| s.delivery.clone())?
        };
        let w = self.catalogue.view.read().webhooks.get(webhook_id).cloned()?;
        let mut payload = old.payload.clone();
        Some(self.enqueue(&w, &old.event_type, old.namespace.clone(), Some(old.id.clone()), |id| {
            payload["id"] = json!(id);
            payload["replay_of"] = json!(old.id);
            payload
        }))
    }

    /// This node's deliveries to a webhook, newest first.
    pub fn deliveries(&self, webhook_id: &str, limit: usize) -> Vec<Delivery> {
        let b = self.book.lock();
        b.slots
            .values()
            .rev()
            .filter(|s| s.delivery.webhook_id == webhook_id)
            .take(limit)
            .map(|s| s.delivery.clone())
            .collect()
    }

    /// Pending deliveries (metrics, tests).
    pub fn pending(&self) -> usize {
        self.book.lock().pending
    }

    /// The next due delivery, or how long until one is due.
    fn take_due(&self) -> Result<Due, Option<Duration>> {
        let mut b = self.book.lock();
        let now = Instant::now();
        match b.due.peek() {
            None => Err(None),
            Some(Reverse((due, _))) if *due > now => Err(Some(*due - now)),
            Some(_) => {
                let Some(Reverse((_, seq))) = b.due.pop() else { return Err(None) };
                match b.slots.get(&seq) {
                    Some(s) => Ok(Due {
                        seq,
                        body: s.body.clone(),
                        webhook: s.delivery.webhook_id.clone(),
                        delivery: s.delivery.id.clone(),
                        event_type: s.delivery.event_type.clone(),
                    }),
                    None => Err(Some(Duration::ZERO)),
                }
            }
        }
    }

    fn record(&self, seq: u64, attempt: Attempt, ok: bool, gone: bool) {
        let mut b = self.book.lock();
        let mut retry = None;
        let Some(slot) = b.slots.get_mut(&seq) else { return };
        let d = &mut slot.delivery;
        d.attempts.push(attempt);
        let n = d.attempts.len() as u32;
        let outcome = if ok {
            d.state = DeliveryState::Delivered;
            d.next_attempt_at_ms = None;
            "delivered"
        } else {
            match self.config.backoff(n).filter(|_| !gone) {
                Some(wait) => {
                    d.next_attempt_at_ms = Some(now_ms() + wait.as_millis() as u64);
                    retry = Some(Instant::now() + wait);
                    "retried"
                }
                None => {
                    d.state = DeliveryState::Failed;
                    d.next_attempt_at_ms = None;
                    "failed"
                }
            }
        };
        metrics::counter!("loci_webhook_attempts_total", "outcome" => outcome).increment(1);
        match retry {
            Some(at) => b.due.push(Reverse((at, seq))),
            None => b.pending = b.pending.saturating_sub(1),
        }
    }

    /// One attempt of one delivery.
    async fn attempt(&self, due: &Due) -> (Attempt, bool, bool) {
        let (webhook_id, delivery, body) = (due.webhook.as_str(), due.delivery.as_str(), &due.body);
        let started = Instant::now();
        let at_ms = now_ms();
        let done = |status: Option<u16>, error: Option<String>| Attempt {
            at_ms,
            status,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let Some(w) = self.catalogue.view.read().webhooks.get(webhook_id).cloned() else {
            return (done(None, Some("the webhook was deleted".into())), false, true);
        };
        let secret = match self.contexts.keyring().unwrap(w.secret_aad, &w.secret) {
            Ok(k) => super::secret_string(k.raw().as_bytes()),
            Err(e) => return (done(None, Some(format!("the signing secret cannot be unwrapped: {e}"))), false, false),
        };
        let target = match super::target::parse(&w.url) {
            Ok(t) => t,
            Err(e) => return (done(None, Some(e)), false, true),
        };
        // An address in the URL is not resolved, so the resolver's check does not see it.
        if let Some(ip) = target.literal
            && let Err(e) = self.config.policy.check(ip)
        {
            return (done(None, Some(e)), false, true);
        }
        let ts = chrono::Utc::now().timestamp().max(0) as u64;
        let sig = signature(secret.as_bytes(), ts, body);
        let sent = self
            .client
            .post(target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-loci-webhook-id", &w.id)
            .header("x-loci-delivery", delivery)
            .header("x-loci-event", due.event_type.as_str())
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig)
            .body(body.as_ref().clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let ok = status.is_success();
                let error = (!ok).then(|| format!("the target answered {status}"));
                (done(Some(status.as_u16()), error), ok, false)
            }
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                (done(None, Some(why)), false, false)
            }
        }
    }

    /// One sender: takes due deliveries and attempts them, until the node stops.
    async fn worker(self: Arc<Self>, closing: tokio_util::sync::CancellationToken) {
        loop {
            match self.take_due() {
                Ok(due) => {
                    let (attempt, ok, gone) = tokio::select! {
                        _ = closing.cancelled() => return,
                        r = self.attempt(&due) => r,
                    };
                    self.record(due.seq, attempt, ok, gone);
                }
                Err(wait) => {
                    let wait = wait.unwrap_or(Duration::from_secs(60));
                    tokio::select! {
                        _ = closing.cancelled() => return,
                        _ = tokio::time::timeout(wait, self.wake.notified()) => {}
                    }
                }
            }
        }
    }

    /// Read this node's events and queue their deliveries; start the senders.
    pub fn start(self: &Arc<Self>, hub: Arc<EventHub>) {
        for _ in 0..self.config.workers.max(1) {
            tokio::spawn(self.clone().worker(hub.closing().clone()));
        }
        let me = self.clone();
        tokio::spawn(async move {
            let filter = Filter {
                kinds: EventKind::mask(&[EventKind::Memory, EventKind::Namespace]),
                within: Visibility::All,
                namespace: None,
                agent_id: None,
                event_types: Vec::new(),
            };
            let cat = me.catalogue.clone();
            let live = move |ns: &str, id: u64| cat.view.read().namespace(ns).is_some_and(|e| e.id == id);
            let mut after = hub.tail();
            loop {
                let poll = hub.wait_poll(after, &filter, MAX_POLL, Duration::from_secs(30), &live).await;
                if hub.closing().is_cancelled() {
                    return;
                }
                after = poll.position;
                if poll.dropped > 0 {
                    tracing::warn!(dropped = poll.dropped, "webhook deliveries fell behind the event buffer");
                    metrics::counter!("loci_webhook_events_missed_total").increment(poll.dropped);
                }
                if poll.events.is_empty() {
                    continue;
                }
                let hooks: Vec<WebhookEntry> = me.catalogue.view.read().webhooks.values().cloned().collect();
                if hooks.is_empty() {
                    continue;
                }
                for e in &poll.events {
                    me.offer(&hooks, e);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap_and_stops_at_the_last_attempt() {
        let c = WebhookConfig {
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            ..Default::default()
        };
        let waits: Vec<_> = (1..=5).map(|n| c.backoff(n).map(|d| d.as_secs())).collect();
        assert_eq!(waits, vec![Some(1), Some(2), Some(4), Some(5), None]);
        let c = WebhookConfig { max_attempts: 100, ..c };
        assert_eq!(c.backoff(70), Some(Duration::from_secs(5)), "no overflow");
    }

    #[test]
    fn delivery_ids_name_their_node() {
        assert_eq!(parse_delivery_id(&delivery_id(3, 42)), Some((3, 42)));
        for bad in ["dlv_3", "x_1_2", "dlv_a_1", "dlv_1_"] {
            assert_eq!(parse_delivery_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_event_goes_to_the_webhooks_of_its_namespace_and_types() {
        let hook = |id: &str, pattern: &str, events: &[&str]| WebhookEntry {
            id: id.into(),
            pattern: pattern.into(),
            url: "https://example.com".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            description: None,
            secret: loci_storage::crypto::WrappedKey { kek_version: 1, dek_version: 1, sealed: vec![] },
            secret_aad: 1 << 63,
            created_at: 0,
            created_by: "k".into(),
            active: true,
        };
        let hooks = vec![hook("a", "acme-*", &[]), hook("b", "acme-1", &["forgotten"]), hook("c", "globex", &[])];
        let e = Event {
            seq: 1,
            node: 1,
            at_ms: 0,
            kind: EventKind::Memory,
            event_type: "stored".into(),
            namespace: Some("acme-1".into()),
            ns_id: 1,
            agent_id: None,
            data: json!({}),
        };
        let ids: Vec<_> = Dispatcher::matching(&hooks, &e).into_iter().map(|w| w.id).collect();
        assert_eq!(ids, vec!["a"]);
        let e = Event { event_type: "forgotten".into(), ..e };
        let ids: Vec<_> = Dispatcher::matching(&hooks, &e).into_iter().map(|w| w.id).collect();
        assert_eq!(ids, vec!["a", "b"]);
    }
}
