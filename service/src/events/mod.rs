//! Event streams: what happened on this node (memory writes and recalls, namespace changes,
//! audit records), kept in a bounded ring that subscribers read from a position.
//!
//! Each node records the events of the requests it served (the node a client called, whichever
//! replica executed the operation), numbered by a sequence that starts at the node's boot time
//! in microseconds, so positions only grow across restarts. A subscriber holds one position per
//! member ([`stream::Position`]) and polls each member's ring from it ([`EventHub::poll`]):
//! nothing is pushed, so a slow subscriber costs the node nothing but falls behind in the ring;
//! when the ring has overwritten events it had not read, its next poll reports how many
//! (`stream_lagged`) and it continues from the oldest event still held.
//!
//! Events carry ids, agents, sessions and counts, never memory content: a subscriber fetches
//! a memory by id, which checks access and existence. A memory event of a namespace erased (or
//! erased and re-created) since is never delivered ([`Poll`] skips it).

pub mod emit;
pub mod stream;

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::pattern_matches;
use crate::audit::query::Visibility;

/// Events a node keeps by default (`LOCI_EVENT_BUFFER`).
pub const DEFAULT_BUFFER: usize = 10_000;
/// The most bytes of events a node keeps (estimated as their JSON), whatever their number: a
/// buffer of audit records with captured bodies stays bounded too.
pub const MAX_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// What an event costs besides its payload, in that estimate.
const EVENT_OVERHEAD: usize = 160;
/// Event streams a node serves at once, and per key: each polls every member, so they are
/// bounded like any other work a request starts.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
pub const MAX_SUBSCRIPTIONS_PER_KEY: usize = 16;
/// The most events one poll returns.
pub const MAX_POLL: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A memory lifecycle event (`GET /v1/events/stream`): stored, recalled, forgotten, ...
    Memory,
    /// A namespace event (`GET /v1/namespaces/{ns}/events`, `GET /ops/events`).
    Namespace,
    /// An audit record (`GET /v1/audit/stream`).
    Audit,
}

impl EventKind {
    fn bit(self) -> u32 {
        match self {
            EventKind::Memory => 1,
            EventKind::Namespace => 2,
            EventKind::Audit => 4,
        }
    }

    pub fn mask(kinds: &[EventKind]) -> u32 {
        kinds.iter().fold(0, |m, k| m | k.bit())
    }
}

/// An event as produced, before the ring numbers it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub event_type: String,
    /// The namespace it happened in (audit records: the first they name, if any).
    pub namespace: Option<String>,
    /// The namespace's catalogue id when it happened (0: none).
    pub ns_id: u64,
    pub agent_id: Option<String>,
    /// The payload in the published clients' shape (audit: the raw record).
    pub data: Value,
}

/// A numbered event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub node: u64,
    pub at_ms: u64,
    pub kind: EventKind,
    pub event_type: String,
    pub namespace: Option<String>,
    pub ns_id: u64,
    pub agent_id: Option<String>,
    pub data: Value,
}

/// What a subscriber wants, decided by the node it called from the caller's grants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// [`EventKind::mask`] of the kinds wanted.
    pub kinds: u32,
    /// Memory and namespace events: the namespaces the caller may read. Audit records: the
    /// caller's audit view ([`crate::audit::query::visible`]).
    pub within: Visibility,
    /// Only this namespace.
    pub namespace: Option<String>,
    pub agent_id: Option<String>,
    /// Only these event types (empty: all).
    pub event_types: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        if self.kinds & e.kind.bit() == 0 {
            return false;
        }
        if !self.event_types.is_empty() && !self.event_types.contains(&e.event_type) {
            return false;
        }
        if let Some(a) = &self.agent_id
            && e.agent_id.as_deref() != Some(a.as_str())
        {
            return false;
        }
        if e.kind == EventKind::Audit {
            if let Some(ns) = &self.namespace {
                let names = crate::audit::query::namespaces_of(&e.data);
                if !names.contains(&ns.as_str()) {
                    return false;
                }
            }
            return crate::audit::query::visible(&e.data, &self.within);
        }
        let Some(ns) = e.namespace.as_deref() else { return false };
        if self.namespace.as_deref().is_some_and(|n| n != ns) {
            return false;
        }
        match &self.within {
            Visibility::All => true,
            Visibility::Within(patterns) => patterns.iter().any(|p| pattern_matches(p, ns)),
        }
    }
}

