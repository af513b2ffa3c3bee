//! Replication from the primary to its followers: sending log entries in order per follower,
//! repairing a follower by a full copy when its log disagrees, and the follower side (applying
//! entries, fencing, progress, serving its log).

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, ReplicaState};
use loci_storage::model::{ApplyOutcome, NsProgress, ReplEntry};

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::peer::{gather_until, write_acknowledged};
use super::plane::*;
use super::wire::pb;

impl Cluster {
    /// Send an entry to every writable follower; Ok once the write quorum holds it. Every
    /// follower gets it (calls outlive the quorum); only Active followers count towards it, and
    /// a replica being promoted to Active must hold it too (`peer::write_acknowledged`).
    pub(crate) async fn replicate(self: &Arc<Self>, entry: &NamespaceEntry, repl: ReplEntry) -> ClusterResult<()> {
        // The placement the write was routed by, and the one this node's catalogue shows now:
        // a promotion or a move committed while the write was executed changes who counts, and
        // the write must meet the quorum of both (else it could be on fewer than a quorum of
        // the placement that is in force by the time it is acknowledged).
        let latest = self.entry(&entry.name).filter(|e| e.placement.epoch > entry.placement.epoch);
        let views: Vec<&NamespaceEntry> = std::iter::once(entry).chain(latest.as_ref()).collect();
        let mut followers: Vec<u64> = Vec::new();
        for v in &views {
            for n in v.placement.writable().filter(|n| *n != self.node_id) {
                if !followers.contains(&n) {
                    followers.push(n);
                }
            }
        }
        let promoting: Vec<u64> = {
            let set = self.repl.promoting.lock();
            followers.iter().copied().filter(|f| set.contains(&(entry.id, *f))).collect()
        };
        // Per view: (its write quorum, whether each follower counts in it).
        let needs: Vec<(usize, Vec<u64>)> = views
            .iter()
            .map(|v| {
                let (_, q) = Self::quorum(v);
                let counting = v
                    .placement
                    .replicas
                    .iter()
                    .copied()
                    .filter(|n| v.placement.state(*n) == Some(ReplicaState::Active));
                (q.saturating_sub(1), counting.filter(|n| *n != self.node_id).collect())
            })
            .collect();
        let acknowledged = |answers: &[(u64, ())]| {
            needs.iter().all(|(need, counting)| {
                let acks: Vec<(u64, bool)> = answers.iter().map(|(n, _)| (*n, counting.contains(n))).collect();
                write_acknowledged(&acks, *need, &promoting)
            })
        };
        let seq = repl.seq;
        // Bounded: a follower busy with a long repair must not hold the write indefinitely.
        let acks = gather_until(
            &followers,
            2 * RPC_TIMEOUT,
            |f| {
                let c = self.clone();
                let e = entry.clone();
                async move { c.replicate_to(&e, f, seq).await.then_some(()) }
            },
            |answers: &[(u64, ())]| acknowledged(answers),
        )
        .await;
        if !acknowledged(&acks) {
            let (_, quorum) = Self::quorum(views.last().copied().unwrap_or(entry));
            let counting = &needs.last().map(|(_, c)| c.clone()).unwrap_or_default();
            return Err(ClusterError::QuorumNotReached {
                namespace: entry.name.clone(),
                got: acks.iter().filter(|(n, _)| counting.contains(n)).count() + 1,
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
        let local = &self.local;
        let Ok(ctx) = local.context(entry) else { return false };
        let link = self.link(entry.id, follower);
        let mut acked = link.lock().await;
        // Only a primary still in its term counts an acknowledgement (a copy over this node
        // may have ended it while this call waited for the link).
        let in_term = || self.entry(&entry.name).is_some_and(|e| self.is_serving_entry(&e));
        if *acked >= seq {
            return in_term();
        }
        if *acked == 0 {
            // Handshake: where the follower is, and whether its log agrees with ours there.
            let Ok(p) = self.progress_on(follower, &entry.name, RPC_TIMEOUT).await else { return false };
            if p.applied_seq > 0 {
                let store = local.store.clone();
                let c2 = ctx.clone();
                let at = p.applied_seq;
                let mine = tokio::task::spawn_blocking(move || -> loci_storage::Result<(u64, Option<u64>)> {
                    Ok((store.progress(&c2)?.applied_seq, store.log_epoch_at(&c2, at)?))
                })
                .await;
                let Ok(Ok((mine_applied, mine_epoch))) = mine else { return false };
                if let Some(why) = super::rules::handshake_needs_copy(p.applied_seq, p.epoch, mine_applied, mine_epoch)
                {
                    drop(acked);
                    self.schedule_copy(entry, follower, why);
                    return false;
                }
            }
            *acked = p.applied_seq;
            if *acked >= seq {
                return in_term();
            }
        }
        let mut waited_for_catalogue = false;
        for _ in 0..64 {
            // Always send under the epoch we are primary in now.
            let Some(current) = self.entry(&entry.name).filter(|e| e.placement.primary() == Some(self.node_id)) else {
                return false;
            };
            let from = *acked + 1;
            let store = local.store.clone();
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
            // Without the entry before `from` the follower's divergence check has nothing to
            // compare with: a full copy instead (the engine's `send_batch`).
            if entries.first().is_none_or(|e| e.seq != from) || (prev.is_none() && from > 1) {
                drop(acked);
                self.schedule_copy(entry, follower, "the replication log no longer holds what it needs");
                return false;
            }
            let req = ReplicateRequest {
                namespace: entry.name.clone(),
                catalogue_index: self.catalogue.view.applied_index(),
                sender_epoch: current.placement.epoch,
                prev,
                floor: self.repl.floors.lock().get(&(entry.id, self.node_id)).copied().unwrap_or(0),
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
                return in_term();
            }
        }
        false
    }

    /// Repair `follower` with a full copy (in the background, one at a time per target node).
    pub(crate) fn schedule_copy(self: &Arc<Self>, ns: &NamespaceEntry, follower: u64, why: &str) {
        let key = (ns.id, follower);
        {
            // One copy per target at a time (a node back after a long absence gets its
            // namespaces one by one, not all at once; the others wait for a later pass).
            let mut copies = self.repl.copies.lock();
            if copies.iter().any(|(_, to)| *to == follower) {
                return;
            }
            copies.insert(key);
        }
        tracing::warn!(namespace = %ns.name, follower, reason = why, "replica needs a full copy");
        let c = self.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            if let Err(e) = c.copy_to(&ns, follower).await {
                tracing::warn!(namespace = %ns.name, follower, error = %e, "full copy failed; will retry");
            }
            c.repl.copies.lock().remove(&key);
        });
    }

    /// This node's store and context for a namespace it replicates, once its catalogue has
    /// caught up with the sender's.
    pub(crate) async fn replica_context(
        &self,
        namespace: &str,
        catalogue_index: u64,
    ) -> ClusterResult<(Arc<loci_storage::Store>, loci_storage::NsContext)> {
        let local = &self.local;
        let _ = self.catalogue.view.wait_applied(catalogue_index, CATALOGUE_WAIT).await;
        let entry = self.entry(namespace).ok_or_else(|| ClusterError::UnknownNamespace(namespace.to_string()))?;
        if !entry.placement.replicas.contains(&self.node_id) {
            return Err(ClusterError::NotAReplica(namespace.to_string()));
        }
        let ctx = local.context(&entry)?;
        Ok((local.store.clone(), ctx))
    }

    /// A namespace's replication progress on this node.
    pub async fn serve_progress(&self, namespace: &str) -> ClusterResult<NsProgress> {
        let local = &self.local;
        let entry = self.entry(namespace).ok_or_else(|| ClusterError::UnknownNamespace(namespace.to_string()))?;
        let ctx = local.context(&entry)?;
        let store = local.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.progress(&ctx)).await??)
    }

    /// A new primary's request: fence this replica at its epoch and report progress.
    pub async fn serve_fence(&self, req: pb::FenceRequest) -> ClusterResult<NsProgress> {
        let (store, ctx) = self.replica_context(&req.namespace, req.catalogue_index).await?;
        Ok(tokio::task::spawn_blocking(move || store.fence(&ctx, req.epoch)).await??)
    }

    /// Log entries for a new primary taking over.
    pub async fn serve_fetch_log(&self, req: pb::FetchLogRequest) -> ClusterResult<Vec<ReplEntry>> {
        let local = &self.local;
        let entry = self.entry(&req.namespace).ok_or_else(|| ClusterError::UnknownNamespace(req.namespace.clone()))?;
        let ctx = local.context(&entry)?;
        let store = local.store.clone();
        let limit = req.limit.clamp(1, 1024) as usize;
        Ok(tokio::task::spawn_blocking(move || store.repl_entries(&ctx, req.from, limit)).await??)
    }

    /// A new primary asks for a full copy of this node's replica (its own log disagreed).
    pub async fn serve_push_copy(self: Arc<Self>, req: pb::PushCopyRequest) -> ClusterResult<()> {
        let entry = self.entry(&req.namespace).ok_or_else(|| ClusterError::UnknownNamespace(req.namespace.clone()))?;
        if !entry.placement.replicas.contains(&req.target) {
            return Err(ClusterError::Internal(format!("node {} holds no replica of {}", req.target, req.namespace)));
        }
        self.push_copy(&entry, req.target, false).await.map(|_| ())
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
}
