//! Taking a backup: the runtime around [`super::chunks`] and [`super::manifest`].

use std::collections::BTreeMap;

use loci_raft::catalogue::{NamespaceEntry, Scope};
use loci_storage::crypto::SecretKey;
use loci_storage::model::{NsProgress, now_secs};
use loci_storage::store::ExportPart;
use serde::{Deserialize, Serialize};

use super::chunks::{self, Chunker, Row};
use super::manifest::{Chunk, FORMAT, Kind, Manifest, NamespacePart};
use super::{BackupInfo, Backups, CreateSpec, cluster_id_of, new_id, trim};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};

/// The catalogue's part of a backup (namespaces travel in their own sealed entries).
#[derive(Serialize, Deserialize)]
pub(super) struct CatalogueRecord {
    pub cluster_id: String,
    pub keys: Vec<loci_raft::catalogue::ApiKeyEntry>,
    pub quotas: Vec<loci_raft::quota::Quota>,
    pub token_denials: Vec<loci_raft::denials::TokenDenial>,
}

pub(super) const CATALOGUE_AAD: &[u8] = b"loci/backup/catalogue/v1";

/// Tries at reading one namespace (its primary may move while the backup runs).
const READ_TRIES: usize = 5;

/// What a namespace's sealed entry holds: its settings, without its key or placement.
pub(super) fn stripped(entry: &NamespaceEntry) -> NamespaceEntry {
    let mut e = entry.clone();
    e.data_key.sealed.clear();
    e.data_key.kek_version = 0;
    e.placement = Default::default();
    e.reembed = None;
    e.ceiling = Default::default();
    e
}

