//! Full copies of a namespace to a new or repaired replica, and the follower side of a copy.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, ReplicaState};
use loci_storage::model::NsProgress;
use loci_storage::store::ExportPart;

use super::Cluster;
use super::error::{ClusterError, ClusterResult};
use super::plane::*;

impl Cluster {
    /// Full copy to a new or repaired replica, catch-up, then (if it was Syncing or Dead) Active.
    /// Only while this node serves as the namespace's primary: a deposed primary's copy would
    /// overwrite a replica with a term that is over (`push_copy` checks before and after).
    pub(crate) async fn copy_to(self: &Arc<Self>, ns: &NamespaceEntry, node: u64) -> ClusterResult<()> {
        let started = std::time::Instant::now();
        let (progress, total) = self.push_copy(ns, node, true).await?;
        let Some(current) = self.entry(&ns.name) else { return Ok(()) };
        let Some(state) = current.placement.state(node) else { return Ok(()) };
        // Catch up with the writes made during the copy.
        let latest = self.local_progress(ns).await?;
        if latest.applied_seq > progress.applied_seq && !self.replicate_to(ns, node, latest.applied_seq).await {
            return Err(ClusterError::Unavailable("catch-up after the copy failed".into()));
        }
        if state == ReplicaState::Active {
            // A repair: it counted throughout.
            tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, "replica repaired by a full copy");
            return Ok(());
        }
        // A new replica (Syncing) or one back after being Dead: from here on every write needs
        // its acknowledgement too, so once the catalogue counts it as Active, it holds every
        // acknowledged write (the writes acknowledged while it catches up would otherwise be
        // on fewer than a quorum of the grown set). Registered after the long catch-up (writes
        // would wait on it), then one short catch-up of what was written meanwhile.
        let _promoting = Promoting::start(self, ns.id, node);
        let latest = self.local_progress(ns).await?;
        if !self.replicate_to(ns, node, latest.applied_seq).await {
            return Err(ClusterError::Unavailable("catch-up before the promotion failed".into()));
        }
        let Some(current) = self.entry(&ns.name).filter(|e| self.is_serving_entry(e)) else {
            return Err(ClusterError::Unavailable("no longer the primary".into()));
        };
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
        // Writes keep needing it until this node's catalogue shows a newer placement (the one
        // just proposed, or whatever replaced it): `replicate` then reads it.
        let (name, epoch) = (ns.name.clone(), current.placement.epoch);
        let deadline = tokio::time::Instant::now() + PROMOTION_WAIT;
        while tokio::time::Instant::now() < deadline {
            let shown = self
                .catalogue
                .view
                .wait_until(CATALOGUE_WAIT, |c| c.namespaces.get(&name).is_none_or(|e| e.placement.epoch > epoch))
                .await;
            if shown {
                break;
            }
        }
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
    /// `as_primary`: this node copies as the serving primary and stops as soon as it no longer
    /// serves (else it copies for a new primary that asked, `PushCopy`).
    pub(crate) async fn push_copy(
        &self,
        ns: &NamespaceEntry,
        node: u64,
        as_primary: bool,
    ) -> ClusterResult<(NsProgress, usize)> {
        let local = &self.local;
        let link = self.link(ns.id, node);
        let mut acked = link.lock().await;
        // The snapshot is read in a blocking task, one chunk at a time, through a channel of
        // two: this node holds at most a few chunks of the copy, however large the namespace.
        let store = local.store.clone();
        let id = ns.id;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ExportPart>(2);
        let reader = tokio::task::spawn_blocking(move || {
            store.export_namespace_chunked(id, COPY_CHUNK_BYTES, |part| tx.blocking_send(part).is_ok())
        });
        let progress = match rx.recv().await {
            Some(ExportPart::Progress(p)) => p,
            _ => {
                reader.await??;
                return Err(ClusterError::Unavailable(format!("the copy of '{}' could not be read", ns.name)));
            }
        };
        let idx = self.catalogue.view.applied_index();
        let to = Duration::from_secs(60);
        let serving = || -> ClusterResult<u64> {
            let current = self.entry(&ns.name).ok_or_else(|| ClusterError::UnknownNamespace(ns.name.clone()))?;
            if as_primary && !self.is_serving_entry(&current) {
                return Err(ClusterError::Unavailable(format!("no longer the primary of '{}'", ns.name)));
            }
            Ok(current.placement.epoch)
        };
        let sender_epoch = serving()?;
        let copy_id = next_copy_id(self.node_id);
        let begin = CopyRequest::Begin {
            namespace: ns.name.clone(),
            catalogue_index: idx,
            sender_epoch,
            copy_id,
            restore: false,
        };
        self.copy_step(node, begin, to).await?;
        // Progress: the bytes sent so far (the copy's size is known only once it is read).
        // Per node, not per namespace: /metrics is unauthenticated and namespace names belong
        // to tenants.
        metrics::gauge!("loci_move_progress_ratio").set(0.0);
        metrics::gauge!("loci_move_bytes_sent").set(0.0);
        let (mut total, mut bytes) = (0usize, 0usize);
        while let Some(part) = rx.recv().await {
            let ExportPart::Rows(rows) = part else { continue };
            total += rows.len();
            bytes += rows.iter().map(|(_, k, v)| k.len() + v.len()).sum::<usize>();
            let req = CopyRequest::Rows { copy_id, rows };
            self.copy_step(node, req, to).await?;
            metrics::gauge!("loci_move_bytes_sent").set(bytes as f64);
        }
        // The reader's own error (a failed read) ends the copy here; the receiver treats an
        // unfinished copy as absent.
        reader.await??;
        serving()?;
        let fin = CopyRequest::Finish { namespace: ns.name.clone(), copy_id, progress };
        // The install moves every row on the receiver: bounded by the copy's size, not 60 s.
        self.copy_step(node, fin, FINISH_TIMEOUT).await?;
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
            CopyRequest::Begin { namespace, catalogue_index, sender_epoch, copy_id, restore } => {
                let _ = self.catalogue.view.wait_applied(catalogue_index, CATALOGUE_WAIT).await;
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace.clone()))?;
                if !entry.placement.replicas.contains(&self.node_id) {
                    return Err(ClusterError::NotAReplica(namespace));
                }
                if restore {
                    // A restore fills a namespace that holds nothing yet; it never replaces a
                    // write (one made to the restored namespace before its copy arrived fails
                    // the restore of that namespace instead).
                    let (store, id) = (store.clone(), entry.id);
                    let held = tokio::task::spawn_blocking(move || store.stored_progress(id)).await??;
                    if held.applied_seq > 0 {
                        return Err(ClusterError::Api(crate::ServiceError::conflict(format!(
                            "'{namespace}' already holds writes on node {}: not restored over them",
                            self.node_id
                        ))));
                    }
                } else if entry.placement.primary() == Some(self.node_id)
                    && !self.repl.expected_pushes.lock().contains(&entry.id)
                {
                    // A primary's rows are replaced only by a copy it asked for (`PushCopy`
                    // while taking over), never by another node that thinks it is primary.
                    return Err(ClusterError::Unavailable(format!(
                        "node {} is the primary of '{namespace}' and asked for no copy",
                        self.node_id
                    )));
                }
                Ok(tokio::task::spawn_blocking(move || store.import_begin(entry.id, sender_epoch, copy_id)).await??)
            }
            CopyRequest::Rows { copy_id, rows } => {
                Ok(tokio::task::spawn_blocking(move || store.import_rows(copy_id, &rows)).await??)
            }
            CopyRequest::Finish { namespace, copy_id, progress } => {
                let entry = self.entry(&namespace).ok_or(ClusterError::UnknownNamespace(namespace))?;
                let id = entry.id;
                tokio::task::spawn_blocking(move || store.import_finish(id, copy_id, progress)).await??;
                // A copy replaced this node's rows: a term it served as primary is over (its
                // links and pending handshakes describe rows that are gone).
                self.repl.taken_over.lock().remove(&id);
                self.repl.links.lock().retain(|(ns, _), _| *ns != id);
                Ok(())
            }
        }
    }
}

/// How long a full copy's install may take on the receiver.
const FINISH_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a promotion keeps requiring the new replica's acknowledgements at most, waiting for
/// this node's catalogue to show the placement it proposed.
const PROMOTION_WAIT: Duration = Duration::from_secs(600);

/// A copy id no other copy (from this node or another) uses: the node id, the time, a counter.
pub(super) fn next_copy_id(node_id: u64) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (node_id.rotate_left(40) ^ nanos ^ n.rotate_left(20)) | 1
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
