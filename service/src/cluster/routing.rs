//! Routing: where a new namespace goes, running an operation on its primary (here, or
//! forwarded once with the epoch it was routed by), the primary's own path (take-over, quorum
//! check, local apply, replication), and erasure on every replica.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, Placement, ReplicaState};
use loci_storage::model::{DataOp, DataResult};

use super::error::{ClusterError, ClusterResult};
use super::plane::*;
use super::{Cluster, Reach, planner};

impl Cluster {
    /// Where a new namespace goes: `rf` alive, non-draining members, balanced by replicas and
    /// primaries held.
    pub fn initial_placement(&self, ns_id: u64) -> Placement {
        let mut nodes: Vec<u64> = self.alive_members().into_iter().collect();
        let (draining, mut replicas, mut primaries) = {
            // Kept current by the catalogue itself: no scan of every namespace per creation.
            let c = self.catalogue.view.read();
            let replicas: std::collections::BTreeMap<u64, usize> =
                c.placement_load.iter().map(|(n, (r, _))| (*n, *r)).collect();
            let primaries: std::collections::BTreeMap<u64, usize> =
                c.placement_load.iter().map(|(n, (_, p))| (*n, *p)).collect();
            (c.draining.clone(), replicas, primaries)
        };
        nodes.retain(|n| !draining.contains(n));
        if nodes.is_empty() {
            nodes.push(self.node_id);
        }
        for n in &nodes {
            replicas.entry(*n).or_insert(0);
            primaries.entry(*n).or_insert(0);
        }
        planner::initial_balanced(ns_id, &nodes, self.settings.replication_factor, &replicas, &primaries)
    }

    /// Wait until catalogue index `index` is in force on the members `reach` names.
    ///
    /// [`Reach::Every`] is a guarantee (a revocation): each member either reports the index
    /// applied, or `CATALOGUE_FRESHNESS` (plus a second for clock rate) passes, after which a
    /// member that has not applied it refuses minted keys by itself (`loci_raft::freshness`).
    /// [`Reach::Alive`] is a courtesy (a new key usable at once): the members gossip reports
    /// alive, for at most 5 s.
    pub async fn await_applied_everywhere(&self, index: u64, reach: Reach) {
        let (members, wait) = match reach {
            Reach::Every => (self.members(), crate::access::CATALOGUE_FRESHNESS + Duration::from_secs(1)),
            Reach::Alive => (self.alive_members(), Duration::from_secs(5)),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let started = std::time::Instant::now();
        let waits = members.into_iter().filter(|n| *n != self.node_id).map(|n| async move {
            while tokio::time::Instant::now() < deadline {
                match self.node_info_of(n, Duration::from_secs(1)).await {
                    // Only that member's own answer counts (not another node now at its address).
                    Ok(info) if info.node_id == n && info.applied_index >= index => return true,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) if reach == Reach::Alive => return false,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            false
        });
        let confirmed = futures::future::join_all(waits).await;
        let unconfirmed = confirmed.iter().filter(|c| !**c).count();
        if unconfirmed > 0 {
            tracing::info!(
                index,
                unconfirmed,
                waited_ms = started.elapsed().as_millis() as u64,
                ?reach,
                "catalogue change not confirmed by every member"
            );
        }
    }

    /// A `NotOwner` about `entry` as this node knows it (storage reports only the fencing epoch).
    pub(crate) fn owner_hint(&self, entry: &NamespaceEntry, e: ClusterError) -> ClusterError {
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
                    request_id: crate::request_id::current(),
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
        let local = &self.local;
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
        let ctx = local.context(&current)?;
        let store = local.store.clone();
        let executed = tokio::task::spawn_blocking(move || {
            // A read on a replica fenced past this placement would be a deposed term's view
            // (writes are refused by the same check when they commit).
            let fence = store.fence_epoch(&ctx)?;
            if !write && fence > ctx.epoch {
                return Err(loci_storage::StorageError::Fenced(fence));
            }
            store.execute(&ctx, op)
        })
        .await?
        .map_err(|e| self.owner_hint(&current, e.into()))?;
        if write {
            if let Some(repl) = executed.replicate {
                self.replicate(&current, repl).await?;
            }
        }
        Ok(executed.result)
    }

    /// The replica count and write quorum of a namespace (`rules::quorum`, the engine's
    /// `Placement::quorum`). Replicas still receiving their first copy (`Syncing`) never held
    /// an acknowledged write and do not count, so a namespace keeps taking writes while it
    /// grows onto new nodes; a `Dead` replica still counts (its writes are not lost, only
    /// unreachable); while a move holds more than `rf` replicas, all of them count (capped at
    /// `rf`, a write quorum and a take-over set could miss each other). The quorum is the
    /// policy's `write_quorum`, else a majority.
    pub(crate) fn quorum(entry: &NamespaceEntry) -> (usize, usize) {
        let q = super::rules::quorum(entry);
        (q.n, q.q)
    }

    /// A write needs `quorum - 1` in-sync (Active) followers besides the primary; with fewer it
    /// could never be acknowledged, so it is refused before it is applied.
    pub(crate) fn check_in_sync(&self, entry: &NamespaceEntry) -> ClusterResult<()> {
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

    /// Forwarded operation, on the primary.
    pub async fn serve_forward(self: Arc<Self>, req: ForwardRequest) -> ClusterResult<DataResult> {
        use tracing::Instrument;
        let id = req.request_id.clone().unwrap_or_default();
        let span = tracing::info_span!("forwarded", request_id = %id, namespace = %req.namespace);
        crate::request_id::REQUEST_ID.scope(id, self.serve_forward_inner(req).instrument(span)).await
    }

    pub(crate) async fn serve_forward_inner(self: Arc<Self>, req: ForwardRequest) -> ClusterResult<DataResult> {
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
        let local = &self.local;
        let mut count = 0;
        let mut replicas = entry.placement.replicas.clone();
        if !replicas.contains(&self.node_id) {
            replicas.push(self.node_id);
        }
        for n in replicas {
            let c = if n == self.node_id {
                local.erase(entry.id).await.unwrap_or(0)
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
        self.repl.links.lock().retain(|(ns, _), _| *ns != entry.id);
        Ok(count)
    }

    /// After an erasure committed at catalogue index `index`: every alive member (this one
    /// included) snapshots its catalogue past it, purges its Raft log and compacts, so no
    /// node's Raft files keep the wrapped key. True when every alive member did; a member down
    /// now purges when it starts again and finds the namespace's rows orphaned.
    pub async fn purge_history_everywhere(self: Arc<Self>, index: u64) -> bool {
        let action = super::ClusterAction::PurgeHistory { index };
        let calls = self.alive_members().into_iter().map(|n| {
            let c = self.clone();
            let action = action.clone();
            async move {
                let r = if n == c.node_id {
                    c.clone().run_admin(action).await.map(|_| ()).map_err(|e| e.to_string())
                } else {
                    c.admin_on(n, &action, Duration::from_secs(30)).await.map(|_| ()).map_err(|e| e.to_string())
                };
                if let Err(e) = &r {
                    tracing::warn!(node = n, error = %e, "could not purge the catalogue history after an erasure");
                }
                r.is_ok()
            }
        });
        futures::future::join_all(calls).await.into_iter().all(|ok| ok)
    }
}
