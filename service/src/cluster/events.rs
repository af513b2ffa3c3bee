//! Event streams over the cluster: a member's ring read for a subscription held on another
//! node (`Internal.EventPoll`), and the conversions of its filter.

use std::time::Duration;

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::wire::pb;
use crate::audit::query::Visibility;
use crate::events::{Event, Filter, MAX_POLL, Poll};

/// The longest a member holds a poll open.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

impl From<(u64, &Filter, Duration)> for pb::EventPollRequest {
    fn from((after, f, wait): (u64, &Filter, Duration)) -> Self {
        let (all, within) = match &f.within {
            Visibility::All => (true, Vec::new()),
            Visibility::Within(p) => (false, p.clone()),
        };
        pb::EventPollRequest {
            after,
            kinds: f.kinds,
            all,
            within,
            namespace: f.namespace.clone(),
            agent_id: f.agent_id.clone(),
            event_types: f.event_types.clone(),
            limit: MAX_POLL as u32,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        }
    }
}

/// The filter a request carries. A request that names no view sees nothing.
pub fn filter_of(r: &pb::EventPollRequest) -> Filter {
    Filter {
        kinds: r.kinds,
        within: if r.all { Visibility::All } else { Visibility::Within(r.within.clone()) },
        namespace: r.namespace.clone(),
        agent_id: r.agent_id.clone(),
        event_types: r.event_types.clone(),
    }
}

impl Cluster {
    /// This node's answer to another node's poll of its events.
    pub async fn serve_event_poll(&self, r: pb::EventPollRequest) -> pb::EventPollReply {
        let filter = filter_of(&r);
        let wait = Duration::from_millis(u64::from(r.wait_ms)).min(MAX_WAIT);
        let cat = self.catalogue.clone();
        let live = move |ns: &str, id: u64| cat.view.read().namespace(ns).is_some_and(|e| e.id == id);
        let limit = (r.limit as usize).min(MAX_POLL);
        let poll = self.local.events.wait_poll(r.after, &filter, limit, wait, &live).await;
        pb::EventPollReply {
            events: poll.events.iter().filter_map(|e| serde_json::to_string(e).ok()).collect(),
            position: poll.position,
            dropped: poll.dropped,
        }
    }

    /// `node`'s events after `after` that pass `filter`, waiting up to `wait` for one.
    pub async fn events_on(&self, node: u64, after: u64, filter: &Filter, wait: Duration) -> ClusterResult<Poll> {
        let req = pb::EventPollRequest::from((after, filter, wait));
        let reply =
            self.rpc(node, wait + Duration::from_secs(5), req, |mut c, r| async move { c.event_poll(r).await }).await?;
        let events = reply
            .events
            .iter()
            .map(|e| {
                serde_json::from_str::<Event>(e).map_err(|e| ClusterError::Internal(format!("decoding an event: {e}")))
            })
            .collect::<ClusterResult<Vec<_>>>()?;
        Ok(Poll { events, position: reply.position, dropped: reply.dropped })
    }
}
