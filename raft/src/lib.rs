//! Loci's catalogue on Raft (openraft 0.9): type config, the replicated [`catalogue::Catalogue`],
//! its RocksDB-backed log store and state machine, and the tonic transport.
//!
//! A single node is a one-voter cluster; there is no separate single-node code path.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod catalogue;
pub mod denials;
pub mod freshness;
pub mod guard;
pub mod maintenance;
pub mod network;
pub mod pacing;
pub mod policy;
pub mod quota;
#[cfg(test)]
mod quota_tests;
pub mod store;
pub mod webhooks;

pub use catalogue::{Catalogue, Command, CommandResult};
pub use network::{ChannelPool, Network, RaftService};
pub use store::CatalogueView;

pub mod pb {
    tonic::include_proto!("loci.raft.v1");
}

pub type NodeId = u64;

/// How peers reach a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// gRPC (Raft, forwarding, replication, admin): `host:port`.
    pub rpc_addr: String,
    /// REST: `host:port`.
    pub http_addr: String,
    /// Gossip UDP: `host:port`.
    pub gossip_addr: String,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeAddr,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A catalogue write travelling to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogueWrite {
    pub command: Command,
}

/// What the leader answered, with the log index to wait for locally.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub result: CommandResult,
    pub log_index: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue storage: {0}")]
    Storage(String),
    #[error("no catalogue leader is known yet (cluster forming or lost quorum)")]
    NoLeader,
    #[error("catalogue write failed: {0}")]
    Write(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// Refused before it was proposed: the command's encoding exceeds the bound of its kind.
    #[error("the catalogue change is {bytes} bytes encoded; at most {max} are allowed")]
    TooLarge { bytes: usize, max: usize },
}

/// Every entry is replicated to every node, held in every log and snapshot, and must fit one
/// AppendEntries: an oversized command is refused before anything is proposed (on the node
/// that was asked, and again on the leader a write is forwarded to).
fn check_size(command: &Command) -> Result<(), CatalogueError> {
    let bytes = serde_json::to_vec(command).map(|b| b.len()).unwrap_or(usize::MAX);
    let max = command.max_encoded_bytes();
    if bytes > max {
        return Err(CatalogueError::TooLarge { bytes, max });
    }
    Ok(())
}

/// Why a node-to-node call was refused before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    BadToken,
    /// Too many bad tokens from this address lately: refused without comparing.
    Throttled,
}

impl From<TokenRefusal> for tonic::Status {
    fn from(r: TokenRefusal) -> Self {
        match r {
            TokenRefusal::BadToken => tonic::Status::unauthenticated("bad cluster token"),
            TokenRefusal::Throttled => tonic::Status::resource_exhausted("too many bad cluster tokens; retry later"),
        }
    }
}

/// Timing knobs (defaults suit loopback and small LANs on 2 cores).
#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_logs: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 150,
            election_timeout_min_ms: 750,
            election_timeout_max_ms: 1500,
            snapshot_logs: 500,
        }
    }
}

/// The opened Raft storage, before Raft itself runs.
pub struct OpenedStore {
    db: Arc<rocksdb::DB>,
    log: store::LogStore,
    sm: store::StateMachineStore,
    pub view: CatalogueView,
}

impl OpenedStore {
    /// Open (or create) the Raft RocksDB and rebuild the catalogue from it, without starting Raft.
    pub fn open(dir: &Path) -> Result<Self, CatalogueError> {
        std::fs::create_dir_all(dir).map_err(|e| CatalogueError::Storage(e.to_string()))?;
        let db = store::open_db(dir).map_err(|e| CatalogueError::Storage(e.to_string()))?;
        let (sm, view) =
            store::StateMachineStore::open(db.clone()).map_err(|e| CatalogueError::Storage(e.to_string()))?;
        Ok(OpenedStore { log: store::LogStore::new(db.clone()), db, sm, view })
    }
}

/// Read the catalogue of a data directory without starting Raft and without writing anything
/// (the RocksDB is opened read-only). `None` when there is no Raft state yet.
pub fn peek_catalogue(dir: &Path) -> Result<Option<Catalogue>, CatalogueError> {
    if !dir.join("CURRENT").exists() {
        return Ok(None);
    }
    let db = store::open_db_read_only(dir).map_err(|e| CatalogueError::Storage(e.to_string()))?;
    let (_, view) = store::StateMachineStore::open(db).map_err(|e| CatalogueError::Storage(e.to_string()))?;
    let cat = view.read().clone();
    Ok(Some(cat))
}

