//! Backups and restore (issue 17, item 1).
//!
//! A backup is a set of content-addressed chunks and one manifest ([`manifest`]) in a backup
//! store ([`store::DirStore`]): for every namespace, its rows as one consistent snapshot read on
//! its serving primary while writes go on ([`crate::cluster::backup`]), cut, compressed and
//! sealed under a key derived from the namespace's own data key ([`chunks`]); and the
//! catalogue's keys, quotas and token denials, sealed under the store's key (derived from the
//! master secret and the store's salt). The store keeps each namespace's data key sealed under
//! the store key in one key file; erasing a namespace removes that file, so every backup of it
//! becomes unreadable at once without rewriting any backup.
//!
//! An incremental backup re-reads only namespaces whose log moved since the last backup (the
//! others keep their chunks) and writes only chunks the store does not hold. Restore creates
//! each namespace (same id, same data key re-wrapped under the target cluster's KEK, a
//! placement of the target cluster's nodes) and installs its rows on every replica of it, so a
//! backup restores into a cluster of any size. Jobs run in the background on the node that took
//! them; their status is kept in the store too (`jobs/`), so every node on it answers
//! `GET /v1/admin/backups/{id}` and `…/restore/{id}`.

mod archive;
pub mod backend;
pub mod chunks;
mod create;
pub mod manifest;
mod restore;
pub mod schedule;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use loci_raft::catalogue::Scope;
use loci_storage::crypto::{MasterSecret, SecretKey};
use loci_storage::model::now_secs;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};
use manifest::Manifest;
use store::BackupStore;

/// Jobs kept per node once finished.
const KEEP_FINISHED: usize = 100;

/// A node's backup store and jobs.
pub struct BackupState {
    pub store: BackupStore,
    secret: MasterSecret,
    store_key: SecretKey,
    backups: Mutex<BTreeMap<String, BackupInfo>>,
    restores: Mutex<BTreeMap<String, RestoreInfo>>,
    /// Namespace names by entry chunk digest (entries are immutable and shared by backups).
    names: Mutex<HashMap<String, Option<String>>>,
    /// One backup or retention pass at a time on this node.
    running: tokio::sync::Mutex<()>,
    /// When each job's status was last written to the store.
    saved: Mutex<HashMap<String, std::time::Instant>>,
}

impl BackupState {
    /// Open the store at `dir` with the secret its key derives from (the master secret unless
    /// the operator gave one for backups).
    pub fn open(location: &str, s3: &backend::S3Options, secret: MasterSecret) -> ServiceResult<BackupState> {
        let store = BackupStore::open(location, s3)?;
        let store_key = store.key(&secret)?;
        Ok(BackupState {
            store,
            secret,
            store_key,
            backups: Mutex::new(BTreeMap::new()),
            restores: Mutex::new(BTreeMap::new()),
            names: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(()),
            saved: Mutex::new(HashMap::new()),
        })
    }
}

/// A backup as the API shows it (the SDK's `BackupInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub backup_id: String,
    pub name: String,
    pub backup_type: String,
    /// `inprogress`, `completed` or `failed`.
    pub status: String,
    /// Memories (and sessions) it holds.
    pub vector_count: u64,
    pub size_bytes: u64,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    pub encrypted: bool,
    pub compression: String,
    /// Names of the namespaces it holds that can still be read (an erased one is not named).
    pub namespaces: Vec<String>,
    /// Namespaces it holds whose key was erased since.
    pub erased_namespaces: u64,
    pub namespaces_done: u64,
    pub namespaces_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One namespace's outcome in a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredNamespace {
    pub namespace: String,
    /// `restored`, `skipped` (not asked for, or already present) or `failed`.
    pub status: String,
    pub records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A restore as the API shows it (the SDK's `RestoreBackupResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreInfo {
    pub restore_id: String,
    pub backup_id: String,
    /// `inprogress`, `completed` or `failed`.
    pub status: String,
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    pub progress_percent: u8,
    pub vectors_restored: u64,
    /// Names of the namespaces restored so far.
    pub namespaces: Vec<String>,
    pub details: Vec<RestoredNamespace>,
    /// Keys, quotas and token denials restored (a restore of every namespace only).
    pub keys_restored: u64,
    /// Namespaces in the backup whose key was erased since: not restorable.
    pub erased_namespaces: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    pub name: String,
    pub incremental: bool,
    pub namespaces: Option<Vec<String>>,
    pub compression: chunks::Compression,
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreSpec {
    pub backup_id: String,
    pub namespaces: Option<Vec<String>>,
    pub overwrite: bool,
}

/// What verification of one backup found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub backup_id: String,
    pub ok: bool,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub faults: Vec<String>,
    pub erased_namespaces: u64,
}

fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    loci_storage::crypto::random_bytes(&mut b);
    format!("{prefix}_{}_{}", now_secs(), hex::encode(b))
}

fn no_store() -> ServiceError {
    ServiceError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "BACKUPS_NOT_CONFIGURED",
        "this node has no backup store: start it with --backup-dir (LOCI_BACKUP_DIR)",
    )
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("backup", format!("backup '{id}' not found"))
}

impl Core {
    /// The backup operations, for a principal.
    pub fn backups(self: &Arc<Self>) -> Backups<'_> {
        Backups { core: self }
    }
}

pub struct Backups<'a> {
    core: &'a Arc<Core>,
}

impl Backups<'_> {
    fn state(&self) -> ServiceResult<&Arc<BackupState>> {
        self.core.backup.as_ref().ok_or_else(no_store)
    }

    fn manifest(&self, id: &str) -> ServiceResult<Option<Manifest>> {
        let s = self.state()?;
        s.store.manifest(id)?.map(|b| Manifest::decode(&b)).transpose()
    }

    /// The readable names of a manifest's namespaces and how many were erased.
    fn names_of(&self, m: &Manifest) -> (Vec<String>, u64) {
        let Ok(s) = self.state() else { return (Vec::new(), 0) };
        let (mut names, mut erased) = (Vec::new(), 0);
        for (ns_id, part) in &m.namespaces {
            // Erasure removes the key file: checked every time (a name cached before stays).
            let held =
                ns_id.parse().ok().is_some_and(|id| s.store.has_namespace_key(&m.cluster_id, id).unwrap_or(false));
            if !held {
                erased += 1;
                continue;
            }
            let cached = s.names.lock().get(&part.entry.sha256).cloned();
            let name = match cached {
                Some(n) => n,
                None => {
                    let n =
                        ns_id.parse().ok().and_then(|id| self.open_entry(m, id, part).ok().flatten()).map(|e| e.0.name);
                    s.names.lock().insert(part.entry.sha256.clone(), n.clone());
                    n
                }
            };
            match name {
                Some(n) => names.push(n),
                None => erased += 1,
            }
        }
        names.sort();
        (names, erased)
    }

    fn info_of(&self, m: &Manifest) -> BackupInfo {
        let (namespaces, erased) = self.names_of(m);
        BackupInfo {
            backup_id: m.backup_id.clone(),
            name: m.name.clone(),
            backup_type: match m.kind {
                manifest::Kind::Full => "full".into(),
                manifest::Kind::Incremental => "incremental".into(),
            },
            status: "completed".into(),
            vector_count: m.namespaces.values().map(|p| p.records).sum(),
            size_bytes: m.total_bytes(),
            created_at: m.created_at_ms / 1000,
            completed_at: Some(m.completed_at_ms / 1000),
            duration_seconds: Some(m.completed_at_ms.saturating_sub(m.created_at_ms) / 1000),
            encrypted: true,
            compression: m.compression.as_str().into(),
            namespaces,
            erased_namespaces: erased,
            namespaces_done: m.namespaces.len() as u64,
            namespaces_total: m.namespaces.len() as u64,
            parent: m.parent.clone(),
            storage_path: self.state().ok().map(|s| format!("{}/manifests/{}.json", s.store.location(), m.backup_id)),
            error: None,
        }
    }

    /// Every backup in the store (completed ones) and this node's running and failed ones,
    /// newest first.
    pub fn list(&self, p: &Principal) -> ServiceResult<Vec<BackupInfo>> {
        p.require_global(Scope::Admin)?;
        let s = self.state()?;
        // A completed backup is its manifest (gone once deleted); the jobs add the running and
        // failed ones.
        let mut out: BTreeMap<String, BackupInfo> = s
            .backups
            .lock()
            .iter()
            .filter(|(_, b)| b.status != "completed")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for id in s.store.job_ids("backups")? {
            if !out.contains_key(&id)
                && let Some(b) = s.stored_job::<BackupInfo>("backups", &id).filter(|b| b.status != "completed")
            {
                out.insert(id, b);
            }
        }
        for id in s.store.manifest_ids()? {
            match self.manifest(&id) {
                Ok(Some(m)) => {
                    out.insert(id, self.info_of(&m));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(backup = %id, error = %e.message, "an unreadable manifest in the backup store")
                }
            }
        }
        let mut v: Vec<BackupInfo> = out.into_values().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.backup_id.cmp(&a.backup_id)));
        Ok(v)
    }

    pub fn get(&self, p: &Principal, id: &str) -> ServiceResult<BackupInfo> {
        p.require_global(Scope::Admin)?;
        let s = self.state()?;
        if let Some(m) = self.manifest(id)? {
            return Ok(self.info_of(&m));
        }
        let mine = s.backups.lock().get(id).filter(|b| b.status != "completed").cloned();
        mine.or_else(|| s.stored_job::<BackupInfo>("backups", id).filter(|b| b.status != "completed"))
            .ok_or_else(|| not_found(id))
    }

    /// Delete a backup's manifest, then the chunks no other backup names.
    pub async fn delete(&self, p: &Principal, id: &str) -> ServiceResult<serde_json::Value> {
        p.require_global(Scope::Admin)?;
        let s = self.state()?.clone();
        let running = s.backups.lock().get(id).is_some_and(|b| b.status == "inprogress")
            || s.stored_job::<BackupInfo>("backups", id).is_some_and(|b| b.status == "inprogress");
        if running {
            return Err(ServiceError::conflict(format!("backup '{id}' is still being taken")));
        }
        let existed = self.manifest(id)?.is_some();
        let known = s.backups.lock().remove(id).is_some() | s.store.remove_job("backups", id)?;
        if !existed && !known {
            return Err(not_found(id));
        }
        let _one = s.running.lock().await;
        s.store.remove_manifest(id)?;
        let freed = {
            let s = s.clone();
            tokio::task::spawn_blocking(move || collect_garbage(&s))
                .await
                .map_err(|e| ServiceError::internal(e.to_string()))??
        };
        self.core.audit.event("backup_deleted", None, serde_json::json!({"backup_id": id, "chunks_removed": freed}));
        Ok(serde_json::json!({"backup_id": id, "deleted": true, "chunks_removed": freed}))
    }

    /// Re-read every chunk of a backup and check its size and digest.
    pub async fn verify(&self, p: &Principal, id: &str) -> ServiceResult<Verification> {
        p.require_global(Scope::Admin)?;
        let s = self.state()?.clone();
        let m = self.manifest(id)?.ok_or_else(|| not_found(id))?;
        let (_, erased) = self.names_of(&m);
        let report = {
            let m = m.clone();
            tokio::task::spawn_blocking(move || {
                manifest::verify(&m, |path| {
                    path.strip_prefix("chunks/").and_then(|sha| s.store.chunk(sha).ok().flatten())
                })
            })
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
        };
        Ok(Verification {
            backup_id: id.to_string(),
            ok: report.ok(),
            chunks_checked: report.chunks_checked,
            bytes_checked: report.bytes_checked,
            faults: report.faults.iter().map(|f| format!("{f:?}")).collect(),
            erased_namespaces: erased,
        })
    }

    pub fn restore_status(&self, p: &Principal, id: &str) -> ServiceResult<RestoreInfo> {
        p.require_global(Scope::SuperAdmin)?;
        let s = self.state()?;
        let mine = s.restores.lock().get(id).cloned();
        mine.or_else(|| s.stored_job("restores", id))
            .ok_or_else(|| ServiceError::not_found("restore", format!("restore '{id}' not found")))
    }

    /// The schedule kept in the store.
    pub fn schedule(&self, p: &Principal) -> ServiceResult<schedule::Schedule> {
        p.require_global(Scope::Admin)?;
        self.read_schedule()
    }

    fn read_schedule(&self) -> ServiceResult<schedule::Schedule> {
        let s = self.state()?;
        match s.store.file(&schedule_file(self.core))? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| ServiceError::internal(format!("schedule.json: {e}"))),
            None => Ok(schedule::Schedule::default()),
        }
    }

    fn write_schedule(&self, sch: &schedule::Schedule) -> ServiceResult<()> {
        self.state()?.store.put_file(&schedule_file(self.core), &serde_json::to_vec_pretty(sch).unwrap_or_default())
    }

    /// Change the schedule: the fields given replace the stored ones.
    pub fn set_schedule(
        &self,
        p: &Principal,
        changes: serde_json::Map<String, serde_json::Value>,
    ) -> ServiceResult<schedule::Schedule> {
        p.require_global(Scope::Admin)?;
        let current = self.read_schedule()?;
        let mut v = serde_json::to_value(&current).map_err(|e| ServiceError::internal(e.to_string()))?;
        const FIELDS: [&str; 8] =
            ["enabled", "backup_type", "cron", "retention_days", "max_backups", "encrypt", "namespaces", "compression"];
        for (k, val) in changes {
            if !FIELDS.contains(&k.as_str()) {
                return Err(ServiceError::unprocessable(format!(
                    "unknown schedule field '{k}' (known: {})",
                    FIELDS.join(", ")
                )));
            }
            v[k] = val;
        }
        let mut next: schedule::Schedule =
            serde_json::from_value(v).map_err(|e| ServiceError::unprocessable(format!("schedule: {e}")))?;
        next.check()?;
        next.next_backup_at = next.next_due(next.last_backup_at, now_secs());
        self.write_schedule(&next)?;
        self.core.audit.event("backup_schedule", None, serde_json::json!({"enabled": next.enabled, "cron": next.cron}));
        Ok(next)
    }

    /// One pass of the scheduler (called every minute on every node; only the catalogue's
    /// leader acts): take the backup that is due, then apply retention.
    pub async fn tick(&self) -> ServiceResult<Option<String>> {
        if self.core.backup.is_none() || !self.core.catalogue.is_leader_now() {
            return Ok(None);
        }
        let mut sch = self.read_schedule()?;
        let now = now_secs();
        let Some(due) = sch.next_due(sch.last_backup_at, now) else { return Ok(None) };
        if due > now {
            return Ok(None);
        }
        let spec = CreateSpec {
            name: format!("scheduled-{now}"),
            incremental: sch.backup_type == "incremental",
            namespaces: (!sch.namespaces.is_empty()).then(|| sch.namespaces.clone()),
            compression: sch.compression.as_deref().and_then(chunks::Compression::parse).unwrap_or_default(),
        };
        let id = new_id("bk");
        self.run_backup(id.clone(), spec).await;
        sch.last_backup_at = Some(now);
        sch.next_backup_at = sch.next_due(Some(now), now);
        self.write_schedule(&sch)?;
        self.apply_retention(sch.retention_days, sch.max_backups).await?;
        Ok(Some(id))
    }

    /// Remove the backups retention no longer keeps, then their chunks.
    pub async fn apply_retention(&self, retention_days: u32, max_backups: u32) -> ServiceResult<Vec<String>> {
        let s = self.state()?.clone();
        let mut all = Vec::new();
        let cluster_id = cluster_id_of(self.core);
        for id in s.store.manifest_ids()? {
            if let Ok(Some(m)) = self.manifest(&id)
                && m.cluster_id == cluster_id
            {
                all.push((id, m.created_at_ms / 1000));
            }
        }
        let victims = schedule::retention_victims(&all, retention_days, max_backups, now_secs());
        if victims.is_empty() {
            return Ok(victims);
        }
        let _one = s.running.lock().await;
        for id in &victims {
            s.store.remove_manifest(id)?;
        }
        let s2 = s.clone();
        let freed = tokio::task::spawn_blocking(move || collect_garbage(&s2))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))??;
        self.core.audit.event(
            "backup_retention",
            None,
            serde_json::json!({"removed": victims, "chunks_removed": freed}),
        );
        Ok(victims)
    }
}

