//! The catalogue: the cluster's replicated metadata (namespaces and their wrapped data keys,
//! policies, API keys, placements, nodes). Every change is a [`Command`] applied in log order by
//! [`Catalogue::apply`], which is deterministic and pure so it can be unit-tested and replayed.

use std::collections::BTreeMap;

use loci_storage::crypto::{EncryptionParams, WrappedKey};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// Created implicitly by storing memories for an agent.
    Agent,
    /// Created explicitly (`POST /v1/namespaces`, `PUT /v1/namespaces/{ns}`).
    Data,
}

impl NamespaceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NamespaceKind::Agent => "agent",
            NamespaceKind::Data => "data",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    #[default]
    Cosine,
    Euclidean,
    DotProduct,
}

impl Distance {
    pub fn as_str(&self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Euclidean => "euclidean",
            Distance::DotProduct => "dot_product",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cosine" => Some(Distance::Cosine),
            "euclidean" | "l2" => Some(Distance::Euclidean),
            "dot_product" | "dot" => Some(Distance::DotProduct),
            _ => None,
        }
    }
}

/// Which embedder a namespace uses; fixed at creation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbedderSpec {
    pub provider: String,
    pub dimension: usize,
}

/// Per-namespace memory policy (the Dakera `memory_policy` fields plus Loci's limits).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryPolicy {
    pub working_ttl_seconds: Option<u64>,
    pub episodic_ttl_seconds: Option<u64>,
    pub semantic_ttl_seconds: Option<u64>,
    pub procedural_ttl_seconds: Option<u64>,
    pub working_decay: String,
    pub episodic_decay: String,
    pub semantic_decay: String,
    pub procedural_decay: String,
    pub spaced_repetition_factor: f64,
    pub spaced_repetition_base_interval_seconds: u64,
    pub consolidation_enabled: bool,
    pub consolidation_threshold: f64,
    pub consolidation_interval_hours: u64,
    pub consolidated_count: u64,
    pub rate_limit_enabled: bool,
    pub rate_limit_stores_per_minute: Option<u64>,
    pub rate_limit_recalls_per_minute: Option<u64>,
    pub dedup_on_store: bool,
    pub dedup_threshold: f64,
    /// Loci: delete memories older than this many days (background sweeper).
    pub retention_days: Option<u64>,
    /// Loci: refuse stores beyond this many memories.
    pub max_memories: Option<u64>,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy {
            working_ttl_seconds: Some(14_400),
            episodic_ttl_seconds: Some(2_592_000),
            semantic_ttl_seconds: Some(31_536_000),
            procedural_ttl_seconds: Some(63_072_000),
            working_decay: "exponential".into(),
            episodic_decay: "power_law".into(),
            semantic_decay: "logarithmic".into(),
            procedural_decay: "flat".into(),
            spaced_repetition_factor: 1.0,
            spaced_repetition_base_interval_seconds: 86_400,
            consolidation_enabled: false,
            consolidation_threshold: 0.92,
            consolidation_interval_hours: 24,
            consolidated_count: 0,
            rate_limit_enabled: false,
            rate_limit_stores_per_minute: None,
            rate_limit_recalls_per_minute: None,
            dedup_on_store: false,
            dedup_threshold: 0.92,
            retention_days: None,
            max_memories: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NamespaceEntry {
    /// Random, never reused: the key prefix of the namespace's rows and part of every AAD.
    pub id: u64,
    pub name: String,
    pub kind: NamespaceKind,
    pub dimension: usize,
    pub distance: Distance,
    pub embedder: EmbedderSpec,
    pub policy: MemoryPolicy,
    /// The namespace's data key, only ever stored wrapped under the KEK.
    pub data_key: WrappedKey,
    pub metadata: Option<serde_json::Value>,
    pub created_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Record the cluster's identity once.
    InitCluster {
        cluster_id: String,
    },
    /// Record the key hierarchy's public parameters once (first start).
    SetEncryption {
        params: EncryptionParams,
    },
    CreateNamespace {
        entry: NamespaceEntry,
    },
    SetPolicy {
        name: String,
        policy: MemoryPolicy,
    },
    /// Remove the namespace and its wrapped data key (crypto-shredding).
    DeleteNamespace {
        name: String,
    },
    /// Remember which namespace holds a session (sessions are addressed by id alone).
    RegisterSession {
        session_id: String,
        namespace: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum CommandResult {
    Ok,
    /// The namespace as stored; `created` is false when it already existed.
    Namespace {
        entry: NamespaceEntry,
        created: bool,
    },
    NamespaceDeleted {
        entry: NamespaceEntry,
    },
    NotFound(String),
    Rejected(String),
}

/// The replicated state. Serialised whole into snapshots (it is small).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalogue {
    pub cluster_id: Option<String>,
    pub encryption: Option<EncryptionParams>,
    pub namespaces: BTreeMap<String, NamespaceEntry>,
    /// Session id → namespace name.
    pub sessions: BTreeMap<String, String>,
    /// Index of the last applied log entry (for read-after-write waits).
    pub applied_index: u64,
}

impl Catalogue {
    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id);
                }
                CommandResult::Ok
            }
            Command::SetEncryption { params } => {
                if self.encryption.is_some() {
                    return CommandResult::Rejected("encryption parameters are already set".into());
                }
                self.encryption = Some(params);
                CommandResult::Ok
            }
            Command::CreateNamespace { entry } => {
                if let Some(existing) = self.namespaces.get(&entry.name) {
                    return CommandResult::Namespace {
                        entry: existing.clone(),
                        created: false,
                    };
                }
                if self.namespaces.values().any(|n| n.id == entry.id) {
                    return CommandResult::Rejected("namespace id collision; retry".into());
                }
                self.namespaces.insert(entry.name.clone(), entry.clone());
                CommandResult::Namespace {
                    entry,
                    created: true,
                }
            }
            Command::SetPolicy { name, policy } => match self.namespaces.get_mut(&name) {
                Some(ns) => {
                    ns.policy = policy;
                    CommandResult::Namespace {
                        entry: ns.clone(),
                        created: false,
                    }
                }
                None => CommandResult::NotFound(name),
            },
            Command::DeleteNamespace { name } => match self.namespaces.remove(&name) {
                Some(entry) => {
                    self.sessions.retain(|_, ns| ns != &name);
                    CommandResult::NamespaceDeleted { entry }
                }
                None => CommandResult::NotFound(name),
            },
            Command::RegisterSession {
                session_id,
                namespace,
            } => {
                if !self.namespaces.contains_key(&namespace) {
                    return CommandResult::NotFound(namespace);
                }
                match self.sessions.get(&session_id) {
                    Some(existing) if existing != &namespace => CommandResult::Rejected(format!(
                        "session {session_id} belongs to another namespace"
                    )),
                    _ => {
                        self.sessions.insert(session_id, namespace);
                        CommandResult::Ok
                    }
                }
            }
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceEntry> {
        self.namespaces.get(name)
    }

    pub fn session_namespace(&self, session_id: &str) -> Option<&str> {
        self.sessions.get(session_id).map(String::as_str)
    }
}
