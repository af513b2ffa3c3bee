//! Housekeeping: access-statistics write-behind, expiry, namespace erasure, orphan discovery,
//! text-index commits and shutdown.

use std::sync::Arc;

use rocksdb::WriteBatch;

use super::keyspace::*;
use super::{Namespace, Store};
use crate::error::Result;
use crate::model::*;

impl Store {
    /// Remove memories locally (expiry housekeeping; every replica expires on its own).
    pub(super) fn delete_ids(&self, ns: &Namespace, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ctx = &ns.ctx;
        let mut batch = WriteBatch::default();
        {
            let st = ns.state.read();
            for id in ids {
                self.delete_memory(&mut batch, ctx.id, &st, id);
            }
        }
        self.write(batch)?;
        {
            let mut st = ns.state.write();
            for id in ids {
                super::repl::forget_memory(&mut st, id);
            }
        }
        for id in ids {
            self.text.delete(&ctx.key, id);
        }
        self.text.commit()?;
        Ok(())
    }
    /// Persist changed access statistics (write-behind: a crash may lose the latest bumps).
    pub fn flush_access_stats(&self) -> Result<()> {
        let namespaces: Vec<Arc<Namespace>> = self.loaded.read().values().cloned().collect();
        for ns in namespaces {
            let mut batch = WriteBatch::default();
            let mut n = 0;
            {
                let mut st = ns.state.write();
                let dirty: Vec<String> = st.access_dirty.drain().collect();
                for id in dirty {
                    if let Some(m) = st.metas.get(&id) {
                        let v =
                            postcard::to_allocvec(&AccessStats { count: m.access_count, last: m.last_accessed_at })?;
                        batch.put_cf(self.cf(CF_IDX), row_key(ns.ctx.id, IDX_ACCESS, &id), v);
                        n += 1;
                    }
                }
            }
            if n > 0 {
                self.write(batch)?;
            }
        }
        Ok(())
    }

    /// Delete expired memories of every loaded namespace; returns how many went.
    pub fn sweep_expired(&self) -> Result<u64> {
        let now = now_secs();
        let namespaces: Vec<Arc<Namespace>> = self.loaded.read().values().cloned().collect();
        let mut total = 0;
        for ns in namespaces {
            let _w = ns.write_lock()?;
            let expired: Vec<String> =
                ns.state.read().metas.iter().filter(|(_, m)| !m.live(now)).map(|(id, _)| id.clone()).collect();
            total += expired.len() as u64;
            self.delete_ids(&ns, &expired)?;
        }
        Ok(total)
    }

    /// Erase every row and index entry of a namespace, then compact so the bytes leave the disk.
    pub fn drop_namespace(&self, ns_id: u64) -> Result<u64> {
        let removed = {
            let _guard = self.load_lock.lock();
            self.dropped.write().insert(ns_id);
            self.loaded.write().remove(&ns_id)
        };
        // Wait for in-flight writers, and make any later one fail instead of writing.
        let _w = removed.as_ref().map(|ns| {
            let g = ns.writer.lock();
            ns.dropped.store(true, std::sync::atomic::Ordering::Release);
            g
        });
        let mut count = 0u64;
        let p = prefix(ns_id);
        for item in self.scan_prefix(CF_MEM, &p) {
            let (k, _) = item?;
            if k.get(8) == Some(&KIND_MEMORY) {
                count += 1;
            }
        }
        let start = p.to_vec();
        let end = (ns_id + 1).to_be_bytes().to_vec();
        let mut batch = WriteBatch::default();
        for cf in ALL_CFS {
            batch.delete_range_cf(self.cf(cf), &start, &end);
        }
        self.write(batch)?;
        for cf in ALL_CFS {
            self.db.flush_cf(self.cf(cf))?;
            self.db.compact_range_cf(self.cf(cf), Some(&start), Some(&end));
        }
        self.text.drop_namespace(ns_id)?;
        Ok(count)
    }

    /// Namespace ids that have rows on disk (to find orphans of an interrupted erasure).
    pub fn stored_namespace_ids(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for cf in ALL_CFS {
            let mut it = self.db.raw_iterator_cf(self.cf(cf));
            it.seek_to_first();
            while it.valid() {
                let Some(k) = it.key() else { break };
                if k.len() < 8 {
                    it.next();
                    continue;
                }
                let id = u64::from_be_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
                if !out.contains(&id) {
                    out.push(id);
                }
                match id.checked_add(1) {
                    Some(next) => it.seek(next.to_be_bytes()),
                    None => break,
                }
            }
            it.status()?;
        }
        Ok(out)
    }

    /// Commit pending text-index changes (called periodically and at shutdown).
    pub fn commit_text(&self) -> Result<()> {
        self.text.commit()
    }

    /// Everything that must reach disk before a clean exit.
    pub fn shutdown(&self) -> Result<()> {
        self.flush_access_stats()?;
        self.text.commit()?;
        self.db.flush_wal(true)?;
        Ok(())
    }
}