/// The answer to a poll of one node's ring.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Poll {
    pub events: Vec<Event>,
    /// The position to poll from next (the last event examined, delivered or not).
    pub position: u64,
    /// Events the subscriber missed: the ring overwrote them before it read them.
    pub dropped: u64,
}

struct Ring {
    events: VecDeque<Event>,
    /// The estimated size of each event held, and their sum.
    sizes: VecDeque<usize>,
    bytes: usize,
    /// The sequence the next event gets.
    next: u64,
}

/// One node's events.
pub struct EventHub {
    node: u64,
    capacity: usize,
    max_bytes: usize,
    ring: Mutex<Ring>,
    /// The last sequence handed out (pollers wait on it).
    latest: tokio::sync::watch::Sender<u64>,
    /// Cancelled when the node stops: waiting polls return, subscriptions and deliveries end.
    closing: tokio_util::sync::CancellationToken,
    /// Open subscriptions on this node, by key id.
    subscribers: Mutex<std::collections::HashMap<String, usize>>,
}

/// One open subscription, counted until it is dropped.
pub struct Subscription {
    hub: std::sync::Arc<EventHub>,
    key: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.subscribers.lock();
        if let Some(n) = subs.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                subs.remove(&self.key);
            }
        }
    }
}

impl EventHub {
    pub fn new(node: u64, capacity: usize) -> Self {
        let start = now_micros();
        Self::starting_at(node, capacity, start)
    }

