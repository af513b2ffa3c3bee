//! The service both fronts call: namespace resolution and creation through the catalogue,
//! erasure, encryption rotation, retention, and every data operation (run by the data plane,
//! [`Cluster`], wherever the namespace's placement says).

use std::sync::Arc;
use std::time::Instant;

use loci_raft::CatalogueNode;
use loci_raft::catalogue::{
    Command, CommandResult, Distance, EmbedderSpec, MemoryPolicy, NamespaceEntry, NamespaceKind,
};
use loci_storage::crypto::random_bytes;
use loci_storage::embed::{HashEmbedder, SharedEmbedder};
use loci_storage::model::{DataOp, DataResult, now_secs};
use loci_storage::{NsContext, Store};
use serde::Serialize;

use crate::cluster::{Cluster, Reach};
use crate::contexts::{Contexts, Readiness};
use crate::error::{ServiceError, ServiceResult};

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
    /// Its key in this node's backup store was removed (`None`: no backup store here; `false`:
    /// no backup held it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_key_destroyed: Option<bool>,
    /// The catalogue's history (which held the wrapped key) was snapshotted and purged.
    pub catalogue_history_purged: bool,
    pub deleted_at: u64,
}

pub struct Core {
    pub config: CoreConfig,
    pub catalogue: Arc<CatalogueNode>,
    pub store: Arc<Store>,
    /// Data keys and embedders (shared with the data plane).
    pub contexts: Arc<Contexts>,
    ready: Arc<Readiness>,
    /// The data plane: routing, forwarding and replication of data operations.
    pub cluster: Arc<Cluster>,
    pub root_key_digest: [u8; 32],
    pub started_at: Instant,
    pub audit: Arc<crate::audit::AuditLog>,
    /// One encryption rotation at a time.
    rotation: tokio::sync::Mutex<()>,
    /// The bearer-token issuer, when the operator configured one ([`Core::with_jwt`]).
    pub jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// The backup store, when the operator configured one ([`Core::with_backups`]).
    pub backup: Option<Arc<crate::backup::BackupState>>,
    /// This node's autopilot passes and decay measurements.
    pub maintenance_state: crate::maintenance::MaintenanceState,
}

impl Core {
    /// The service of a node, over its data plane (which shares `store`, the contexts and the
    /// readiness flag: see [`crate::cluster::Local`]).
    pub fn new(
        config: CoreConfig,
        catalogue: Arc<CatalogueNode>,
        cluster: Arc<Cluster>,
        root_key: &str,
        audit: Arc<crate::audit::AuditLog>,
    ) -> Self {
        let local = cluster.local.clone();
        Core {
            config,
            catalogue,
            store: local.store,
            contexts: local.contexts,
            ready: local.ready,
            cluster,
            root_key_digest: crate::access::sha256(root_key),
            started_at: Instant::now(),
            audit,
            rotation: tokio::sync::Mutex::new(()),
            jwt: None,
            backup: None,
            maintenance_state: Default::default(),
        }
    }

    /// Take JWT bearer tokens of this issuer next to API keys.
    pub fn with_jwt(mut self, verifier: Arc<crate::jwt::JwtVerifier>) -> Self {
        self.jwt = Some(verifier);
        self
    }

    pub fn with_backups(mut self, state: Arc<crate::backup::BackupState>) -> Self {
        self.backup = Some(state);
        self
    }

