//! The node's data store: one RocksDB with fixed column families keyed by an 8-byte namespace id
//! prefix, a per-namespace in-memory state (memory metadata and vector index) loaded lazily from
//! the encrypted rows, and the node-wide text index. [`Store::execute`] runs one [`DataOp`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options, PrefixRange, ReadOptions,
    SliceTransform, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::crypto::{DataKey, RecordKind, random_bytes};
use crate::embed::SharedEmbedder;
use crate::error::{Result, StorageError};
use crate::model::*;
use crate::text::TextIndex;
use crate::vector::VectorIndex;

pub const CF_MEM: &str = "mem";
pub const CF_VEC: &str = "vec";
pub const CF_IDX: &str = "idx";
pub const CF_REPL: &str = "repl";
pub const CF_NSMETA: &str = "nsmeta";
const ALL_CFS: [&str; 5] = [CF_MEM, CF_VEC, CF_IDX, CF_REPL, CF_NSMETA];

const KIND_MEMORY: u8 = b'm';
const KIND_SESSION: u8 = b's';
const IDX_EXPIRY: u8 = b'e';
const IDX_ACCESS: u8 = b'a';
/// A vector computed by a re-embedding job for the next embedder generation (not yet live).
const IDX_STAGED: u8 = b'v';
/// The embedder generation the live vectors were made with (one row per namespace, id "").
const IDX_GENERATION: u8 = b'g';

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// fsync the WAL on every write batch (survives power loss, not only process crashes).
    pub sync_writes: bool,
    /// Live vectors above which a namespace searches an HNSW graph instead of exactly.
    pub ann_threshold: usize,
    /// Block cache shared by every column family.
    pub block_cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { sync_writes: true, ann_threshold: 10_000, block_cache_bytes: 128 * 1024 * 1024 }
    }
}

/// What the store needs to know about a namespace; the catalogue is the source of truth.
#[derive(Clone)]
pub struct NsContext {
    pub id: u64,
    pub name: String,
    pub key: DataKey,
    pub dimension: usize,
    pub embedder: SharedEmbedder,
    /// Refuse stores that would take the namespace beyond this many memories.
    pub max_memories: Option<u64>,
    /// Refuse writes that would bring the namespace beyond this many distinct agents.
    pub max_agents: Option<u64>,
    /// Refuse to start a session for an agent that already has this many.
    pub max_sessions_per_agent: Option<u64>,
    pub metric: crate::vector::Metric,
    /// Placement epoch from the catalogue (replication entries carry it; older ones are fenced).
    pub epoch: u64,
    /// Embedder generation from the catalogue: bumped when a re-embedding job switches the
    /// namespace to another embedder. A replica whose live vectors are older promotes the
    /// staged ones (and embeds what was written since) before serving.
    pub generation: u64,
}

/// Per-memory facts kept in memory for filtering and ranking (no content, no vector).
#[derive(Clone, Debug)]
struct Meta {
    agent_id: String,
    session_id: Option<String>,
    memory_type: MemoryType,
    importance: f64,
    tags: Vec<String>,
    created_at: u64,
    order: u64,
    expires_at: Option<u64>,
    access_count: u64,
    last_accessed_at: u64,
    content_len: usize,
    version: u64,
}

impl Meta {
    fn of(r: &MemoryRecord) -> Self {
        Meta {
            agent_id: r.agent_id.clone(),
            session_id: r.session_id.clone(),
            memory_type: r.memory_type,
            importance: r.importance,
            tags: r.tags.clone(),
            created_at: r.created_at,
            order: r.order,
            expires_at: r.expires_at,
            access_count: r.access_count,
            last_accessed_at: r.last_accessed_at,
            content_len: r.content.len(),
            version: r.version,
        }
    }

    fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    fn matches(&self, id: &str, f: &MemoryFilter, now: u64) -> bool {
        if !self.live(now) {
            return false;
        }
        if let Some(ids) = &f.ids {
            if !ids.iter().any(|x| x == id) {
                return false;
            }
        }
        if f.agent_id.as_ref().is_some_and(|a| a != &self.agent_id) {
            return false;
        }
        if f.session_id.is_some() && f.session_id != self.session_id {
            return false;
        }
        if f.memory_type.is_some_and(|t| t != self.memory_type) {
            return false;
        }
        if let Some(any) = &f.tags_any {
            if !any.is_empty() && !any.iter().any(|t| self.tags.contains(t)) {
                return false;
            }
        }
        if let Some(all) = &f.tags_all {
            if !all.iter().all(|t| self.tags.contains(t)) {
                return false;
            }
        }
        if f.min_importance.is_some_and(|m| self.importance < m) {
            return false;
        }
        if f.max_importance.is_some_and(|m| self.importance > m) {
            return false;
        }
        if f.created_after.is_some_and(|t| self.created_at < t) {
            return false;
        }
        if f.created_before.is_some_and(|t| self.created_at > t) {
            return false;
        }
        true
    }
}

/// The agents a namespace knows: those with a live memory or any session.
fn known_agents(st: &NsState, now: u64) -> HashSet<&str> {
    st.metas
        .values()
        .filter(|m| m.live(now))
        .map(|m| m.agent_id.as_str())
        .chain(st.sessions.values().map(|s| s.agent_id.as_str()))
        .collect()
}

#[derive(Serialize, Deserialize, Default)]
struct AccessStats {
    count: u64,
    last: u64,
}

struct NsState {
    metas: HashMap<String, Meta>,
    sessions: HashMap<String, Session>,
    vectors: VectorIndex,
    /// Memories whose access stats changed since the last flush.
    access_dirty: HashSet<String>,
    /// Last insertion-order stamp handed out (strictly increasing).
    last_order: u64,
    /// Replication progress: last applied sequence number and the epoch it was written in.
    applied_seq: u64,
    last_epoch: u64,
    /// Fence: the highest placement epoch seen (entries, catalogue, or a new primary's fence);
    /// senders, and local writes, from older epochs are refused.
    epoch: u64,
    /// Embedder generation of the live vectors.
    generation: u64,
}

struct Namespace {
    ctx: NsContext,
    state: RwLock<NsState>,
    /// Serialises writers of this namespace (ordering of batches and in-memory updates).
    writer: Mutex<()>,
    /// Set (under `writer`) when the namespace is dropped: later writers must not resurrect it.
    dropped: std::sync::atomic::AtomicBool,
}

impl Namespace {
    /// Take the write lock of a namespace that still exists.
    fn write_lock(&self) -> Result<parking_lot::MutexGuard<'_, ()>> {
        let g = self.writer.lock();
        if self.dropped.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StorageError::Dropped);
        }
        Ok(g)
    }
}

pub struct Store {
    db: Arc<DB>,
    text: Arc<TextIndex>,
    config: StoreConfig,
    loaded: RwLock<HashMap<u64, Arc<Namespace>>>,
    /// Serialises namespace loading so two callers don't both build a state.
    load_lock: Mutex<()>,
    /// Namespaces dropped since start: never loaded again.
    dropped: RwLock<HashSet<u64>>,
    path: PathBuf,
}

fn prefix(ns: u64) -> [u8; 8] {
    ns.to_be_bytes()
}

fn row_key(ns: u64, kind: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.push(kind);
    k.extend_from_slice(id.as_bytes());
    k
}

fn vec_key(ns: u64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.extend_from_slice(id.as_bytes());
    k
}

fn expiry_key(ns: u64, at: u64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + id.len());
    k.extend_from_slice(&prefix(ns));
    k.push(IDX_EXPIRY);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The placement epoch a replica was fenced at (nsmeta), kept across restarts.