    /// A hub whose first event gets `start + 1` (tests).
    pub fn starting_at(node: u64, capacity: usize, start: u64) -> Self {
        let (latest, _) = tokio::sync::watch::channel(start);
        EventHub {
            node,
            capacity: capacity.max(1),
            max_bytes: MAX_BUFFER_BYTES,
            ring: Mutex::new(Ring { events: VecDeque::new(), sizes: VecDeque::new(), bytes: 0, next: start + 1 }),
            latest,
            closing: tokio_util::sync::CancellationToken::new(),
            subscribers: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Count a new subscription of `key`, or refuse it (429) past the node's or the key's bound.
    pub fn admit(self: &std::sync::Arc<Self>, key: &str) -> crate::error::ServiceResult<Subscription> {
        let mut subs = self.subscribers.lock();
        let total: usize = subs.values().sum();
        let mine = subs.get(key).copied().unwrap_or(0);
        if total >= MAX_SUBSCRIPTIONS || mine >= MAX_SUBSCRIPTIONS_PER_KEY {
            let why = if mine >= MAX_SUBSCRIPTIONS_PER_KEY {
                format!("this key holds {MAX_SUBSCRIPTIONS_PER_KEY} open event streams on this node; close one")
            } else {
                format!("this node serves {MAX_SUBSCRIPTIONS} event streams; retry later or on another node")
            };
            return Err(crate::error::ServiceError::new(
                crate::error::StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_STREAMS",
                why,
            )
            .with_retry_after(5));
        }
        *subs.entry(key.to_string()).or_insert(0) += 1;
        Ok(Subscription { hub: self.clone(), key: key.to_string() })
    }

    /// Keep at most `bytes` of events (estimated) instead of [`MAX_BUFFER_BYTES`].
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// The node is stopping: end every subscription and delivery loop reading this hub.
    pub fn close(&self) {
        self.closing.cancel();
    }

    pub fn closing(&self) -> &tokio_util::sync::CancellationToken {
        &self.closing
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    /// The position of the newest event (a subscriber starting "now" starts here).
    pub fn tail(&self) -> u64 {
        self.ring.lock().next - 1
    }

    pub fn publish(&self, events: impl IntoIterator<Item = NewEvent>) {
        let at_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        // Sized before the lock is taken.
        let sized: Vec<(usize, NewEvent)> = events
            .into_iter()
            .map(|e| (serde_json::to_vec(&e.data).map_or(0, |b| b.len()) + e.event_type.len() + EVENT_OVERHEAD, e))
            .collect();
        let (last, n) = {
            let mut r = self.ring.lock();
            let mut n = 0;
            for (size, e) in sized {
                let seq = r.next;
                r.next += 1;
                r.events.push_back(Event {
                    seq,
                    node: self.node,
                    at_ms,
                    kind: e.kind,
                    event_type: e.event_type,
                    namespace: e.namespace,
                    ns_id: e.ns_id,
                    agent_id: e.agent_id,
                    data: e.data,
                });
                r.sizes.push_back(size);
                r.bytes += size;
                n += 1;
                while r.events.len() > self.capacity || (r.bytes > self.max_bytes && r.events.len() > 1) {
                    r.events.pop_front();
                    let freed = r.sizes.pop_front().unwrap_or(0);
                    r.bytes -= freed;
                }
            }
            if n == 0 {
                return;
            }
            (r.next - 1, n)
        };
        metrics::counter!("loci_events_published_total").increment(n);
        self.latest.send_replace(last);
    }

    /// Events after `after` that pass `filter` and `live` (is this namespace, with this id,
    /// still the catalogue's?), at most `limit`. `after = 0` reads from the oldest event held
    /// without reporting a gap (a member the subscriber had no position on).
    pub fn poll(&self, after: u64, filter: &Filter, limit: usize, live: &dyn Fn(&str, u64) -> bool) -> Poll {
        let r = self.ring.lock();
        let tail = r.next - 1;
        let oldest = r.events.front().map_or(r.next, |e| e.seq);
        let mut poll = Poll { position: after, ..Default::default() };
        if after > tail {
            // A position from the future: this node restarted with its clock behind. Nothing
            // can be recovered; start at the newest.
            poll.position = tail;
            return poll;
        }
        if after != 0 && after + 1 < oldest {
            poll.dropped = oldest - after - 1;
        }
        let skip = if after < oldest { 0 } else { (after + 1 - oldest) as usize };
        let limit = limit.clamp(1, MAX_POLL);
        let mut full = false;
        for e in r.events.iter().skip(skip) {
            if poll.events.len() >= limit {
                full = true;
                break;
            }
            poll.position = e.seq;
            if !filter.matches(e) {
                continue;
            }
            if e.kind == EventKind::Memory
                && let Some(ns) = &e.namespace
                && !live(ns, e.ns_id)
            {
                continue;
            }
            poll.events.push(e.clone());
        }
        if !full {
            // Everything held was examined.
            poll.position = tail;
        }
        poll
    }

    /// [`EventHub::poll`], waiting up to `wait` for an event when there is none yet.
    pub async fn wait_poll(
        &self,
        after: u64,
        filter: &Filter,
        limit: usize,
        wait: Duration,
        live: &(dyn Fn(&str, u64) -> bool + Sync),
    ) -> Poll {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.latest.subscribe();
        let mut after = after;
        let mut dropped = 0;
        loop {
            rx.borrow_and_update();
            let mut p = self.poll(after, filter, limit, live);
            p.dropped += dropped;
            if !p.events.is_empty() || p.dropped > 0 {
                return p;
            }
            // Nothing for this subscriber yet: wait from where it got to.
            after = p.position;
            dropped = p.dropped;
            tokio::select! {
                _ = self.closing.cancelled() => return p,
                changed = tokio::time::timeout_at(deadline, rx.changed()) => {
                    if changed.is_err() {
                        return p;
                    }
                }
            }
        }
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64).max(1)
}

#[cfg(test)]
mod tests;