    /// The node is stopping: end event subscriptions and webhook deliveries (an open event
    /// stream would otherwise hold its connection, and the node's state, forever).
    pub fn close_streams(&self) {
        self.cluster.local.events.close();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(ready);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    pub fn namespace(&self, name: &str) -> Option<NamespaceEntry> {
        self.catalogue.view.read().namespace(canonical_namespace(name)).cloned()
    }

    pub fn namespaces(&self) -> Vec<NamespaceEntry> {
        self.catalogue.view.read().namespaces.values().cloned().collect()
    }

    pub fn embedder(&self, spec: &EmbedderSpec) -> ServiceResult<SharedEmbedder> {
        self.contexts.embedder(spec)
    }

    pub fn context(&self, entry: &NamespaceEntry) -> ServiceResult<NsContext> {
        self.contexts.context(entry)
    }

    /// Which embedder a new namespace gets. Without a provider: the node default, unless the
    /// requested dimension differs from it — then the hashed n-gram embedder at that dimension
    /// (so clients that create e.g. 1024-dimension namespaces get server-side text embedding).
    pub fn embedder_spec(&self, provider: Option<&str>, dimension: Option<usize>) -> ServiceResult<EmbedderSpec> {
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
                        return Err(ServiceError::new(
                            crate::error::StatusCode::BAD_REQUEST,
                            "DIMENSION_MISMATCH",
                            format!("{p} embeds in {f} dimensions, not {d}"),
                        ));
                    }
                    (Some(f), _) => f,
                    (None, Some(d)) => d,
                    (None, None) if p == HashEmbedder::PROVIDER => default_dim,
                    (None, None) => return Err(ServiceError::bad_request(format!("provider {p} needs a dimension"))),
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

    pub fn has_minilm(&self) -> bool {
        self.contexts.has_minilm()
    }

    /// Create a namespace (idempotent by name: an existing one is returned with `created=false`).
    pub async fn create_namespace(&self, spec: NamespaceSpec) -> ServiceResult<(NamespaceEntry, bool)> {
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
            let data_key = self.contexts.keyring().new_wrapped_dek(id, 1);
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
                placement: self.cluster.initial_placement(id),
                // Set by the catalogue from the operator's quotas when it applies the creation.
                ceiling: Default::default(),
            };
            match self.catalogue.write(Command::CreateNamespace { entry }).await? {
                CommandResult::Namespace { entry, created } => {
                    if created {
                        self.namespace_event(
                            &entry,
                            "namespace_created",
                            serde_json::json!({"dimension": entry.dimension, "kind": entry.kind.as_str()}),
                        );
                        self.audit.event(
                            "namespace_created",
                            None,
                            serde_json::json!({"namespace": entry.name, "kind": entry.kind.as_str(), "dimension": entry.dimension}),
                        );
                    }
                    return Ok((entry, created));
                }
                CommandResult::Rejected(_) => continue,
                CommandResult::QuotaExceeded(why) => return Err(ServiceError::quota_exceeded(why)),
                other => {
                    return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}")));
                }
            }
        }
        Err(ServiceError::internal("could not allocate a namespace id"))
    }

    /// The namespace a write goes to, created (as an agent namespace) if it does not exist yet.
    pub async fn namespace_for_write(&self, name: &str) -> ServiceResult<NamespaceEntry> {
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
    /// forwards and replicates), and record its events on this node ([`crate::events`]).
    pub async fn exec(&self, entry: &NamespaceEntry, op: DataOp) -> ServiceResult<DataResult> {
        let probe = crate::events::emit::probe(&op);
        let result = self.cluster.clone().execute(entry.clone(), op).await?;
        if let Some(probe) = probe {
            self.cluster.local.events.publish(crate::events::emit::of_data(entry, &probe, &result));
        }
        Ok(result)
    }

    /// Record a namespace event on this node.
    pub fn namespace_event(&self, entry: &NamespaceEntry, event_type: &str, data: serde_json::Value) {
        self.cluster.local.events.publish([crate::events::emit::namespace_event(entry, event_type, data)]);
    }

    /// Run an operator action on the cluster (REST `/v1/admin/cluster/*`, `loci cluster …`).
    pub async fn cluster_action(&self, action: crate::cluster::ClusterAction) -> ServiceResult<serde_json::Value> {
        self.cluster.clone().run_admin(action).await
    }

    /// A catalogue change, in force on the members `reach` names when this returns.
    pub async fn write_everywhere(&self, cmd: loci_raft::Command, reach: Reach) -> ServiceResult<CommandResult> {
        let (res, index) = self.catalogue.write_indexed(cmd).await?;
        self.cluster.await_applied_everywhere(index, reach).await;
        Ok(res)
    }

    pub async fn set_policy(&self, name: &str, policy: MemoryPolicy) -> ServiceResult<NamespaceEntry> {
        match self.catalogue.write(Command::SetPolicy { name: name.to_string(), policy }).await? {
            CommandResult::Namespace { entry, .. } => Ok(entry),
            CommandResult::NotFound(n) => Err(ServiceError::namespace_not_found(&n)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// Erase a namespace: destroy its data key in the catalogue first (every copy of its data
    /// becomes unreadable at once), then delete and compact its rows and index entries, then
    /// purge the catalogue history that held the wrapped key.
    pub async fn delete_namespace(&self, name: &str) -> ServiceResult<DeletionReceipt> {
        let (res, index) = self.catalogue.write_indexed(Command::DeleteNamespace { name: name.to_string() }).await?;
        let entry = match res {
            CommandResult::NamespaceDeleted { entry } => entry,
            CommandResult::NotFound(n) => return Err(ServiceError::namespace_not_found(&n)),
            other => {
                return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}")));
            }
        };
        self.contexts.forget(entry.id);
        // Its key in the backup store goes too: every backup of it becomes unreadable.
        let backup_key_destroyed = self
            .backup
            .as_ref()
            .map(|b| crate::backup::forget_namespace(b, &crate::backup::cluster_id_of(self), entry.id));
        // The webhook its policy's webhook_url created is the namespace's: it goes with it.
        if let Some(id) = &entry.policy.webhook_id
            && let Err(e) = self.catalogue.write(Command::DeleteWebhook { id: id.clone() }).await
        {
            tracing::warn!(webhook = %id, error = %e, "could not delete the erased namespace's webhook");
        }
        let count = self.cluster.clone().erase(entry.clone()).await?;
        // Every node's Raft log held the wrapped key: each snapshots past the deletion and purges.
        let purged = self.cluster.clone().purge_history_everywhere(index).await;
        self.namespace_event(&entry, "namespace_deleted", serde_json::json!({"memories_deleted": count}));
        self.audit.event(
            "namespace_erased",
            None,
            serde_json::json!({"namespace": entry.name, "memories_deleted": count, "data_key_destroyed": true, "backup_key_destroyed": backup_key_destroyed}),
        );
        Ok(DeletionReceipt {
            namespace: entry.name,
            deleted: true,
            memories_deleted: count,
            data_key_destroyed: true,
            backup_key_destroyed,
            catalogue_history_purged: purged,
            deleted_at: now_secs(),
        })
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
    ) -> ServiceResult<RotationReport> {
        let _one = self.rotation.lock().await;
        if let Some(old) = old_secret {
            // Checked under the rotation lock: no other rotation can change the key meanwhile.
            let params = self
                .catalogue
                .view
                .read()
                .encryption
                .clone()
                .ok_or_else(|| ServiceError::internal("encryption parameters missing"))?;
            let matches = tokio::task::spawn_blocking(move || old.unlock(&params).is_ok())
                .await
                .map_err(|e| ServiceError::internal(e.to_string()))?;
            if !matches {
                self.audit.event(
                    "encryption_rotation_refused",
                    None,
                    serde_json::json!({"reason": "old_key mismatch"}),
                );
                return Err(ServiceError::new(
                    crate::error::StatusCode::FORBIDDEN,
                    "ENCRYPTION_KEY_MISMATCH",
                    "old_key is not the current master key; nothing was changed",
                ));
            }
        }
        for _ in 0..5 {
            let (current, namespaces, webhooks) = {
                let cat = self.catalogue.view.read();
                let cur =
                    cat.encryption.clone().ok_or_else(|| ServiceError::internal("encryption parameters missing"))?;
                (
                    cur,
                    cat.namespaces.values().cloned().collect::<Vec<_>>(),
                    cat.webhooks.values().cloned().collect::<Vec<_>>(),
                )
            };
            let (new_ring, params) =
                new_secret.establish_next(current.kek_version).map_err(|e| ServiceError::bad_request(e.to_string()))?;
            let mut rewrapped = Vec::with_capacity(namespaces.len());
            let mut rewrapped_webhooks = Vec::with_capacity(webhooks.len());
            {
                let old_ring = self.contexts.keyring();
                // A key wrapped under the old KEK, wrapped under the new one (same id and version).
                let rewrap = |aad: u64, wrapped: &loci_storage::crypto::WrappedKey, what: &str| {
                    let dk = old_ring
                        .unwrap(aad, wrapped)
                        .map_err(|e| ServiceError::internal(format!("unwrap {what}: {e}")))?;
                    let raw = loci_storage::crypto::SecretKey::from_bytes(*dk.raw().as_bytes());
                    Ok::<_, ServiceError>(new_ring.wrap(aad, wrapped.dek_version, &raw))
                };
                for ns in &namespaces {
                    rewrapped.push((ns.name.clone(), rewrap(ns.id, &ns.data_key, &ns.name)?));
                }
                for w in &webhooks {
                    rewrapped_webhooks.push((w.id.clone(), rewrap(w.secret_aad, &w.secret, &w.id)?));
                }
            }
            match self.catalogue.write(Command::RotateEncryption { params, rewrapped, rewrapped_webhooks }).await? {
                CommandResult::Ok => {
                    self.contexts.set_keyring(new_ring);
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
                other => return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
            }
        }
        Err(ServiceError::unavailable("the catalogue kept changing during the rotation; retry"))
    }

    /// Delete memories older than each namespace's `retention_days`.
    pub async fn sweep_retention(&self) -> ServiceResult<u64> {
        let now = now_secs();
        let mut total = 0;
        for entry in self.namespaces() {
            // The primary sweeps; the deletion replicates to the other replicas.
            if entry.placement.primary() != Some(self.config.node_id) {
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
