//! The node's data store: one RocksDB with fixed column families keyed by an 8-byte namespace id
//! prefix, a per-namespace in-memory state (memory metadata and vector index) loaded lazily from
//! the encrypted rows, and the node-wide text index. [`Store::execute`] runs one [`DataOp`].
//!
//! The store is split by concern, each an `impl Store` block of its own:
//! `keyspace` (column families and key encodings), `namespace` (loading and promotion),
//! `exec` (the executor), `repl` (the replication log and fencing), `copy` (full copies),
//! `query` and `rank` (filtering, listing, recall and its pure ranking functions), `graph`
//! (links, traversal, entities), `maintain` (deduplication, consolidation, the trash, feedback,
//! decay statistics), and `housekeeping` (access stats, expiry, erasure, shutdown).

mod copy;
pub use copy::ExportPart;
mod exec;
mod extraction;
#[cfg(test)]
mod extraction_tests;
pub use extraction::ExtractionStats;
mod graph;
#[cfg(test)]
mod graph_tests;
mod housekeeping;
#[cfg(test)]
mod isolation_tests;
mod keyspace;
mod maintain;
mod namespace;
mod query;
mod rank;
mod repl;
#[cfg(test)]
mod repl_tests;
#[cfg(test)]
mod vector_query_tests;
mod vectors;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options, PrefixRange, ReadOptions,
    SliceTransform, WriteBatch, WriteOptions,
};

use crate::crypto::{DataKey, random_bytes};
use crate::embed::SharedEmbedder;
use crate::error::{Result, StorageError};
use crate::model::*;
use crate::text::TextIndex;
use crate::vector::VectorIndex;

use keyspace::ALL_CFS;
pub use keyspace::{CF_IDX, CF_MEM, CF_NSMETA, CF_REPL, CF_VEC};
use rank::Meta;
pub use rank::{fuse, weighted_score};

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// fsync the WAL on every write batch (survives power loss, not only process crashes).
    pub sync_writes: bool,
    /// Live vectors above which a namespace searches an HNSW graph instead of exactly.
    pub ann_threshold: usize,
    /// Block cache shared by every column family.
    pub block_cache_bytes: usize,
    /// Content bytes one answer (recall, list, batch recall) carries at most: the memory that
    /// crosses the bound is the last one (so `top_k` 10,000 of 100 KB memories cannot make a
    /// gigabyte answer, nor a gigabyte of decryption on the primary).
    pub max_answer_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sync_writes: true,
            ann_threshold: 10_000,
            block_cache_bytes: 128 * 1024 * 1024,
            max_answer_bytes: 16 * 1024 * 1024,
        }
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
    /// A store links each new memory to the most alike memories of its agent at least this
    /// similar (`related_to` edges); `None`: no similarity links.
    pub auto_link_threshold: Option<f32>,
    /// How many such links one new memory gets at most.
    pub max_auto_links: usize,
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
    /// The namespace's stored links (knowledge graph).
    graph: crate::graph::Graph,
    /// Which memories mention which entities (derived from content, rebuilt on load).
    entities: crate::entities::EntityIndex,
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
    loaded: extraction::Loaded,
    /// Entity extraction off the write path (its worker records into `loaded`).
    extraction: extraction::Extraction,
    /// Serialises namespace loading so two callers don't both build a state.
    load_lock: Mutex<()>,
    /// Namespaces dropped since start: never loaded again.
    dropped: RwLock<HashSet<u64>>,
    /// Per namespace: serialises the steps of full copies received (a new copy's begin never
    /// runs into an install under way).
    copy_locks: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
    path: PathBuf,
}

/// A namespace context for the store's tests: hash embedder of 64 dimensions, cosine, epoch 1,
/// no limits, similarity links at 0.8 (at most 3).
#[cfg(test)]
pub(crate) fn test_context(id: u64, name: &str, seed: u8) -> NsContext {
    NsContext {
        id,
        name: name.into(),
        key: DataKey::new(id, 1, crate::crypto::SecretKey::from_bytes([seed; 32])),
        dimension: 64,
        embedder: Arc::new(crate::embed::HashEmbedder::new(64)),
        max_memories: None,
        max_agents: None,
        max_sessions_per_agent: None,
        metric: crate::vector::Metric::Cosine,
        epoch: 1,
        generation: 0,
        auto_link_threshold: Some(0.8),
        max_auto_links: 3,
    }
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

/// Whether a row as a full copy or a backup carries it (its column family and whole key) is a
/// memory or a session: what a backup counts as records (links, trash and feedback rows are not).
pub fn is_record_row(cf: &str, key: &[u8]) -> bool {
    cf == CF_MEM && matches!(key.get(8), Some(&keyspace::KIND_MEMORY) | Some(&keyspace::KIND_SESSION))
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
        let loaded: extraction::Loaded = Arc::new(RwLock::new(HashMap::new()));
        let store = Store {
            db: Arc::new(db),
            text: Arc::new(text),
            config,
            extraction: extraction::Extraction::start(loaded.clone(), extraction::QUEUE_BOUND),
            loaded,
            load_lock: Mutex::new(()),
            dropped: RwLock::new(HashSet::new()),
            copy_locks: Mutex::new(HashMap::new()),
            path: dir.to_path_buf(),
        };
        store.recover_staged_copies()?;
        Ok(store)
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

    /// Number of memories across loaded namespaces (for metrics).
    pub fn loaded_memories(&self) -> u64 {
        self.loaded.read().values().map(|ns| ns.state.read().metas.len() as u64).sum()
    }

    /// The extractor the store's extraction queue runs (the rule-based one unless set).
    pub fn set_extractor(&self, e: crate::extract::SharedExtractor) {
        self.extraction.set_extractor(e);
    }

    pub fn extractor(&self) -> crate::extract::SharedExtractor {
        self.extraction.extractor()
    }

    /// What the entity extraction queue has done (for metrics).
    pub fn extraction_stats(&self) -> ExtractionStats {
        self.extraction.stats()
    }

    /// Entity extractions of a namespace still queued.
    pub fn pending_extractions(&self, ns_id: u64) -> u64 {
        self.extraction.pending(ns_id)
    }

    /// Wait (at most `timeout`) until a namespace has no queued extraction; whether it has none.
    pub fn settle_extractions(&self, ns_id: u64, timeout: std::time::Duration) -> bool {
        self.extraction.settle(ns_id, timeout)
    }

    pub fn is_loaded(&self, ns_id: u64) -> bool {
        self.loaded.read().contains_key(&ns_id)
    }
}