fn fence_key(ns: u64) -> Vec<u8> {
    let mut k = prefix(ns).to_vec();
    k.push(b'f');
    k
}

fn repl_key(ns: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&prefix(ns));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn staged_aad(id: &str) -> Vec<u8> {
    [b"staged/".as_slice(), id.as_bytes()].concat()
}

/// A staged vector: generation, the memory version it was computed from, the vector.
fn encode_staged(generation: u64, version: u64, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * v.len());
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&encode_vector(v));
    out
}

fn decode_staged(b: &[u8]) -> Result<(u64, u64, Vec<f32>)> {
    if b.len() < 16 {
        return Err(StorageError::Encoding("staged vector".into()));
    }
    let g = u64::from_be_bytes(b[0..8].try_into().map_err(|_| StorageError::Encoding("staged".into()))?);
    let v = u64::from_be_bytes(b[8..16].try_into().map_err(|_| StorageError::Encoding("staged".into()))?);
    Ok((g, v, decode_vector(&b[16..])?))
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(b: &[u8]) -> Result<Vec<f32>> {
    if b.len() % 4 != 0 {
        return Err(StorageError::Encoding("vector length".into()));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn new_memory_id() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    format!("mem_{}", hex::encode(b))
}

pub fn new_session_id() -> String {
    let mut b = [0u8; 12];
    random_bytes(&mut b);
    format!("sess_{}", hex::encode(b))
}

/// Check a client- or embedder-supplied vector before it reaches the index.
pub fn check_vector(v: &[f32], dimension: usize) -> Result<()> {
    if v.is_empty() {
        return Err(StorageError::Invalid("embedding must not be empty".into()));
    }
    if v.len() != dimension {
        return Err(StorageError::DimensionMismatch { expected: dimension, got: v.len() });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(StorageError::Invalid("embedding contains NaN or infinite values".into()));
    }
    if v.iter().all(|x| *x == 0.0) {
        return Err(StorageError::Invalid("embedding must not be the zero vector".into()));
    }
    Ok(())
}

impl Store {
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(5);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            let mut bb = BlockBasedOptions::default();
            bb.set_block_cache(&cache);
            bb.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&bb);
            o.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_bottommost_compression_type(DBCompressionType::Zstd);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir.join("rocksdb"), cfs)?;
        let text = TextIndex::open(&dir.join("text"))?;
        Ok(Store {
            db: Arc::new(db),
            text: Arc::new(text),
            config,
            loaded: RwLock::new(HashMap::new()),
            load_lock: Mutex::new(()),
            dropped: RwLock::new(HashSet::new()),
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The column families are fixed and created at open.
        self.db.cf_handle(name).expect("column family exists")
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.config.sync_writes);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    fn scan_prefix(&self, cf: &str, p: &[u8]) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>> + '_ {
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(PrefixRange(p.to_vec()));
        ro.set_total_order_seek(true);
        self.db.iterator_cf_opt(self.cf(cf), ro, rocksdb::IteratorMode::Start).map(|r| r.map_err(Into::into))
    }

    /// The namespace's in-memory state, loading it from disk on first use.
    fn namespace(&self, ctx: &NsContext) -> Result<Arc<Namespace>> {
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
        let ns = match existing {
            Some(ns) => ns,
            None => Arc::new(self.load(ctx)?),
        };
        if ns.state.read().generation < ctx.generation {
            self.promote(&ns, ctx)?;
            // Reload: the index is rebuilt at the new dimension from the promoted vectors.
            let fresh = Arc::new(self.load(ctx)?);
            self.loaded.write().insert(ctx.id, fresh.clone());
            return Ok(fresh);
        }
        self.loaded.write().insert(ctx.id, ns.clone());
        Ok(ns)
    }

    /// Switch a namespace's live vectors to the embedder generation of `ctx`: staged vectors of
    /// that generation whose memory has not changed since are used as they are; every other
    /// memory (written or edited after it was staged) is embedded now with the new embedder.
    fn promote(&self, ns: &Namespace, ctx: &NsContext) -> Result<()> {
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

    fn load(&self, ctx: &NsContext) -> Result<Namespace> {
        let started = std::time::Instant::now();
        let now = now_secs();
        let key = &ctx.key;
        let mut metas = HashMap::new();
        let mut sessions = HashMap::new();
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut expired = Vec::new();
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
                    metas.insert(rec.id.clone(), Meta::of(&rec));
                }
                KIND_SESSION => {
                    let s: Session = serde_json::from_slice(&key.open(RecordKind::Session, id.as_bytes(), &v)?)?;
                    sessions.insert(s.id.clone(), s);
                }
                _ => {}
            }
        }
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
        let indexed = self.text.list(ctx.id)?;
        let mut reindex = Vec::new();
        for (id, ver) in &versions {
            if indexed.get(id) != Some(ver) {
                reindex.push(id.clone());
            }
        }
        for id in indexed.keys() {
            if !versions.contains_key(id) {
                self.text.delete(ctx.id, id);
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
        Ok(ns)
    }

    fn read_record(&self, ctx: &NsContext, id: &str) -> Result<Option<MemoryRecord>> {
        match self.db.get_cf(self.cf(CF_MEM), row_key(ctx.id, KIND_MEMORY, id))? {
            None => Ok(None),
            Some(v) => {
                let pt = ctx.key.open(RecordKind::Memory, id.as_bytes(), &v)?;
                Ok(Some(serde_json::from_slice(&pt)?))
            }
        }
    }

    /// A record with the in-memory access stats merged in.
    fn full_record(&self, ns: &Namespace, id: &str) -> Result<Option<MemoryRecord>> {
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

    fn put_record(
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

    fn put_vector(&self, batch: &mut WriteBatch, ctx: &NsContext, id: &str, v: &[f32]) {
        batch.put_cf(
            self.cf(CF_VEC),
            vec_key(ctx.id, id),
            ctx.key.seal(RecordKind::Vector, id.as_bytes(), &encode_vector(v)),
        );
    }

    fn put_session(&self, batch: &mut WriteBatch, ctx: &NsContext, s: &Session) -> Result<()> {
        let pt = serde_json::to_vec(s)?;
        batch.put_cf(
            self.cf(CF_MEM),
            row_key(ctx.id, KIND_SESSION, &s.id),
            ctx.key.seal(RecordKind::Session, s.id.as_bytes(), &pt),
        );
        Ok(())
    }

    /// Embed texts; a text with nothing to embed (e.g. only punctuation) yields `None`.
    fn embed(&self, ctx: &NsContext, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let out = ctx.embedder.embed(texts)?;
        if out.len() != texts.len() {
            return Err(StorageError::Embedding("embedder returned a wrong number of vectors".into()));
        }
        out.into_iter()
            .map(|v| {
                if v.iter().all(|x| *x == 0.0) {
                    return Ok(None);
                }
                check_vector(&v, ctx.dimension).map_err(|e| StorageError::Embedding(e.to_string()))?;
                Ok(Some(v))
            })
            .collect()
    }

    /// Run one operation on a namespace. Blocking: call from a blocking thread.
    ///
    /// A write is applied locally under the next sequence number of the namespace; the returned
    /// [`ReplEntry`] is what followers must apply to converge (`None` for reads and no-ops).
    pub fn execute(&self, ctx: &NsContext, op: DataOp) -> Result<Executed> {
        // A namespace replaced while this call held the old copy (an embedder switch, a full
        // copy) refuses writes with `Dropped`: run once more against the new one.
        match self.execute_on(ctx, op.clone()) {
            Err(StorageError::Dropped) if !self.dropped.read().contains(&ctx.id) => self.execute_on(ctx, op),
            other => other,
        }
    }

    fn execute_on(&self, ctx: &NsContext, op: DataOp) -> Result<Executed> {
        let ns = self.namespace(ctx)?;
        let now = now_secs();
        let read = |result: DataResult| Ok(Executed { result, replicate: None });
        match op {
            DataOp::Store { items } => {
                let (recs, entry) = self.store(&ns, ctx, items, now)?;
                Ok(Executed { result: DataResult::Stored(recs), replicate: entry })
            }
            DataOp::Get { id, record_access } => {
                let rec = self.get_live(&ns, &id, now)?;
                if record_access {
                    self.touch(&ns, std::slice::from_ref(&id), now);
                }
                read(DataResult::Memory(rec))
            }
            DataOp::Update { id, patch } => {
                let (rec, entry) = self.update(&ns, ctx, &id, patch, now)?;
                Ok(Executed { result: DataResult::Memory(rec), replicate: Some(entry) })
            }
            DataOp::Forget { filter } => {
                let _w = ns.write_lock()?;
                let ids = self.select(&ns, &filter, now);
                let n = ids.len() as u64;
                let entry = if ids.is_empty() {
                    None
                } else {
                    Some(self.commit_local(&ns, ctx, vec![Mutation::DeleteMemories { ids }])?)
                };
                Ok(Executed { result: DataResult::Deleted(n), replicate: entry })
            }
            DataOp::List { filter, sort, limit, offset } => {
                let (page, total) = self.list(&ns, &filter, sort, limit, offset, now)?;
                read(DataResult::Memories { memories: page, total })
            }
            DataOp::Recall(p) => read(DataResult::Recalled(self.recall(&ns, p, now)?)),
            DataOp::StartSession { id, agent_id, metadata, idle_timeout_secs } => {
                let _w = ns.write_lock()?;
                let id = id.unwrap_or_else(new_session_id);
                let existing = ns.state.read().sessions.get(&id).cloned();
                match existing {
                    Some(s) if s.agent_id != agent_id => {
                        Err(StorageError::Conflict(format!("session {id} belongs to another agent")))
                    }
                    Some(s) => read(DataResult::Session(self.session_info(&ns, s, now))),
                    None => {
                        self.check_session_limits(&ns, ctx, &agent_id, now)?;
                        let s = Session {
                            id,
                            agent_id,
                            started_at: now,
                            ended_at: None,
                            summary: None,
                            metadata,
                            last_activity_at: now,
                            ended_reason: None,
                            idle_timeout_secs,
                        };
                        let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                        Ok(Executed {
                            result: DataResult::Session(self.session_info(&ns, s, now)),
                            replicate: Some(entry),
                        })
                    }
                }
            }
            DataOp::EndSession { id, summary } => {
                let _w = ns.write_lock()?;
                let mut s = self.session(&ns, &id)?;
                if s.ended_at.is_some() {
                    return read(DataResult::Session(self.session_info(&ns, s, now)));
                }
                s.ended_at = Some(now);
                s.ended_reason = Some("client".into());
                if summary.is_some() {
                    s.summary = summary;
                }
                s.last_activity_at = now;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                Ok(Executed { result: DataResult::Session(self.session_info(&ns, s, now)), replicate: Some(entry) })
            }
            DataOp::TouchSession { id } => {
                let _w = ns.write_lock()?;
                let mut s = self.session(&ns, &id)?;
                if s.ended_at.is_some() {
                    return read(DataResult::Session(self.session_info(&ns, s, now)));
                }
                s.last_activity_at = now;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                Ok(Executed { result: DataResult::Session(self.session_info(&ns, s, now)), replicate: Some(entry) })
            }
            DataOp::GetSession { id } => {
                let s = self.session(&ns, &id)?;
                read(DataResult::Session(self.session_info(&ns, s, now)))
            }
            DataOp::ListSessions { agent_id, active_only, limit, offset } => {
                let mut all: Vec<Session> = ns
                    .state
                    .read()
                    .sessions
                    .values()
                    .filter(|s| agent_id.as_ref().is_none_or(|a| &s.agent_id == a))
                    .filter(|s| !active_only || s.ended_at.is_none())
                    .cloned()
                    .collect();
                all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| a.id.cmp(&b.id)));
                let total = all.len() as u64;
                let sessions =
                    all.into_iter().skip(offset).take(limit).map(|s| self.session_info(&ns, s, now)).collect();
                read(DataResult::Sessions { sessions, total })
            }
            DataOp::AgentStats { agent_id } => {
                read(DataResult::AgentStats(self.agent_stats(&ns, agent_id.as_deref(), now)))
            }
            DataOp::ListAgents => read(DataResult::Agents(self.agents(&ns, now))),
            DataOp::ContentPage { after, limit } => {
                let mut ids: Vec<(String, u64)> = {
                    let st = ns.state.read();
                    st.metas
                        .iter()
                        .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a))
                        .map(|(id, m)| (id.clone(), m.version))
                        .collect()
                };
                ids.sort();
                ids.truncate(limit.clamp(1, 1000));
                let mut page = Vec::with_capacity(ids.len());
                for (id, version) in ids {
                    if let Some(rec) = self.read_record(ctx, &id)? {
                        page.push((id, version, rec.content));
                    }
                }
                read(DataResult::ContentPage(page))
            }
            DataOp::StageVectors { generation, items } => {
                if generation <= ns.state.read().generation {
                    return Err(StorageError::Invalid(format!("embedder generation {generation} is not newer")));
                }
                let n = items.len() as u64;
                let _w = ns.write_lock()?;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::StageVectors { generation, items }])?;
                Ok(Executed { result: DataResult::Staged(n), replicate: Some(entry) })
            }
            DataOp::Stats => {
                let st = ns.state.read();
                let live: Vec<&Meta> = st.metas.values().filter(|m| m.live(now)).collect();
                read(DataResult::Stats(NamespaceStats {
                    memory_count: live.len() as u64,
                    vector_count: st.vectors.len() as u64,
                    session_count: st.sessions.len() as u64,
                    dimension: Some(ns.ctx.dimension),
                    estimated_storage_bytes: live
                        .iter()
                        .map(|m| m.content_len as u64 + 4 * ns.ctx.dimension as u64)
                        .sum(),
                }))
            }
        }
    }

    fn session(&self, ns: &Namespace, id: &str) -> Result<Session> {
        ns.state.read().sessions.get(id).cloned().ok_or_else(|| StorageError::NotFound(format!("session {id}")))
    }

    // ------------------------------------------------------------------ replication

    /// Apply `mutations` as the namespace's next sequence number (caller holds the write lock).
    fn commit_local(&self, ns: &Namespace, ctx: &NsContext, mutations: Vec<Mutation>) -> Result<ReplEntry> {
        let (seq, fence) = {
            let st = ns.state.read();
            (st.applied_seq + 1, st.epoch)
        };
        if ctx.epoch < fence {
            // A newer primary took over (its catalogue change has not reached us yet).
            return Err(StorageError::Fenced(fence));
        }
        let entry = ReplEntry { seq, epoch: ctx.epoch, mutations, generation: ctx.generation };
        self.commit(ns, &entry)?;
        Ok(entry)
    }

    /// Write data, the replication-log entry and the progress marker in one batch, then update
    /// the in-memory state and the text index.
    fn commit(&self, ns: &Namespace, entry: &ReplEntry) -> Result<()> {
        let ctx = &ns.ctx;
        // A vector of another dimension was made by the embedder this namespace had before a
        // re-embedding switched it (an entry from before the switch, applied after it here):
        // embed that content again with the current embedder.
        let mut refreshed: HashMap<&str, Option<Vec<f32>>> = HashMap::new();
        let older_generation = entry.generation < ns.state.read().generation;
        for m in &entry.mutations {
            if let Mutation::PutMemory { record, vector: Some(v) } = m {
                if older_generation || v.len() != ctx.dimension {
                    let fresh = self.embed(ctx, &[record.content.as_str()]).ok().and_then(|mut x| x.pop().flatten());
                    refreshed.insert(record.id.as_str(), fresh);
                }
            }
        }
        let vector_of = |record: &MemoryRecord, vector: &Option<Vec<f32>>| -> Option<Vec<f32>> {
            match refreshed.get(record.id.as_str()) {
                Some(v) => v.clone(),
                None => vector.clone(),
            }
        };
        let mut batch = WriteBatch::default();
        {
            let st = ns.state.read();
            for m in &entry.mutations {
                match m {
                    Mutation::PutMemory { record, vector } => {
                        let old_expiry = st.metas.get(&record.id).and_then(|m| m.expires_at);
                        self.put_record(&mut batch, ctx, record, old_expiry)?;
                        match &vector_of(record, vector) {
                            Some(v) => self.put_vector(&mut batch, ctx, &record.id, v),
                            None => batch.delete_cf(self.cf(CF_VEC), vec_key(ctx.id, &record.id)),
                        }
                    }
                    Mutation::StageVectors { generation, items } => {
                        for (id, version, v) in items {
                            batch.put_cf(
                                self.cf(CF_IDX),
                                row_key(ctx.id, IDX_STAGED, id),
                                ctx.key.seal(
                                    RecordKind::Vector,
                                    &staged_aad(id),
                                    &encode_staged(*generation, *version, v),
                                ),
                            );
                        }
                    }
                    Mutation::DeleteMemories { ids } => {
                        for id in ids {
                            self.delete_rows(&mut batch, ctx.id, id, st.metas.get(id).and_then(|m| m.expires_at));
                        }
                    }
                    Mutation::PutSession { session } => self.put_session(&mut batch, ctx, session)?,
                }
            }
        }
        let sealed = ctx.key.seal(RecordKind::Replication, &entry.seq.to_be_bytes(), &serde_json::to_vec(entry)?);
        batch.put_cf(self.cf(CF_REPL), repl_key(ctx.id, entry.seq), sealed);
        let meta = NsProgress { applied_seq: entry.seq, epoch: entry.epoch };
        batch.put_cf(self.cf(CF_NSMETA), prefix(ctx.id), serde_json::to_vec(&meta)?);
        self.write(batch)?;
        let mut text_updates = Vec::new();
        let mut text_deletes = Vec::new();
        {
            let mut st = ns.state.write();
            for m in &entry.mutations {
                match m {
                    Mutation::PutMemory { record, vector } => {
                        st.last_order = st.last_order.max(record.order);
                        st.metas.insert(record.id.clone(), Meta::of(record));
                        match &vector_of(record, vector) {
                            Some(v) => st.vectors.upsert(&record.id, v),
                            None => st.vectors.remove(&record.id),
                        }
                        text_updates.push((record.id.clone(), record.version, record.content.clone()));
                    }
                    Mutation::DeleteMemories { ids } => {
                        for id in ids {
                            st.metas.remove(id);
                            st.vectors.remove(id);
                            st.access_dirty.remove(id);
                            text_deletes.push(id.clone());
                        }
                    }
                    Mutation::PutSession { session } => {
                        st.sessions.insert(session.id.clone(), session.clone());
                    }
                    Mutation::StageVectors { .. } => {}
                }
            }
            st.applied_seq = entry.seq;
            st.last_epoch = entry.epoch;
            st.epoch = st.epoch.max(entry.epoch);
        }
        for (id, version, content) in text_updates {
            self.text.upsert(&ctx.key, &id, version, &content)?;
        }
        for id in &text_deletes {
            self.text.delete(ctx.id, id);
        }
        if !text_deletes.is_empty() {
            // Deletions become invisible to keyword search at once.
            self.text.commit()?;
        }
        Ok(())
    }

    /// Apply entries a primary sent (`sender_epoch`: the placement epoch it is primary in) or
    /// that a new primary pulled while taking over (`None`: no fencing). Entries apply strictly
    /// in sequence order. A sender from an older epoch than this replica has seen is refused
    /// (fencing); `prev` (the sender's `(seq, epoch)` just before the first entry) and every
    /// entry this replica already holds are checked against its own log, so a replica holding
    /// a deposed primary's unacknowledged writes reports `Diverged` instead of silently
    /// skipping the new primary's writes under the same sequence numbers.
    pub fn apply_replicated(
        &self,
        ctx: &NsContext,
        sender_epoch: Option<u64>,
        prev: Option<(u64, u64)>,
        entries: &[ReplEntry],
    ) -> Result<ApplyOutcome> {
        let ns = self.namespace(ctx)?;
        let _w = ns.write_lock()?;
        let (applied, fence) = {
            let st = ns.state.read();
            (st.applied_seq, st.epoch.max(ctx.epoch))
        };
        if let Some(sender) = sender_epoch {
            if sender < fence {
                return Ok(ApplyOutcome::Fenced { epoch: fence });
            }
            let mut st = ns.state.write();
            st.epoch = st.epoch.max(sender);
        }
        if let Some((seq, epoch)) = prev.filter(|(s, _)| *s > 0 && *s <= applied) {
            if self.log_epoch_at(ctx, seq)?.is_some_and(|mine| mine != epoch) {
                return Ok(ApplyOutcome::Diverged { applied });
            }
        }
        let mut outcome = ApplyOutcome::Duplicate { applied };
        for entry in entries {
            let applied = ns.state.read().applied_seq;
            if entry.seq <= applied {
                if self.log_epoch_at(ctx, entry.seq)?.is_some_and(|mine| mine != entry.epoch) {
                    return Ok(ApplyOutcome::Diverged { applied });
                }
                outcome = ApplyOutcome::Duplicate { applied };
                continue;
            }
            if entry.seq > applied + 1 {
                return Ok(ApplyOutcome::Gap { applied });
            }
            self.commit(&ns, entry)?;
            outcome = ApplyOutcome::Applied { seq: entry.seq };
        }
        if let ApplyOutcome::Duplicate { .. } = outcome {
            outcome = ApplyOutcome::Duplicate { applied: ns.state.read().applied_seq };
        }
        Ok(outcome)
    }

    /// The epoch of the log entry with sequence `seq` (`None` once truncated away).
    pub fn log_epoch_at(&self, ctx: &NsContext, seq: u64) -> Result<Option<u64>> {
        Ok(self.repl_entries(ctx, seq, 1)?.into_iter().find(|e| e.seq == seq).map(|e| e.epoch))
    }

    /// A new primary fences this replica at `epoch`: from now on only senders of that epoch or
    /// newer are accepted, and this node's own writes as an older primary are refused.
    pub fn fence(&self, ctx: &NsContext, epoch: u64) -> Result<NsProgress> {
        let ns = self.namespace(ctx)?;
        let _w = ns.write_lock()?;
        let fence = ns.state.read().epoch.max(epoch);
        // Durable before it is reported: a restart must not forget whom this replica refuses.
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_NSMETA), fence_key(ctx.id), fence.to_be_bytes());
        self.write(b)?;
        let mut st = ns.state.write();
        st.epoch = fence;
        Ok(NsProgress { applied_seq: st.applied_seq, epoch: st.last_epoch })
    }

    /// The replication progress of a namespace on this node: the last applied sequence number
    /// and the epoch that entry was written in.
    pub fn progress(&self, ctx: &NsContext) -> Result<NsProgress> {
        let ns = self.namespace(ctx)?;
        let st = ns.state.read();
        Ok(NsProgress { applied_seq: st.applied_seq, epoch: st.last_epoch })
    }

    /// Log entries with `seq >= from`, at most `limit` (empty if they were truncated away).
    pub fn repl_entries(&self, ctx: &NsContext, from: u64, limit: usize) -> Result<Vec<ReplEntry>> {
        let mut out = Vec::new();
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(repl_key(ctx.id, from)..repl_key(ctx.id, u64::MAX));
        for item in self.db.iterator_cf_opt(self.cf(CF_REPL), ro, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k[8..16].try_into().map_err(|_| StorageError::Encoding("repl key".into()))?);
            let pt = ctx.key.open(RecordKind::Replication, &seq.to_be_bytes(), &v)?;
            out.push(serde_json::from_slice(&pt)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Oldest sequence number still in the log (entries before it need a full copy).
    pub fn repl_floor(&self, ns_id: u64) -> Result<Option<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
        let mut it = self.db.iterator_cf_opt(self.cf(CF_REPL), ro, rocksdb::IteratorMode::Start);
        match it.next() {
            Some(r) => {
                let (k, _) = r?;
                Ok(Some(u64::from_be_bytes(
                    k[8..16].try_into().map_err(|_| StorageError::Encoding("repl key".into()))?,
                )))
            }
            None => Ok(None),
        }
    }

    /// Drop log entries with a sequence number below `below` (never the last applied one:
    /// it anchors the divergence check of the next entry).
    pub fn truncate_repl(&self, ctx: &NsContext, below: u64) -> Result<()> {
        let applied = self.progress(ctx)?.applied_seq;
        let below = below.min(applied);
        if below > 0 && self.repl_floor(ctx.id)?.is_some_and(|f| f < below) {
            let mut b = WriteBatch::default();
            b.delete_range_cf(self.cf(CF_REPL), repl_key(ctx.id, 0), repl_key(ctx.id, below));
            self.write(b)?;
        }
        Ok(())
    }

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

    fn session_info(&self, ns: &Namespace, session: Session, now: u64) -> SessionInfo {
        let memory_count = ns
            .state
            .read()
            .metas
            .values()
            .filter(|m| m.live(now) && m.session_id.as_deref() == Some(session.id.as_str()))
            .count() as u64;
        SessionInfo { session, memory_count }
    }

    fn get_live(&self, ns: &Namespace, id: &str, now: u64) -> Result<MemoryRecord> {
        let live = ns.state.read().metas.get(id).is_some_and(|m| m.live(now));
        if !live {
            return Err(StorageError::NotFound(format!("memory {id}")));
        }
        self.full_record(ns, id)?.ok_or_else(|| StorageError::NotFound(format!("memory {id}")))
    }

    fn touch(&self, ns: &Namespace, ids: &[String], now: u64) {
        let mut st = ns.state.write();
        for id in ids {
            if let Some(m) = st.metas.get_mut(id) {
                m.access_count += 1;
                m.last_accessed_at = now;
                st.access_dirty.insert(id.clone());
            }
        }
    }

    /// Store new memories (or replace ones with client-chosen ids) as one replicated entry.
    fn store(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        items: Vec<NewMemory>,
        now: u64,
    ) -> Result<(Vec<MemoryRecord>, Option<ReplEntry>)> {
        // Embed outside the namespace's write lock: it is the expensive part.
        let missing: Vec<&str> = items.iter().filter(|i| i.embedding.is_none()).map(|i| i.content.as_str()).collect();
        let mut embedded = self.embed(ctx, &missing)?.into_iter();
        let mut vectors = Vec::with_capacity(items.len());
        for item in &items {
            match &item.embedding {
                Some(v) => {
                    check_vector(v, ctx.dimension)?;
                    vectors.push(Some(v.clone()));
                }
                None => vectors.push(embedded.next().flatten()),
            }
        }
        let _w = ns.write_lock()?;
        // `max_memories` comes from the caller's context: the policy can change after load.
        if let Some(max) = ctx.max_memories {
            let st = ns.state.read();
            let live = st.metas.values().filter(|m| m.live(now)).count() as u64;
            let new = items.iter().filter(|i| i.id.as_ref().is_none_or(|id| !st.metas.contains_key(id))).count() as u64;
            if live + new > max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {live} memories; storing {new} more would exceed its max_memories of {max}",
                    ctx.name
                )));
            }
        }
        if let Some(max) = ctx.max_agents {
            let st = ns.state.read();
            let known = known_agents(&st, now);
            let incoming: HashSet<&str> =
                items.iter().map(|i| i.agent_id.as_str()).filter(|a| !known.contains(*a)).collect();
            if !incoming.is_empty() && known.len() as u64 + incoming.len() as u64 > max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {} agents; a new agent would exceed its max_agents of {max}",
                    ctx.name,
                    known.len()
                )));
            }
        }
        let mut records = Vec::with_capacity(items.len());
        let mut mutations = Vec::with_capacity(items.len() + 1);
        let mut seen = HashSet::new();
        let mut order = ns.state.read().last_order;
        for (item, vector) in items.into_iter().zip(vectors) {
            let id = item.id.unwrap_or_else(new_memory_id);
            if !seen.insert(id.clone()) {
                return Err(StorageError::Invalid(format!("duplicate memory id {id} in one batch")));
            }
            // A client-chosen id that exists is an upsert: keep its creation time and order.
            let previous = ns.state.read().metas.get(&id).cloned();
            let old_version = match &previous {
                Some(_) => self.read_record(&ns.ctx, &id)?.map_or(0, |r| r.version),
                None => 0,
            };
            let rec = MemoryRecord {
                id: id.clone(),
                namespace: ctx.name.clone(),
                agent_id: item.agent_id,
                content: item.content,
                memory_type: item.memory_type,
                importance: item.importance,
                tags: item.tags,
                metadata: item.metadata,
                session_id: item.session_id,
                created_at: previous.as_ref().map_or(now, |p| p.created_at),
                updated_at: now,
                last_accessed_at: previous.as_ref().map_or(now, |p| p.last_accessed_at),
                access_count: previous.as_ref().map_or(0, |p| p.access_count),
                expires_at: item.expires_at,
                version: old_version + 1,
                order: match &previous {
                    Some(p) => p.order,
                    None => {
                        order = (order + 1).max(now_micros());
                        order
                    }
                },
            };
            mutations.push(Mutation::PutMemory { record: rec.clone(), vector });
            records.push(rec);
        }
        // Sessions these memories belong to record the activity in the same entry.
        {
            let st = ns.state.read();
            let mut ids: Vec<&String> = records.iter().filter_map(|r| r.session_id.as_ref()).collect();
            ids.sort();
            ids.dedup();
            for sid in ids {
                if let Some(s) = st.sessions.get(sid) {
                    let mut s = s.clone();
                    s.last_activity_at = now;
                    mutations.push(Mutation::PutSession { session: s });
                }
            }
        }
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((records, Some(entry)))
    }

    fn update(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        id: &str,
        patch: MemoryPatch,
        now: u64,
    ) -> Result<(MemoryRecord, ReplEntry)> {
        // None = vector unchanged; Some(None) = the new content has nothing to embed.
        let new_vector: Option<Option<Vec<f32>>> = match (&patch.embedding, &patch.content) {
            (Some(v), _) => {
                check_vector(v, ctx.dimension)?;
                Some(Some(v.clone()))
            }
            (None, Some(content)) => Some(self.embed(ctx, &[content.as_str()])?.pop().flatten()),
            (None, None) => None,
        };
        let _w = ns.write_lock()?;
        let mut rec = self.get_live(ns, id, now)?;
        if let Some(c) = patch.content {
            rec.content = c;
        }
        if let Some(t) = patch.memory_type {
            rec.memory_type = t;
        }
        if let Some(i) = patch.importance {
            rec.importance = i;
        }
        if let Some(t) = patch.tags {
            rec.tags = t;
        }
        if let Some(m) = patch.metadata {
            rec.metadata = Some(m);
        }
        if let Some(lang) = patch.lang {
            // Recorded inside the metadata the memory already has (or gets now).
            let meta = rec.metadata.get_or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(m) = meta {
                m.insert("_dakera_lang".into(), serde_json::Value::from(lang));
            }
        }
        if let Some(e) = patch.expires_at {
            rec.expires_at = e;
        }
        rec.updated_at = now;
        rec.version += 1;
        let vector = match new_vector {
            Some(v) => v,
            None => self.read_vector(ctx, id)?,
        };
        let entry = self.commit_local(ns, ctx, vec![Mutation::PutMemory { record: rec.clone(), vector }])?;
        Ok((rec, entry))
    }

    fn read_vector(&self, ctx: &NsContext, id: &str) -> Result<Option<Vec<f32>>> {
        match self.db.get_cf(self.cf(CF_VEC), vec_key(ctx.id, id))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_vector(&ctx.key.open(RecordKind::Vector, id.as_bytes(), &v)?)?)),
        }
    }

    fn delete_rows(&self, batch: &mut WriteBatch, ns_id: u64, id: &str, expiry: Option<u64>) {
        batch.delete_cf(self.cf(CF_MEM), row_key(ns_id, KIND_MEMORY, id));
        batch.delete_cf(self.cf(CF_VEC), vec_key(ns_id, id));
        batch.delete_cf(self.cf(CF_IDX), row_key(ns_id, IDX_ACCESS, id));
        batch.delete_cf(self.cf(CF_IDX), row_key(ns_id, IDX_STAGED, id));
        if let Some(at) = expiry {
            batch.delete_cf(self.cf(CF_IDX), expiry_key(ns_id, at, id));
        }
    }

    fn select(&self, ns: &Namespace, filter: &MemoryFilter, now: u64) -> Vec<String> {
        let st = ns.state.read();
        match &filter.ids {
            Some(ids) => ids
                .iter()
                .filter(|id| st.metas.get(*id).is_some_and(|m| m.matches(id, filter, now)))
                .cloned()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect(),
            None => st.metas.iter().filter(|(id, m)| m.matches(id, filter, now)).map(|(id, _)| id.clone()).collect(),
        }
    }

    /// Remove memories locally (expiry housekeeping; every replica expires on its own).
    fn delete_ids(&self, ns: &Namespace, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ctx = &ns.ctx;
        let mut batch = WriteBatch::default();
        {
            let st = ns.state.read();
            for id in ids {
                self.delete_rows(&mut batch, ctx.id, id, st.metas.get(id).and_then(|m| m.expires_at));
            }
        }
        self.write(batch)?;
        {
            let mut st = ns.state.write();
            for id in ids {
                st.metas.remove(id);
                st.vectors.remove(id);
                st.access_dirty.remove(id);
            }
        }
        for id in ids {
            self.text.delete(ctx.id, id);
        }
        self.text.commit()?;
        Ok(())
    }

    fn list(
        &self,
        ns: &Namespace,
        filter: &MemoryFilter,
        sort: SortBy,
        limit: usize,
        offset: usize,
        now: u64,
    ) -> Result<(Vec<MemoryRecord>, u64)> {
        let mut rows: Vec<(String, Meta)> = {
            let st = ns.state.read();
            st.metas
                .iter()
                .filter(|(id, m)| m.matches(id, filter, now))
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect()
        };
        rows.sort_by(|(ia, a), (ib, b)| {
            let ord = match sort {
                SortBy::CreatedAtDesc => b.order.cmp(&a.order),
                SortBy::CreatedAtAsc => a.order.cmp(&b.order),
                SortBy::LastAccessedAt => b.last_accessed_at.cmp(&a.last_accessed_at),
                SortBy::Importance => b.importance.total_cmp(&a.importance),
                SortBy::AccessCount => b.access_count.cmp(&a.access_count),
            };
            ord.then_with(|| match sort {
                SortBy::CreatedAtAsc => ia.cmp(ib),
                _ => ib.cmp(ia),
            })
        });
        let total = rows.len() as u64;
        let mut page = Vec::new();
        for (id, _) in rows.into_iter().skip(offset).take(limit) {
            if let Some(r) = self.full_record(ns, &id)? {
                page.push(r);
            }
        }
        Ok((page, total))
    }

    fn recall(&self, ns: &Namespace, p: RecallParams, now: u64) -> Result<Vec<ScoredMemory>> {
        let ctx = &ns.ctx;
        if p.top_k == 0 {
            return Ok(Vec::new());
        }
        let use_vector = !matches!(p.routing, Routing::Bm25);
        let use_text = !matches!(p.routing, Routing::Vector) && !p.query.trim().is_empty();
        let pool = (p.top_k * 4).max(50);
        let accept = |id: &str, st: &NsState| st.metas.get(id).is_some_and(|m| m.matches(id, &p.filter, now));

        let vector_hits: Vec<(String, f32)> = if use_vector {
            let q = match &p.query_embedding {
                Some(v) => {
                    check_vector(v, ctx.dimension)?;
                    Some(v.clone())
                }
                None if !p.query.trim().is_empty() => self.embed(ctx, &[p.query.as_str()])?.pop().flatten(),
                None => None,
            };
            match q {
                Some(q) => {
                    let st = ns.state.read();
                    st.vectors.search(&q, pool, &|id| accept(id, &st))
                }
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let text_hits: Vec<(String, f32)> = if use_text {
            let raw = self.text.search(&ctx.key, &p.query, pool * 4)?;
            let st = ns.state.read();
            raw.into_iter().filter(|(id, _)| accept(id, &st)).take(pool).collect()
        } else {
            Vec::new()
        };

        let fused = fuse(&vector_hits, &text_hits, p.fusion, p.vector_weight);
        let metas: HashMap<String, Meta> = {
            let st = ns.state.read();
            fused.keys().filter_map(|id| st.metas.get(id).map(|m| (id.clone(), m.clone()))).collect()
        };
        let mut scored: Vec<(String, f32, f32, Option<f32>, Option<f32>)> = fused
            .into_iter()
            .filter_map(|(id, (rel, v, t))| {
                let m = metas.get(&id)?;
                let score = if p.importance_weighted {
                    weighted_score(rel, m.importance as f32, m.created_at, now)
                } else {
                    rel
                };
                Some((id, score, rel, v, t))
            })
            .filter(|(_, s, ..)| p.min_score.is_none_or(|min| *s >= min))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored.truncate(p.top_k);
        if p.record_access {
            let ids: Vec<String> = scored.iter().map(|s| s.0.clone()).collect();
            self.touch(ns, &ids, now);
        }
        let mut out = Vec::with_capacity(scored.len());
        for (id, score, relevance, vector_score, text_score) in scored {
            if let Some(memory) = self.full_record(ns, &id)? {
                out.push(ScoredMemory { memory, score, relevance, vector_score, text_score });
            }
        }
        Ok(out)
    }

    /// Statistics of one agent's memories, or of the whole namespace (`None`).
    fn agent_stats(&self, ns: &Namespace, agent_id: Option<&str>, now: u64) -> AgentStats {
        let st = ns.state.read();
        let mine: Vec<&Meta> =
            st.metas.values().filter(|m| m.live(now) && agent_id.is_none_or(|a| m.agent_id == a)).collect();
        let mut by_type = BTreeMap::new();
        for t in MemoryType::ALL {
            by_type.insert(t.as_str().to_string(), 0u64);
        }
        for m in &mine {
            *by_type.entry(m.memory_type.as_str().to_string()).or_insert(0) += 1;
        }
        let sessions: Vec<&Session> =
            st.sessions.values().filter(|s| agent_id.is_none_or(|a| s.agent_id == a)).collect();
        AgentStats {
            agent_id: agent_id.unwrap_or(&ns.ctx.name).to_string(),
            total_memories: mine.len() as u64,
            memories_by_type: by_type,
            total_sessions: sessions.len() as u64,
            active_sessions: sessions.iter().filter(|s| s.ended_at.is_none()).count() as u64,
            avg_importance: if mine.is_empty() {
                None
            } else {
                Some(mine.iter().map(|m| m.importance).sum::<f64>() / mine.len() as f64)
            },
            oldest_memory_at: mine.iter().map(|m| m.created_at).min(),
            newest_memory_at: mine.iter().map(|m| m.created_at).max(),
        }
    }

    /// `max_agents` and `max_sessions_per_agent` for a new session of `agent_id` (under the
    /// namespace's write lock, so concurrent starts cannot both pass).
    fn check_session_limits(&self, ns: &Namespace, ctx: &NsContext, agent_id: &str, now: u64) -> Result<()> {
        let st = ns.state.read();
        if let Some(max) = ctx.max_agents {
            let known = known_agents(&st, now);
            if !known.contains(agent_id) && known.len() as u64 >= max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {} agents; a new agent would exceed its max_agents of {max}",
                    ctx.name,
                    known.len()
                )));
            }
        }
        if let Some(max) = ctx.max_sessions_per_agent {
            let held = st.sessions.values().filter(|s| s.agent_id == agent_id).count() as u64;
            if held >= max {
                return Err(StorageError::QuotaExceeded(format!(
                    "agent '{agent_id}' holds {held} sessions in namespace '{}'; its max_sessions_per_agent is {max}",
                    ctx.name
                )));
            }
        }
        Ok(())
    }

    fn agents(&self, ns: &Namespace, now: u64) -> Vec<AgentSummary> {
        let st = ns.state.read();
        let mut by_agent: BTreeMap<String, AgentSummary> = BTreeMap::new();
        for m in st.metas.values().filter(|m| m.live(now)) {
            let e = by_agent
                .entry(m.agent_id.clone())
                .or_insert_with(|| AgentSummary { agent_id: m.agent_id.clone(), ..Default::default() });
            e.memory_count += 1;
            e.vector_count += 1;
        }
        for s in st.sessions.values() {
            let e = by_agent
                .entry(s.agent_id.clone())
                .or_insert_with(|| AgentSummary { agent_id: s.agent_id.clone(), ..Default::default() });
            e.session_count += 1;
            if s.ended_at.is_none() {
                e.active_sessions += 1;
            }
        }
        by_agent.into_values().collect()
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

    /// Number of memories across loaded namespaces (for metrics).
    pub fn loaded_memories(&self) -> u64 {
        self.loaded.read().values().map(|ns| ns.state.read().metas.len() as u64).sum()
    }

    pub fn is_loaded(&self, ns_id: u64) -> bool {
        self.loaded.read().contains_key(&ns_id)
    }
}

