//! Taking over as the primary of a placement epoch: fence the other replicas, learn their
//! progress, and pull any acknowledged write this node lacks before serving.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, ReplicaState};
use loci_storage::model::{ApplyOutcome, NsProgress, ReplEntry};

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::peer::{Gather, quorum_call};
use super::plane::*;
use super::wire::pb;

impl Cluster {
    /// Whether this node took over as primary since it became primary (a later placement
    /// change that keeps the primary needs no new take-over: no one else wrote meanwhile).
    pub(crate) fn is_taken_over(&self, entry: &NamespaceEntry) -> bool {
        let p = &entry.placement;
        let since = if p.primary_since > 0 { p.primary_since } else { p.epoch };
        self.repl.taken_over.lock().get(&entry.id).is_some_and(|e| *e >= since)
    }

    /// Whether this node serves as the primary of `namespace` in its current placement.
    pub(crate) fn is_serving(&self, namespace: &str) -> bool {
        self.entry(namespace).is_some_and(|e| self.is_serving_entry(&e))
    }

    pub(crate) fn is_serving_entry(&self, e: &NamespaceEntry) -> bool {
        e.placement.primary() == Some(self.node_id) && self.is_taken_over(e)
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
        let lock = self.repl.takeover_locks.lock().entry(entry.id).or_default().clone();
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
        let local = &self.local;
        let ctx = local.context(&entry)?;
        let p = &entry.placement;
        // A replica fenced by a newer epoch than this node's catalogue shows was taken over by
        // another primary: it neither takes over nor serves until its catalogue catches up.
        let fence = {
            let store = local.store.clone();
            let c2 = ctx.clone();
            tokio::task::spawn_blocking(move || store.fence_epoch(&c2)).await??
        };
        if fence > p.epoch {
            return Err(self.owner_hint(&entry, loci_storage::StorageError::Fenced(fence).into()));
        }
        // Replicas (other than this one) whose answers are needed: n - q + 1 replicas
        // intersect every write quorum; never more than a majority (quorum 1 trades that away).
        let need = super::rules::quorum(&entry).takeover_need().saturating_sub(1);
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
            let store = local.store.clone();
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
                self.repl.expected_pushes.lock().insert(entry.id);
                let pushed = self.push_copy_from(source, &entry.name, self.node_id, Duration::from_secs(600)).await;
                self.repl.expected_pushes.lock().remove(&entry.id);
                pushed.map_err(|e| {
                    ClusterError::Unavailable(format!(
                        "the primary of '{}' could not catch up from node {source}: {e}",
                        entry.name
                    ))
                })?;
            }
        }
        // Links from an earlier term are stale: handshake with every follower again.
        self.repl.links.lock().retain(|(ns, _), _| *ns != entry.id);
        self.repl.taken_over.lock().insert(entry.id, p.epoch);
        tracing::debug!(namespace = %entry.name, epoch = p.epoch, "serving as primary");
        Ok(())
    }

    /// Pull log entries `mine.applied_seq + 1 ..= to` from `source` and apply them; false when
    /// the logs disagree or `source` no longer has them (a full copy is needed).
    pub(crate) async fn pull_log(
        &self,
        entry: &NamespaceEntry,
        ctx: &loci_storage::store::NsContext,
        source: u64,
        mine: NsProgress,
        to: u64,
    ) -> bool {
        let local = &self.local;
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
            let store = local.store.clone();
            let c2 = ctx.clone();
            match tokio::task::spawn_blocking(move || store.apply_replicated(&c2, None, None, &batch)).await {
                Ok(Ok(ApplyOutcome::Applied { seq })) if seq == tail.0 => last = tail,
                _ => return false,
            }
        }
        true
    }
}