pub struct CatalogueNode {
    pub id: NodeId,
    pub addr: NodeAddr,
    pub raft: Raft<TypeConfig>,
    pub view: CatalogueView,
    db: Arc<rocksdb::DB>,
    network: Network,
    token_digest: [u8; 32],
    /// Failed token checks per peer address (every node-to-node service checks through it).
    guard: guard::TokenGuard,
    /// Read-index confirmations that this node's catalogue is current ([`freshness`]).
    freshness: parking_lot::Mutex<freshness::Freshness>,
    /// The confirmation loop, stopped with Raft.
    confirmations: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The snapshot pacer, stopped with Raft.
    pacer: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How often the snapshot pacer checks whether a catalogue snapshot is due.
pub const PACE_EVERY: Duration = Duration::from_millis(500);

/// How often each node asks the leader for a read index (its freshness confirmation).
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl CatalogueNode {
    pub async fn start(
        opened: OpenedStore,
        id: NodeId,
        addr: NodeAddr,
        settings: &RaftSettings,
        pool: ChannelPool,
        cluster_token: String,
    ) -> Result<Arc<Self>, CatalogueError> {
        let config = Config {
            cluster_name: "loci".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            // Snapshots are paced by the catalogue's size instead (`spawn_snapshot_pacer`).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| CatalogueError::Storage(e.to_string()))?;
        let network = Network::new(pool, cluster_token.clone());
        let raft = Raft::new(id, Arc::new(config), network.clone(), opened.log, opened.sm)
            .await
            .map_err(|e| CatalogueError::Fatal(e.to_string()))?;
        let node = Arc::new(CatalogueNode {
            id,
            addr,
            raft,
            view: opened.view,
            db: opened.db,
            network,
            token_digest: digest(&cluster_token),
            guard: guard::TokenGuard::default(),
            freshness: Default::default(),
            confirmations: Default::default(),
            pacer: Default::default(),
        });
        *node.confirmations.lock() = Some(node.spawn_confirmations());
        *node.pacer.lock() = Some(node.spawn_snapshot_pacer(settings.snapshot_logs));
        Ok(node)
    }

    /// Snapshot the catalogue when [`pacing::snapshot_due`] says so, checked every
    /// [`PACE_EVERY`] until the node is dropped.
    fn spawn_snapshot_pacer(self: &Arc<Self>, min_logs: u64) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PACE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                let (applied, snapshot) = {
                    let m = node.raft.metrics();
                    let m = m.borrow();
                    (m.last_applied.map_or(0, |l| l.index), m.snapshot.map(|l| l.index))
                };
                let records = node.view.read().records();
                if pacing::snapshot_due(applied, snapshot, records, min_logs)
                    && let Err(e) = node.raft.trigger().snapshot().await
                {
                    tracing::warn!(error = %e, "could not start a catalogue snapshot");
                }
            }
        })
    }

    /// Ask for a read-index confirmation every [`CONFIRM_EVERY`] until the node is dropped.
    fn spawn_confirmations(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CONFIRM_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                node.confirm_once().await;
            }
        })
    }

    /// One read-index round: the leader's read log id (asked of the leader, or of this node's
    /// own Raft when it leads), recorded with the instant the question left this node.
    pub async fn confirm_once(&self) {
        let sent = std::time::Instant::now();
        let Some(leader) = self.raft.metrics().borrow().current_leader else { return };
        let answer = if leader == self.id {
            match tokio::time::timeout(Duration::from_secs(2), self.raft.get_read_log_id()).await {
                Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            }
        } else {
            let addr = self.raft.metrics().borrow().membership_config.membership().get_node(&leader).cloned();
            match addr {
                Some(node) => {
                    let addr = self.network.pool().resolve(leader).unwrap_or(node.rpc_addr);
                    let ask = self.network.read_index(&addr, leader, self.id);
                    match tokio::time::timeout(Duration::from_secs(2), ask).await {
                        Ok(r) => r,
                        Err(_) => Err("timed out".to_string()),
                    }
                }
                None => Err(format!("leader {leader} has no address")),
            }
        };
        match answer {
            Ok(index) => self.freshness.lock().record(freshness::Confirmation { sent, index }),
            Err(e) => tracing::debug!(leader, error = %e, "no read-index confirmation from the catalogue leader"),
        }
    }

    /// The leader's read log index for member `asker`: leadership confirmed by a quorum first
    /// (served to followers asking for their confirmation). A node that is not a member gets
    /// none, so a removed node that keeps running stops taking keys.
    pub async fn read_index(&self, asker: NodeId) -> Result<u64, CatalogueError> {
        let member = self.raft.metrics().borrow().membership_config.membership().get_node(&asker).is_some();
        if !member {
            return Err(CatalogueError::Write(format!("node {asker} is not a member")));
        }
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
            Err(e) => Err(CatalogueError::Write(e.to_string())),
        }
    }

    /// Whether a node-to-node request is from a member: over mutual TLS the connection was
    /// authenticated by its certificate (and no token is sent); in plaintext the token must
    /// match, compared in constant time.
    /// Admit a node-to-node call from `peer` presenting `given`: the token compared in constant
    /// time, an address that keeps failing refused without comparing for a while (logged and
    /// counted in `loci_cluster_token_refused_total`).
    pub fn admit_peer(&self, peer: Option<std::net::SocketAddr>, given: &str) -> Result<(), TokenRefusal> {
        let ip = peer.map(|a| a.ip());
        match self.guard.check(ip, std::time::Instant::now(), || self.token_matches(given)) {
            guard::Verdict::Admitted => Ok(()),
            guard::Verdict::Refused { failures, blocked_now } => {
                metrics::counter!("loci_cluster_token_refused_total", "reason" => "bad_token").increment(1);
                if failures == 1 || blocked_now {
                    tracing::warn!(peer = ?ip, failures, blocked = blocked_now, "node-to-node call with a bad cluster token");
                }
                Err(TokenRefusal::BadToken)
            }
            guard::Verdict::Throttled => {
                metrics::counter!("loci_cluster_token_refused_total", "reason" => "throttled").increment(1);
                Err(TokenRefusal::Throttled)
            }
        }
    }

    /// Whether this node's catalogue is known to be current within `bound` ([`freshness`]):
    /// the only voter of a one-voter group; otherwise a read-index confirmation sent within
    /// `bound` whose index this node has applied. A node cut off from the leader, or from the
    /// log, stops being fresh `bound` after its last good confirmation, so it can refuse what a
    /// later catalogue change (a key revocation) might forbid.
    pub fn is_fresh(&self, bound: Duration) -> bool {
        // On every request with a minted key: read the metrics in place, clone nothing but an Arc.
        self.is_fresh_at(bound, self.view.applied_index())
    }

    /// [`Self::is_fresh`] for a caller that read the catalogue at index `applied` (so a change
    /// applied after that read cannot make it fresh). A node no longer a member never is.
    pub fn is_fresh_at(&self, bound: Duration, applied: u64) -> bool {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if membership.membership().get_node(&self.id).is_none() {
            return false;
        }
        let mut voters = membership.membership().voter_ids();
        if let (Some(only), None) = (voters.next(), voters.next())
            && only == self.id
        {
            return true;
        }
        self.freshness.lock().is_fresh(std::time::Instant::now(), bound, applied)
    }

    pub fn token_matches(&self, given: &str) -> bool {
        if self.network.pool().uses_tls() {
            return true;
        }
        subtle::ConstantTimeEq::ct_eq(&digest(given)[..], &self.token_digest[..]).into()
    }

    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Make this node a one-voter cluster. Guarded by persisted state: a node that already has
    /// a log or a vote is never re-initialised.
    pub async fn initialize_single(&self) -> Result<(), CatalogueError> {
        if self.is_initialized().await {
            return Ok(());
        }
        let mut members = std::collections::BTreeMap::new();
        members.insert(self.id, self.addr.clone());
        self.raft.initialize(members).await.map_err(|e| CatalogueError::Write(e.to_string()))
    }

    pub async fn current_leader(&self) -> Option<NodeId> {
        self.raft.current_leader().await
    }

    pub fn is_leader_now(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Wait until some node is leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, CatalogueError> {
        let mut rx = self.raft.metrics();
        let res = tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader.is_some())).await;
        match res {
            Ok(Ok(m)) => m.current_leader.ok_or(CatalogueError::NoLeader),
            _ => Err(CatalogueError::NoLeader),
        }
    }

    /// Propose on this node (must be the leader).
    pub async fn write_local(&self, command: Command) -> Result<WriteOutcome, CatalogueError> {
        check_size(&command)?;
        match self.raft.client_write(command).await {
            Ok(resp) => Ok(WriteOutcome { result: resp.data, log_index: resp.log_id.index }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(CatalogueError::Write(format!("not the leader (leader: {:?})", f.leader_id)))
            }
            Err(e) => Err(CatalogueError::Write(e.to_string())),
        }
    }

    /// Commit a catalogue change from any node: proposed on the leader (forwarded if needed), and
    /// returned only once this node has applied it, so the caller reads its own write here.
    pub async fn write(&self, command: Command) -> Result<CommandResult, CatalogueError> {
        self.write_indexed(command).await.map(|(r, _)| r)
    }

    /// [`Self::write`], also returning the log index of the change.
    pub async fn write_indexed(&self, command: Command) -> Result<(CommandResult, u64), CatalogueError> {
        check_size(&command)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut last_err = CatalogueError::NoLeader;
        while tokio::time::Instant::now() < deadline {
            let leader = match self.wait_for_leader(Duration::from_secs(5)).await {
                Ok(l) => l,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            let outcome = if leader == self.id {
                // A leader cut off from its quorum never commits: give up rather than hang.
                let write = tokio::time::timeout(Duration::from_secs(5), self.raft.client_write(command.clone())).await;
                let Ok(write) = write else {
                    return Err(CatalogueError::NoLeader);
                };
                match write {
                    Ok(resp) => Ok(WriteOutcome { result: resp.data, log_index: resp.log_id.index }),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(CatalogueError::NoLeader),
                    Err(RaftError::APIError(e)) => Err(CatalogueError::Write(e.to_string())),
                    Err(RaftError::Fatal(e)) => return Err(CatalogueError::Fatal(e.to_string())),
                }
            } else {
                let addr = self.raft.metrics().borrow().membership_config.membership().get_node(&leader).cloned();
                match addr {
                    Some(node) => self
                        .network
                        .forward_write(
                            &self.network.pool().resolve(leader).unwrap_or(node.rpc_addr),
                            &CatalogueWrite { command: command.clone() },
                        )
                        .await
                        .map_err(CatalogueError::Write),
                    None => Err(CatalogueError::NoLeader),
                }
            };
            match outcome {
                Ok(o) => {
                    if !self.view.wait_applied(o.log_index, Duration::from_secs(10)).await {
                        return Err(CatalogueError::Write("timed out waiting for the local replica to apply".into()));
                    }
                    return Ok((o.result, o.log_index));
                }
                Err(e) => {
                    last_err = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last_err)
    }

    /// Snapshot the catalogue and purge the whole log behind it, then compact, so that removed
    /// entries (a destroyed data key) no longer exist anywhere in this node's Raft files.
    pub async fn purge_history(&self) -> Result<(), CatalogueError> {
        let applied = self.view.applied_index();
        self.raft.trigger().snapshot().await.map_err(|e| CatalogueError::Fatal(e.to_string()))?;
        let mut rx = self.raft.metrics();
        let snap = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied)),
        )
        .await;
        let snapped = matches!(snap, Ok(Ok(_)));
        drop(snap);
        if !snapped {
            return Err(CatalogueError::Write("timed out waiting for the catalogue snapshot".into()));
        }
        self.raft.trigger().purge_log(applied).await.map_err(|e| CatalogueError::Fatal(e.to_string()))?;
        let purged = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|m| m.purged.is_some_and(|p| p.index >= applied)),
        )
        .await;
        let done = matches!(purged, Ok(Ok(_)));
        drop(purged);
        if !done {
            return Err(CatalogueError::Write("timed out waiting for the catalogue log purge".into()));
        }
        let db = self.db.clone();
        let _ = tokio::task::spawn_blocking(move || store::compact(&db)).await;
        Ok(())
    }

    pub async fn shutdown(&self) {
        if let Some(h) = self.confirmations.lock().take() {
            h.abort();
        }
        if let Some(h) = self.pacer.lock().take() {
            h.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}