/// Chunks younger than this are never collected: a backup being taken may count on one it
/// found already stored (it refreshes the chunk's time when it does).
const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Remove the chunks no manifest names. Returns how many.
fn collect_garbage(s: &BackupState) -> ServiceResult<u64> {
    let mut live = std::collections::BTreeSet::new();
    for id in s.store.manifest_ids()? {
        let Some(b) = s.store.manifest(&id)? else { continue };
        // A manifest that does not parse keeps every chunk (it may name any of them).
        let Ok(m) = Manifest::decode(&b) else { return Ok(0) };
        live.extend(m.chunks().into_iter().map(|c| c.sha256.clone()));
    }
    let mut freed = 0;
    for sha in s.store.chunk_names()? {
        if live.contains(&sha) {
            continue;
        }
        let young = s.store.chunk_modified(&sha)?.and_then(|t| t.elapsed().ok()).is_none_or(|age| age < GC_GRACE);
        if !young && s.store.remove_chunk(&sha)? {
            freed += 1;
        }
    }
    Ok(freed)
}

/// How often a running job's status is written to the store at most (a final one at once).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl BackupState {
    /// Write a job's status to the store (`kind`: `backups` or `restores`) when it is final or
    /// was not written for [`SAVE_EVERY`]: any node on the store then answers for it.
    fn save_job<T: Serialize>(&self, kind: &str, id: &str, job: &T, last: bool) {
        let now = std::time::Instant::now();
        {
            let mut saved = self.saved.lock();
            if !last && saved.get(id).is_some_and(|t| now.duration_since(*t) < SAVE_EVERY) {
                return;
            }
            if last {
                saved.remove(id);
            } else {
                saved.insert(id.to_string(), now);
            }
        }
        let body = serde_json::to_vec(job).unwrap_or_default();
        if let Err(e) = self.store.put_job(kind, id, &body) {
            tracing::warn!(job = %id, error = %e.message, "could not write a job's status to the backup store");
        }
    }

    /// A job's status as some node last wrote it.
    fn stored_job<T: serde::de::DeserializeOwned>(&self, kind: &str, id: &str) -> Option<T> {
        self.store.job(kind, id).ok().flatten().and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// The namespace-erasure hook: the store forgets the namespace's key.
pub fn forget_namespace(state: &BackupState, cluster_id: &str, ns_id: u64) -> bool {
    match state.store.remove_namespace_key(cluster_id, ns_id) {
        Ok(removed) => removed,
        Err(e) => {
            tracing::error!(ns_id, error = %e.message, "could not erase a namespace's key from the backup store");
            false
        }
    }
}

/// The cluster id a catalogue names (or the one used before it had one).
pub(crate) fn cluster_id_of(core: &Core) -> String {
    core.catalogue.view.read().cluster_id.clone().unwrap_or_else(|| "cluster".into())
}

/// Each cluster on a store has its own schedule (clusters may share a store to restore from each
/// other's backups).
fn schedule_file(core: &Core) -> String {
    format!("schedules/{}.json", cluster_id_of(core))
}

/// `KEEP_FINISHED` applied to a job map.
fn trim<T>(jobs: &mut BTreeMap<String, T>, running: impl Fn(&T) -> bool) {
    while jobs.len() > KEEP_FINISHED {
        let Some(oldest) = jobs.iter().find(|(_, j)| !running(j)).map(|(k, _)| k.clone()) else { break };
        jobs.remove(&oldest);
    }
}