impl Backups<'_> {
    /// Start a backup in the background; its status is `GET /v1/admin/backups/{id}`.
    pub async fn create(&self, p: &Principal, spec: CreateSpec) -> ServiceResult<BackupInfo> {
        p.require_global(Scope::Admin)?;
        let s = self.state()?;
        if spec.name.trim().is_empty() || spec.name.len() > 256 {
            return Err(ServiceError::unprocessable("a backup needs a name of 1 to 256 characters"));
        }
        if let Some(names) = &spec.namespaces {
            for n in names {
                if self.core.namespace(n).is_none() {
                    return Err(ServiceError::namespace_not_found(n));
                }
            }
        }
        let id = new_id("bk");
        let info = pending(&id, &spec);
        s.backups.lock().insert(id.clone(), info.clone());
        s.save_job("backups", &id, &info, false);
        let core = self.core.clone();
        tokio::spawn(async move { core.backups().run_backup(id, spec).await });
        Ok(info)
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut BackupInfo)) {
        let Ok(s) = self.state() else { return };
        let now = {
            let mut jobs = s.backups.lock();
            let now = jobs.get_mut(id).map(|b| {
                f(b);
                b.clone()
            });
            trim(&mut jobs, |b| b.status == "inprogress");
            now
        };
        match now {
            // A completed backup is its manifest.
            Some(b) if b.status == "completed" => {
                let _ = s.store.remove_job("backups", id);
            }
            Some(b) => s.save_job("backups", id, &b, b.status != "inprogress"),
            None => {}
        }
    }

    /// Take backup `id` (registered by `create`, or a scheduled one).
    pub(super) async fn run_backup(&self, id: String, spec: CreateSpec) {
        let Ok(s) = self.state().cloned() else { return };
        let _one = s.running.lock().await;
        let started = std::time::Instant::now();
        // A scheduled backup has no job yet.
        s.backups.lock().entry(id.clone()).or_insert_with(|| pending(&id, &spec));
        match self.take(&id, &spec).await {
            Ok(m) => {
                let done = self.info_of(&m);
                self.update(&id, |b| *b = done.clone());
                metrics::counter!("loci_backups_total", "result" => "completed").increment(1);
                metrics::gauge!("loci_backup_last_success_timestamp_seconds").set(now_secs() as f64);
                self.core.audit.event(
                    "backup_created",
                    None,
                    serde_json::json!({"backup_id": id, "namespaces": m.namespaces.len(), "bytes": m.total_bytes(), "kind": done.backup_type}),
                );
                tracing::info!(backup = %id, namespaces = m.namespaces.len(), bytes = m.total_bytes(), elapsed_ms = started.elapsed().as_millis() as u64, "backup completed");
            }
            Err(e) => {
                let msg = e.message.clone();
                self.update(&id, |b| {
                    b.status = "failed".into();
                    b.error = Some(msg.clone());
                    b.completed_at = Some(now_secs());
                });
                metrics::counter!("loci_backups_total", "result" => "failed").increment(1);
                tracing::error!(backup = %id, error = %msg, "backup failed");
            }
        }
    }

    /// The latest complete backup of this cluster in the store (an incremental backup's parent).
    fn latest(&self) -> ServiceResult<Option<Manifest>> {
        let s = self.state()?;
        let cluster_id = cluster_id_of(self.core);
        let mut best: Option<Manifest> = None;
        for mid in s.store.manifest_ids()? {
            if let Ok(Some(m)) = self.manifest(&mid)
                && m.cluster_id == cluster_id
                && best.as_ref().is_none_or(|b| m.created_at_ms > b.created_at_ms)
            {
                best = Some(m);
            }
        }
        Ok(best)
    }

    async fn take(&self, id: &str, spec: &CreateSpec) -> ServiceResult<Manifest> {
        let s = self.state()?.clone();
        let created_at_ms = now_ms();
        let parent = if spec.incremental { self.latest()? } else { None };
        let cluster_id = cluster_id_of(self.core);
        // The catalogue at one index: its namespaces are what this backup holds.
        let catalogue = self.core.catalogue.view.read().clone();
        let selected: Vec<NamespaceEntry> = catalogue
            .namespaces
            .values()
            .filter(|e| spec.namespaces.as_ref().is_none_or(|names| names.contains(&e.name)))
            .cloned()
            .collect();
        self.update(id, |b| b.namespaces_total = selected.len() as u64);
        let mut parts = BTreeMap::new();
        for entry in selected {
            let Some(part) = self.take_namespace(&entry, &cluster_id, spec, parent.as_ref()).await? else {
                // Deleted while the backup ran: nothing to keep of it.
                continue;
            };
            let name = entry.name.clone();
            self.update(id, |b| {
                b.namespaces_done += 1;
                b.vector_count += part.records;
                b.size_bytes += part.chunks.iter().map(|c| c.bytes).sum::<u64>();
                b.namespaces.push(name);
            });
            parts.insert(entry.id.to_string(), part);
        }
        let record = CatalogueRecord {
            cluster_id: cluster_id.clone(),
            keys: catalogue.keys.values().cloned().collect(),
            quotas: catalogue.quotas.values().cloned().collect(),
            token_denials: catalogue.token_denials.values().cloned().collect(),
        };
        let plain = serde_json::to_vec(&record).map_err(|e| ServiceError::internal(e.to_string()))?;
        let sealed = chunks::seal(&s.store_key, CATALOGUE_AAD, &chunks::compress(spec.compression, &plain));
        let cat_chunk = self.put(&sealed).await?;
        let m = Manifest {
            format: FORMAT,
            backup_id: id.to_string(),
            name: spec.name.clone(),
            created_at_ms,
            completed_at_ms: now_ms(),
            kind: if parent.is_some() { Kind::Incremental } else { Kind::Full },
            parent: parent.map(|p| p.backup_id),
            cluster_id,
            compression: spec.compression,
            catalogue: vec![cat_chunk],
            namespaces: parts,
        };
        // The manifest last: a backup exists once every chunk it names is stored.
        s.store.put_manifest(id, &m.encode())?;
        Ok(m)
    }

    /// Store a sealed chunk unless the store holds it already (then refresh its time, so a
    /// collection running meanwhile keeps it).
    async fn put(&self, sealed: &[u8]) -> ServiceResult<Chunk> {
        let s = self.state()?.clone();
        let chunk = Chunk::of(sealed);
        let sha = chunk.sha256.clone();
        let data = sealed.to_vec();
        tokio::task::spawn_blocking(move || -> ServiceResult<()> {
            if s.store.has_chunk(&sha)? {
                return s.store.touch_chunk(&sha, super::GC_GRACE / 2);
            }
            s.store.put_chunk(&sha, &data)
        })
        .await
        .map_err(|e| ServiceError::internal(e.to_string()))??;
        Ok(chunk)
    }

    /// Back up one namespace: its key into the store, then its snapshot (or, when its log has
    /// not moved since the parent backup, the parent's chunks).
    async fn take_namespace(
        &self,
        entry: &NamespaceEntry,
        cluster_id: &str,
        spec: &CreateSpec,
        parent: Option<&Manifest>,
    ) -> ServiceResult<Option<NamespacePart>> {
        let s = self.state()?.clone();
        let dek = self.core.contexts.keyring().unwrap(entry.id, &entry.data_key)?;
        if !s.store.has_namespace_key(cluster_id, entry.id)? {
            s.store.put_namespace_key(&s.store_key, cluster_id, entry.id, dek.version(), dek.raw())?;
        }
        let ck = chunks::namespace_chunk_key(dek.raw());
        let aad = chunks::namespace_aad(entry.id);
        let plain = serde_json::to_vec(&stripped(entry)).map_err(|e| ServiceError::internal(e.to_string()))?;
        let entry_chunk = self.put(&chunks::seal(&ck, &aad, &chunks::compress(spec.compression, &plain))).await?;
        let before = parent.and_then(|p| p.namespaces.get(&entry.id.to_string()));
        let mut last_err = None;
        for attempt in 0..READ_TRIES {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt as u64)).await;
            }
            let Some(current) = self.core.namespace(&entry.name).filter(|e| e.id == entry.id) else {
                return Ok(None);
            };
            match self.read_namespace(&current, &ck, &aad, spec, before).await {
                Ok((progress, records, chunks)) => {
                    return Ok(Some(NamespacePart {
                        point: progress.applied_seq,
                        epoch: progress.epoch,
                        records,
                        entry: entry_chunk,
                        chunks,
                    }));
                }
                Err(e) if e.is_retryable() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ServiceError::unavailable("the namespace could not be read")))
    }

    async fn read_namespace(
        &self,
        entry: &NamespaceEntry,
        key: &SecretKey,
        aad: &[u8],
        spec: &CreateSpec,
        before: Option<&NamespacePart>,
    ) -> ServiceResult<(NsProgress, u64, Vec<Chunk>)> {
        let mut rx = self.core.cluster.read_for_backup(entry).await?;
        let progress = match rx.recv().await {
            Some(Ok(ExportPart::Progress(p))) => p,
            Some(Err(e)) => return Err(e.into()),
            _ => return Err(ServiceError::unavailable(format!("the snapshot of '{}' ended early", entry.name))),
        };
        if let Some(b) = before
            && b.point == progress.applied_seq
            && b.epoch == progress.epoch
        {
            // Nothing written since the parent: its chunks are this namespace's now too.
            drop(rx);
            for c in &b.chunks {
                let s = self.state()?;
                if !s.store.has_chunk(&c.sha256)? {
                    return Err(ServiceError::internal(format!("the parent backup's chunk {} is missing", c.sha256)));
                }
            }
            return Ok((progress, b.records, b.chunks.clone()));
        }
        let mut chunker = Chunker::default();
        let (mut records, mut out) = (0u64, Vec::new());
        let seal_one = |rows: Vec<Row>| -> Vec<u8> {
            chunks::seal(key, aad, &chunks::compress(spec.compression, &chunks::encode_rows(&rows)))
        };
        while let Some(part) = rx.recv().await {
            let rows = match part.map_err(ServiceError::from)? {
                ExportPart::Rows(rows) => rows,
                ExportPart::Progress(_) => continue,
            };
            for row in rows {
                if loci_storage::store::is_record_row(&row.0, &row.1) {
                    records += 1;
                }
                if let Some(done) = chunker.push(row) {
                    let sealed = seal_one(done);
                    out.push(self.put(&sealed).await?);
                }
            }
        }
        if let Some(rest) = chunker.finish() {
            let sealed = seal_one(rest);
            out.push(self.put(&sealed).await?);
        }
        Ok((progress, records, out))
    }

    /// A namespace's settings and key from a backup; `None` once its key was erased.
    pub(super) fn open_entry(
        &self,
        m: &Manifest,
        ns_id: u64,
        part: &NamespacePart,
    ) -> ServiceResult<Option<(NamespaceEntry, u32, SecretKey)>> {
        let s = self.state()?;
        let Some((version, dek)) = s.store.namespace_key(&s.store_key, &m.cluster_id, ns_id)? else {
            return Ok(None);
        };
        let sealed = s
            .store
            .chunk(&part.entry.sha256)?
            .ok_or_else(|| chunks::corrupt(format!("the entry chunk of namespace {ns_id} is missing")))?;
        let plain = chunks::open(&chunks::namespace_chunk_key(&dek), &chunks::namespace_aad(ns_id), &sealed)?;
        let entry: NamespaceEntry =
            serde_json::from_slice(&plain).map_err(|e| chunks::corrupt(format!("namespace entry: {e}")))?;
        Ok(Some((entry, version, dek)))
    }
}

/// A backup that is being taken, as the API shows it.
fn pending(id: &str, spec: &CreateSpec) -> BackupInfo {
    BackupInfo {
        backup_id: id.to_string(),
        name: spec.name.clone(),
        backup_type: if spec.incremental { "incremental" } else { "full" }.into(),
        status: "inprogress".into(),
        vector_count: 0,
        size_bytes: 0,
        created_at: now_secs(),
        completed_at: None,
        duration_seconds: None,
        encrypted: true,
        compression: spec.compression.as_str().into(),
        namespaces: Vec::new(),
        erased_namespaces: 0,
        namespaces_done: 0,
        namespaces_total: 0,
        parent: None,
        storage_path: None,
        error: None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
