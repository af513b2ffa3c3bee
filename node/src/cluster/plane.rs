//! The data plane: every namespace operation runs on the namespace's primary. Other nodes
//! forward (one hop, epoch-checked); the primary applies a write locally under the next sequence
//! number, sends the entry to the other replicas in parallel and answers once a write quorum
//! (the primary included) has it. Followers apply strictly in order and catch up from the
//! primary's log, or by a full copy while `Syncing`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use loci_api::ApiResult;
use loci_api::plane::DataPlane;
use loci_raft::catalogue::{NamespaceEntry, Placement, ReplicaState};
use loci_storage::model::{ApplyOutcome, DataOp, DataResult, NsProgress, ReplEntry};

use super::error::{ClusterError, ClusterResult};
use super::peer::{Gather, quorum_call};
use super::wire::pb;
use super::{Cluster, planner};

const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const COPY_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Replication-log entries kept per namespace for follower catch-up.
pub const LOG_KEEP: u64 = 50_000;
/// How long a request waits for the catalogue to catch up with a placement it was told of.
const CATALOGUE_WAIT: Duration = Duration::from_secs(3);

/// A data operation forwarded to the namespace's primary.
pub struct ForwardRequest {
    /// The request id of the original request (one trace across the hop).
    pub request_id: Option<String>,
    pub namespace: String,
    pub epoch: u64,
    pub catalogue_index: u64,
    pub op: DataOp,
}

/// Replication-log entries for a follower.
pub struct ReplicateRequest {
    pub namespace: String,
    pub catalogue_index: u64,
    /// The placement epoch the sender is primary in (followers fence older senders).
    pub sender_epoch: u64,
    /// The sender's `(seq, epoch)` just before the first entry (divergence check).
    pub prev: Option<(u64, u64)>,
    /// Every replica has applied entries below this sequence: followers drop them from their
    /// logs (0: nothing to drop).
    pub floor: u64,
    pub entries: Vec<ReplEntry>,
}

/// One step of a full namespace copy.
pub enum CopyRequest {
    Begin { namespace: String, catalogue_index: u64 },
    Rows { rows: Vec<(String, Vec<u8>, Vec<u8>)> },
    Finish { namespace: String, progress: NsProgress },
}

impl CopyRequest {
    pub fn into_pb(self) -> pb::CopyRequest {
        use pb::copy_request::Step;
        let step = match self {
            CopyRequest::Begin { namespace, catalogue_index } => {
                Step::Begin(pb::CopyBegin { namespace, catalogue_index })
            }
            CopyRequest::Rows { rows } => Step::Rows(pb::CopyRows {
                rows: rows.into_iter().map(|(cf, key, value)| pb::CopyRow { cf, key, value }).collect(),
            }),
            CopyRequest::Finish { namespace, progress } => {
                Step::Finish(pb::CopyFinish { namespace, progress: Some(progress.into()) })
            }
        };
        pb::CopyRequest { step: Some(step) }
    }

    pub fn from_pb(r: pb::CopyRequest) -> ClusterResult<Self> {
        use pb::copy_request::Step;
        Ok(match r.step.ok_or_else(|| ClusterError::Internal("a copy step without a kind".into()))? {
            Step::Begin(b) => CopyRequest::Begin { namespace: b.namespace, catalogue_index: b.catalogue_index },
            Step::Rows(r) => CopyRequest::Rows { rows: r.rows.into_iter().map(|r| (r.cf, r.key, r.value)).collect() },
            Step::Finish(f) => {
                CopyRequest::Finish { namespace: f.namespace, progress: f.progress.map(Into::into).unwrap_or_default() }
            }
        })
    }
}

pub struct Plane(pub Arc<Cluster>);

impl DataPlane for Plane {
    fn execute(&self, entry: NamespaceEntry, op: DataOp) -> BoxFuture<'static, ApiResult<DataResult>> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c.execute(entry, op).await?) })
    }

    fn initial_placement(&self, ns_id: u64) -> Placement {
        let mut nodes: Vec<u64> = self.0.alive_members().into_iter().collect();
        let (draining, mut replicas, mut primaries) = {
            let c = self.0.catalogue.view.read();
            let mut replicas = std::collections::BTreeMap::new();
            let mut primaries = std::collections::BTreeMap::new();
            for ns in c.namespaces.values() {
                for (i, r) in ns.placement.replicas.iter().enumerate() {
                    *replicas.entry(*r).or_insert(0usize) += 1;
                    if i == 0 {
                        *primaries.entry(*r).or_insert(0usize) += 1;
                    }
                }
            }
            (c.draining.clone(), replicas, primaries)
        };
        nodes.retain(|n| !draining.contains(n));
        if nodes.is_empty() {
            nodes.push(self.0.node_id);
        }
        for n in &nodes {
            replicas.entry(*n).or_insert(0);
            primaries.entry(*n).or_insert(0);
        }
        planner::initial_balanced(ns_id, &nodes, self.0.settings.replication_factor, &replicas, &primaries)
    }

    fn await_applied_everywhere(&self, index: u64) -> BoxFuture<'static, ()> {
        let c = self.0.clone();
        Box::pin(async move { c.await_applied_everywhere(index).await })
    }

    fn erase(&self, entry: NamespaceEntry) -> BoxFuture<'static, ApiResult<u64>> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c.erase(entry).await?) })
    }
}

