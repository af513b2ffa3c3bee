//! The service layer shared by REST and gRPC: namespace resolution and creation through the
//! catalogue, data keys, embedders, and execution of data operations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use loci_raft::CatalogueNode;
use loci_raft::catalogue::{
    Command, CommandResult, Distance, EmbedderSpec, MemoryPolicy, NamespaceEntry, NamespaceKind,
};
use loci_storage::crypto::{DataKey, Keyring, random_bytes};
use loci_storage::embed::{HashEmbedder, SharedEmbedder};
use loci_storage::model::{DataOp, DataResult, now_secs};
use loci_storage::{NsContext, Store};
use parking_lot::RwLock;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

/// Names the published clients use for an agent's namespace: `_dakera_agent_{x}` means `x`.
pub const AGENT_NAMESPACE_PREFIX: &str = "_dakera_agent_";

pub fn canonical_namespace(raw: &str) -> &str {
    raw.strip_prefix(AGENT_NAMESPACE_PREFIX).unwrap_or(raw)
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub node_id: u64,
    pub version: String,
    /// Dimension of namespaces created implicitly for agents.
    pub default_dimension: usize,
    /// Provider of namespaces created without an explicit embedder.
    pub default_embedder: String,
    pub max_content_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            node_id: 1,
            version: env!("CARGO_PKG_VERSION").to_string(),
            default_dimension: 384,
            default_embedder: HashEmbedder::PROVIDER.into(),
            max_content_bytes: 100_000,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct NamespaceSpec {
    pub name: String,
    pub kind: NamespaceKind,
    pub dimension: Option<usize>,
    pub distance: Distance,
    pub embedder: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub description: Option<String>,
}

/// Proof of an erasure, returned by namespace deletion.
#[derive(Clone, Debug, Serialize)]
pub struct DeletionReceipt {
    pub namespace: String,
    pub deleted: bool,
    pub memories_deleted: u64,
    pub data_key_destroyed: bool,
    /// The catalogue's history (which held the wrapped key) was snapshotted and purged.
    pub catalogue_history_purged: bool,
    pub deleted_at: u64,
}

pub struct Core {
    pub config: CoreConfig,
    pub catalogue: Arc<CatalogueNode>,
    pub store: Arc<Store>,
    keyring: RwLock<Keyring>,
    data_keys: RwLock<HashMap<(u64, u32), DataKey>>,
    embedders: RwLock<HashMap<(String, usize), SharedEmbedder>>,
    pub root_key_digest: [u8; 32],
    pub started_at: Instant,
    ready: AtomicBool,
    pub audit: Arc<crate::audit::AuditLog>,
    /// One encryption rotation at a time.
    rotation: tokio::sync::Mutex<()>,
    plane: std::sync::OnceLock<Arc<dyn crate::plane::DataPlane>>,
    cluster: std::sync::OnceLock<Arc<dyn crate::plane::ClusterAdmin>>,
    minilm: std::sync::OnceLock<Arc<loci_storage::minilm::MiniLm>>,
    openai: std::sync::OnceLock<crate::embedders::OpenAiConfig>,
}

impl Core {
    pub fn new(
        config: CoreConfig,
        catalogue: Arc<CatalogueNode>,
        store: Arc<Store>,
        keyring: Keyring,
        root_key: &str,
        audit: Arc<crate::audit::AuditLog>,
    ) -> Self {
        Core {
            config,
            catalogue,
            store,
            keyring: RwLock::new(keyring),
            data_keys: RwLock::new(HashMap::new()),
            embedders: RwLock::new(HashMap::new()),
            root_key_digest: crate::auth::sha256(root_key),
            started_at: Instant::now(),
            ready: AtomicBool::new(false),
            audit,
            rotation: tokio::sync::Mutex::new(()),
            plane: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            minilm: std::sync::OnceLock::new(),
            openai: std::sync::OnceLock::new(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn namespace(&self, name: &str) -> Option<NamespaceEntry> {
        self.catalogue.view.read().namespace(canonical_namespace(name)).cloned()
    }

    pub fn namespaces(&self) -> Vec<NamespaceEntry> {
        self.catalogue.view.read().namespaces.values().cloned().collect()
    }

    pub fn embedder(&self, spec: &EmbedderSpec) -> ApiResult<SharedEmbedder> {
        let key = (spec.provider.clone(), spec.dimension);
        if let Some(e) = self.embedders.read().get(&key) {
            return Ok(e.clone());
        }
        let e: SharedEmbedder = match spec.provider.as_str() {
            HashEmbedder::PROVIDER => Arc::new(HashEmbedder::new(spec.dimension)),
            loci_storage::minilm::PROVIDER => {
                let m = self.minilm.get().cloned().ok_or_else(|| {
                    ApiError::unavailable("the built-in model is not loaded on this node (run `loci model fetch`)")
                })?;
                if spec.dimension != loci_storage::minilm::DIMENSION {
                    return Err(ApiError::bad_request(format!(
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
                    ApiError::bad_request("no OpenAI-compatible endpoint is configured (LOCI_OPENAI_EMBEDDINGS_URL)")
                })?;
                Arc::new(crate::embedders::OpenAiCompatible::new(cfg, spec.dimension))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown embedding provider '{}': builtin-minilm, hash, openai-compatible or client",
                    crate::validate::printable(other)
                )));
            }
        };
        self.embedders.write().insert(key, e.clone());
        Ok(e)
    }

    fn data_key(&self, entry: &NamespaceEntry) -> ApiResult<DataKey> {
        let k = (entry.id, entry.data_key.dek_version);
        if let Some(dk) = self.data_keys.read().get(&k) {
            return Ok(dk.clone());
        }
        let dk = self.keyring.read().unwrap(entry.id, &entry.data_key).map_err(|e| {
            tracing::error!(namespace = %entry.name, error = %e, "cannot unwrap data key");
            ApiError::internal("cannot unwrap the namespace data key")
        })?;
        self.data_keys.write().insert(k, dk.clone());
        Ok(dk)
    }

    pub fn context(&self, entry: &NamespaceEntry) -> ApiResult<NsContext> {
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
            max_memories: entry.policy.max_memories,
            max_agents: entry.policy.max_agents,
            max_sessions_per_agent: entry.policy.max_sessions_per_agent,
            epoch: entry.placement.epoch,
            generation: entry.embedder.generation,
            metric: match entry.distance {
                Distance::Cosine => loci_storage::vector::Metric::Cosine,
                Distance::DotProduct => loci_storage::vector::Metric::Dot,
                Distance::Euclidean => loci_storage::vector::Metric::Euclidean,
            },
        })
    }

    /// Which embedder a new namespace gets. Without a provider: the node default, unless the
    /// requested dimension differs from it — then the hashed n-gram embedder at that dimension
    /// (so clients that create e.g. 1024-dimension namespaces get server-side text embedding).
    pub fn embedder_spec(&self, provider: Option<&str>, dimension: Option<usize>) -> ApiResult<EmbedderSpec> {
        let default_dim = match self.config.default_embedder.as_str() {
            loci_storage::minilm::PROVIDER => loci_storage::minilm::DIMENSION,
            _ => self.config.default_dimension,
        };
        // Names the capabilities list as aliases of the built-in model.
        let provider = provider.map(|p| match p {
            "minilm" | "all-MiniLM-L6-v2" | "sentence-transformers/all-MiniLM-L6-v2" => loci_storage::minilm::PROVIDER,
            other => other,
        });
        let spec = match (provider, dimension) {
            (Some(p), d) => {
                let fixed = (p == loci_storage::minilm::PROVIDER).then_some(loci_storage::minilm::DIMENSION);
                let dim = match (fixed, d) {
                    (Some(f), Some(d)) if d != f => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            "DIMENSION_MISMATCH",
                            format!("{p} embeds in {f} dimensions, not {d}"),
                        ));
                    }
                    (Some(f), _) => f,
                    (None, Some(d)) => d,
                    (None, None) if p == HashEmbedder::PROVIDER => default_dim,
                    (None, None) => return Err(ApiError::bad_request(format!("provider {p} needs a dimension"))),
                };
                EmbedderSpec { provider: p.to_string(), dimension: dim, generation: 0 }
            }
            (None, Some(d)) if d != default_dim => {
                EmbedderSpec { provider: HashEmbedder::PROVIDER.into(), dimension: d, generation: 0 }
            }
            (None, _) => {
                EmbedderSpec { provider: self.config.default_embedder.clone(), dimension: default_dim, generation: 0 }
            }
        };
        self.embedder(&spec)?;
        Ok(spec)
    }

    /// Install the built-in model (node start-up).
    pub fn set_minilm(&self, m: Arc<loci_storage::minilm::MiniLm>) {
        let _ = self.minilm.set(m);
    }

    pub fn has_minilm(&self) -> bool {
        self.minilm.get().is_some()
    }

    pub fn set_openai(&self, c: crate::embedders::OpenAiConfig) {
        let _ = self.openai.set(c);
    }

    /// Create a namespace (idempotent by name: an existing one is returned with `created=false`).
    pub async fn create_namespace(&self, spec: NamespaceSpec) -> ApiResult<(NamespaceEntry, bool)> {
        if let Some(existing) = self.namespace(&spec.name) {
            return Ok((existing, false));
        }
        let embedder = self.embedder_spec(spec.embedder.as_deref(), spec.dimension)?;
        let dimension = embedder.dimension;
        self.embedder(&embedder)?;
        for _ in 0..3 {
            let mut b = [0u8; 8];
            random_bytes(&mut b);
            // Random, never reused ids; the top bits stay clear so `id + 1` bounds a key range.
            let id = u64::from_be_bytes(b) >> 2 | 1;
            let data_key = self.keyring.read().new_wrapped_dek(id, 1);
            let entry = NamespaceEntry {
                id,
                name: spec.name.clone(),
                kind: spec.kind,
                dimension,
                distance: spec.distance,
                embedder: embedder.clone(),
                policy: MemoryPolicy::default(),
                data_key,
                metadata: spec.metadata.clone(),
                description: spec.description.clone(),
                created_at: now_secs(),
                reembed: None,
                placement: match self.plane.get() {
                    Some(p) => p.initial_placement(id),
                    None => loci_raft::catalogue::Placement {
                        epoch: 1,
                        replicas: vec![self.config.node_id],
                        states: [(self.config.node_id, loci_raft::catalogue::ReplicaState::Active)].into(),
                        rf: 1,
                        leaving: Default::default(),
                        primary_since: 0,
                    },
                },
            };
            match self.catalogue.write(Command::CreateNamespace { entry }).await? {
                CommandResult::Namespace { entry, created } => {
                    if created {
                        self.audit.event(
                            "namespace_created",
                            None,
                            serde_json::json!({"namespace": entry.name, "kind": entry.kind.as_str(), "dimension": entry.dimension}),
                        );
                    }
                    return Ok((entry, created));
                }
                CommandResult::Rejected(_) => continue,
                other => {
                    return Err(ApiError::internal(format!("unexpected catalogue answer {other:?}")));
                }
            }
        }
        Err(ApiError::internal("could not allocate a namespace id"))
    }

    /// The namespace a write goes to, created (as an agent namespace) if it does not exist yet.
    pub async fn namespace_for_write(&self, name: &str) -> ApiResult<NamespaceEntry> {
        if let Some(e) = self.namespace(name) {
            return Ok(e);
        }
        crate::validate::namespace_name_for_agent(name)?;
        let (entry, _) = self
            .create_namespace(NamespaceSpec {
                name: name.to_string(),
                kind: NamespaceKind::Agent,
                dimension: None,
                distance: Distance::Cosine,
                embedder: None,
                metadata: None,
                description: None,
            })
            .await?;
        Ok(entry)
    }

    /// Run a data operation on the namespace wherever its placement says (the data plane routes,
    /// forwards and replicates); without a data plane, locally.
    pub async fn exec(&self, entry: &NamespaceEntry, op: DataOp) -> ApiResult<DataResult> {
        match self.plane.get() {
            Some(p) => p.execute(entry.clone(), op).await,
            None => Ok(self.exec_local(entry, op).await?.result),
        }
    }

    /// Run a data operation on this node's copy (on a blocking thread: storage does I/O and crypto).
    pub async fn exec_local(&self, entry: &NamespaceEntry, op: DataOp) -> ApiResult<loci_storage::model::Executed> {
        let ctx = self.context(entry)?;
        let store = self.store.clone();
        let res = tokio::task::spawn_blocking(move || store.execute(&ctx, op))
            .await
            .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?;
        Ok(res?)
    }

    /// Replace the key-encryption key (a node that joined learns the cluster's parameters late).
    pub fn set_keyring(&self, k: Keyring) {
        *self.keyring.write() = k;
        self.data_keys.write().clear();
    }

    pub fn set_cluster(&self, c: Arc<dyn crate::plane::ClusterAdmin>) {
        let _ = self.cluster.set(c);
    }

    pub fn cluster(&self) -> Option<&Arc<dyn crate::plane::ClusterAdmin>> {
        self.cluster.get()
    }

    /// A catalogue change in force on every alive node when this returns.
    pub async fn write_everywhere(&self, cmd: loci_raft::Command) -> ApiResult<CommandResult> {
        let (res, index) = self.catalogue.write_indexed(cmd).await?;
        if let Some(p) = self.plane.get() {
            p.await_applied_everywhere(index).await;
        }
        Ok(res)
    }

    /// Install the data plane (once, at start-up).
    pub fn set_plane(&self, plane: Arc<dyn crate::plane::DataPlane>) {
        let _ = self.plane.set(plane);
    }

    pub fn plane(&self) -> Option<&Arc<dyn crate::plane::DataPlane>> {
        self.plane.get()
    }

    pub async fn set_policy(&self, name: &str, policy: MemoryPolicy) -> ApiResult<NamespaceEntry> {
        match self.catalogue.write(Command::SetPolicy { name: name.to_string(), policy }).await? {
            CommandResult::Namespace { entry, .. } => Ok(entry),
            CommandResult::NotFound(n) => Err(ApiError::namespace_not_found(&n)),
            other => Err(ApiError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// Erase a namespace: destroy its data key in the catalogue first (every copy of its data
    /// becomes unreadable at once), then delete and compact its rows and index entries, then
    /// purge the catalogue history that held the wrapped key.
    pub async fn delete_namespace(&self, name: &str) -> ApiResult<DeletionReceipt> {
        let entry = match self.catalogue.write(Command::DeleteNamespace { name: name.to_string() }).await? {
            CommandResult::NamespaceDeleted { entry } => entry,
            CommandResult::NotFound(n) => return Err(ApiError::namespace_not_found(&n)),
            other => {
                return Err(ApiError::internal(format!("unexpected catalogue answer {other:?}")));
            }
        };
        self.data_keys.write().retain(|(id, _), _| *id != entry.id);
        let count = match self.plane.get() {
            Some(p) => p.erase(entry.clone()).await?,
            None => self.erase_local(entry.id).await?,
        };
        let purged = match self.catalogue.purge_history().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not purge catalogue history after erasure");
                false
            }
        };
        self.audit.event(
            "namespace_erased",
            None,
            serde_json::json!({"namespace": entry.name, "memories_deleted": count, "data_key_destroyed": true}),
        );
        Ok(DeletionReceipt {
            namespace: entry.name,
            deleted: true,
            memories_deleted: count,
            data_key_destroyed: true,
            catalogue_history_purged: purged,
            deleted_at: now_secs(),
        })
    }
}

