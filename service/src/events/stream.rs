//! A subscription over the whole cluster: one poller per member reads that member's ring from
//! the subscriber's position on it and hands what it got to the subscriber through a bounded
//! channel. The event id a subscriber sees is its position on every member after that event
//! ([`Position`]); given back (SSE `Last-Event-ID`), it resumes each member exactly there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::Scope;
use tokio::sync::mpsc;

use super::{Event, EventKind, Filter, MAX_POLL, Poll};
use crate::access::{Grants, Principal};
use crate::audit::query::Visibility;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};

/// How long one poll of a member waits for an event.
pub const POLL_WAIT: Duration = Duration::from_secs(10);
/// Polls waiting for the subscriber to read them (each up to [`MAX_POLL`] events).
pub const CHANNEL_POLLS: usize = 8;
/// How often a subscription looks for members that joined.
const MEMBERSHIP_EVERY: Duration = Duration::from_secs(5);
/// A position past every member's newest: its poll answers with the member's newest position.
const FROM_NOW: u64 = u64::MAX - 1;
/// The pause after a member failed to answer.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where a subscriber is on each member: the last sequence it read there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position(pub BTreeMap<u64, u64>);

impl Position {
    /// `node:seq` pairs joined by commas (an SSE event id).
    pub fn encode(&self) -> String {
        self.0.iter().map(|(n, s)| format!("{n}:{s}")).collect::<Vec<_>>().join(",")
    }

    pub fn parse(s: &str) -> ServiceResult<Position> {
        let bad = || ServiceError::bad_request(format!("not an event id of this stream: {s:?}"));
        let mut out = BTreeMap::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (n, q) = part.trim().split_once(':').ok_or_else(bad)?;
            let node = n.parse::<u64>().map_err(|_| bad())?;
            let seq = q.parse::<u64>().map_err(|_| bad())?;
            if out.insert(node, seq).is_some() || out.len() > 1024 {
                return Err(bad());
            }
        }
        Ok(Position(out))
    }
}

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Event {
        event: Box<Event>,
        id: String,
    },
    /// `dropped` events of `node` were overwritten before this subscriber read them.
    Lagged {
        node: u64,
        dropped: u64,
        id: String,
    },
}

/// The memory and namespace events `p` may read: those of namespaces it holds any scope on.
pub fn read_view(p: &Principal) -> Visibility {
    match &p.grants {
        Grants::All(_) => Visibility::All,
        Grants::List(list) => Visibility::Within(list.iter().map(|g| g.pattern.clone()).collect()),
    }
}

/// A subscription's request.
#[derive(Clone, Debug)]
pub struct Subscribe {
    pub filter: Filter,
    /// Resume from here (`None`: from now on).
    pub from: Option<Position>,
}

impl Subscribe {
    /// Check the caller may read what it asked for: a named namespace needs `read` on it.
    pub fn check(&self, p: &Principal) -> ServiceResult<()> {
        if let Some(ns) = &self.filter.namespace {
            let need =
                if self.filter.kinds == EventKind::mask(&[EventKind::Audit]) { Scope::Admin } else { Scope::Read };
            p.require(ns, need)?;
        }
        if self.filter.event_types.len() > 32 {
            return Err(ServiceError::bad_request("at most 32 event types"));
        }
        Ok(())
    }
}

/// Subscription calls of a node's service (borrowed from [`Core::events`]).
#[derive(Clone, Copy)]
pub struct EventReads<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    pub fn events(self: &Arc<Self>) -> EventReads<'_> {
        EventReads { core: self }
    }
}

impl EventReads<'_> {
    /// Start a subscription: the receiver yields its items until it is dropped. A fresh
    /// subscription's position on every member that answers is fixed before this returns, so
    /// whatever any member serves afterwards reaches it.
    pub async fn subscribe(&self, p: &Principal, req: Subscribe) -> ServiceResult<mpsc::Receiver<Item>> {
        req.check(p)?;
        let core = self.core.clone();
        let admitted = core.cluster.local.events.admit(&p.key_id)?;
        let mut start = BTreeMap::new();
        for node in core.cluster.members() {
            let after = match req.from.as_ref().map(|f| f.0.get(&node)) {
                Some(Some(&seq)) => seq,
                // Resumed, but no position on this member: everything it holds may be new.
                Some(None) => 0,
                None if node == core.cluster.node_id => core.cluster.local.events.tail(),
                // Its answer to a poll from the future, without waiting, is its newest position.
                None => match core.cluster.events_on(node, FROM_NOW, &req.filter, Duration::ZERO).await {
                    Ok(poll) => poll.position,
                    Err(_) => FROM_NOW,
                },
            };
            start.insert(node, after);
        }
        let (tx, rx) = mpsc::channel::<Item>(CHANNEL_POLLS * MAX_POLL);
        tokio::spawn(async move {
            run(core, req.filter, start, tx).await;
            drop(admitted);
        });
        Ok(rx)
    }
}