/// Combine vector and text candidates into (relevance, vector score, text score) per id.
///
/// * `minmax`: each list is min-max normalised to [0, 1] over its candidates (a list whose
///   scores are all equal normalises to 1), then `w·vector + (1−w)·text`, a missing side
///   counting 0; `w` = `vector_weight` (default 0.7). With only one list present its normalised
///   score is the relevance.
/// * `rrf`: `Σ 1/(60 + rank)` over the lists, rescaled so a first place in every list is 1.
pub fn fuse(
    vector: &[(String, f32)],
    text: &[(String, f32)],
    fusion: Fusion,
    vector_weight: Option<f32>,
) -> HashMap<String, (f32, Option<f32>, Option<f32>)> {
    let mut out: HashMap<String, (f32, Option<f32>, Option<f32>)> = HashMap::new();
    for (id, s) in vector {
        out.entry(id.clone()).or_insert((0.0, None, None)).1 = Some(*s);
    }
    for (id, s) in text {
        out.entry(id.clone()).or_insert((0.0, None, None)).2 = Some(*s);
    }
    let w = vector_weight.unwrap_or(0.7).clamp(0.0, 1.0);
    let (w_vec, w_text) = match (vector.is_empty(), text.is_empty()) {
        (false, true) => (1.0, 0.0),
        (true, false) => (0.0, 1.0),
        _ => (w, 1.0 - w),
    };
    match fusion {
        Fusion::Minmax => {
            let norm = |list: &[(String, f32)]| -> HashMap<String, f32> {
                let min = list.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
                let max = list.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
                list.iter().map(|(id, s)| (id.clone(), if max > min { (s - min) / (max - min) } else { 1.0 })).collect()
            };
            let nv = norm(vector);
            let nt = norm(text);
            for (id, e) in out.iter_mut() {
                e.0 = w_vec * nv.get(id).copied().unwrap_or(0.0) + w_text * nt.get(id).copied().unwrap_or(0.0);
            }
        }
        Fusion::Rrf => {
            const K: f32 = 60.0;
            let rank = |list: &[(String, f32)]| -> HashMap<String, f32> {
                list.iter().enumerate().map(|(i, (id, _))| (id.clone(), 1.0 / (K + 1.0 + i as f32))).collect()
            };
            let rv = rank(vector);
            let rt = rank(text);
            let best = (w_vec + w_text) / (K + 1.0);
            for (id, e) in out.iter_mut() {
                let s = w_vec * rv.get(id).copied().unwrap_or(0.0) + w_text * rt.get(id).copied().unwrap_or(0.0);
                e.0 = if best > 0.0 { s / best } else { 0.0 };
            }
        }
    }
    out
}