impl Core {
    /// Drop a namespace's rows and index entries on this node.
    pub async fn erase_local(&self, ns_id: u64) -> ApiResult<u64> {
        self.data_keys.write().retain(|(id, _), _| *id != ns_id);
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.drop_namespace(ns_id))
            .await
            .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??)
    }
}

/// What an encryption rotation did.
#[derive(Clone, Debug, Serialize)]
pub struct RotationReport {
    pub rotated: usize,
    pub skipped: usize,
    pub namespaces: Vec<String>,
    pub key_id: String,
    pub previous_key_id: String,
    pub scope: &'static str,
    pub reseal: &'static str,
}

impl Core {
    /// Re-wrap every namespace's data key under a KEK derived from `new_secret`, in one catalogue
    /// command (all or nothing); then purge the catalogue history holding the old wrappings. The
    /// node must be restarted with the new key from now on.
    pub async fn rotate_encryption(
        &self,
        new_secret: &loci_storage::crypto::MasterSecret,
        old_secret: Option<loci_storage::crypto::MasterSecret>,
    ) -> ApiResult<RotationReport> {
        let _one = self.rotation.lock().await;
        if let Some(old) = old_secret {
            // Checked under the rotation lock: no other rotation can change the key meanwhile.
            let params = self
                .catalogue
                .view
                .read()
                .encryption
                .clone()
                .ok_or_else(|| ApiError::internal("encryption parameters missing"))?;
            let matches = tokio::task::spawn_blocking(move || old.unlock(&params).is_ok())
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if !matches {
                self.audit.event(
                    "encryption_rotation_refused",
                    None,
                    serde_json::json!({"reason": "old_key mismatch"}),
                );
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "ENCRYPTION_KEY_MISMATCH",
                    "old_key is not the current master key; nothing was changed",
                ));
            }
        }
        for _ in 0..5 {
            let (current, namespaces) = {
                let cat = self.catalogue.view.read();
                let cur = cat.encryption.clone().ok_or_else(|| ApiError::internal("encryption parameters missing"))?;
                (cur, cat.namespaces.values().cloned().collect::<Vec<_>>())
            };
            let (new_ring, params) =
                new_secret.establish_next(current.kek_version).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let mut rewrapped = Vec::with_capacity(namespaces.len());
            {
                let old_ring = self.keyring.read();
                for ns in &namespaces {
                    let dk = old_ring
                        .unwrap(ns.id, &ns.data_key)
                        .map_err(|e| ApiError::internal(format!("unwrap {}: {e}", ns.name)))?;
                    let raw = loci_storage::crypto::SecretKey::from_bytes(*dk.raw().as_bytes());
                    rewrapped.push((ns.name.clone(), new_ring.wrap(ns.id, ns.data_key.dek_version, &raw)));
                }
            }
            match self.catalogue.write(Command::RotateEncryption { params, rewrapped }).await? {
                CommandResult::Ok => {
                    *self.keyring.write() = new_ring;
                    if let Err(e) = self.catalogue.purge_history().await {
                        tracing::warn!(error = %e, "could not purge catalogue history after rotation");
                    }
                    let report = RotationReport {
                        rotated: namespaces.len(),
                        skipped: 0,
                        namespaces: namespaces.iter().map(|n| n.name.clone()).collect(),
                        key_id: format!("kek-v{}", current.kek_version + 1),
                        previous_key_id: format!("kek-v{}", current.kek_version),
                        scope: "global",
                        reseal: "completed",
                    };
                    self.audit.event(
                        "encryption_rotated",
                        None,
                        serde_json::json!({"kek_version": current.kek_version + 1, "namespaces": report.rotated}),
                    );
                    return Ok(report);
                }
                CommandResult::Rejected(m) => {
                    tracing::info!(reason = %m, "encryption rotation raced a catalogue change; retrying");
                    continue;
                }
                other => return Err(ApiError::internal(format!("unexpected catalogue answer {other:?}"))),
            }
        }
        Err(ApiError::unavailable("the catalogue kept changing during the rotation; retry"))
    }

    /// Delete memories older than each namespace's `retention_days`.
    pub async fn sweep_retention(&self) -> ApiResult<u64> {
        let now = now_secs();
        let mut total = 0;
        for entry in self.namespaces() {
            // The primary sweeps; the deletion replicates to the other replicas.
            if self.plane.get().is_some() && entry.placement.primary() != Some(self.config.node_id) {
                continue;
            }
            let by_days = entry.policy.retention_days.map(|d| d.saturating_mul(86_400));
            let keep = match (by_days, entry.policy.retention_seconds) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => continue,
            };
            let filter = loci_storage::model::MemoryFilter {
                created_before: Some(now.saturating_sub(keep).saturating_sub(1)),
                ..Default::default()
            };
            // Only the primary sweeps (the deletion replicates); a failure skips one namespace.
            match self.exec(&entry, DataOp::Forget { filter }).await {
                Ok(DataResult::Deleted(n)) => {
                    if n > 0 {
                        tracing::info!(namespace = %entry.name, deleted = n, "retention sweep");
                    }
                    total += n;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(namespace = %entry.name, error = %e, "retention sweep failed"),
            }
        }
        Ok(total)
    }
}