/// One member's poll, local or remote.
async fn poll_member(core: &Core, node: u64, after: u64, filter: &Filter) -> Result<Poll, String> {
    if node == core.cluster.node_id {
        let cat = core.catalogue.clone();
        let live = move |ns: &str, id: u64| cat.view.read().namespace(ns).is_some_and(|e| e.id == id);
        return Ok(core.cluster.local.events.wait_poll(after, filter, MAX_POLL, POLL_WAIT, &live).await);
    }
    if !core.cluster.is_alive(node) {
        return Err("not alive".into());
    }
    core.cluster.events_on(node, after, filter, POLL_WAIT).await.map_err(|e| e.to_string())
}

async fn run(core: Arc<Core>, filter: Filter, start_at: BTreeMap<u64, u64>, tx: mpsc::Sender<Item>) {
    let (ptx, mut prx) = mpsc::channel::<(u64, Poll)>(CHANNEL_POLLS);
    let mut polling: BTreeSet<u64> = BTreeSet::new();
    let filter = Arc::new(filter);
    let start = |node: u64, after: u64, polling: &mut BTreeSet<u64>| {
        polling.insert(node);
        let (core, filter, ptx) = (core.clone(), filter.clone(), ptx.clone());
        tokio::spawn(async move {
            let mut after = after;
            let closing = core.cluster.local.events.closing().clone();
            loop {
                let polled = tokio::select! {
                    _ = closing.cancelled() => return,
                    p = poll_member(&core, node, after, &filter) => p,
                };
                match polled {
                    Ok(p) => {
                        after = p.position;
                        if ptx.send((node, p)).await.is_err() {
                            return;
                        }
                    }
                    Err(why) => {
                        tracing::debug!(node, error = %why, "event poll failed; retrying");
                        if ptx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
        });
    };
    // A member whose newest position is not known yet appears in event ids once it answers.
    let mut position = Position(start_at.iter().filter(|(_, a)| **a != FROM_NOW).map(|(n, a)| (*n, *a)).collect());
    for (&node, &after) in &start_at {
        start(node, after, &mut polling);
    }
    let mut tick = tokio::time::interval(MEMBERSHIP_EVERY);
    tick.tick().await;
    let closing = core.cluster.local.events.closing().clone();
    loop {
        tokio::select! {
            _ = closing.cancelled() => return,
            got = prx.recv() => {
                let Some((node, poll)) = got else { return };
                if poll.dropped > 0 {
                    position.0.insert(node, poll.position.min(poll.events.first().map_or(poll.position, |e| e.seq - 1)));
                    let item = Item::Lagged { node, dropped: poll.dropped, id: position.encode() };
                    metrics::counter!("loci_event_stream_lagged_total").increment(poll.dropped);
                    if tx.send(item).await.is_err() { return; }
                }
                for e in poll.events {
                    position.0.insert(node, e.seq);
                    let item = Item::Event { id: position.encode(), event: Box::new(e) };
                    if tx.send(item).await.is_err() { return; }
                }
                position.0.insert(node, poll.position);
            }
            _ = tick.tick() => {
                if tx.is_closed() { return; }
                for node in core.cluster.members() {
                    if !polling.contains(&node) {
                        // A member that joined since: everything it holds is new to us.
                        position.0.entry(node).or_insert(0);
                        start(node, 0, &mut polling);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_refuse_garbage() {
        let p = Position(BTreeMap::from([(1, 10), (3, 1_700_000_000_000_001)]));
        assert_eq!(Position::parse(&p.encode()).ok(), Some(p));
        assert_eq!(Position::parse("").ok(), Some(Position::default()));
        for bad in ["x", "1:", ":2", "1:2,1:3", "1:-4", "1;2"] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
    }
}
