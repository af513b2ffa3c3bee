//! The data plane's part of backups: a namespace's snapshot read from its serving primary (this
//! node or another, streamed), and a restored namespace installed on every replica of its new
//! placement. What a backup holds and where it goes is `crate::backup`'s.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::NamespaceEntry;
use loci_storage::model::NsProgress;
use loci_storage::store::ExportPart;
use tokio::sync::mpsc;

use super::Cluster;
use super::copy::next_copy_id;
use super::error::{ClusterError, ClusterResult};
use super::plane::{COPY_CHUNK_BYTES, CopyRequest};
use super::wire::pb;

/// How long one backup read of a namespace may stream.
const READ_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long one step of a restored copy may take on a replica.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica may take to install a restored copy.
const FINISH_TIMEOUT: Duration = Duration::from_secs(600);

/// One row of a copy: column family, key and value, sealed as on disk.
pub type Row = (String, Vec<u8>, Vec<u8>);

impl Cluster {
    /// This node's snapshot of `namespace` as its serving primary (taking over first when it
    /// has not yet in this placement): the progress, then the rows. Refused with `NotOwner`
    /// when this node is not the primary.
    async fn read_local_snapshot(self: &Arc<Self>, namespace: &str) -> ClusterResult<mpsc::Receiver<ExportPart>> {
        let entry = self.entry(namespace).ok_or_else(|| ClusterError::UnknownNamespace(namespace.to_string()))?;
        if entry.placement.primary() != Some(self.node_id) {
            return Err(ClusterError::not_owner(
                namespace,
                entry.placement.epoch,
                entry.placement.primary(),
                self.catalogue.view.applied_index(),
            ));
        }
        // Every acknowledged write is on this node once it has taken over.
        self.ensure_taken_over(&entry).await?;
        let store = self.local.store.clone();
        let (tx, rx) = mpsc::channel::<ExportPart>(2);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.export_namespace_chunked(entry.id, COPY_CHUNK_BYTES, |p| tx.blocking_send(p).is_ok())
            {
                tracing::warn!(error = %e, "a backup read failed");
            }
        });
        Ok(rx)
    }

    /// Serve a peer's `BackupRead`: the stream of this node's snapshot, or the one error.
    pub async fn serve_backup_read(
        self: Arc<Self>,
        req: pb::BackupReadRequest,
    ) -> mpsc::Receiver<Result<pb::BackupReadItem, tonic::Status>> {
        use pb::backup_read_item::Item;
        let (tx, rx) = mpsc::channel(2);
        let _ = self.catalogue.view.wait_applied(req.catalogue_index, super::plane::CATALOGUE_WAIT).await;
        tokio::spawn(async move {
            let mut parts = match self.read_local_snapshot(&req.namespace).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Ok(pb::BackupReadItem { item: Some(Item::Error((&e).into())) })).await;
                    return;
                }
            };
            let mut sent_progress = false;
            while let Some(part) = parts.recv().await {
                let item = match part {
                    ExportPart::Progress(p) => {
                        sent_progress = true;
                        Item::Progress(p.into())
                    }
                    ExportPart::Rows(rows) => Item::Rows(pb::CopyRows {
                        rows: rows.into_iter().map(|(cf, key, value)| pb::CopyRow { cf, key, value }).collect(),
                        copy_id: 0,
                    }),
                };
                if tx.send(Ok(pb::BackupReadItem { item: Some(item) })).await.is_err() {
                    return;
                }
            }
            if !sent_progress {
                let e = ClusterError::Unavailable(format!("the snapshot of '{}' could not be read", req.namespace));
                let _ = tx.send(Ok(pb::BackupReadItem { item: Some(Item::Error((&e).into())) })).await;
            }
        });
        rx
    }

    /// `ns`'s snapshot from its serving primary, part by part: the progress first, then the
    /// rows; an error ends it. The reader holds a few parts at a time.
    pub async fn read_for_backup(
        self: &Arc<Self>,
        ns: &NamespaceEntry,
    ) -> ClusterResult<mpsc::Receiver<ClusterResult<ExportPart>>> {
        let primary =
            ns.placement.primary().ok_or_else(|| ClusterError::Unavailable(format!("'{}' has no primary", ns.name)))?;
        let (tx, rx) = mpsc::channel(2);
        if primary == self.node_id {
            let mut parts = self.read_local_snapshot(&ns.name).await?;
            tokio::spawn(async move {
                while let Some(p) = parts.recv().await {
                    if tx.send(Ok(p)).await.is_err() {
                        return;
                    }
                }
            });
            return Ok(rx);
        }
        let msg =
            pb::BackupReadRequest { namespace: ns.name.clone(), catalogue_index: self.catalogue.view.applied_index() };
        let mut stream = self.rpc(primary, READ_TIMEOUT, msg, |mut c, r| async move { c.backup_read(r).await }).await?;
        tokio::spawn(async move {
            use pb::backup_read_item::Item;
            loop {
                let next = match stream.message().await {
                    Ok(Some(pb::BackupReadItem { item: Some(item) })) => match item {
                        Item::Progress(p) => Ok(ExportPart::Progress(p.into())),
                        Item::Rows(r) => {
                            Ok(ExportPart::Rows(r.rows.into_iter().map(|r| (r.cf, r.key, r.value)).collect()))
                        }
                        Item::Error(e) => Err(e.into()),
                    },
                    Ok(Some(_)) => Err(super::wire::empty_reply()),
                    Ok(None) => return,
                    Err(s) => Err(ClusterError::Unreachable { node: primary, reason: s.message().to_string() }),
                };
                let stop = next.is_err();
                if tx.send(next).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn restore_step(&self, node: u64, step: CopyRequest, timeout: Duration) -> ClusterResult<()> {
        if node == self.node_id {
            return self.apply_copy(step).await;
        }
        self.copy_step(node, step, timeout).await
    }

    /// Install a restored copy of `ns` (created for the restore, holding nothing yet) on every
    /// replica of its placement: the rows `next` yields, in order, then `progress`. A replica
    /// that holds a write of the namespace refuses it (`409`), and so does every later step.
    pub async fn install_restored(
        &self,
        ns: &NamespaceEntry,
        progress: NsProgress,
        rows: &mut mpsc::Receiver<Result<Vec<Row>, crate::ServiceError>>,
    ) -> crate::ServiceResult<u64> {
        let replicas = ns.placement.replicas.clone();
        let idx = self.catalogue.view.applied_index();
        let copy_id = next_copy_id(self.node_id);
        for &node in &replicas {
            let begin = CopyRequest::Begin {
                namespace: ns.name.clone(),
                catalogue_index: idx,
                sender_epoch: ns.placement.epoch,
                copy_id,
                restore: true,
            };
            self.restore_step(node, begin, STEP_TIMEOUT).await?;
        }
        let mut total = 0u64;
        while let Some(chunk) = rows.recv().await {
            let chunk = chunk?;
            total += chunk.len() as u64;
            let sends = replicas
                .iter()
                .map(|&node| self.restore_step(node, CopyRequest::Rows { copy_id, rows: chunk.clone() }, STEP_TIMEOUT));
            for r in futures::future::join_all(sends).await {
                r?;
            }
        }
        for &node in &replicas {
            let fin = CopyRequest::Finish { namespace: ns.name.clone(), copy_id, progress };
            self.restore_step(node, fin, FINISH_TIMEOUT).await?;
        }
        Ok(total)
    }
}