impl Cluster {
    /// Wait (bounded) until every alive member has applied catalogue index `index`, so a key
    /// revocation is in force on every node when the call returns.
    pub async fn await_applied_everywhere(&self, index: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for n in self.alive_members() {
            if n == self.node_id {
                continue;
            }
            while tokio::time::Instant::now() < deadline {
                match self.node_info_of(n, Duration::from_secs(1)).await {
                    Ok(info) if info.applied_index >= index => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => break,
                }
            }
        }
    }

    fn core_or_err(&self) -> ClusterResult<Arc<loci_api::Core>> {
        self.core().ok_or_else(|| ClusterError::Unavailable("node shutting down".into()))
    }

    /// A `NotOwner` about `entry` as this node knows it (storage reports only the fencing epoch).
    fn owner_hint(&self, entry: &NamespaceEntry, e: ClusterError) -> ClusterError {
        match e {
            ClusterError::NotOwner { epoch, .. } => ClusterError::not_owner(
                &entry.name,
                epoch.max(entry.placement.epoch),
                entry.placement.primary().filter(|p| *p != self.node_id || epoch <= entry.placement.epoch),
                self.catalogue.view.applied_index(),
            ),
            other => other,
        }
    }

    /// Route an operation to the namespace's primary. A `NotOwner` answer carries the
    /// answering node's placement and catalogue index: this node waits until its own
    /// catalogue has caught up with that (no polling), then routes again, to the primary it was
    /// told of if its catalogue is still behind.
    pub async fn execute(self: Arc<Self>, entry: NamespaceEntry, op: DataOp) -> ClusterResult<DataResult> {
        let mut entry = self.entry(&entry.name).unwrap_or(entry);
        // (primary, epoch) learned from a NotOwner answer that our catalogue has not caught up with.
        let mut hinted: Option<(u64, u64)> = None;
        for _ in 0..3 {
            let (primary, epoch) = match hinted.take() {
                Some(h) => h,
                None => (entry.placement.primary().unwrap_or(self.node_id), entry.placement.epoch),
            };
            let result = if primary == self.node_id {
                self.clone().run_as_primary(&entry, op.clone()).await
            } else {
                metrics::counter!("loci_forwarded_requests_total").increment(1);
                let req = ForwardRequest {
                    request_id: loci_api::request_id::current(),
                    namespace: entry.name.clone(),
                    epoch,
                    catalogue_index: self.catalogue.view.applied_index(),
                    op: op.clone(),
                };
                match self.forward_to(primary, req).await {
                    Err(ClusterError::Unreachable { node, reason }) => {
                        return Err(ClusterError::Unavailable(format!(
                            "the primary of '{}' (node {node}) is unreachable: {reason}",
                            entry.name
                        )));
                    }
                    other => other,
                }
            };
            match result {
                // Nothing was applied: our catalogue (or the primary's) is behind.
                Err(ClusterError::NotOwner { epoch: theirs, primary: their_primary, catalogue_index, .. }) => {
                    let name = entry.name.clone();
                    let ours = entry.placement.epoch;
                    let caught_up = self
                        .catalogue
                        .view
                        .wait_until(CATALOGUE_WAIT, |c| {
                            let epoch = c.namespaces.get(&name).map_or(u64::MAX, |e| e.placement.epoch);
                            epoch > ours || (c.applied_index >= catalogue_index && epoch >= theirs)
                        })
                        .await;
                    entry = self.entry(&name).unwrap_or(entry);
                    if !caught_up && theirs > entry.placement.epoch {
                        hinted = their_primary.map(|p| (p, theirs));
                    }
                }
                other => return other,
            }
        }
        Err(ClusterError::PlacementChanging { namespace: entry.name })
    }

    /// Serve as the primary: check ownership against the local catalogue, execute, replicate.
    pub async fn run_as_primary(self: Arc<Self>, entry: &NamespaceEntry, op: DataOp) -> ClusterResult<DataResult> {
        let core = self.core_or_err()?;
        let current = self.entry(&entry.name).ok_or_else(|| ClusterError::UnknownNamespace(entry.name.clone()))?;
        if current.placement.primary() != Some(self.node_id) {
            return Err(ClusterError::not_owner(
                &current.name,
                current.placement.epoch,
                current.placement.primary(),
                self.catalogue.view.applied_index(),
            ));
        }
        self.ensure_taken_over(&current).await?;
        let write = op.is_write();
        if write {
            // Refuse before applying anything when the quorum cannot be met anyway.
            self.check_in_sync(&current)?;
        }
        let ctx = core.context(&current)?;
        let store = core.store.clone();
        let executed = tokio::task::spawn_blocking(move || store.execute(&ctx, op))
            .await?
            .map_err(|e| self.owner_hint(&current, e.into()))?;
        if write {
            if let Some(repl) = executed.replicate {
                self.replicate(&current, repl).await?;
            }
        }
        Ok(executed.result)
    }

