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
    /// one RocksDB snapshot (writes may continue; the copy then catches up from the log).
    #[allow(clippy::type_complexity)]
    pub fn export_namespace(&self, ns_id: u64) -> Result<(NsProgress, Vec<(String, Vec<u8>, Vec<u8>)>)> {
        let snap = self.db.snapshot();
        let progress = match snap.get_cf(self.cf(CF_NSMETA), prefix(ns_id))? {
            Some(v) => serde_json::from_slice(&v)?,
            None => NsProgress::default(),
        };
        let mut rows = Vec::new();
        // The log travels too: the copy can then anchor divergence checks and, as a primary
        // later, serve catch-up.
        for cf in [CF_MEM, CF_VEC, CF_IDX, CF_REPL] {
            let mut ro = ReadOptions::default();
            ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
            ro.set_snapshot(&snap);
            for item in self.db.iterator_cf_opt(self.cf(cf), ro, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                rows.push((cf.to_string(), k.to_vec(), v.to_vec()));
            }
        }
        Ok((progress, rows))
    }

    /// Start receiving a full copy of a namespace from a sender that is primary (or copies
    /// for the primary) in `sender_epoch`. The replica's own rows, log and fence stay as they
    /// are until [`Store::import_finish`] installs the complete copy, so a copy that is lost
    /// or interrupted leaves the replica as it was. A sender older than this replica's fence
    /// is refused (`Fenced`): a deposed primary must not overwrite what a newer one fenced.
    /// (Wiping the rows here, as the node once did, is the engine's `Faults::legacy_copy`.)
    pub fn import_begin(&self, ns_id: u64, sender_epoch: u64) -> Result<()> {
        let fence = self.stored_fence(ns_id)?;
        if sender_epoch < fence {
            return Err(StorageError::Fenced(fence));
        }
        let applied_at_begin = self.stored_progress(ns_id)?.applied_seq;
        let meta = StagedCopy { sender_epoch, applied_at_begin, installing: false };
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_STAGE), prefix(ns_id), (ns_id + 1).to_be_bytes());
        batch.put_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id), serde_json::to_vec(&meta)?);
        self.write(batch)
    }

    /// Rows of a copy in progress, staged (not yet visible).
    pub fn import_rows(&self, rows: &[(String, Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut checked: Option<[u8; 8]> = None;
        for (cf, k, v) in rows {
            let Some(tag) = COPY_CFS.iter().find(|(name, _)| name == cf).map(|(_, t)| *t) else {
                return Err(StorageError::Invalid(format!("unexpected column family {cf}")));
            };
            let (Some(ns), Some(staged)) = (k.get(..8), stage_key(tag, k)) else {
                return Err(StorageError::Invalid("a copied row's key has no namespace prefix".into()));
            };
            if checked.as_ref().map(|c| c.as_slice()) != Some(ns) {
                let mut id = [0u8; 8];
                id.copy_from_slice(ns);
                if self.staged_copy(u64::from_be_bytes(id))?.is_none_or(|m| m.installing) {
                    return Err(StorageError::Invalid("rows of a copy that did not begin".into()));
                }
                checked = Some(id);
            }
            batch.put_cf(self.cf(CF_STAGE), staged, v);
        }
        self.write(batch)
    }

    /// The copy is complete at `progress`: replace the replica's rows and log with it. Refused
    /// (and the staged copy dropped) when the replica was fenced past the sender's epoch or
    /// applied entries since the copy began: installing it then would roll back writes the
    /// replica acknowledged. The fence survives the install. Crash-safe: an install that was
    /// under way when the process stopped is completed by [`Store::open`].
    pub fn import_finish(&self, ns_id: u64, progress: NsProgress) -> Result<()> {
        let Some(meta) = self.staged_copy(ns_id)?.filter(|m| !m.installing) else {
            return Err(StorageError::Invalid("finishing a copy that did not begin".into()));
        };
        let fence = self.stored_fence(ns_id)?;
        let applied = self.stored_progress(ns_id)?.applied_seq;
        if fence > meta.sender_epoch || applied != meta.applied_at_begin {
            self.drop_staged_copy(ns_id)?;
            return Err(if fence > meta.sender_epoch {
                StorageError::Fenced(fence)
            } else {
                StorageError::Invalid("the replica applied entries while the copy was in flight".into())
            });
        }
        {
            // Nothing reads or writes the namespace while its rows are replaced.
            let _guard = self.load_lock.lock();
            if let Some(ns) = self.loaded.write().remove(&ns_id) {
                let _w = ns.writer.lock();
                ns.dropped.store(true, std::sync::atomic::Ordering::Release);
            }
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
            self.text.drop_namespace(ns_id)?;
            self.move_staged_rows(ns_id)?;
            // Unload so the next access rebuilds indexes from the copied rows.
            self.loaded.write().remove(&ns_id);
        }
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
                    self.text.drop_namespace(id)?;
                    self.move_staged_rows(id)?;
                }
                _ => self.drop_staged_copy(id)?,
            }
        }
        Ok(())
    }

    /// Move a namespace's staged rows into place (in bounded batches), then forget the copy.
    fn move_staged_rows(&self, ns_id: u64) -> Result<()> {
        loop {
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
                batch.delete_cf(self.cf(CF_STAGE), &k);
                bytes += k.len() + v.len();
                if bytes >= MOVE_BATCH_BYTES {
                    break;
                }
            }
            if batch.is_empty() {
                break;
            }
            self.write(batch)?;
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_NSMETA), stage_meta_key(ns_id));
        self.write(batch)
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

    fn stored_progress(&self, ns_id: u64) -> Result<NsProgress> {
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
    /// The epoch the sender sent under (refused below the fence; aborted once fenced past it).
    sender_epoch: u64,
    /// The replica's applied sequence when the copy began (aborted if it moved).
    applied_at_begin: u64,
    /// The replica's rows were replaced; the staged ones are being moved in.
    installing: bool,
}
