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

    /// Replace this node's copy of a namespace with exported rows (a full copy from the
    /// primary), marking it as applied up to `progress`. The namespace reloads on next use.
    pub fn import_begin(&self, ns_id: u64) -> Result<()> {
        {
            let _guard = self.load_lock.lock();
            if let Some(ns) = self.loaded.write().remove(&ns_id) {
                let _w = ns.writer.lock();
                ns.dropped.store(true, std::sync::atomic::Ordering::Release);
            }
            self.dropped.write().remove(&ns_id);
        }
        let start = prefix(ns_id).to_vec();
        let end = (ns_id + 1).to_be_bytes().to_vec();
        let mut batch = WriteBatch::default();
        for cf in ALL_CFS {
            batch.delete_range_cf(self.cf(cf), &start, &end);
        }
        self.write(batch)?;
        self.text.drop_namespace(ns_id)?;
        Ok(())
    }

    pub fn import_rows(&self, rows: &[(String, Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (cf, k, v) in rows {
            if !matches!(cf.as_str(), CF_MEM | CF_VEC | CF_IDX | CF_REPL) {
                return Err(StorageError::Invalid(format!("unexpected column family {cf}")));
            }
            batch.put_cf(self.cf(cf), k, v);
        }
        self.write(batch)
    }

    pub fn import_finish(&self, ns_id: u64, progress: NsProgress) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_NSMETA), prefix(ns_id), serde_json::to_vec(&progress)?);
        self.write(batch)?;
        // Unload so the next access rebuilds indexes from the copied rows.
        let _guard = self.load_lock.lock();
        self.loaded.write().remove(&ns_id);
        Ok(())
    }
}
