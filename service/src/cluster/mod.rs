//! The cluster layer of a node: gossip membership feeding the Raft catalogue, namespace
//! placement, forwarding and replication (the data plane), and the reconciler that keeps
//! membership and placements as they should be.

pub mod action;
pub mod admin;
pub mod audit;
pub mod backup;
mod copy;
pub mod error;
pub mod events;
mod formation;
mod info;
pub mod peer;
pub mod plane;
pub mod planner;
mod reconciler;
mod replicate;
mod routing;
mod rules;
pub mod server;
mod sync;
mod takeover;
pub mod webhooks;
pub mod wire;

pub use action::ClusterAction;
pub use error::{ClusterError, ClusterResult};
pub use info::NodeInfo;

/// Which members a catalogue change must reach before the writer returns
/// ([`Cluster::await_applied_everywhere`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every member, or the freshness bound: the change is in force on every node (a key
    /// revoked, narrowed or rotated away).
    Every,
    /// The members gossip reports alive, best effort (a new key usable at once).
    Alive,
}

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loci_gossip::Gossip;
use loci_raft::catalogue::NamespaceEntry;
use loci_raft::{CatalogueNode, ChannelPool, NodeAddr};
use loci_storage::Store;
use parking_lot::Mutex;

use crate::contexts::{Contexts, Readiness};
use crate::error::ServiceResult;

pub const CLUSTER_TOKEN_HEADER: &str = "x-loci-cluster-token";

#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub replication_factor: usize,
    pub voters: usize,
    pub failover_after: Duration,
    pub dead_node_grace: Duration,
    pub bootstrap_expect: usize,
    /// No seeds and no bootstrap quorum: this node forms a cluster of one by itself.
    pub standalone: bool,
}

/// What the data plane acts on below itself: the node's store, the namespace contexts (data
/// keys, embedders) and whether the node serves data. Given at construction; the data plane
/// never calls back up into the service.
#[derive(Clone)]
pub struct Local {
    pub store: Arc<Store>,
    pub contexts: Arc<Contexts>,
    pub ready: Arc<Readiness>,
    /// This node's audit log (read for another node's `GET /v1/audit`).
    pub audit: Arc<crate::audit::AuditLog>,
    /// This node's event ring (read by subscriptions on every node).
    pub events: Arc<crate::events::EventHub>,
    /// This node's webhook deliveries (None: it sends none).
    pub webhooks: Option<Arc<crate::webhooks::Dispatcher>>,
    /// This node's import jobs.
    pub import_jobs: Arc<crate::memories::jobs::ImportJobs>,
}

impl Local {
    pub fn context(&self, entry: &NamespaceEntry) -> ServiceResult<loci_storage::NsContext> {
        self.contexts.context(entry)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    /// Run an operation on this node's copy only: no routing, no replication (what one replica
    /// holds, for diagnostics and tests).
    pub async fn execute(
        &self,
        entry: &NamespaceEntry,
        op: loci_storage::model::DataOp,
    ) -> ServiceResult<loci_storage::model::Executed> {
        let ctx = self.context(entry)?;
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.execute(&ctx, op))
            .await
            .map_err(|e| crate::ServiceError::internal(format!("worker failed: {e}")))??)
    }

    /// Drop a namespace's rows and index entries on this node.
    pub async fn erase(&self, ns_id: u64) -> ServiceResult<u64> {
        self.contexts.forget(ns_id);
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.drop_namespace(ns_id))
            .await
            .map_err(|e| crate::ServiceError::internal(format!("worker failed: {e}")))??)
    }
}

/// The data plane's per-namespace replication state on this node.
#[derive(Default)]
pub(crate) struct ReplicationState {
    /// Per (namespace, follower): the highest sequence the follower acknowledged (see [`Link`]).
    pub links: Mutex<HashMap<(u64, u64), Arc<Link>>>,
    /// Full copies in flight (namespace id, target node).
    pub copies: Mutex<HashSet<(u64, u64)>>,
    /// Per namespace id: the placement epoch this node last took over as primary in, and the
    /// lock that serialises taking over.
    pub taken_over: Mutex<HashMap<u64, u64>>,
    pub takeover_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Per (namespace id, follower): the log floor last sent (followers truncate below it).
    pub floors: Mutex<HashMap<(u64, u64), u64>>,
    /// Namespaces stored here that this node does not replicate, as of the last sweep.
    pub orphan_candidates: Mutex<BTreeSet<u64>>,
    /// (namespace id, follower): a Syncing replica this primary is proposing `Active`; from
    /// the proposal on, every write needs its acknowledgement too.
    pub promoting: Mutex<BTreeSet<(u64, u64)>>,
    /// Namespace ids this node, taking over as primary, asked another replica to copy to it
    /// (`PushCopy`): the only copies a primary accepts.
    pub expected_pushes: Mutex<BTreeSet<u64>>,
}

/// What the reconciler remembers about members between ticks.
#[derive(Default)]
pub(crate) struct MembershipState {
    /// Members that left (`loci cluster leave`), kept out until gossip stops seeing them.
    pub retired: Mutex<BTreeSet<u64>>,
    /// When the local node first saw each member alive (promotion needs some stability).
    pub alive_since: Mutex<HashMap<u64, Instant>>,
}

