//! Full copies of a namespace to a new or repaired replica, and the follower side of a copy.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, ReplicaState};
use loci_storage::model::NsProgress;

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::plane::*;

impl Cluster {
    /// Full copy to a new or repaired replica, catch-up, then (if it was Syncing or Dead) Active.
    pub(crate) async fn copy_to(self: &Arc<Self>, ns: &NamespaceEntry, node: u64) -> ClusterResult<()> {
        let started = std::time::Instant::now();
        let (progress, total) = self.push_copy(ns, node).await?;
        let Some(current) = self.entry(&ns.name) else { return Ok(()) };
        let Some(state) = current.placement.state(node) else { return Ok(()) };
        if state == ReplicaState::Active {
            // A repair: catch up with the writes made during the copy; it counted throughout.
            let latest = self.local_progress(ns).await?;
            if latest.applied_seq > progress.applied_seq && !self.replicate_to(ns, node, latest.applied_seq).await {
                return Err(ClusterError::Unavailable("catch-up after the copy failed".into()));
            }
            tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, "replica repaired by a full copy");
            return Ok(());
        }
        // A new replica (Syncing) or one back after being Dead: from here on every write needs
        // its acknowledgement too, so once the catalogue counts it as Active, it holds every
        // acknowledged write (the writes acknowledged while it catches up would otherwise be
        // on fewer than a quorum of the grown set).
        let _promoting = Promoting::start(self, ns.id, node);
        let latest = self.local_progress(ns).await?;
        if latest.applied_seq > progress.applied_seq && !self.replicate_to(ns, node, latest.applied_seq).await {
            return Err(ClusterError::Unavailable("catch-up after the copy failed".into()));
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
            .map_err(crate::ServiceError::from)?;
        // Writes keep needing it until this node's catalogue counts it as Active.
        let (name, epoch) = (ns.name.clone(), current.placement.epoch);
        self.catalogue
            .view
            .wait_until(CATALOGUE_WAIT, |c| c.namespaces.get(&name).is_none_or(|e| e.placement.epoch > epoch))
            .await;
        tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, result = ?matches!(res, loci_raft::CommandResult::Namespace { .. }), "replica synced");
        Ok(())
    }

    async fn local_progress(&self, ns: &NamespaceEntry) -> ClusterResult<NsProgress> {
        let store = self.local.store.clone();
        let ctx = self.local.context(ns)?;
        Ok(tokio::task::spawn_blocking(move || store.progress(&ctx)).await??)
    }

    /// Send this node's copy of a namespace (rows and log, one consistent snapshot) to `node`,
    /// replacing whatever it holds. Returns the progress the copy carries and its row count.
    pub(crate) async fn push_copy(&self, ns: &NamespaceEntry, node: u64) -> ClusterResult<(NsProgress, usize)> {
        let local = &self.local;
        let link = self.link(ns.id, node);
        let mut acked = link.lock().await;
        let store = local.store.clone();
        let id = ns.id;
        let (progress, rows) = tokio::task::spawn_blocking(move || store.export_namespace(id)).await??;
        let idx = self.catalogue.view.applied_index();
        let to = Duration::from_secs(60);
        let sender_epoch = self.entry(&ns.name).map_or(ns.placement.epoch, |e| e.placement.epoch);
        let begin = CopyRequest::Begin { namespace: ns.name.clone(), catalogue_index: idx, sender_epoch };
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
        let local = &self.local;
        let store = local.store.clone();
        match req {
            CopyRequest::Begin { namespace, catalogue_index, sender_epoch } => {
                let _ = self.catalogue.view.wait_applied(catalogue_index, CATALOGUE_WAIT).await;
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace))?;
                Ok(tokio::task::spawn_blocking(move || store.import_begin(entry.id, sender_epoch)).await??)
            }
            CopyRequest::Rows { rows } => Ok(tokio::task::spawn_blocking(move || store.import_rows(&rows)).await??),
            CopyRequest::Finish { namespace, progress } => {
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace))?;
                let id = entry.id;
                tokio::task::spawn_blocking(move || store.import_finish(id, progress)).await??;
                // A copy replaced this node's rows: a term it served as primary is over (its
                // links and pending handshakes describe rows that are gone).
                self.repl.taken_over.lock().remove(&id);
                self.repl.links.lock().retain(|(ns, _), _| *ns != id);
                Ok(())
            }
        }
    }
}

/// A replica being proposed `Active` (`ReplicationState::promoting`) for as long as it lives:
/// also when the proposal fails or the task is cancelled.
struct Promoting<'a> {
    cluster: &'a Cluster,
    key: (u64, u64),
}

impl<'a> Promoting<'a> {
    fn start(cluster: &'a Cluster, ns_id: u64, node: u64) -> Self {
        cluster.repl.promoting.lock().insert((ns_id, node));
        Promoting { cluster, key: (ns_id, node) }
    }
}

impl Drop for Promoting<'_> {
    fn drop(&mut self) {
        self.cluster.repl.promoting.lock().remove(&self.key);
    }
}
