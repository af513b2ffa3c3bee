//! The cluster layer of a node: gossip membership feeding the Raft catalogue, namespace
//! placement, forwarding and replication (the data plane), and the reconciler that keeps
//! membership and placements as they should be.

pub mod admin;
pub mod error;
pub mod peer;
pub mod plane;
pub mod planner;
pub mod service;
pub mod wire;

pub use error::{ClusterError, ClusterResult};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use loci_api::Core;
use loci_gossip::Gossip;
use loci_raft::catalogue::{Command, CommandResult, NamespaceEntry};
use loci_raft::{CatalogueNode, ChannelPool, NodeAddr};
use loci_storage::crypto::MasterSecret;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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

pub struct Cluster {
    pub node_id: u64,
    pub settings: ClusterSettings,
    pub catalogue: Arc<CatalogueNode>,
    pub gossip: Gossip,
    pub pool: ChannelPool,
    token: String,
    core: OnceLock<Weak<Core>>,
    /// Per (namespace, follower): the highest sequence the follower acknowledged; the async
    /// mutex also orders sends to one follower.
    pub(crate) links: Mutex<HashMap<(u64, u64), Arc<tokio::sync::Mutex<u64>>>>,
    /// Full copies in flight (namespace id, target node).
    copies: Mutex<HashSet<(u64, u64)>>,
    /// Per namespace id: the placement epoch this node last took over as primary in, and the
    /// lock that serialises taking over.
    pub(crate) taken_over: Mutex<HashMap<u64, u64>>,
    pub(crate) takeover_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Per namespace id: the log floor last sent to followers (they truncate below it).
    pub(crate) floors: Mutex<HashMap<(u64, u64), u64>>,
    /// Namespaces stored here that this node does not replicate, as of the last sweep.
    pub(crate) orphan_candidates: Mutex<BTreeSet<u64>>,
    /// Members that left (`loci cluster leave`), kept out until gossip stops seeing them.
    pub(crate) retired: Mutex<BTreeSet<u64>>,
    /// When the local node first saw each member alive (promotion needs some stability).
    alive_since: Mutex<HashMap<u64, Instant>>,
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
    ) -> Arc<Self> {
        Arc::new(Cluster {
            node_id,
            settings,
            catalogue,
            gossip,
            pool,
            token,
            core: OnceLock::new(),
            links: Mutex::new(HashMap::new()),
            copies: Mutex::new(HashSet::new()),
            taken_over: Mutex::new(HashMap::new()),
            takeover_locks: Mutex::new(HashMap::new()),
            floors: Mutex::new(HashMap::new()),
            orphan_candidates: Mutex::new(BTreeSet::new()),
            retired: Mutex::new(BTreeSet::new()),
            alive_since: Mutex::new(HashMap::new()),
            started: Instant::now(),
        })
    }

    pub fn set_core(&self, core: &Arc<Core>) {
        let _ = self.core.set(Arc::downgrade(core));
    }

    pub fn core(&self) -> Option<Arc<Core>> {
        self.core.get().and_then(Weak::upgrade)
    }

    pub fn token_ok(&self, given: &str) -> bool {
        self.catalogue.token_matches(given)
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

    fn link(&self, ns: u64, node: u64) -> Arc<tokio::sync::Mutex<u64>> {
        self.links.lock().entry((ns, node)).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(0))).clone()
    }
}

/// The inputs of the placement planner, taken at one moment.
pub(crate) struct PlanInputs {
    pub namespaces: Vec<NamespaceEntry>,
    pub draining: BTreeSet<u64>,
    pub members: BTreeSet<u64>,
    pub alive: BTreeSet<u64>,
    view: Arc<loci_gossip::MembershipView>,
    /// Replicas per node across all namespaces.
    pub load: std::collections::BTreeMap<u64, usize>,
    pub busy: BTreeSet<u64>,
}

