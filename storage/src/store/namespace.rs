//! Namespace loading and promotion: building a namespace's in-memory state from its encrypted
//! rows, reconciling the text index, switching embedder generations, and the row helpers
//! (read, put, delete) the other concerns share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::WriteBatch;

use super::keyspace::*;
use super::rank::Meta;
use super::{Namespace, NsContext, NsState, Store};
use crate::crypto::RecordKind;
use crate::error::{Result, StorageError};
use crate::model::*;
use crate::vector::VectorIndex;

impl Store {
    /// The namespace's in-memory state, loading it from disk on first use.
    pub(super) fn namespace(&self, ctx: &NsContext) -> Result<Arc<Namespace>> {
        if let Some(ns) = self.loaded.read().get(&ctx.id) {
            if ns.state.read().generation >= ctx.generation {
                return Ok(ns.clone());
            }
        }
        let _guard = self.load_lock.lock();
        if let Some(ns) = self.loaded.read().get(&ctx.id) {
            if ns.state.read().generation >= ctx.generation {
                return Ok(ns.clone());
            }
        }
        if self.dropped.read().contains(&ctx.id) {
            return Err(StorageError::Dropped);
        }
        let existing = self.loaded.read().get(&ctx.id).cloned();
        let (ns, reextract) = match existing {
            Some(ns) => (ns, Vec::new()),
            None => {
                let (ns, reextract) = self.load(ctx)?;
                (Arc::new(ns), reextract)
            }
        };
        if ns.state.read().generation < ctx.generation {
            self.promote(&ns, ctx)?;
            // Reload: the index is rebuilt at the new dimension from the promoted vectors.
            let (fresh, reextract) = self.load(ctx)?;
            let fresh = Arc::new(fresh);
            self.loaded.write().insert(ctx.id, fresh.clone());
            self.queue_extractions(ctx.id, reextract);
            return Ok(fresh);
        }
        self.loaded.write().insert(ctx.id, ns.clone());
        self.queue_extractions(ctx.id, reextract);
        Ok(ns)
    }