pub struct Cluster {
    pub node_id: u64,
    pub settings: ClusterSettings,
    pub catalogue: Arc<CatalogueNode>,
    pub gossip: Gossip,
    pub pool: ChannelPool,
    token: String,
    /// This node's copies of the namespaces it replicates.
    pub(crate) local: Local,
    /// Replication state of the namespaces this node is primary or replica of.
    pub(crate) repl: ReplicationState,
    /// What the reconciler remembers about members between ticks.
    pub(crate) membership: MembershipState,
    pub started: Instant,
}

impl Cluster {
    pub fn new(
        node_id: u64,
        settings: ClusterSettings,
        catalogue: Arc<CatalogueNode>,
        gossip: Gossip,
        pool: ChannelPool,
        token: String,
        local: Local,
    ) -> Arc<Self> {
        Arc::new(Cluster {
            node_id,
            settings,
            catalogue,
            gossip,
            pool,
            token,
            local,
            repl: ReplicationState::default(),
            membership: MembershipState::default(),
            started: Instant::now(),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.local.is_ready()
    }

    /// This node's store, contexts and readiness.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// How peers are reached: the catalogue's member list, then gossip.
    pub fn node_addr(&self, node: u64) -> Option<NodeAddr> {
        // Gossip carries the address a node has now (it may have restarted elsewhere); the
        // catalogue's member list is the fallback.
        let view = self.gossip.view();
        if let Some(m) = view.members.get(&node).filter(|m| !m.identity.rpc_addr.is_empty()) {
            return Some(NodeAddr {
                rpc_addr: m.identity.rpc_addr.clone(),
                http_addr: m.identity.http_addr.clone(),
                gossip_addr: m.identity.gossip_addr.to_string(),
            });
        }
        self.catalogue.raft.metrics().borrow().membership_config.membership().get_node(&node).cloned()
    }

    /// Catalogue members (voters and learners).
    pub fn members(&self) -> BTreeSet<u64> {
        self.catalogue.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// Catalogue members that gossip reports alive (this node always counts itself).
    pub fn alive_members(&self) -> BTreeSet<u64> {
        let view = self.gossip.view();
        self.members().into_iter().filter(|n| *n == self.node_id || view.is_alive(*n)).collect()
    }

    pub fn is_alive(&self, node: u64) -> bool {
        node == self.node_id || self.gossip.view().is_alive(node)
    }

    /// The latest catalogue entry of a namespace.
    pub fn entry(&self, name: &str) -> Option<NamespaceEntry> {
        self.catalogue.view.read().namespaces.get(name).cloned()
    }

    pub(crate) fn link(&self, ns: u64, node: u64) -> Arc<Link> {
        self.repl.links.lock().entry((ns, node)).or_default().clone()
    }
}

/// The replication link from this primary to one follower of one namespace: the highest
/// sequence the follower acknowledged, behind an async mutex that also orders the sends to it
/// (held for a whole send, timeouts included). The last value a send left is mirrored outside
/// the lock, so the lag of a follower that is being sent to, the one most behind, can be read
/// without waiting for the send.
#[derive(Default)]
pub(crate) struct Link {
    acked: tokio::sync::Mutex<u64>,
    last: std::sync::atomic::AtomicU64,
}

impl Link {
    pub async fn lock(&self) -> LinkGuard<'_> {
        LinkGuard { acked: self.acked.lock().await, last: &self.last }
    }

    pub fn try_lock(&self) -> Option<LinkGuard<'_>> {
        self.acked.try_lock().ok().map(|acked| LinkGuard { acked, last: &self.last })
    }

    /// The acknowledged sequence as of the last completed change (a send in progress may
    /// raise it).
    pub fn last_acked(&self) -> u64 {
        self.last.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The held link; what it holds when dropped becomes [`Link::last_acked`].
pub(crate) struct LinkGuard<'a> {
    acked: tokio::sync::MutexGuard<'a, u64>,
    last: &'a std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for LinkGuard<'_> {
    type Target = u64;
    fn deref(&self) -> &u64 {
        &self.acked
    }
}

impl std::ops::DerefMut for LinkGuard<'_> {
    fn deref_mut(&mut self) -> &mut u64 {
        &mut self.acked
    }
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        self.last.store(*self.acked, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The inputs of the placement planner, taken at one moment.
pub(crate) struct PlanInputs {
    pub namespaces: Vec<NamespaceEntry>,
    pub draining: BTreeSet<u64>,
    pub members: BTreeSet<u64>,
    pub alive: BTreeSet<u64>,
    pub view: Arc<loci_gossip::MembershipView>,
    /// Replicas per node across all namespaces.
    pub load: std::collections::BTreeMap<u64, usize>,
    pub busy: BTreeSet<u64>,
}

#[cfg(test)]
mod link_tests {
    use super::Link;

    #[tokio::test]
    async fn a_link_being_sent_on_still_tells_what_its_follower_acknowledged() {
        let link = Link::default();
        *link.lock().await = 7;
        assert_eq!(link.last_acked(), 7);
        let mut held = link.lock().await;
        assert!(link.try_lock().is_none(), "a send in progress holds the link");
        assert_eq!(link.last_acked(), 7, "readable while held");
        *held = 12;
        assert_eq!(link.last_acked(), 7, "a send's progress shows once it lets go");
        drop(held);
        assert_eq!((link.last_acked(), *link.try_lock().expect("free")), (12, 12));
    }
}