    /// The replica count and write quorum of a namespace. Replicas still receiving their
    /// first copy (`Syncing`) never held an acknowledged write and do not count, so a namespace
    /// keeps taking writes while it grows onto new nodes; a `Dead` replica still counts (its
    /// writes are not lost, only unreachable). The quorum is the policy's `write_quorum`, else a
    /// majority.
    fn quorum(entry: &NamespaceEntry) -> (usize, usize) {
        let p = &entry.placement;
        let holders = p.replicas.iter().filter(|n| p.state(**n) != Some(ReplicaState::Syncing)).count();
        let rf = p.rf.min(holders).max(1);
        (rf, entry.policy_write_quorum().unwrap_or(rf / 2 + 1).clamp(1, rf))
    }

    /// A write needs `quorum - 1` in-sync (Active) followers besides the primary; with fewer it
    /// could never be acknowledged, so it is refused before it is applied.
    fn check_in_sync(&self, entry: &NamespaceEntry) -> ClusterResult<()> {
        let (_, quorum) = Self::quorum(entry);
        let p = &entry.placement;
        let in_sync =
            p.replicas.iter().filter(|n| **n != self.node_id && p.state(**n) == Some(ReplicaState::Active)).count();
        if in_sync + 1 < quorum {
            return Err(ClusterError::InSyncBelowQuorum {
                namespace: entry.name.clone(),
                got: in_sync + 1,
                needed: quorum,
            });
        }
        Ok(())
    }

    /// Send an entry to every writable follower; Ok once the write quorum holds it. Every
    /// follower gets it (calls outlive the quorum); only Active followers count towards it.
    async fn replicate(self: &Arc<Self>, entry: &NamespaceEntry, repl: ReplEntry) -> ClusterResult<()> {
        let p = &entry.placement;
        let (_, quorum) = Self::quorum(entry);
        let followers: Vec<u64> = p.writable().filter(|n| *n != self.node_id).collect();
        let need = quorum.saturating_sub(1);
        let seq = repl.seq;
        // Bounded: a follower busy with a long repair must not hold the write indefinitely.
        let acks = quorum_call(&followers, need, 2 * RPC_TIMEOUT, Gather::Quorum, |f| {
            let c = self.clone();
            let e = entry.clone();
            let counts = e.placement.state(f) == Some(ReplicaState::Active);
            async move { (c.replicate_to(&e, f, seq).await && counts).then_some(()) }
        })
        .await;
        if acks.len() < need {
            return Err(ClusterError::QuorumNotReached {
                namespace: entry.name.clone(),
                got: acks.len() + 1,
                needed: quorum,
            });
        }
        Ok(())
    }

    /// Bring `follower` up to at least `seq` (ordered per follower; batches whatever is pending).
    /// A follower whose log disagrees with ours, or that needs entries our log no longer has,
    /// is repaired by a full copy instead.
    pub async fn replicate_to(self: &Arc<Self>, entry: &NamespaceEntry, follower: u64, seq: u64) -> bool {
        if !self.is_alive(follower) || !self.is_taken_over(entry) {
            return false;
        }
        let Some(core) = self.core() else { return false };
        let Ok(ctx) = core.context(entry) else { return false };
        let link = self.link(entry.id, follower);
        let mut acked = link.lock().await;
        if *acked >= seq {
            return true;
        }
        if *acked == 0 {
            // Handshake: where the follower is, and whether its log agrees with ours there.
            let Ok(p) = self.progress_on(follower, &entry.name, RPC_TIMEOUT).await else { return false };
            if p.applied_seq > 0 {
                let store = core.store.clone();
                let c2 = ctx.clone();
                let at = p.applied_seq;
                let mine = tokio::task::spawn_blocking(move || -> loci_storage::Result<(u64, Option<u64>)> {
                    Ok((store.progress(&c2)?.applied_seq, store.log_epoch_at(&c2, at)?))
                })
                .await;
                let Ok(Ok((mine_applied, mine_epoch))) = mine else { return false };
                if p.applied_seq > mine_applied || mine_epoch.is_some_and(|e| e != p.epoch) {
                    drop(acked);
                    self.schedule_copy(entry, follower, "its log diverges from the primary's");
                    return false;
                }
            }
            *acked = p.applied_seq;
            if *acked >= seq {
                return true;
            }
        }
        let mut waited_for_catalogue = false;
        for _ in 0..64 {
            // Always send under the epoch we are primary in now.
            let Some(current) = self.entry(&entry.name).filter(|e| e.placement.primary() == Some(self.node_id)) else {
                return false;
            };
            let from = *acked + 1;
            let store = core.store.clone();
            let c2 = ctx.clone();
            // One entry before `from` too: it anchors the follower's divergence check.
            let entries =
                match tokio::task::spawn_blocking(move || store.repl_entries(&c2, from.saturating_sub(1).max(1), 257))
                    .await
                {
                    Ok(Ok(e)) => e,
                    _ => return false,
                };
            let mut entries = entries.into_iter().peekable();
            let prev = match entries.peek() {
                Some(e) if e.seq + 1 == from => entries.next().map(|e| (e.seq, e.epoch)),
                _ => None,
            };
            let entries: Vec<ReplEntry> = entries.collect();
            if entries.first().is_none_or(|e| e.seq != from) {
                drop(acked);
                self.schedule_copy(entry, follower, "the replication log no longer holds what it needs");
                return false;
            }
            let req = ReplicateRequest {
                namespace: entry.name.clone(),
                catalogue_index: self.catalogue.view.applied_index(),
                sender_epoch: current.placement.epoch,
                prev,
                floor: self.floors.lock().get(&(entry.id, self.node_id)).copied().unwrap_or(0),
                entries,
            };
            match self.replicate_on(follower, req, RPC_TIMEOUT).await {
                Ok(ApplyOutcome::Applied { seq: s }) => *acked = s,
                Ok(ApplyOutcome::Duplicate { applied }) | Ok(ApplyOutcome::Gap { applied }) => *acked = applied,
                Ok(ApplyOutcome::Fenced { epoch }) => {
                    // Our catalogue may only be behind the follower's: wait for it, and go on
                    // if we are still the primary in that epoch.
                    if waited_for_catalogue {
                        tracing::warn!(namespace = %entry.name, follower, epoch, "follower fenced this primary (newer epoch)");
                        return false;
                    }
                    waited_for_catalogue = true;
                    let name = entry.name.clone();
                    self.catalogue
                        .view
                        .wait_until(Duration::from_secs(2), |c| {
                            c.namespaces.get(&name).is_none_or(|e| e.placement.epoch >= epoch)
                        })
                        .await;
                    if !self.entry(&entry.name).is_some_and(|e| self.is_taken_over(&e)) {
                        return false;
                    }
                }
                Ok(ApplyOutcome::Diverged { .. }) => {
                    drop(acked);
                    self.schedule_copy(entry, follower, "its log diverges from the primary's");
                    return false;
                }
                Err(e) => {
                    tracing::debug!(namespace = %entry.name, follower, error = %e, "replication failed");
                    return false;
                }
            }
            if *acked >= seq {
                return true;
            }
        }
        false
    }

