//! Restoring a backup into this cluster (of any size): each namespace created with its id and
//! data key (re-wrapped under this cluster's KEK) on this cluster's nodes, then its rows
//! installed on every replica; then, for a restore of the whole backup, the keys, quotas and
//! token denials the target does not have.

use loci_raft::Command;
use loci_raft::CommandResult;
use loci_raft::catalogue::{NamespaceEntry, Scope};
use loci_storage::crypto::SecretKey;
use loci_storage::model::{NsProgress, now_secs};
use tokio::sync::mpsc;

use super::chunks::{self, Row};
use super::create::{CATALOGUE_AAD, CatalogueRecord};
use super::manifest::{Chunk, Manifest, NamespacePart};
use super::{Backups, RestoreInfo, RestoreSpec, RestoredNamespace, new_id, not_found, trim};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};

/// A namespace of the backup that can be restored.
struct Planned {
    ns_id: u64,
    /// The cluster the backup was taken from (its key files are kept under its id).
    cluster_id: String,
    part: NamespacePart,
    entry: NamespaceEntry,
    dek_version: u32,
    dek: SecretKey,
}

impl Backups<'_> {
    /// Start restoring a backup; its status is `GET /v1/admin/backups/restore/{id}`.
    pub async fn restore(&self, p: &Principal, spec: RestoreSpec) -> ServiceResult<RestoreInfo> {
        p.require_global(Scope::SuperAdmin)?;
        let s = self.state()?.clone();
        let m = self.manifest(&spec.backup_id)?.ok_or_else(|| not_found(&spec.backup_id))?;
        let mut plan = Vec::new();
        let mut erased = 0;
        for (id, part) in &m.namespaces {
            let ns_id: u64 = id.parse().map_err(|_| chunks::corrupt(format!("namespace id '{id}'")))?;
            match self.open_entry(&m, ns_id, part)? {
                Some((entry, dek_version, dek)) => {
                    if spec.namespaces.as_ref().is_none_or(|want| want.contains(&entry.name)) {
                        plan.push(Planned {
                            ns_id,
                            cluster_id: m.cluster_id.clone(),
                            part: part.clone(),
                            entry,
                            dek_version,
                            dek,
                        });
                    }
                }
                None => erased += 1,
            }
        }
        if let Some(want) = &spec.namespaces {
            for n in want {
                if !plan.iter().any(|p| &p.entry.name == n) {
                    return Err(ServiceError::not_found(
                        "namespace",
                        format!("backup '{}' holds no readable namespace '{n}'", spec.backup_id),
                    ));
                }
            }
        }
        let info = RestoreInfo {
            restore_id: new_id("rs"),
            backup_id: spec.backup_id.clone(),
            status: "inprogress".into(),
            started_at: now_secs(),
            completed_at: None,
            duration_seconds: None,
            progress_percent: 0,
            vectors_restored: 0,
            namespaces: Vec::new(),
            details: Vec::new(),
            keys_restored: 0,
            erased_namespaces: erased,
            error: None,
        };
        {
            let mut jobs = s.restores.lock();
            jobs.insert(info.restore_id.clone(), info.clone());
            trim(&mut jobs, |r| r.status == "inprogress");
        }
        s.save_job("restores", &info.restore_id, &info, false);
        self.core.audit.event(
            "restore_started",
            None,
            serde_json::json!({"restore_id": info.restore_id, "backup_id": spec.backup_id, "namespaces": plan.len()}),
        );
        let core = self.core.clone();
        let id = info.restore_id.clone();
        tokio::spawn(async move { core.backups().run_restore(id, m, spec, plan).await });
        Ok(info)
    }

    fn update_restore(&self, id: &str, f: impl FnOnce(&mut RestoreInfo)) {
        let Ok(s) = self.state() else { return };
        let now = s.restores.lock().get_mut(id).map(|r| {
            f(r);
            r.clone()
        });
        if let Some(r) = now {
            s.save_job("restores", id, &r, r.status != "inprogress");
        }
    }

    async fn run_restore(&self, id: String, m: Manifest, spec: RestoreSpec, plan: Vec<Planned>) {
        let started = std::time::Instant::now();
        let total = plan.len().max(1);
        let mut failed = 0;
        for (i, planned) in plan.into_iter().enumerate() {
            let name = planned.entry.name.clone();
            let detail = match self.restore_namespace(planned, spec.overwrite).await {
                Ok(Some(records)) => {
                    RestoredNamespace { namespace: name, status: "restored".into(), records, error: None }
                }
                Ok(None) => RestoredNamespace {
                    namespace: name,
                    status: "skipped".into(),
                    records: 0,
                    error: Some("the namespace already exists here".into()),
                },
                Err(e) => {
                    failed += 1;
                    RestoredNamespace { namespace: name, status: "failed".into(), records: 0, error: Some(e.message) }
                }
            };
            self.update_restore(&id, |r| {
                r.vectors_restored += detail.records;
                if detail.status == "restored" {
                    r.namespaces.push(detail.namespace.clone());
                }
                r.details.push(detail);
                r.progress_percent = (((i + 1) * 100) / total).min(99) as u8;
            });
        }
        let keys = if spec.namespaces.is_none() { self.restore_catalogue(&m).await } else { Ok(0) };
        let (status, error) = match (&keys, failed) {
            (Err(e), _) => ("failed", Some(format!("keys and quotas: {}", e.message))),
            (Ok(_), 0) => ("completed", None),
            (Ok(_), n) => ("failed", Some(format!("{n} namespace(s) could not be restored (see details)"))),
        };
        let keys_restored = keys.unwrap_or(0);
        self.update_restore(&id, |r| {
            r.status = status.into();
            r.error = error.clone();
            r.keys_restored = keys_restored;
            r.progress_percent = 100;
            r.completed_at = Some(now_secs());
            r.duration_seconds = Some(started.elapsed().as_secs());
        });
        metrics::counter!("loci_restores_total", "result" => status).increment(1);
        self.core.audit.event(
            "restore_complete",
            None,
            serde_json::json!({"restore_id": id, "backup_id": m.backup_id, "status": status, "keys_restored": keys_restored}),
        );
        tracing::info!(restore = %id, backup = %m.backup_id, status, elapsed_ms = started.elapsed().as_millis() as u64, "restore finished");
    }

    /// Restore one namespace; `None` when it exists here already (left as it is).
    async fn restore_namespace(&self, p: Planned, overwrite: bool) -> ServiceResult<Option<u64>> {
        if self.core.namespace(&p.entry.name).is_some() {
            if !overwrite {
                return Ok(None);
            }
            // Overwrite: the namespace goes back to the backup's point; what was written since
            // is erased with the live copy. Its erasure removes this cluster's key file of it;
            // the backup's own key file is put back (the backup is what is being restored).
            self.core.delete_namespace(&p.entry.name).await?;
            let s = self.state()?;
            if !s.store.has_namespace_key(&p.cluster_id, p.ns_id)? {
                s.store.put_namespace_key(&s.store_key, &p.cluster_id, p.ns_id, p.dek_version, &p.dek)?;
            }
        }
        let mut entry = p.entry.clone();
        entry.data_key = self.core.contexts.keyring().wrap(p.ns_id, p.dek_version, &p.dek);
        let mut placement = self.core.cluster.initial_placement(p.ns_id);
        // Above every epoch the restored log holds: its replicas then accept the new primary.
        placement.epoch = placement.epoch.max(p.part.epoch + 1);
        entry.placement = placement;
        entry.created_at = p.entry.created_at;
        let (result, index) = self.core.catalogue.write_indexed(Command::CreateNamespace { entry }).await?;
        // The replicas wait for this index; this node's own view must hold it too (a follower
        // learns of the write after the leader applied it).
        self.core.catalogue.view.wait_applied(index, std::time::Duration::from_secs(10)).await;
        let entry = match result {
            CommandResult::Namespace { created: true, entry } => entry,
            CommandResult::Namespace { created: false, .. } => return Ok(None),
            CommandResult::Rejected(why) => {
                return Err(ServiceError::conflict(format!(
                    "namespace id {} is taken in this cluster ({why}): restore into an empty cluster",
                    p.ns_id
                )));
            }
            CommandResult::QuotaExceeded(why) => return Err(ServiceError::quota_exceeded(why)),
            other => return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        };
        let progress = NsProgress { applied_seq: p.part.point, epoch: p.part.epoch };
        let s = self.state()?.clone();
        let (tx, mut rx) = mpsc::channel::<Result<Vec<Row>, ServiceError>>(2);
        let (key, aad, list) = (chunks::namespace_chunk_key(&p.dek), chunks::namespace_aad(p.ns_id), p.part.chunks);
        tokio::task::spawn_blocking(move || {
            for c in &list {
                let rows = read_chunk(&s, c)
                    .and_then(|sealed| chunks::open(&key, &aad, &sealed))
                    .and_then(|b| chunks::decode_rows(&b));
                let stop = rows.is_err();
                if tx.blocking_send(rows).is_err() || stop {
                    return;
                }
            }
        });
        match self.core.cluster.install_restored(&entry, progress, &mut rx).await {
            Ok(_) => {
                self.core.audit.event(
                    "namespace_restored",
                    None,
                    serde_json::json!({"namespace": entry.name, "records": p.part.records}),
                );
                Ok(Some(p.part.records))
            }
            Err(e) => {
                // Nothing half restored: the namespace goes again (a retry starts afresh).
                if let Err(d) = self.core.delete_namespace(&entry.name).await {
                    tracing::error!(namespace = %entry.name, error = %d.message, "could not remove a namespace whose restore failed");
                }
                Err(e)
            }
        }
    }

    /// The keys, quotas and token denials of the backup that this cluster does not have.
    async fn restore_catalogue(&self, m: &Manifest) -> ServiceResult<u64> {
        let s = self.state()?.clone();
        let mut plain = Vec::new();
        for c in &m.catalogue {
            plain.extend(chunks::open(&s.store_key, CATALOGUE_AAD, &read_chunk(&s, c)?)?);
        }
        let record: CatalogueRecord =
            serde_json::from_slice(&plain).map_err(|e| chunks::corrupt(format!("catalogue record: {e}")))?;
        let mut restored = 0;
        let (have_keys, have_quotas, have_denials) = {
            let c = self.core.catalogue.view.read();
            (
                c.keys.values().map(|k| (k.key_id.clone(), k.secret_sha256.clone())).collect::<Vec<_>>(),
                c.quotas.keys().cloned().collect::<Vec<_>>(),
                c.token_denials.keys().cloned().collect::<Vec<_>>(),
            )
        };
        for k in record.keys {
            if have_keys.iter().any(|(id, sha)| id == &k.key_id || sha == &k.secret_sha256) {
                continue;
            }
            if matches!(
                self.core.catalogue.write(Command::CreateKey { entry: k }).await?,
                CommandResult::Key { .. } | CommandResult::Ok
            ) {
                restored += 1;
            }
        }
        for q in record.quotas {
            if !have_quotas.contains(&q.pattern) {
                self.core.catalogue.write(Command::SetQuota { quota: q }).await?;
                restored += 1;
            }
        }
        for d in record.token_denials {
            if !have_denials.contains(&d.id()) {
                self.core.catalogue.write(Command::DenyToken { denial: d }).await?;
                restored += 1;
            }
        }
        Ok(restored)
    }
}

/// A chunk's bytes, checked against its digest.
fn read_chunk(s: &super::BackupState, c: &Chunk) -> ServiceResult<Vec<u8>> {
    let data = s.store.chunk(&c.sha256)?.ok_or_else(|| chunks::corrupt(format!("chunk {} is missing", c.sha256)))?;
    if Chunk::of(&data) != *c {
        return Err(chunks::corrupt(format!("chunk {} does not match its digest", c.sha256)));
    }
    Ok(data)
}