/// `score = relevance × (0.75 + 0.25·importance) × (0.85 + 0.15·2^(−age_days/14))`
///
/// Relevance dominates; importance and recency break ties and lift fresh, important memories.
pub fn weighted_score(relevance: f32, importance: f32, created_at: u64, now: u64) -> f32 {
    let age_days = now.saturating_sub(created_at) as f32 / 86_400.0;
    let recency = 0.5f32.powf(age_days / 14.0);
    relevance * (0.75 + 0.25 * importance.clamp(0.0, 1.0)) * (0.85 + 0.15 * recency)
}

#[cfg(test)]
mod replication_tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::embed::HashEmbedder;

    fn ctx(epoch: u64) -> NsContext {
        NsContext {
            id: 7,
            name: "ns".into(),
            key: DataKey::new(7, 1, SecretKey::from_bytes([9; 32])),
            dimension: 16,
            embedder: Arc::new(HashEmbedder::new(16)),
            max_memories: None,
            max_agents: None,
            max_sessions_per_agent: None,
            metric: crate::vector::Metric::Cosine,
            epoch,
            generation: 0,
        }
    }

    fn write(store: &Store, ctx: &NsContext, content: &str) -> Result<ReplEntry> {
        let op = DataOp::Store {
            items: vec![NewMemory {
                id: None,
                agent_id: "a".into(),
                content: content.into(),
                memory_type: MemoryType::default(),
                importance: 0.5,
                tags: vec![],
                metadata: None,
                session_id: None,
                expires_at: None,
                embedding: None,
            }],
        };
        Ok(store.execute(ctx, op)?.replicate.expect("a write replicates"))
    }

    fn contents(store: &Store, ctx: &NsContext) -> Vec<String> {
        let op = DataOp::List { filter: MemoryFilter::default(), sort: SortBy::CreatedAtAsc, limit: 100, offset: 0 };
        match store.execute(ctx, op).expect("list").result {
            DataResult::Memories { memories, .. } => memories.into_iter().map(|m| m.content).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fencing_and_divergence_are_detected_and_a_copy_repairs() {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let open = |i: usize| Store::open(dirs[i].path(), StoreConfig::default()).expect("open");
        let (old_primary, follower, new_primary) = (open(0), open(1), open(2));
        let (e1, e2) = (ctx(1), ctx(2));

        // Epoch 1: the first write reaches everyone.
        let first = write(&old_primary, &e1, "one").expect("write");
        for s in [&follower, &new_primary] {
            assert_eq!(
                s.apply_replicated(&e1, Some(1), None, &[first.clone()]).expect("apply"),
                ApplyOutcome::Applied { seq: 1 }
            );
        }
        // The old primary's second write reaches the follower only (never acknowledged).
        let stale = write(&old_primary, &e1, "never acknowledged").expect("write");
        assert_eq!(
            follower.apply_replicated(&e1, Some(1), Some((1, 1)), &[stale.clone()]).expect("apply"),
            ApplyOutcome::Applied { seq: 2 }
        );
        // Epoch 2: the new primary fences the follower and writes its own seq 2.
        assert_eq!(follower.fence(&e1, 2).expect("fence"), NsProgress { applied_seq: 2, epoch: 1 });
        let fresh = write(&new_primary, &e2, "two").expect("write");
        assert_eq!((fresh.seq, fresh.epoch), (2, 2));

        // The old primary is refused by the fenced follower, and refuses itself once fenced.
        assert_eq!(
            follower.apply_replicated(&e1, Some(1), None, &[stale]).expect("apply"),
            ApplyOutcome::Fenced { epoch: 2 }
        );
        old_primary.fence(&e1, 2).expect("fence");
        assert!(matches!(write(&old_primary, &e1, "late"), Err(StorageError::Fenced(2))));

        // Same sequence number from another epoch: divergence, not a silent duplicate.
        assert!(matches!(
            follower.apply_replicated(&e2, Some(2), Some((1, 1)), &[fresh.clone()]).expect("apply"),
            ApplyOutcome::Diverged { .. }
        ));
        // A next entry whose predecessor differs from the follower's: divergence too.
        let third = write(&new_primary, &e2, "three").expect("write");
        assert!(matches!(
            follower.apply_replicated(&e2, Some(2), Some((2, 2)), &[third.clone()]).expect("apply"),
            ApplyOutcome::Diverged { .. }
        ));

        // A full copy (rows and log) repairs the follower; it then follows the new primary.
        let (progress, rows) = new_primary.export_namespace(7).expect("export");
        follower.import_begin(7).expect("begin");
        follower.import_rows(&rows).expect("rows");
        follower.import_finish(7, progress).expect("finish");
        assert_eq!(contents(&follower, &e2), vec!["one", "two", "three"]);
        assert_eq!(follower.log_epoch_at(&e2, 3).expect("log"), Some(2));
        let fourth = write(&new_primary, &e2, "four").expect("write");
        assert_eq!(
            follower.apply_replicated(&e2, Some(2), Some((3, 2)), &[fourth]).expect("apply"),
            ApplyOutcome::Applied { seq: 4 }
        );
        assert_eq!(contents(&follower, &e2), vec!["one", "two", "three", "four"]);
        // Truncation keeps the last applied entry (the anchor of the next check).
        follower.truncate_repl(&e2, 10).expect("truncate");
        assert_eq!(follower.repl_floor(7).expect("floor"), Some(4));
    }

    #[test]
    fn a_fence_survives_a_restart() {
        let (primary_dir, replica_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let old_primary = Store::open(primary_dir.path(), StoreConfig::default()).expect("open");
        let first = write(&old_primary, &ctx(1), "one").expect("write");
        let late = write(&old_primary, &ctx(1), "late").expect("write");
        {
            let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("open");
            replica.apply_replicated(&ctx(1), Some(1), None, &[first]).expect("apply");
            // A new primary of epoch 5 fences it; the replica's catalogue still says epoch 1.
            replica.fence(&ctx(1), 5).expect("fence");
            replica.shutdown().expect("shutdown");
        }
        let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("reopen");
        // The deposed primary (epoch 1) is still refused after the restart, and nothing is applied.
        assert_eq!(
            replica.apply_replicated(&ctx(1), Some(1), Some((1, 1)), &[late]).expect("apply"),
            ApplyOutcome::Fenced { epoch: 5 }
        );
        assert_eq!(contents(&replica, &ctx(1)), vec!["one"]);
    }

    /// Every text maps to the same unit vector: unlike the hash embedder's vectors, so a test
    /// can tell which embedder made a stored vector.
    struct ConstantEmbedder;

    impl crate::embed::Embedder for ConstantEmbedder {
        fn provider(&self) -> &str {
            "constant"
        }
        fn dimension(&self) -> usize {
            16
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|_| vec![0.25; 16]).collect())
        }
    }

    #[test]
    fn an_entry_from_before_an_embedder_switch_is_embedded_again() {
        let (primary_dir, replica_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let primary = Store::open(primary_dir.path(), StoreConfig::default()).expect("open");
        let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("open");
        let old = ctx(1);
        let first = write(&primary, &old, "written before the switch").expect("write");
        // Made with the old embedder (generation 0), but applied here only after the switch.
        let straggler = write(&primary, &old, "applied after the switch").expect("write");
        assert_eq!(straggler.generation, 0);
        replica.apply_replicated(&old, Some(1), None, &[first]).expect("apply");
        let new = NsContext { generation: 1, embedder: Arc::new(ConstantEmbedder), ..ctx(1) };
        assert_eq!(
            replica.apply_replicated(&new, Some(1), Some((1, 1)), &[straggler]).expect("apply"),
            ApplyOutcome::Applied { seq: 2 }
        );
        let recall = DataOp::Recall(RecallParams {
            query: String::new(),
            query_embedding: Some(vec![0.25; 16]),
            top_k: 10,
            filter: MemoryFilter::default(),
            routing: Routing::Vector,
            fusion: Fusion::default(),
            vector_weight: None,
            min_score: None,
            importance_weighted: false,
            record_access: false,
        });
        let DataResult::Recalled(hits) = replica.execute(&new, recall).expect("recall").result else {
            panic!("not a recall answer")
        };
        // Both vectors are the new embedder's: the promoted one and the straggler's.
        assert_eq!(hits.len(), 2);
        for h in &hits {
            let score = h.vector_score.expect("vector score");
            assert!(score > 0.999, "{}: vector score {score}", h.memory.content);
        }
    }
}
