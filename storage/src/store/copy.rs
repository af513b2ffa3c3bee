//! Full namespace copies: exporting a namespace's sealed rows (paged, or under one snapshot) and
//! replacing a replica's copy with them.

use rocksdb::{PrefixRange, ReadOptions, WriteBatch};

use super::Store;
use super::keyspace::*;
use crate::error::{Result, StorageError};
use crate::model::*;

impl Store {
    /// Every stored row of a namespace (sealed as on disk) after `after`, at most `limit`:
    /// the unit of a full namespace copy to a new replica.
    pub fn export_rows(
        &self,
        ns_id: u64,
        after: Option<(String, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let start_cf = after.as_ref().map(|(cf, _)| cf.as_str());
        let mut started = start_cf.is_none();
        for cf in [CF_MEM, CF_VEC, CF_IDX] {
            if !started {
                if Some(cf) != start_cf {
                    continue;
                }
                started = true;
            }
            let mut ro = ReadOptions::default();
            ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
            let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
            match after.as_ref().filter(|(c, _)| c == cf) {
                Some((_, k)) => {
                    it.seek(k);
                    if it.key() == Some(k.as_slice()) {
                        it.next();
                    }
                }
                None => it.seek(prefix(ns_id)),
            }
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
                out.push((cf.to_string(), k.to_vec(), v.to_vec()));
                if out.len() >= limit {
                    return Ok(out);
                }
                it.next();
            }
            it.status()?;
        }
        Ok(out)
    }

    /// A consistent point-in-time copy of a namespace: its progress and every row, read under
    /// one RocksDB snapshot (writes may continue; the copy then catches up from the log). Holds
    /// the whole namespace in memory: for tests and small namespaces; a full copy to another
    /// node streams with [`Store::export_namespace_chunked`].
    #[allow(clippy::type_complexity)]
    pub fn export_namespace(&self, ns_id: u64) -> Result<(NsProgress, Vec<(String, Vec<u8>, Vec<u8>)>)> {
        let mut progress = NsProgress::default();
        let mut rows = Vec::new();
        self.export_namespace_chunked(ns_id, usize::MAX, |part| {
            match part {
                ExportPart::Progress(p) => progress = p,
                ExportPart::Rows(r) => rows.extend(r),
            }
            true
        })?;
        Ok((progress, rows))
    }

    /// The same copy, handed to `sink` as it is read: first [`ExportPart::Progress`], then rows
    /// in chunks of about `chunk_bytes` (keys and values), so the sender holds one chunk at a
    /// time however large the namespace is. `sink` answers `false` to stop early. The scan does
    /// not fill the block cache (a copy reads every row once; the cache is for queries).
    pub fn export_namespace_chunked(
        &self,
        ns_id: u64,
        chunk_bytes: usize,
        mut sink: impl FnMut(ExportPart) -> bool,
    ) -> Result<()> {
        let snap = self.db.snapshot();
        let progress = match snap.get_cf(self.cf(CF_NSMETA), prefix(ns_id))? {
            Some(v) => serde_json::from_slice(&v)?,
            None => NsProgress::default(),
        };
        if !sink(ExportPart::Progress(progress)) {
            return Ok(());
        }
        let mut chunk = Vec::new();
        let mut size = 0usize;
        // The log travels too: the copy can then anchor divergence checks and, as a primary
        // later, serve catch-up.
        for cf in [CF_MEM, CF_VEC, CF_IDX, CF_REPL] {
            let mut ro = ReadOptions::default();
            ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
            ro.set_snapshot(&snap);
            ro.fill_cache(false);
            for item in self.db.iterator_cf_opt(self.cf(cf), ro, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                size += k.len() + v.len();
                chunk.push((cf.to_string(), k.to_vec(), v.to_vec()));
                if size >= chunk_bytes {
                    size = 0;
                    if !sink(ExportPart::Rows(std::mem::take(&mut chunk))) {
                        return Ok(());
                    }
                }
            }
        }
        if !chunk.is_empty() {
            sink(ExportPart::Rows(chunk));
        }
        Ok(())
    }