/// What a node reports about itself (`NodeInfo`).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub node_id: u64,
    pub initialized: bool,
    pub raft_state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub gossip_alive: Vec<u64>,
    pub namespaces_primary: usize,
    pub namespaces_replica: usize,
    pub version: String,
    pub uptime_seconds: u64,
    pub rpc_addr: String,
    pub http_addr: String,
    pub gossip_addr: String,
    pub ready: bool,
    /// Average CPU use of the process since it started (% of one core × cores).
    #[serde(default)]
    pub cpu_percent: f64,
    /// Resident memory as a share of the machine's.
    #[serde(default)]
    pub memory_percent: f64,
}

/// (cpu %, memory %) of this process, from /proc (zeros where it is not available).
fn process_usage(uptime: Duration) -> (f64, f64) {
    let ticks_per_sec = 100.0;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            Some((utime + stime) / ticks_per_sec / uptime.as_secs_f64().max(1.0) / cores * 100.0)
        })
        .unwrap_or(0.0);
    let rss_pages: f64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let total_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let mem = if total_kib > 0.0 { rss_pages * 4.0 / total_kib * 100.0 } else { 0.0 };
    (cpu, mem)
}

impl Cluster {
    pub fn local_info(&self) -> NodeInfo {
        let m = self.catalogue.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let (mut primary, mut replica) = (0, 0);
        for ns in self.catalogue.view.read().namespaces.values() {
            if ns.placement.primary() == Some(self.node_id) {
                primary += 1;
            } else if ns.placement.replicas.contains(&self.node_id) {
                replica += 1;
            }
        }
        let me = self.gossip.identity.clone();
        let usage = process_usage(self.started.elapsed());
        NodeInfo {
            node_id: self.node_id,
            initialized: m.membership_config.membership().nodes().count() > 0,
            raft_state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            voters,
            learners,
            gossip_alive: self.gossip.view().alive().map(|m| m.identity.id).collect(),
            namespaces_primary: primary,
            namespaces_replica: replica,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            rpc_addr: me.rpc_addr,
            http_addr: me.http_addr,
            gossip_addr: me.gossip_addr.to_string(),
            ready: self.core().is_some_and(|c| c.is_ready()),
            cpu_percent: usage.0,
            memory_percent: usage.1,
        }
    }