    /// Switch a namespace's live vectors to the embedder generation of `ctx`: staged vectors of
    /// that generation whose memory has not changed since are used as they are; every other
    /// memory (written or edited after it was staged) is embedded now with the new embedder.
    pub(super) fn promote(&self, ns: &Namespace, ctx: &NsContext) -> Result<()> {
        let _w = ns.write_lock()?;
        let started = std::time::Instant::now();
        let ids: Vec<(String, u64)> = ns.state.read().metas.iter().map(|(id, m)| (id.clone(), m.version)).collect();
        let mut batch = WriteBatch::default();
        let mut missing = Vec::new();
        let mut reused = 0usize;
        for (id, version) in &ids {
            let staged = match self.db.get_cf(self.cf(CF_IDX), row_key(ctx.id, IDX_STAGED, id))? {
                Some(v) => Some(decode_staged(&ctx.key.open(RecordKind::Vector, &staged_aad(id), &v)?)?),
                None => None,
            };
            match staged {
                Some((g, ver, v)) if g == ctx.generation && ver == *version && v.len() == ctx.dimension => {
                    self.put_vector(&mut batch, ctx, id, &v);
                    reused += 1;
                }
                _ => missing.push(id.clone()),
            }
        }
        for chunk in missing.chunks(32) {
            let mut texts = Vec::new();
            let mut present = Vec::new();
            for id in chunk {
                if let Some(rec) = self.read_record(ctx, id)? {
                    texts.push(rec.content);
                    present.push(id);
                }
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            // Without the new embedder on this node (no model files, say) the namespace still
            // opens: those memories go without a vector here (keyword recall still finds them).
            let vectors = self.embed(ctx, &refs).unwrap_or_else(|e| {
                tracing::warn!(namespace = %ctx.name, error = %e, count = refs.len(), "cannot embed memories written during the re-embedding; they have no vector on this node");
                vec![None; refs.len()]
            });
            for (id, v) in present.into_iter().zip(vectors) {
                match v {
                    Some(v) => self.put_vector(&mut batch, ctx, id, &v),
                    None => batch.delete_cf(self.cf(CF_VEC), vec_key(ctx.id, id)),
                }
            }
        }
        batch.delete_range_cf(self.cf(CF_IDX), row_key(ctx.id, IDX_STAGED, ""), {
            let mut e = prefix(ctx.id).to_vec();
            e.push(IDX_STAGED + 1);
            e
        });
        batch.put_cf(self.cf(CF_IDX), row_key(ctx.id, IDX_GENERATION, ""), ctx.generation.to_be_bytes());
        self.write(batch)?;
        ns.state.write().generation = ctx.generation;
        // Whoever still holds this copy must not write through it any more.
        ns.dropped.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(namespace = %ctx.name, generation = ctx.generation, reused, embedded = missing.len(), elapsed_ms = started.elapsed().as_millis() as u64, "embedder switched; vectors promoted");
        Ok(())
    }

    /// Hand a loaded namespace's memories to the extraction queue (its worker records into the
    /// namespace now loaded).
    fn queue_extractions(&self, ns_id: u64, jobs: Vec<(String, u64, String)>) {
        for (id, version, content) in jobs {
            self.extraction.enqueue(ns_id, &id, version, &content);
        }
    }

    /// Build a namespace's state from its rows, and the memories to extract again when the
    /// store's extractor is not the rule-based one (the rules' entities stand until then:
    /// entities are derived, never stored).
    pub(super) fn load(&self, ctx: &NsContext) -> Result<(Namespace, Vec<(String, u64, String)>)> {
        let started = std::time::Instant::now();
        let remote_extractor = self.extraction.extractor().name() != crate::extract::Rules::NAME;
        let mut reextract = Vec::new();
        let now = now_secs();
        let key = &ctx.key;
        let mut metas = HashMap::new();
        let mut sessions = HashMap::new();
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut expired = Vec::new();
        let mut graph = crate::graph::Graph::default();
        let mut entities = crate::entities::EntityIndex::default();
        let p = prefix(ctx.id);
        for item in self.scan_prefix(CF_MEM, &p) {
            let (k, v) = item?;
            if k.len() < 9 {
                continue;
            }
            let kind = k[8];
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            match kind {
                KIND_MEMORY => {
                    let rec: MemoryRecord =
                        serde_json::from_slice(&key.open(RecordKind::Memory, id.as_bytes(), &v)?)?;
                    if rec.is_expired(now) {
                        expired.push(rec.id.clone());
                        continue;
                    }
                    versions.insert(rec.id.clone(), rec.version);
                    entities.set(&rec.id, &rec.content);
                    metas.insert(rec.id.clone(), Meta::of(&rec));
                    // Beyond the queue's bound the rules' entities stand (bounded memory).
                    if remote_extractor && reextract.len() < super::extraction::QUEUE_BOUND {
                        reextract.push((rec.id.clone(), rec.version, rec.content));
                    }
                }
                KIND_LINK => {
                    let link: crate::graph::Link =
                        serde_json::from_slice(&key.open(RecordKind::Link, id.as_bytes(), &v)?)?;
                    graph.insert(link);
                }
                KIND_SESSION => {
                    let s: Session = serde_json::from_slice(&key.open(RecordKind::Session, id.as_bytes(), &v)?)?;
                    sessions.insert(s.id.clone(), s);
                }
                _ => {}
            }
        }
        // Links sort before memories (`l` < `m`): only now are both ends known.
        graph.retain_ends(|id| metas.contains_key(id));
        let vectors = VectorIndex::with_metric(ctx.dimension, self.config.ann_threshold, ctx.metric);
        for item in self.scan_prefix(CF_VEC, &p) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[8..]).into_owned();
            if !metas.contains_key(&id) {
                continue;
            }
            let vector = decode_vector(&key.open(RecordKind::Vector, id.as_bytes(), &v)?)?;
            // Vectors of an earlier embedder (a re-embedding not promoted here yet) are replaced
            // by the promotion that follows the load.
            if vector.len() == ctx.dimension {
                vectors.upsert(&id, &vector);
            }
        }
        let generation = match self.db.get_cf(self.cf(CF_IDX), row_key(ctx.id, IDX_GENERATION, ""))? {
            Some(v) => {
                u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StorageError::Encoding("generation".into()))?)
            }
            None => 0,
        };
        let mut ap = p.to_vec();
        ap.push(IDX_ACCESS);
        for item in self.scan_prefix(CF_IDX, &ap) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            if let (Some(m), Ok(a)) = (metas.get_mut(&id), postcard::from_bytes::<AccessStats>(&v)) {
                m.access_count = m.access_count.max(a.count);
                m.last_accessed_at = m.last_accessed_at.max(a.last);
            }
        }
        // The text index is derived data committed in batches: after a crash it can miss or hold
        // stale entries. Re-index exactly what differs from the authoritative rows.
        let indexed = self.text.list(key)?;
        let mut reindex = Vec::new();
        for (id, ver) in &versions {
            if indexed.get(id) != Some(ver) {
                reindex.push(id.clone());
            }
        }
        for id in indexed.keys() {
            if !versions.contains_key(id) {
                self.text.delete(key, id);
            }
        }
        for id in &reindex {
            if let Some(rec) = self.read_record(ctx, id)? {
                self.text.upsert(key, id, rec.version, &rec.content)?;
            }
        }
        let progress: NsProgress = match self.db.get_cf(self.cf(CF_NSMETA), prefix(ctx.id))? {
            Some(v) => serde_json::from_slice(&v)?,
            None => NsProgress::default(),
        };
        let fence = match self.db.get_cf(self.cf(CF_NSMETA), fence_key(ctx.id))? {
            Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StorageError::Encoding("fence".into()))?),
            None => 0,
        };
        let ns = Namespace {
            ctx: ctx.clone(),
            state: RwLock::new(NsState {
                applied_seq: progress.applied_seq,
                last_epoch: progress.epoch,
                epoch: progress.epoch.max(ctx.epoch).max(fence),
                generation,
                last_order: metas.values().map(|m| m.order).max().unwrap_or(0),
                metas,
                sessions,
                vectors,
                access_dirty: HashSet::new(),
                graph,
                entities,
            }),
            writer: Mutex::new(()),
            dropped: std::sync::atomic::AtomicBool::new(false),
        };
        if !expired.is_empty() {
            self.delete_ids(&ns, &expired)?;
        }
        self.text.commit()?;
        tracing::debug!(
            namespace = %ctx.name,
            memories = ns.state.read().metas.len(),
            reindexed = reindex.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "namespace loaded"
        );
        Ok((ns, reextract))
    }

    pub(super) fn read_record(&self, ctx: &NsContext, id: &str) -> Result<Option<MemoryRecord>> {
        match self.db.get_cf(self.cf(CF_MEM), row_key(ctx.id, KIND_MEMORY, id))? {
            None => Ok(None),
            Some(v) => {
                let pt = ctx.key.open(RecordKind::Memory, id.as_bytes(), &v)?;
                Ok(Some(serde_json::from_slice(&pt)?))
            }
        }
    }

    /// A record with the in-memory access stats merged in.
    pub(super) fn full_record(&self, ns: &Namespace, id: &str) -> Result<Option<MemoryRecord>> {
        let meta = match ns.state.read().metas.get(id) {
            Some(m) => m.clone(),
            None => return Ok(None),
        };
        Ok(self.read_record(&ns.ctx, id)?.map(|mut r| {
            r.access_count = meta.access_count;
            r.last_accessed_at = meta.last_accessed_at;
            r
        }))
    }

    pub(super) fn put_record(
        &self,
        batch: &mut WriteBatch,
        ctx: &NsContext,
        rec: &MemoryRecord,
        old_expiry: Option<u64>,
    ) -> Result<()> {
        let pt = serde_json::to_vec(rec)?;
        batch.put_cf(
            self.cf(CF_MEM),
            row_key(ctx.id, KIND_MEMORY, &rec.id),
            ctx.key.seal(RecordKind::Memory, rec.id.as_bytes(), &pt),
        );
        if let Some(old) = old_expiry {
            batch.delete_cf(self.cf(CF_IDX), expiry_key(ctx.id, old, &rec.id));
        }
        if let Some(at) = rec.expires_at {
            batch.put_cf(self.cf(CF_IDX), expiry_key(ctx.id, at, &rec.id), []);
        }
        Ok(())
    }

    pub(super) fn put_vector(&self, batch: &mut WriteBatch, ctx: &NsContext, id: &str, v: &[f32]) {
        batch.put_cf(
            self.cf(CF_VEC),
            vec_key(ctx.id, id),
            ctx.key.seal(RecordKind::Vector, id.as_bytes(), &encode_vector(v)),
        );
    }

    pub(super) fn put_link(&self, batch: &mut WriteBatch, ctx: &NsContext, link: &crate::graph::Link) -> Result<()> {
        let id = link_id(&link.key());
        let pt = serde_json::to_vec(link)?;
        batch.put_cf(
            self.cf(CF_MEM),
            row_key(ctx.id, KIND_LINK, &id),
            ctx.key.seal(RecordKind::Link, id.as_bytes(), &pt),
        );
        Ok(())
    }

    pub(super) fn put_sealed(
        &self,
        batch: &mut WriteBatch,
        ctx: &NsContext,
        kind: (u8, RecordKind),
        id: &str,
        value: &impl serde::Serialize,
    ) -> Result<()> {
        let pt = serde_json::to_vec(value)?;
        batch.put_cf(self.cf(CF_MEM), row_key(ctx.id, kind.0, id), ctx.key.seal(kind.1, id.as_bytes(), &pt));
        Ok(())
    }

    pub(super) fn read_sealed<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &NsContext,
        kind: (u8, RecordKind),
        id: &str,
    ) -> Result<Option<T>> {
        match self.db.get_cf(self.cf(CF_MEM), row_key(ctx.id, kind.0, id))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&ctx.key.open(kind.1, id.as_bytes(), &v)?)?)),
        }
    }

    pub(super) fn put_session(&self, batch: &mut WriteBatch, ctx: &NsContext, s: &Session) -> Result<()> {
        let pt = serde_json::to_vec(s)?;
        batch.put_cf(
            self.cf(CF_MEM),
            row_key(ctx.id, KIND_SESSION, &s.id),
            ctx.key.seal(RecordKind::Session, s.id.as_bytes(), &pt),
        );
        Ok(())
    }

    pub(super) fn read_vector(&self, ctx: &NsContext, id: &str) -> Result<Option<Vec<f32>>> {
        match self.db.get_cf(self.cf(CF_VEC), vec_key(ctx.id, id))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_vector(&ctx.key.open(RecordKind::Vector, id.as_bytes(), &v)?)?)),
        }
    }

    /// Delete a memory's rows, the links touching it and its feedback history (`st`: the
    /// namespace's state before the deletion).
    pub(super) fn delete_memory(&self, batch: &mut WriteBatch, ns_id: u64, st: &NsState, id: &str) {
        self.delete_rows(batch, ns_id, id, st.metas.get(id).and_then(|m| m.expires_at));
        for key in st.graph.keys_of(id) {
            batch.delete_cf(self.cf(CF_MEM), row_key(ns_id, KIND_LINK, &link_id(&key)));
        }
        batch.delete_cf(self.cf(CF_MEM), row_key(ns_id, KIND_FEEDBACK, id));
    }

    pub(super) fn delete_rows(&self, batch: &mut WriteBatch, ns_id: u64, id: &str, expiry: Option<u64>) {
        batch.delete_cf(self.cf(CF_MEM), row_key(ns_id, KIND_MEMORY, id));
        batch.delete_cf(self.cf(CF_VEC), vec_key(ns_id, id));
        batch.delete_cf(self.cf(CF_IDX), row_key(ns_id, IDX_ACCESS, id));
        batch.delete_cf(self.cf(CF_IDX), row_key(ns_id, IDX_STAGED, id));
        if let Some(at) = expiry {
            batch.delete_cf(self.cf(CF_IDX), expiry_key(ns_id, at, id));
        }
    }
}
