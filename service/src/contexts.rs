//! What a data operation on one namespace needs on this node: its unwrapped data key (from the
//! node's keyring, cached) and its embedder (built once per provider and dimension). Shared by
//! the service's [`crate::Core`] and the data plane ([`crate::cluster::Cluster`]), below both.

use loci_raft::quota::tighter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use loci_raft::catalogue::{Distance, EmbedderSpec, NamespaceEntry};
use loci_storage::NsContext;
use loci_storage::crypto::{DataKey, Keyring};
use loci_storage::embed::{HashEmbedder, SharedEmbedder};
use parking_lot::RwLock;

use crate::embedders::OpenAiConfig;
use crate::error::{ServiceError, ServiceResult};

pub struct Contexts {
    keyring: RwLock<Keyring>,
    data_keys: RwLock<HashMap<(u64, u32), DataKey>>,
    embedders: RwLock<HashMap<(String, usize), SharedEmbedder>>,
    minilm: OnceLock<Arc<loci_storage::minilm::MiniLm>>,
    openai: OnceLock<OpenAiConfig>,
}

impl Contexts {
    pub fn new(keyring: Keyring) -> Self {
        Contexts {
            keyring: RwLock::new(keyring),
            data_keys: RwLock::new(HashMap::new()),
            embedders: RwLock::new(HashMap::new()),
            minilm: OnceLock::new(),
            openai: OnceLock::new(),
        }
    }

    /// Install the built-in model (node start-up, before serving).
    pub fn set_minilm(&self, m: Arc<loci_storage::minilm::MiniLm>) {
        let _ = self.minilm.set(m);
    }

    pub fn has_minilm(&self) -> bool {
        self.minilm.get().is_some()
    }

    pub fn set_openai(&self, c: OpenAiConfig) {
        let _ = self.openai.set(c);
    }

    /// Replace the key-encryption key (a node that joined learns the cluster's parameters late;
    /// an encryption rotation installs the new one).
    pub fn set_keyring(&self, k: Keyring) {
        *self.keyring.write() = k;
        self.data_keys.write().clear();
    }

    pub fn keyring(&self) -> parking_lot::RwLockReadGuard<'_, Keyring> {
        self.keyring.read()
    }

    /// Keep cached data keys only of these namespaces (the others were erased).
    pub fn retain(&self, live: &std::collections::HashSet<u64>) {
        self.data_keys.write().retain(|(id, _), _| live.contains(id));
    }

    /// Whether an unwrapped data key of this namespace is held in memory here.
    pub fn holds_key(&self, ns_id: u64) -> bool {
        self.data_keys.read().keys().any(|(id, _)| *id == ns_id)
    }

    /// Forget the cached data keys of a namespace (it was erased).
    pub fn forget(&self, ns_id: u64) {
        self.data_keys.write().retain(|(id, _), _| *id != ns_id);
    }

    pub fn embedder(&self, spec: &EmbedderSpec) -> ServiceResult<SharedEmbedder> {
        let key = (spec.provider.clone(), spec.dimension);
        if let Some(e) = self.embedders.read().get(&key) {
            return Ok(e.clone());
        }
        let e: SharedEmbedder = match spec.provider.as_str() {
            HashEmbedder::PROVIDER => Arc::new(HashEmbedder::new(spec.dimension)),
            loci_storage::minilm::PROVIDER => {
                let m = self.minilm.get().cloned().ok_or_else(|| {
                    ServiceError::unavailable("the built-in model is not loaded on this node (run `loci model fetch`)")
                })?;
                if spec.dimension != loci_storage::minilm::DIMENSION {
                    return Err(ServiceError::bad_request(format!(
                        "builtin-minilm embeds in {} dimensions, not {}",
                        loci_storage::minilm::DIMENSION,
                        spec.dimension
                    )));
                }
                m
            }
            "client" => Arc::new(crate::embedders::ClientVectors { dimension: spec.dimension }),
            "openai-compatible" => {
                let cfg = self.openai.get().cloned().ok_or_else(|| {
                    ServiceError::bad_request(
                        "no OpenAI-compatible endpoint is configured (LOCI_OPENAI_EMBEDDINGS_URL)",
                    )
                })?;
                Arc::new(crate::embedders::OpenAiCompatible::new(cfg, spec.dimension))
            }
            other => {
                return Err(ServiceError::bad_request(format!(
                    "unknown embedding provider '{}': builtin-minilm, hash, openai-compatible or client",
                    crate::validate::printable(other)
                )));
            }
        };
        self.embedders.write().insert(key, e.clone());
        Ok(e)
    }

    fn data_key(&self, entry: &NamespaceEntry) -> ServiceResult<DataKey> {
        let k = (entry.id, entry.data_key.dek_version);
        if let Some(dk) = self.data_keys.read().get(&k) {
            return Ok(dk.clone());
        }
        let dk = self.keyring.read().unwrap(entry.id, &entry.data_key).map_err(|e| {
            tracing::error!(namespace = %entry.name, error = %e, "cannot unwrap data key");
            ServiceError::internal("cannot unwrap the namespace data key")
        })?;
        self.data_keys.write().insert(k, dk.clone());
        Ok(dk)
    }

    /// Everything storage needs to run an operation on `entry`'s copy on this node.
    pub fn context(&self, entry: &NamespaceEntry) -> ServiceResult<NsContext> {
        Ok(NsContext {
            id: entry.id,
            name: entry.name.clone(),
            key: self.data_key(entry)?,
            dimension: entry.dimension,
            // Reads, deletes and replicated writes need no embedder: a node missing this one
            // (e.g. without the model files) still serves them and refuses only embedding.
            embedder: self.embedder(&entry.embedder).unwrap_or_else(|e| {
                Arc::new(crate::embedders::Unavailable {
                    provider: entry.embedder.provider.clone(),
                    dimension: entry.embedder.dimension,
                    reason: e.message,
                })
            }),
            // The tenant's preference, within the operator's ceiling.
            max_memories: tighter(entry.policy.max_memories, entry.ceiling.max_memories),
            max_agents: tighter(entry.policy.max_agents, entry.ceiling.max_agents),
            max_sessions_per_agent: tighter(entry.policy.max_sessions_per_agent, entry.ceiling.max_sessions_per_agent),
            epoch: entry.placement.epoch,
            generation: entry.embedder.generation,
            auto_link_threshold: entry.policy.graph_link_threshold.map(|t| t as f32),
            max_auto_links: entry.policy.graph_max_links.min(20) as usize,
            metric: match entry.distance {
                Distance::Cosine => loci_storage::vector::Metric::Cosine,
                Distance::DotProduct => loci_storage::vector::Metric::Dot,
                Distance::Euclidean => loci_storage::vector::Metric::Euclidean,
            },
        })
    }
}

/// Whether this node serves data: set once it is a member holding the cluster's keys, cleared
/// at shutdown (`/health/ready`; the reconciler and the sync worker wait for it).
#[derive(Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