    /// Form or join the cluster, learn the encryption parameters, then mark the node ready.
    pub async fn form(
        self: Arc<Self>,
        master: MasterSecret,
        pending_params: Option<loci_storage::crypto::EncryptionParams>,
        token: CancellationToken,
    ) {
        let mut announced_init = false;
        loop {
            if token.is_cancelled() {
                return;
            }
            let initialized = self.catalogue.is_initialized().await;
            if !initialized {
                if self.settings.standalone {
                    if let Err(e) = self.catalogue.initialize_single().await {
                        tracing::error!(error = %e, "cannot initialise the catalogue");
                    }
                } else if self.settings.bootstrap_expect >= 2 {
                    self.try_bootstrap().await;
                } else if !announced_init {
                    tracing::info!(
                        "waiting to be added to an existing cluster (via --join seeds) or for `loci cluster init`"
                    );
                    announced_init = true;
                }
            }
            if self.catalogue.is_initialized().await && self.catalogue.current_leader().await.is_some() {
                // The node that initialised proposes the cluster-wide parameters once.
                let (has_params, has_id) = {
                    let c = self.catalogue.view.read();
                    (c.encryption.is_some(), c.cluster_id.is_some())
                };
                if !has_params && self.catalogue.is_leader_now() {
                    if let Some(p) = pending_params.clone() {
                        let _ = self.catalogue.write(Command::SetEncryption { params: p }).await;
                    }
                }
                if !has_id && self.catalogue.is_leader_now() {
                    let mut b = [0u8; 16];
                    loci_storage::crypto::random_bytes(&mut b);
                    let _ = self.catalogue.write(Command::InitCluster { cluster_id: hex::encode(b) }).await;
                }
                let params = self.catalogue.view.read().encryption.clone();
                if let Some(params) = params {
                    match master.unlock(&params) {
                        Ok(ring) => {
                            if let Some(core) = self.core() {
                                core.set_keyring(ring);
                                core.set_ready(true);
                                tracing::info!(node_id = self.node_id, "cluster membership established; node ready");
                            }
                            return;
                        }
                        Err(e) => {
                            // A member that cannot read the cluster's data must not hold any:
                            // leave the catalogue and gossip, and stay unready.
                            tracing::error!(error = %e, "this node's LOCI_ENCRYPTION_KEY differs from the cluster's: leaving the cluster; not serving data");
                            let retire = loci_api::plane::ClusterAction::Retire { node: self.node_id };
                            if let Err(e) = self.clone().run_admin(retire).await {
                                tracing::warn!(error = %e.message, "could not remove this node from the catalogue");
                            }
                            self.gossip.leave().await;
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// `--bootstrap-expect N`: once N nodes see each other and none is initialised, the lowest
    /// id initialises the catalogue with exactly those N members (same set on every node).
    async fn try_bootstrap(&self) {
        let view = self.gossip.view();
        let alive: Vec<_> = view.alive().map(|m| m.identity.clone()).collect();
        if alive.len() < self.settings.bootstrap_expect {
            return;
        }
        let mut ids: Vec<u64> = alive.iter().map(|m| m.id).collect();
        ids.sort();
        ids.truncate(self.settings.bootstrap_expect);
        if ids.first() != Some(&self.node_id) {
            return;
        }
        for id in &ids {
            if *id == self.node_id {
                continue;
            }
            match self.node_info_of(*id, Duration::from_secs(2)).await {
                Ok(info) if info.initialized => {
                    tracing::info!(peer = id, "a peer is already part of a cluster; not bootstrapping");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap: peer not reachable yet");
                    return;
                }
            }
        }
        let members: std::collections::BTreeMap<u64, NodeAddr> = alive
            .iter()
            .filter(|m| ids.contains(&m.id))
            .map(|m| {
                (
                    m.id,
                    NodeAddr {
                        rpc_addr: m.rpc_addr.clone(),
                        http_addr: m.http_addr.clone(),
                        gossip_addr: m.gossip_addr.to_string(),
                    },
                )
            })
            .collect();
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "bootstrapping a new cluster");
        if let Err(e) = self.catalogue.raft.initialize(members).await {
            tracing::warn!(error = %e, "bootstrap initialisation failed");
        }
    }

    /// `loci cluster init`: initialise with every member this node currently sees.
    pub async fn init_with_view(&self) -> Result<Vec<u64>, String> {
        if self.catalogue.is_initialized().await {
            return Err("this node already belongs to an initialised cluster".into());
        }
        let members: std::collections::BTreeMap<u64, NodeAddr> = self
            .gossip
            .view()
            .alive()
            .map(|m| {
                (
                    m.identity.id,
                    NodeAddr {
                        rpc_addr: m.identity.rpc_addr.clone(),
                        http_addr: m.identity.http_addr.clone(),
                        gossip_addr: m.identity.gossip_addr.to_string(),
                    },
                )
            })
            .collect();
        let ids: Vec<u64> = members.keys().copied().collect();
        self.catalogue.raft.initialize(members).await.map_err(|e| e.to_string())?;
        Ok(ids)
    }

    /// The reconciler: on the Raft leader only, re-derive membership and placements from
    /// (catalogue, gossip) every tick and make at most one change of each kind.
    pub async fn reconcile_loop(self: Arc<Self>, token: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.track_alive();
            if !self.catalogue.is_leader_now() || self.core().is_none_or(|c| !c.is_ready()) {
                continue;
            }
            if let Err(e) = self.reconcile_membership().await {
                tracing::debug!(error = %e, "membership reconcile");
            }
            if let Err(e) = self.reconcile_placements().await {
                tracing::debug!(error = %e, "placement reconcile");
            }
        }
    }

    /// How long a member has been down. One gossip has never seen counts as down since this
    /// process started, so a freshly started leader waits `failover_after` like everyone else.
    fn down_for(&self, view: &loci_gossip::MembershipView, n: u64) -> Option<Duration> {
        view.down_for(n).or_else(|| (!view.members.contains_key(&n)).then(|| self.started.elapsed()))
    }

    fn track_alive(&self) {
        let view = self.gossip.view();
        let mut since = self.alive_since.lock();
        since.retain(|id, _| view.is_alive(*id));
        self.retired.lock().retain(|id| view.is_alive(*id));
        for m in view.alive() {
            since.entry(m.identity.id).or_insert_with(Instant::now);
        }
    }

    async fn reconcile_membership(&self) -> Result<(), String> {
        use openraft_compat::ChangeMembers;
        let m = self.catalogue.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let view = self.gossip.view();
        let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        // 1. Alive members not in the catalogue become learners.
        for member in view.alive() {
            let id = member.identity.id;
            if !nodes.contains(&id) && !self.retired.lock().contains(&id) {
                let addr = NodeAddr {
                    rpc_addr: member.identity.rpc_addr.clone(),
                    http_addr: member.identity.http_addr.clone(),
                    gossip_addr: member.identity.gossip_addr.to_string(),
                };
                tracing::info!(node = id, "adding node as a learner");
                self.catalogue.raft.add_learner(id, addr, false).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
        // 1b. A member that restarted on another address: update its entry.
        for member in view.alive() {
            let id = member.identity.id;
            if let Some(node) = membership.get_node(&id) {
                if node.rpc_addr != member.identity.rpc_addr || node.http_addr != member.identity.http_addr {
                    let addr = NodeAddr {
                        rpc_addr: member.identity.rpc_addr.clone(),
                        http_addr: member.identity.http_addr.clone(),
                        gossip_addr: member.identity.gossip_addr.to_string(),
                    };
                    tracing::info!(node = id, addr = %addr.rpc_addr, "updating a member's address");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::SetNodes([(id, addr)].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        // 2. Promote stable, caught-up learners until the voter target (counting only voters
        //    that are alive, so a dead one is replaced before it is removed).
        let alive_voters = voters.iter().filter(|v| **v == self.node_id || view.is_alive(**v)).count();
        if alive_voters < self.settings.voters {
            let last = m.last_log_index.unwrap_or(0);
            let since = self.alive_since.lock().clone();
            let replication = m.replication.clone().unwrap_or_default();
            for id in nodes.difference(&voters) {
                let stable = since.get(id).is_some_and(|t| t.elapsed() >= Duration::from_secs(2));
                let caught_up = replication.get(id).and_then(|l| *l).is_some_and(|l| l.index + 10 >= last);
                if stable && caught_up && view.is_alive(*id) {
                    tracing::info!(node = id, "promoting learner to voter");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        // 3. Remove members down longer than the grace period; never below 3 voters automatically.
        for id in &nodes {
            if *id == self.node_id {
                continue;
            }
            if self.down_for(&view, *id).is_some_and(|d| d >= self.settings.dead_node_grace) {
                if voters.contains(id) {
                    if voters.len() <= 3 {
                        continue;
                    }
                    tracing::warn!(node = id, "removing a dead voter");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::RemoveVoters([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    tracing::warn!(node = id, "removing a dead learner");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::RemoveNodes([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// One snapshot of what the placement planner looks at.
    pub(crate) fn plan_inputs(&self) -> PlanInputs {
        let (namespaces, draining) = {
            let c = self.catalogue.view.read();
            (c.namespaces.values().cloned().collect::<Vec<_>>(), c.draining.clone())
        };
        let mut load = std::collections::BTreeMap::new();
        // Nodes receiving a copy right now (Syncing anywhere) take no further move.
        let mut busy: BTreeSet<u64> = BTreeSet::new();
        for ns in &namespaces {
            for r in &ns.placement.replicas {
                *load.entry(*r).or_insert(0usize) += 1;
            }
            for (n, s) in &ns.placement.states {
                if *s == loci_raft::catalogue::ReplicaState::Syncing {
                    busy.insert(*n);
                }
            }
            // A move's source is busy too (one move per node at a time).
            busy.extend(ns.placement.leaving.iter().copied());
        }
        PlanInputs {
            namespaces,
            draining,
            members: self.members(),
            alive: self.alive_members(),
            view: self.gossip.view(),
            load,
            busy,
        }
    }

    /// The planner's decision for one namespace (the reconciler and the rebalance dry run).
    pub(crate) fn plan(&self, inputs: &PlanInputs, ns: &NamespaceEntry) -> planner::Decision {
        let down = |n: u64| if n == self.node_id { None } else { self.down_for(&inputs.view, n) };
        let view = planner::View {
            alive: &inputs.alive,
            members: &inputs.members,
            draining: &inputs.draining,
            down_for: &down,
            failover_after: self.settings.failover_after,
            dead_grace: self.settings.dead_node_grace,
            load: &inputs.load,
            busy: &inputs.busy,
        };
        planner::plan(ns, &view)
    }

    async fn reconcile_placements(&self) -> Result<(), String> {
        let mut inputs = self.plan_inputs();
        for ns in std::mem::take(&mut inputs.namespaces) {
            let decision = self.plan(&inputs, &ns);
            let new = match decision {
                planner::Decision::Keep => continue,
                planner::Decision::Set(p) => p,
                planner::Decision::Failover { candidates } => {
                    let old = ns.placement.primary().unwrap_or(0);
                    let old_down = !inputs.alive.contains(&old);
                    let mut best: Option<(u64, u64)> = None;
                    // A graceful hand-off (draining) needs the candidate caught up with the primary.
                    let primary_seq =
                        if old_down { None } else { self.progress_of(old, &ns.name).await.map(|p| p.applied_seq) };
                    for c in candidates {
                        if let Some(p) = self.progress_of(c, &ns.name).await {
                            if primary_seq.is_some_and(|s| p.applied_seq < s) {
                                continue;
                            }
                            if best.is_none_or(|(_, s)| p.applied_seq > s) {
                                best = Some((c, p.applied_seq));
                            }
                        }
                    }
                    let Some((new_primary, seq)) = best else { continue };
                    tracing::warn!(namespace = %ns.name, from = old, to = new_primary, applied_seq = seq, "namespace primary failover");
                    planner::with_primary(&ns.placement, new_primary, old_down)
                }
            };
            // Later decisions in this tick see this one (one move per node at a time; loads).
            for (n, s) in &new.states {
                if *s == loci_raft::catalogue::ReplicaState::Syncing {
                    inputs.busy.insert(*n);
                }
            }
            inputs.busy.extend(new.leaving.iter().copied());
            for r in &ns.placement.replicas {
                if let Some(l) = inputs.load.get_mut(r) {
                    *l = l.saturating_sub(1);
                }
            }
            for r in &new.replicas {
                *inputs.load.entry(*r).or_insert(0) += 1;
            }
            let res = self
                .catalogue
                .write(Command::SetPlacement {
                    name: ns.name.clone(),
                    expected_epoch: ns.placement.epoch,
                    placement: new.clone(),
                })
                .await
                .map_err(|e| e.to_string())?;
            match res {
                CommandResult::Namespace { .. } => {
                    tracing::info!(namespace = %ns.name, epoch = new.epoch, replicas = ?new.replicas, states = ?new.states, "placement changed");
                    if new.primary() != ns.placement.primary() {
                        metrics::counter!("loci_failovers_total").increment(1);
                    }
                    if new.states.values().any(|s| *s == loci_raft::catalogue::ReplicaState::Syncing) {
                        metrics::counter!("loci_moves_total").increment(1);
                    }
                }
                other => tracing::debug!(?other, "placement change not applied"),
            }
        }
        Ok(())
    }

    async fn progress_of(&self, node: u64, ns: &str) -> Option<loci_storage::model::NsProgress> {
        if node == self.node_id {
            let core = self.core()?;
            let entry = self.entry(ns)?;
            let ctx = core.context(&entry).ok()?;
            let store = core.store.clone();
            return tokio::task::spawn_blocking(move || store.progress(&ctx)).await.ok()?.ok();
        }
        self.progress_on(node, ns, Duration::from_secs(2)).await.ok()
    }
}

/// openraft's membership change type, re-exported through loci-raft's dependency.
mod openraft_compat {
    pub use openraft::ChangeMembers;
}