    /// Repair `follower` with a full copy (in the background, at most one per target).
    fn schedule_copy(self: &Arc<Self>, ns: &NamespaceEntry, follower: u64, why: &str) {
        let key = (ns.id, follower);
        if !self.copies.lock().insert(key) {
            return;
        }
        tracing::warn!(namespace = %ns.name, follower, reason = why, "replica needs a full copy");
        let c = self.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            if let Err(e) = c.copy_to(&ns, follower).await {
                tracing::warn!(namespace = %ns.name, follower, error = %e, "full copy failed; will retry");
            }
            c.copies.lock().remove(&key);
        });
    }

    /// Whether this node took over as primary since it became primary (a later placement
    /// change that keeps the primary needs no new take-over: no one else wrote meanwhile).
    fn is_taken_over(&self, entry: &NamespaceEntry) -> bool {
        let p = &entry.placement;
        let since = if p.primary_since > 0 { p.primary_since } else { p.epoch };
        self.taken_over.lock().get(&entry.id).is_some_and(|e| *e >= since)
    }

    /// Before serving as the primary of a placement epoch: fence the other replicas at that
    /// epoch (so a deposed primary can no longer reach a write quorum) and collect their
    /// progress. Enough of them must answer that every acknowledged write is known to one of
    /// them (a write quorum and the replicas that answered always intersect); if one holds
    /// writes this node lacks, they are pulled from its log (or by a full copy from it) first.
    pub async fn ensure_taken_over(self: &Arc<Self>, entry: &NamespaceEntry) -> ClusterResult<()> {
        if self.is_taken_over(entry) {
            return Ok(());
        }
        let lock = self.takeover_locks.lock().entry(entry.id).or_default().clone();
        let _guard = lock.lock().await;
        let entry = self.entry(&entry.name).unwrap_or_else(|| entry.clone());
        if self.is_taken_over(&entry) {
            return Ok(());
        }
        if entry.placement.primary() != Some(self.node_id) {
            return Err(ClusterError::not_owner(
                &entry.name,
                entry.placement.epoch,
                entry.placement.primary(),
                self.catalogue.view.applied_index(),
            ));
        }
        let core = self.core_or_err()?;
        let ctx = core.context(&entry)?;
        let p = &entry.placement;
        let (rf, quorum) = Self::quorum(&entry);
        // Replicas (other than this one) whose answers are needed: rf - quorum + 1 replicas
        // intersect every write quorum; never more than a majority (quorum 1 trades that away).
        let need = (rf - quorum + 1).min(rf / 2 + 1).saturating_sub(1);
        let others: Vec<u64> = p
            .replicas
            .iter()
            .copied()
            // Nodes gossip reports down would only cost a timeout.
            .filter(|n| *n != self.node_id && p.state(*n) != Some(ReplicaState::Syncing) && self.is_alive(*n))
            .collect();
        let req = pb::FenceRequest {
            namespace: entry.name.clone(),
            epoch: p.epoch,
            catalogue_index: self.catalogue.view.applied_index(),
        };
        // Every reachable replica is fenced (not only `need`): the most advanced one must be heard.
        let answered = quorum_call(&others, need, Duration::from_secs(3), Gather::All, |n| {
            let c = self.clone();
            let req = req.clone();
            async move { c.fence_on(n, req, Duration::from_secs(2)).await.ok() }
        })
        .await;
        if answered.len() < need {
            return Err(ClusterError::TakeOverPending {
                namespace: entry.name.clone(),
                got: answered.len(),
                needed: need,
            });
        }
        let mine = {
            let store = core.store.clone();
            let c2 = ctx.clone();
            tokio::task::spawn_blocking(move || store.progress(&c2)).await??
        };
        if let Some((source, theirs)) = answered
            .iter()
            .copied()
            .filter(|(_, t)| (t.epoch, t.applied_seq) > (mine.epoch, mine.applied_seq))
            .max_by_key(|(_, t)| (t.epoch, t.applied_seq))
        {
            tracing::warn!(namespace = %entry.name, source, mine = mine.applied_seq, theirs = theirs.applied_seq, "new primary catches up from a more advanced replica");
            if !self.pull_log(&entry, &ctx, source, mine, theirs.applied_seq).await {
                self.push_copy_from(source, &entry.name, self.node_id, Duration::from_secs(600)).await.map_err(
                    |e| {
                        ClusterError::Unavailable(format!(
                            "the primary of '{}' could not catch up from node {source}: {e}",
                            entry.name
                        ))
                    },
                )?;
            }
        }
        // Links from an earlier term are stale: handshake with every follower again.
        self.links.lock().retain(|(ns, _), _| *ns != entry.id);
        self.taken_over.lock().insert(entry.id, p.epoch);
        tracing::debug!(namespace = %entry.name, epoch = p.epoch, "serving as primary");
        Ok(())
    }

    /// Pull log entries `mine.applied_seq + 1 ..= to` from `source` and apply them; false when
    /// the logs disagree or `source` no longer has them (a full copy is needed).
    async fn pull_log(
        &self,
        entry: &NamespaceEntry,
        ctx: &loci_storage::store::NsContext,
        source: u64,
        mine: NsProgress,
        to: u64,
    ) -> bool {
        let Some(core) = self.core() else { return false };
        // Each request starts at our last entry (when we have one): theirs must match it.
        let mut last = (mine.applied_seq, mine.epoch);
        while last.0 < to {
            let Ok(entries) = self.fetch_log_from(source, &entry.name, last.0.max(1), 256, RPC_TIMEOUT).await else {
                return false;
            };
            let mut entries = entries.into_iter().peekable();
            if last.0 > 0 {
                match entries.next() {
                    Some(e) if e.seq == last.0 && e.epoch == last.1 => {}
                    _ => return false,
                }
            }
            let batch: Vec<ReplEntry> = entries.collect();
            let Some(tail) = batch.last().map(|e| (e.seq, e.epoch)) else { return false };
            if batch.first().is_none_or(|e| e.seq != last.0 + 1) {
                return false;
            }
            let store = core.store.clone();
            let c2 = ctx.clone();
            match tokio::task::spawn_blocking(move || store.apply_replicated(&c2, None, None, &batch)).await {
                Ok(Ok(ApplyOutcome::Applied { seq })) if seq == tail.0 => last = tail,
                _ => return false,
            }
        }
        true
    }

    /// This node's store and context for a namespace it replicates, once its catalogue has
    /// caught up with the sender's.
    async fn replica_context(
        &self,
        namespace: &str,
        catalogue_index: u64,
    ) -> ClusterResult<(Arc<loci_storage::Store>, loci_storage::NsContext)> {
        let core = self.core_or_err()?;
        let _ = self.catalogue.view.wait_applied(catalogue_index, CATALOGUE_WAIT).await;
        let entry = self.entry(namespace).ok_or_else(|| ClusterError::UnknownNamespace(namespace.to_string()))?;
        if !entry.placement.replicas.contains(&self.node_id) {
            return Err(ClusterError::NotAReplica(namespace.to_string()));
        }
        let ctx = core.context(&entry)?;
        Ok((core.store.clone(), ctx))
    }

    /// A namespace's replication progress on this node.
    pub async fn serve_progress(&self, namespace: &str) -> ClusterResult<NsProgress> {
        let core = self.core_or_err()?;
        let entry = self.entry(namespace).ok_or_else(|| ClusterError::UnknownNamespace(namespace.to_string()))?;
        let ctx = core.context(&entry)?;
        let store = core.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.progress(&ctx)).await??)
    }

    /// A new primary's request: fence this replica at its epoch and report progress.
    pub async fn serve_fence(&self, req: pb::FenceRequest) -> ClusterResult<NsProgress> {
        let (store, ctx) = self.replica_context(&req.namespace, req.catalogue_index).await?;
        Ok(tokio::task::spawn_blocking(move || store.fence(&ctx, req.epoch)).await??)
    }

    /// Log entries for a new primary taking over.
    pub async fn serve_fetch_log(&self, req: pb::FetchLogRequest) -> ClusterResult<Vec<ReplEntry>> {
        let core = self.core_or_err()?;
        let entry = self.entry(&req.namespace).ok_or_else(|| ClusterError::UnknownNamespace(req.namespace.clone()))?;
        let ctx = core.context(&entry)?;
        let store = core.store.clone();
        let limit = req.limit.clamp(1, 1024) as usize;
        Ok(tokio::task::spawn_blocking(move || store.repl_entries(&ctx, req.from, limit)).await??)
    }

    /// A new primary asks for a full copy of this node's replica (its own log disagreed).
    pub async fn serve_push_copy(self: Arc<Self>, req: pb::PushCopyRequest) -> ClusterResult<()> {
        let entry = self.entry(&req.namespace).ok_or_else(|| ClusterError::UnknownNamespace(req.namespace.clone()))?;
        if !entry.placement.replicas.contains(&req.target) {
            return Err(ClusterError::Internal(format!("node {} holds no replica of {}", req.target, req.namespace)));
        }
        self.push_copy(&entry, req.target).await.map(|_| ())
    }

    /// Follower side of replication.
    pub async fn apply_replicated(&self, req: ReplicateRequest) -> ClusterResult<ApplyOutcome> {
        let (store, ctx) = self.replica_context(&req.namespace, req.catalogue_index).await?;
        let out = tokio::task::spawn_blocking(move || -> loci_storage::Result<ApplyOutcome> {
            let out = store.apply_replicated(&ctx, Some(req.sender_epoch), req.prev, &req.entries)?;
            if req.floor > 0 && matches!(out, ApplyOutcome::Applied { .. } | ApplyOutcome::Duplicate { .. }) {
                // Entries every replica applied are no longer needed (and may hold content
                // that was forgotten since).
                store.truncate_repl(&ctx, req.floor)?;
            }
            Ok(out)
        })
        .await??;
        Ok(out)
    }

    /// Forwarded operation, on the primary.
    pub async fn serve_forward(self: Arc<Self>, req: ForwardRequest) -> ClusterResult<DataResult> {
        use tracing::Instrument;
        let id = req.request_id.clone().unwrap_or_default();
        let span = tracing::info_span!("forwarded", request_id = %id, namespace = %req.namespace);
        loci_api::request_id::REQUEST_ID.scope(id, self.serve_forward_inner(req).instrument(span)).await
    }

    async fn serve_forward_inner(self: Arc<Self>, req: ForwardRequest) -> ClusterResult<DataResult> {
        // The caller saw this catalogue index and placement epoch: catch up with them first.
        let name = req.namespace.clone();
        self.catalogue
            .view
            .wait_until(CATALOGUE_WAIT, |c| {
                c.applied_index >= req.catalogue_index
                    && c.namespaces.get(&name).is_none_or(|e| e.placement.epoch >= req.epoch)
            })
            .await;
        let entry = self.entry(&req.namespace).ok_or_else(|| ClusterError::UnknownNamespace(req.namespace.clone()))?;
        self.run_as_primary(&entry, req.op).await
    }

    /// Drop a namespace on every replica (best effort for unreachable ones: their orphan sweep
    /// deletes the rows when they start, since the catalogue no longer knows the namespace).
    pub async fn erase(self: Arc<Self>, entry: NamespaceEntry) -> ClusterResult<u64> {
        let core = self.core_or_err()?;
        let mut count = 0;
        let mut replicas = entry.placement.replicas.clone();
        if !replicas.contains(&self.node_id) {
            replicas.push(self.node_id);
        }
        for n in replicas {
            let c = if n == self.node_id {
                core.erase_local(entry.id).await.unwrap_or(0)
            } else {
                match self.erase_on(n, entry.id, Duration::from_secs(30)).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(node = n, namespace = %entry.name, error = %e, "replica unreachable during erasure; it erases at its next start");
                        0
                    }
                }
            };
            count = count.max(c);
        }
        self.links.lock().retain(|(ns, _), _| *ns != entry.id);
        Ok(count)
    }

    /// On the primary: copy Syncing replicas in full, catch them up, then mark them Active.
    pub async fn sync_loop(self: Arc<Self>, token: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let mut truncate_tick = 0u64;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(core) = self.core() else { continue };
            if !core.is_ready() {
                continue;
            }
            let namespaces: Vec<NamespaceEntry> = self.catalogue.view.read().namespaces.values().cloned().collect();
            // A primary takes over as soon as it is made one, not only on its first request
            // (namespaces not in memory wait for their first request: start-up stays lazy).
            for ns in &namespaces {
                let copying = ns.placement.states.values().any(|s| *s == ReplicaState::Syncing);
                if ns.placement.primary() == Some(self.node_id)
                    && !self.is_taken_over(ns)
                    && (copying || core.store.is_loaded(ns.id))
                {
                    let lock = self.takeover_locks.lock().entry(ns.id).or_default().clone();
                    if lock.try_lock().is_ok() {
                        let c = self.clone();
                        let ns = ns.clone();
                        tokio::spawn(async move {
                            if let Err(e) = c.ensure_taken_over(&ns).await {
                                tracing::debug!(namespace = %ns.name, error = %e, "taking over as primary");
                            }
                        });
                    }
                }
            }
            for ns in &namespaces {
                if ns.placement.primary() != Some(self.node_id) || !self.is_taken_over(ns) {
                    continue;
                }
                for (node, state) in &ns.placement.states {
                    if *state == ReplicaState::Syncing && *node != self.node_id && self.is_alive(*node) {
                        self.schedule_copy(ns, *node, "it is a new replica");
                    }
                }
            }
            // Anti-entropy: followers that missed entries (down, partitioned, slow) catch up even
            // when no new write arrives for their namespace.
            for ns in &namespaces {
                if ns.placement.primary() != Some(self.node_id)
                    || !self.is_taken_over(ns)
                    || !core.store.is_loaded(ns.id)
                {
                    continue;
                }
                let Ok(ctx) = core.context(ns) else { continue };
                let Ok(progress) = core.store.progress(&ctx) else { continue };
                for f in ns.placement.replicas.iter().copied().filter(|f| *f != self.node_id) {
                    if ns.placement.state(f) != Some(ReplicaState::Active) || !self.is_alive(f) {
                        continue;
                    }
                    let link = self.link(ns.id, f);
                    let behind = link.try_lock().map(|acked| *acked < progress.applied_seq).unwrap_or(false);
                    if behind {
                        let c = self.clone();
                        let ns = ns.clone();
                        let seq = progress.applied_seq;
                        tokio::spawn(async move { c.replicate_to(&ns, f, seq).await });
                    }
                }
            }
            truncate_tick += 1;
            if truncate_tick % 10 == 0 {
                self.truncate_logs(&core, &namespaces).await;
            }
            if truncate_tick % 20 == 0 {
                self.sweep_former_replicas(&core, &namespaces).await;
            }
        }
    }

    /// Log retention. A primary keeps what its slowest follower still needs (at most
    /// `LOG_KEEP` entries) and tells followers the floor; so a forgotten memory's content
    /// leaves every log once every replica has applied the deletion.
    async fn truncate_logs(self: &Arc<Self>, core: &Arc<loci_api::Core>, namespaces: &[NamespaceEntry]) {
        // Only namespaces in memory: the others have not changed since they were unloaded, and
        // reading their progress would load them all.
        for ns in
            namespaces.iter().filter(|n| n.placement.replicas.contains(&self.node_id) && core.store.is_loaded(n.id))
        {
            let Ok(ctx) = core.context(ns) else { continue };
            let Ok(progress) = core.store.progress(&ctx) else { continue };
            let mut floor = progress.applied_seq.saturating_sub(LOG_KEEP);
            if ns.placement.primary() == Some(self.node_id) && self.is_taken_over(ns) {
                let mut min_acked = Some(progress.applied_seq);
                for f in ns.placement.writable().filter(|f| *f != self.node_id) {
                    let acked = self.link(ns.id, f).try_lock().map(|a| *a).unwrap_or(0);
                    min_acked = min_acked.map(|m| m.min(acked));
                }
                floor = floor.max(min_acked.unwrap_or(0));
                self.floors.lock().insert((ns.id, self.node_id), floor);
                // Followers learn the floor with the next entry; idle namespaces get it here.
                for f in ns.placement.writable().filter(|f| *f != self.node_id) {
                    let sent = self.floors.lock().get(&(ns.id, f)).copied().unwrap_or(0);
                    if floor > sent && self.is_alive(f) {
                        let req = ReplicateRequest {
                            namespace: ns.name.clone(),
                            catalogue_index: self.catalogue.view.applied_index(),
                            sender_epoch: ns.placement.epoch,
                            prev: None,
                            floor,
                            entries: Vec::new(),
                        };
                        if self.replicate_on(f, req, RPC_TIMEOUT).await.is_ok() {
                            self.floors.lock().insert((ns.id, f), floor);
                        }
                    }
                }
            }
            if floor > 0 {
                let store = core.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.truncate_repl(&ctx, floor)).await;
            }
        }
    }

    /// Rows of namespaces this node no longer replicates (it was moved off, or it was down
    /// while the namespace was erased) are deleted once that has held for two sweeps in a row.
    async fn sweep_former_replicas(&self, core: &Arc<loci_api::Core>, namespaces: &[NamespaceEntry]) {
        if self.catalogue.current_leader().await.is_none() {
            return;
        }
        let mine: std::collections::HashSet<u64> = namespaces
            .iter()
            .filter(|n| n.placement.replicas.contains(&self.node_id) || n.placement.leaving.contains(&self.node_id))
            .map(|n| n.id)
            .collect();
        let store = core.store.clone();
        let Ok(Ok(stored)) = tokio::task::spawn_blocking(move || store.stored_namespace_ids()).await else { return };
        let copying: BTreeSet<u64> = self.copies.lock().iter().map(|(ns, _)| *ns).collect();
        let candidates: BTreeSet<u64> =
            stored.into_iter().filter(|id| !mine.contains(id) && !copying.contains(id)).collect();
        let confirmed: Vec<u64> = {
            let mut prev = self.orphan_candidates.lock();
            let c = candidates.intersection(&prev).copied().collect();
            *prev = candidates;
            c
        };
        for id in confirmed {
            let store = core.store.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || store.drop_namespace(id)).await {
                tracing::info!(ns_id = id, rows = n, "deleted the rows of a namespace this node no longer replicates");
                self.links.lock().retain(|(ns, _), _| *ns != id);
                self.taken_over.lock().remove(&id);
            }
        }
    }

    /// Full copy to a new or repaired replica, catch-up, then (if it was Syncing) Active.
    async fn copy_to(self: &Arc<Self>, ns: &NamespaceEntry, node: u64) -> ClusterResult<()> {
        let core = self.core_or_err()?;
        let started = std::time::Instant::now();
        let (progress, total) = self.push_copy(ns, node).await?;
        // Catch up with writes made during the copy, then become Active.
        let latest = {
            let store = core.store.clone();
            let ctx = core.context(ns)?;
            tokio::task::spawn_blocking(move || store.progress(&ctx)).await??
        };
        if latest.applied_seq > progress.applied_seq && !self.replicate_to(ns, node, latest.applied_seq).await {
            return Err(ClusterError::Unavailable("catch-up after the copy failed".into()));
        }
        let Some(current) = self.entry(&ns.name) else { return Ok(()) };
        if current.placement.state(node) != Some(ReplicaState::Syncing) {
            tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, "replica repaired by a full copy");
            return Ok(());
        }
        let mut np = current.placement.clone();
        np.epoch += 1;
        np.states.insert(node, ReplicaState::Active);
        let res = self
            .catalogue
            .write(loci_raft::Command::SetPlacement {
                name: ns.name.clone(),
                expected_epoch: current.placement.epoch,
                placement: np,
            })
            .await
            .map_err(loci_api::ApiError::from)?;
        tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, result = ?matches!(res, loci_raft::CommandResult::Namespace { .. }), "replica synced");
        Ok(())
    }

    /// Send this node's copy of a namespace (rows and log, one consistent snapshot) to `node`,
    /// replacing whatever it holds. Returns the progress the copy carries and its row count.
    async fn push_copy(&self, ns: &NamespaceEntry, node: u64) -> ClusterResult<(NsProgress, usize)> {
        let core = self.core_or_err()?;
        let link = self.link(ns.id, node);
        let mut acked = link.lock().await;
        let store = core.store.clone();
        let id = ns.id;
        let (progress, rows) = tokio::task::spawn_blocking(move || store.export_namespace(id)).await??;
        let idx = self.catalogue.view.applied_index();
        let to = Duration::from_secs(60);
        let begin = CopyRequest::Begin { namespace: ns.name.clone(), catalogue_index: idx };
        self.copy_step(node, begin, to).await?;
        let total = rows.len();
        let mut chunk = Vec::new();
        let mut size = 0;
        let mut sent = 0usize;
        for row in rows {
            size += row.1.len() + row.2.len();
            chunk.push(row);
            if size >= COPY_CHUNK_BYTES {
                sent += chunk.len();
                let req = CopyRequest::Rows { rows: std::mem::take(&mut chunk) };
                self.copy_step(node, req, to).await?;
                // Per node, not per namespace: /metrics is unauthenticated and namespace names
                // belong to tenants.
                metrics::gauge!("loci_move_progress_ratio").set(sent as f64 / total.max(1) as f64);
                size = 0;
            }
        }
        if !chunk.is_empty() {
            let req = CopyRequest::Rows { rows: chunk };
            self.copy_step(node, req, to).await?;
        }
        let fin = CopyRequest::Finish { namespace: ns.name.clone(), progress };
        self.copy_step(node, fin, to).await?;
        *acked = progress.applied_seq;
        drop(acked);
        metrics::counter!("loci_move_rows_total").increment(total as u64);
        metrics::gauge!("loci_move_progress_ratio").set(1.0);
        Ok((progress, total))
    }

    /// Follower side of a full copy.
    pub async fn apply_copy(&self, req: CopyRequest) -> ClusterResult<()> {
        let core = self.core_or_err()?;
        let store = core.store.clone();
        match req {
            CopyRequest::Begin { namespace, catalogue_index } => {
                let _ = self.catalogue.view.wait_applied(catalogue_index, CATALOGUE_WAIT).await;
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace))?;
                Ok(tokio::task::spawn_blocking(move || store.import_begin(entry.id)).await??)
            }
            CopyRequest::Rows { rows } => Ok(tokio::task::spawn_blocking(move || store.import_rows(&rows)).await??),
            CopyRequest::Finish { namespace, progress } => {
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace))?;
                Ok(tokio::task::spawn_blocking(move || store.import_finish(entry.id, progress)).await??)
            }
        }
    }
}

/// Write quorum from the namespace policy (`write_quorum`), if set.
trait WriteQuorum {
    fn policy_write_quorum(&self) -> Option<usize>;
}

impl WriteQuorum for NamespaceEntry {
    fn policy_write_quorum(&self) -> Option<usize> {
        self.policy.write_quorum
    }
}