    /// Start receiving full copy `copy_id` of a namespace from a sender that is primary (or
    /// copies for the primary) in `sender_epoch`. The replica's own rows and log stay as they
    /// are until [`Store::import_finish`] installs the complete copy, so a copy that is lost
    /// or interrupted leaves the replica as it was. A sender older than this replica's fence,
    /// or than the epoch of the last entry it applied, is refused (`Fenced`): a deposed primary
    /// must not overwrite what a newer one wrote or fenced. The fence is raised to
    /// `sender_epoch` (so older senders are refused from now on), and any earlier staged copy
    /// is dropped; a copy being installed is not interrupted (`Conflict`: retry).
    /// (Wiping the rows here, as the node once did, is the engine's `Faults::legacy_copy`.)
    pub fn import_begin(&self, ns_id: u64, sender_epoch: u64, copy_id: u64) -> Result<()> {
        let lock = self.copy_lock(ns_id);
        let _copy = lock.lock();
        if self.staged_copy(ns_id)?.is_some_and(|m| m.installing) {
            return Err(StorageError::Conflict("a full copy is being installed; retry".into()));
        }
        self.with_writer(ns_id, || {
            let fence = self.effective_fence(ns_id)?;
            if sender_epoch < fence {
                return Err(StorageError::Fenced(fence));
            }
            let applied_at_begin = self.stored_progress(ns_id)?.applied_seq;
            let meta =
                StagedCopy { copy_id, sender_epoch, applied_at_begin, installing: false, touched_at: now_secs() };
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(self.cf(CF_STAGE), prefix(ns_id), (ns_id + 1).to_be_bytes());
            batch.put_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id), serde_json::to_vec(&meta)?);
            batch.put_cf(self.cf(CF_NSMETA), fence_key(ns_id), sender_epoch.max(fence).to_be_bytes());
            self.write(batch)?;
            if let Some(ns) = self.loaded.read().get(&ns_id) {
                let mut st = ns.state.write();
                st.epoch = st.epoch.max(sender_epoch);
            }
            Ok(())
        })
    }

    /// Rows of copy `copy_id` in progress, staged (not yet visible).
    pub fn import_rows(&self, copy_id: u64, rows: &[(String, Vec<u8>, Vec<u8>)]) -> Result<()> {
        let Some(ns_id) = rows.first().and_then(|(_, k, _)| k.get(..8)).and_then(|p| <[u8; 8]>::try_from(p).ok())
        else {
            return Ok(());
        };
        let ns_id = u64::from_be_bytes(ns_id);
        let lock = self.copy_lock(ns_id);
        let _copy = lock.lock();
        let Some(meta) = self.staged_copy(ns_id)?.filter(|m| !m.installing && m.copy_id == copy_id) else {
            return Err(StorageError::Invalid("rows of a copy that did not begin (or was replaced)".into()));
        };
        let mut batch = WriteBatch::default();
        let touched = StagedCopy { touched_at: now_secs(), ..meta };
        batch.put_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id), serde_json::to_vec(&touched)?);
        for (cf, k, v) in rows {
            let Some(tag) = COPY_CFS.iter().find(|(name, _)| name == cf).map(|(_, t)| *t) else {
                return Err(StorageError::Invalid(format!("unexpected column family {cf}")));
            };
            if k.get(..8) != Some(prefix(ns_id).as_slice()) {
                return Err(StorageError::Invalid("a copy's rows belong to one namespace".into()));
            }
            let Some(staged) = stage_key(tag, k) else {
                return Err(StorageError::Invalid("a copied row's key has no namespace prefix".into()));
            };
            batch.put_cf(self.cf(CF_STAGE), staged, v);
        }
        self.write(batch)
    }

    /// Copy `copy_id` is complete at `progress`: replace the replica's rows and log with it.
    /// Refused (and the staged copy dropped) when the replica was fenced past the sender's
    /// epoch or applied entries since the copy began: installing it then would roll back
    /// writes the replica acknowledged. Both are checked under the namespace's writer lock,
    /// held until the old rows are gone, so no entry or fence slips in between. The fence
    /// survives the install. Crash-safe: an install under way when the process stopped is
    /// completed by [`Store::open`].
    pub fn import_finish(&self, ns_id: u64, copy_id: u64, progress: NsProgress) -> Result<()> {
        let lock = self.copy_lock(ns_id);
        let _copy = lock.lock();
        let Some(meta) = self.staged_copy(ns_id)?.filter(|m| !m.installing && m.copy_id == copy_id) else {
            return Err(StorageError::Invalid("finishing a copy that did not begin (or was replaced)".into()));
        };
        {
            // Nothing loads, reads or writes the namespace while its rows are replaced.
            let _guard = self.load_lock.lock();
            let loaded = self.loaded.read().get(&ns_id).cloned();
            let _writer = loaded.as_ref().map(|ns| ns.writer.lock());
            let fence = self.effective_fence(ns_id)?;
            let applied = self.stored_progress(ns_id)?.applied_seq;
            if fence > meta.sender_epoch || applied != meta.applied_at_begin {
                self.drop_staged_copy(ns_id)?;
                return Err(if fence > meta.sender_epoch {
                    StorageError::Fenced(fence)
                } else {
                    StorageError::Invalid("the replica applied entries while the copy was in flight".into())
                });
            }
            if let Some(ns) = &loaded {
                ns.dropped.store(true, std::sync::atomic::Ordering::Release);
            }
            self.loaded.write().remove(&ns_id);
            self.dropped.write().remove(&ns_id);
            // One batch: the old rows go, the copy's progress and "installing" are recorded
            // (so a restart finishes moving the staged rows in), the fence stays.
            let (start, end) = (prefix(ns_id), (ns_id + 1).to_be_bytes());
            let mut batch = WriteBatch::default();
            for (cf, _) in COPY_CFS {
                batch.delete_range_cf(self.cf(cf), start, end);
            }
            batch.delete_range_cf(self.cf(CF_NSMETA), start, end);
            if fence > 0 {
                batch.put_cf(self.cf(CF_NSMETA), fence_key(ns_id), fence.to_be_bytes());
            }
            batch.put_cf(self.cf(CF_NSMETA), prefix(ns_id), serde_json::to_vec(&progress)?);
            let installing = StagedCopy { installing: true, ..meta };
            batch.put_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id), serde_json::to_vec(&installing)?);
            self.write(batch)?;
            self.move_staged_rows(ns_id)?;
            // Unload so the next access rebuilds indexes from the copied rows.
            self.loaded.write().remove(&ns_id);
        }
        // Outside the load lock: the text index is rebuilt by the version check on next load.
        self.text.drop_namespace(ns_id)?;
        Ok(())
    }

    /// After a restart: complete the installs that were under way and drop the copies that
    /// were still arriving (the replica's own rows were never touched by those).
    pub(super) fn recover_staged_copies(&self) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_STAGE));
        it.seek_to_first();
        let mut namespaces = Vec::new();
        while it.valid() {
            let Some(id) = it.key().and_then(|k| k.get(..8)).and_then(|p| <[u8; 8]>::try_from(p).ok()) else {
                break;
            };
            let id = u64::from_be_bytes(id);
            namespaces.push(id);
            it.seek((id + 1).to_be_bytes());
        }
        it.status()?;
        drop(it);
        for id in namespaces {
            match self.staged_copy(id)? {
                Some(m) if m.installing => {
                    self.move_staged_rows(id)?;
                    self.text.drop_namespace(id)?;
                }
                _ => self.drop_staged_copy(id)?,
            }
        }
        Ok(())
    }

    /// Drop the staged copies whose last step arrived more than `idle` ago (the sender died
    /// or gave up; a new copy would begin afresh anyway), never one being installed. Returns
    /// how many were dropped. The sweep of former replicas calls it.
    pub fn drop_abandoned_copies(&self, idle: std::time::Duration) -> Result<usize> {
        self.drop_copies_idle_at(idle, now_secs())
    }

    /// [`Store::drop_abandoned_copies`] as of `now` (unix seconds).
    pub(super) fn drop_copies_idle_at(&self, idle: std::time::Duration, now: u64) -> Result<usize> {
        let mut ids = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_STAGE));
        it.seek_to_first();
        while it.valid() {
            let Some(id) = it.key().and_then(|k| k.get(..8)).and_then(|p| <[u8; 8]>::try_from(p).ok()) else {
                break;
            };
            let id = u64::from_be_bytes(id);
            ids.push(id);
            it.seek((id + 1).to_be_bytes());
        }
        it.status()?;
        drop(it);
        let mut dropped = 0;
        for id in ids {
            let lock = self.copy_lock(id);
            let _copy = lock.lock();
            let stale = match self.staged_copy(id)? {
                Some(m) => !m.installing && now.saturating_sub(m.touched_at) > idle.as_secs(),
                None => true,
            };
            if stale {
                self.drop_staged_copy(id)?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Copy a namespace's staged rows into place in one pass (bounded batches), then drop the
    /// staged rows and forget the copy in one batch. Idempotent: a crash in between repeats
    /// the puts at the next start.
    fn move_staged_rows(&self, ns_id: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut bytes = 0usize;
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
        for item in self.db.iterator_cf_opt(self.cf(CF_STAGE), ro, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let Some((cf, key)) = unstage_key(&k) else {
                return Err(StorageError::Invalid("a staged row without its column family".into()));
            };
            batch.put_cf(self.cf(cf), key, &v);
            bytes += k.len() + v.len();
            if bytes >= MOVE_BATCH_BYTES {
                self.write(std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        batch.delete_range_cf(self.cf(CF_STAGE), prefix(ns_id), (ns_id + 1).to_be_bytes());
        batch.delete_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id));
        self.write(batch)
    }

    fn copy_lock(&self, ns_id: u64) -> std::sync::Arc<parking_lot::Mutex<()>> {
        self.copy_locks.lock().entry(ns_id).or_default().clone()
    }

    /// Run `f` holding the namespace's writer lock when it is loaded (its fence and progress
    /// are then stable), else the load lock (it cannot be loaded meanwhile).
    fn with_writer<T>(&self, ns_id: u64, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _guard = self.load_lock.lock();
        let loaded = self.loaded.read().get(&ns_id).cloned();
        let _writer = loaded.as_ref().map(|ns| ns.writer.lock());
        f()
    }

    /// The epoch a sender must at least have: the stored fence, the epoch of the last entry
    /// this replica applied, and the fence of its loaded state.
    fn effective_fence(&self, ns_id: u64) -> Result<u64> {
        let loaded = self.loaded.read().get(&ns_id).map(|ns| ns.state.read().epoch).unwrap_or(0);
        Ok(self.stored_fence(ns_id)?.max(self.stored_progress(ns_id)?.epoch).max(loaded))
    }

    fn drop_staged_copy(&self, ns_id: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_STAGE), prefix(ns_id), (ns_id + 1).to_be_bytes());
        batch.delete_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id));
        self.write(batch)
    }

    fn staged_copy(&self, ns_id: u64) -> Result<Option<StagedCopy>> {
        match self.db.get_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// The fence as stored (what survives a restart).
    fn stored_fence(&self, ns_id: u64) -> Result<u64> {
        Ok(match self.db.get_cf(self.cf(CF_NSMETA), fence_key(ns_id))? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice()).map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        })
    }

    /// The progress a namespace's rows on this node are at, as persisted (without loading
    /// it; an erased or never written namespace is at 0).
    pub fn stored_progress(&self, ns_id: u64) -> Result<NsProgress> {
        Ok(match self.db.get_cf(self.cf(CF_NSMETA), prefix(ns_id))? {
            Some(v) => serde_json::from_slice(&v)?,
            None => NsProgress::default(),
        })
    }
}

/// How many bytes of staged rows one batch of an install moves.
const MOVE_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A full copy being received (nsmeta `stage_meta_key`).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct StagedCopy {
    /// Chosen by the sender: rows and the finish of another copy are refused.
    copy_id: u64,
    /// The epoch the sender sent under (refused below the fence; aborted once fenced past it).
    sender_epoch: u64,
    /// The replica's applied sequence when the copy began (aborted if it moved).
    applied_at_begin: u64,
    /// The replica's rows were replaced; the staged ones are being moved in.
    installing: bool,
    /// When the last step of the copy arrived (unix seconds): a copy whose sender went away is
    /// dropped after a while ([`Store::drop_abandoned_copies`]).
    #[serde(default)]
    touched_at: u64,
}

/// A piece of [`Store::export_namespace_chunked`]: the progress the copy carries, then rows
/// `(column family, key, value)`.
#[derive(Debug)]
pub enum ExportPart {
    Progress(NsProgress),
    Rows(Vec<(String, Vec<u8>, Vec<u8>)>),
}
