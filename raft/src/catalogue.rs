//! The catalogue: the cluster's replicated metadata (namespaces and their wrapped data keys,
//! policies, API keys, placements, nodes). Every change is a [`Command`] applied in log order by
//! [`Catalogue::apply`], which is deterministic and pure so it can be unit-tested and replayed.

use std::collections::{BTreeMap, BTreeSet};

use loci_storage::crypto::{EncryptionParams, WrappedKey};
use serde::{Deserialize, Serialize};

use crate::quota::{self, Ceiling, Quota};

pub use crate::policy::MemoryPolicy;

/// Access levels, hierarchical: each includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
    SuperAdmin,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::SuperAdmin => "super_admin",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" | "delete" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            "super_admin" => Some(Scope::SuperAdmin),
            _ => None,
        }
    }
}

/// One permission of an API key: a namespace name, or a prefix pattern ending in `*`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub pattern: String,
    pub scope: Scope,
}

/// `pattern` matches `ns` exactly, or as a prefix when it ends in `*`.
pub fn pattern_matches(pattern: &str, ns: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => ns.starts_with(prefix),
        None => pattern == ns,
    }
}

/// Everything `inner` matches is matched by `outer`.
pub fn pattern_contains(outer: &str, inner: &str) -> bool {
    match outer.strip_suffix('*') {
        Some(prefix) => inner.starts_with(prefix),
        None => outer == inner,
    }
}

/// An API key as the catalogue stores it: the secret only as its SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiKeyEntry {
    pub key_id: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The key's level; with `grants == None` it applies to every namespace.
    pub scope: Scope,
    /// `None` = every namespace (a global key); otherwise exactly these permissions.
    pub grants: Option<Vec<Grant>>,
    pub created_by: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub active: bool,
    pub deactivated_at: Option<u64>,
    /// Set on a key replaced by rotation.
    pub rotated_to: Option<String>,
}

impl ApiKeyEntry {
    pub fn usable_at(&self, now: u64) -> bool {
        self.active && self.expires_at.is_none_or(|e| e > now)
    }
}

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
    /// Bumped each time a re-embedding job switches the namespace to another embedder.
    #[serde(default)]
    pub generation: u64,
}

/// A re-embedding job: recompute every vector of a namespace with another embedder, then
/// switch to it. Progress is recorded here so every node can report it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReembedJob {
    /// The embedder to switch to (its `generation` is the current one + 1).
    pub target: EmbedderSpec,
    /// `running`, `completed` or `failed`.
    pub state: String,
    pub total: u64,
    pub done: u64,
    /// The node running it.
    pub node: u64,
    pub started_at: u64,
    /// Last progress report (a running job silent for long is considered abandoned).
    pub updated_at: u64,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
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
    /// Free text given at creation (`description`), stored and returned as is.
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: u64,
    /// Which nodes hold the namespace; routing always reads this, never a local guess.
    #[serde(default)]
    pub placement: Placement,
    /// The latest re-embedding job, if any.
    #[serde(default)]
    pub reembed: Option<ReembedJob>,
    /// The operator's ceilings that apply to it (from every matching [`Quota`]; kept current
    /// by the catalogue when quotas change).
    #[serde(default, skip_serializing_if = "Ceiling::is_empty")]
    pub ceiling: Ceiling,
}

/// The state of one replica of a namespace.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Holds all acknowledged writes and takes new ones.
    Active,
    /// Being filled by a full copy; receives new writes but does not count for quorum.
    Syncing,
    /// Unreachable; kept until replaced.
    Dead,
}

/// Per-namespace placement: `replicas[0]` is the primary. Every change bumps `epoch`; replicas
/// refuse writes carrying an older epoch, which fences a deposed primary.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    pub epoch: u64,
    pub replicas: Vec<u64>,
    pub states: BTreeMap<u64, ReplicaState>,
    /// The replication factor the namespace should have.
    pub rf: usize,
    /// Replicas to remove once their replacement is Active (a move in progress).
    #[serde(default)]
    pub leaving: std::collections::BTreeSet<u64>,
    /// The epoch in which the current primary became primary (maintained by the catalogue).
    /// A primary that took over in that epoch or later need not take over again when only
    /// its followers change.
    #[serde(default)]
    pub primary_since: u64,
}

impl Placement {
    pub fn primary(&self) -> Option<u64> {
        self.replicas.first().copied()
    }
    pub fn state(&self, node: u64) -> Option<ReplicaState> {
        self.states.get(&node).copied()
    }
    /// Replicas that take writes (the primary included).
    pub fn writable(&self) -> impl Iterator<Item = u64> + '_ {
        self.replicas
            .iter()
            .copied()
            .filter(|n| matches!(self.state(*n), Some(ReplicaState::Active | ReplicaState::Syncing)))
    }
    pub fn active_count(&self) -> usize {
        self.replicas.iter().filter(|n| self.state(**n) == Some(ReplicaState::Active)).count()
    }
}

/// Rendezvous (highest random weight) choice of `rf` nodes for a namespace: deterministic,
/// and only ~1/n of namespaces change owners when a node joins.
pub fn rendezvous(ns_id: u64, nodes: &[u64], rf: usize) -> Vec<u64> {
    let mut scored: Vec<(u64, u64)> = nodes.iter().map(|n| (hrw_weight(ns_id, *n), *n)).collect();
    scored.sort_by(|a, b| b.cmp(a));
    scored.into_iter().take(rf).map(|(_, n)| n).collect()
}

fn hrw_weight(ns_id: u64, node: u64) -> u64 {
    // SplitMix64 of the pair: cheap, well mixed, stable forever.
    let mut z = ns_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ node.rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    CreateKey {
        entry: ApiKeyEntry,
    },
    /// Set (create or replace) the operator's quota for a namespace pattern.
    SetQuota {
        quota: Quota,
    },
    DeleteQuota {
        pattern: String,
    },
    /// Replace the cluster's default decay and autopilot settings.
    SetMaintenance {
        maintenance: crate::maintenance::Maintenance,
    },
    /// Rename and/or narrow a key's permissions.
    UpdateKey {
        key_id: String,
        name: Option<String>,
        grants: Option<Option<Vec<Grant>>>,
        /// When it was asked (quota counting); 0 in commands written before it existed.
        #[serde(default)]
        at: u64,
    },
    /// Soft revoke (kept for audit, unusable).
    DeactivateKey {
        key_id: String,
        at: u64,
    },
    /// Hard revoke.
    DeleteKey {
        key_id: String,
    },
    /// Replace `old_key_id` by `new_entry`; the old key stops at `old_expires_at` (now = at once).
    RotateKey {
        old_key_id: String,
        new_entry: ApiKeyEntry,
        old_expires_at: u64,
    },
    /// Record a re-embedding job's state or progress.
    SetReembed {
        name: String,
        job: ReembedJob,
    },
    /// A re-embedding job finished: switch the namespace to its target embedder.
    SwitchEmbedder {
        name: String,
        target: EmbedderSpec,
    },
    /// Replace a namespace's placement if its epoch is still `expected_epoch` (compare-and-set).
    SetPlacement {
        name: String,
        expected_epoch: u64,
        placement: Placement,
    },
    /// Mark a node as draining (the reconciler moves everything off it) or not.
    SetDraining {
        node: u64,
        draining: bool,
    },
    /// Re-wrap every data key under a new KEK, atomically with the new key-check parameters.
    RotateEncryption {
        params: EncryptionParams,
        rewrapped: Vec<(String, WrappedKey)>,
        /// Every webhook's signing secret, re-wrapped (by webhook id).
        #[serde(default)]
        rewrapped_webhooks: Vec<(String, WrappedKey)>,
    },
    /// Add a webhook.
    PutWebhook {
        webhook: crate::webhooks::WebhookEntry,
    },
    DeleteWebhook {
        id: String,
    },
    /// Refuse bearer tokens matching `denial` (added or replaced).
    DenyToken {
        denial: crate::denials::TokenDenial,
    },
    /// Lift the denial of that id.
    RemoveTokenDenial {
        id: String,
    },
}

/// The most a command of an ordinary kind may take encoded (namespace, policy, key and session
/// changes: a namespace entry with its bounded metadata is a few KiB).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// An encryption rotation carries every namespace's re-wrapped key in one command (all or
/// nothing): ~150 bytes a namespace, so this allows ~100,000 namespaces. The Raft transport
/// takes entries up to its decode limit (64 MiB) one at a time.
pub const MAX_ROTATION_COMMAND_BYTES: usize = 16 * 1024 * 1024;

impl Command {
    /// The bound [`crate::CatalogueNode::write`] holds this command's encoding to.
    pub fn max_encoded_bytes(&self) -> usize {
        match self {
            Command::RotateEncryption { .. } => MAX_ROTATION_COMMAND_BYTES,
            _ => MAX_COMMAND_BYTES,
        }
    }
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
    Key {
        entry: ApiKeyEntry,
    },
    /// Refused: it would exceed an operator quota (the reason).
    QuotaExceeded(String),
    Quota {
        quota: Quota,
    },
    Webhook {
        webhook: crate::webhooks::WebhookEntry,
    },
    Denial {
        denial: crate::denials::TokenDenial,
    },
}

/// `sessions` as written before it was a set (`id → namespace`) or since (`id → [namespaces]`).
fn sessions_compat<'de, D>(d: D) -> Result<BTreeMap<String, BTreeSet<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Holders {
        One(String),
        Set(BTreeSet<String>),
    }
    let m: BTreeMap<String, Holders> = BTreeMap::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(id, h)| {
            let set = match h {
                Holders::One(ns) => [ns].into(),
                Holders::Set(s) => s,
            };
            (id, set)
        })
        .collect())
}

/// The replicated state. Serialised whole into snapshots (it is small).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalogue {
    pub cluster_id: Option<String>,
    pub encryption: Option<EncryptionParams>,
    pub namespaces: BTreeMap<String, NamespaceEntry>,
    /// Session id → the namespaces holding a session of that id. Ids are chosen per namespace:
    /// the same id in two namespaces is two sessions, and one tenant's id never blocks
    /// another's. (Catalogues written before this was a set hold one name per id.)
    #[serde(default, deserialize_with = "sessions_compat")]
    pub sessions: BTreeMap<String, BTreeSet<String>>,
    /// API keys by key id.
    pub keys: BTreeMap<String, ApiKeyEntry>,
    /// Secret digest → key id (derived from `keys`; rebuilt after a snapshot is loaded).
    #[serde(skip)]
    pub key_index: std::collections::HashMap<String, String>,
    /// Nodes being drained by the operator.
    #[serde(default)]
    pub draining: std::collections::BTreeSet<u64>,
    /// The operator's quotas by pattern.
    #[serde(default)]
    pub quotas: BTreeMap<String, Quota>,
    /// Bearer tokens refused before they expire, by denial id (`kind:value`).
    #[serde(default)]
    pub token_denials: BTreeMap<String, crate::denials::TokenDenial>,
    /// Webhooks by id.
    #[serde(default)]
    pub webhooks: BTreeMap<String, crate::webhooks::WebhookEntry>,
    /// The cluster's default decay and autopilot settings.
    #[serde(default)]
    pub maintenance: crate::maintenance::Maintenance,
    /// Index of the last applied log entry (for read-after-write waits).
    pub applied_index: u64,
    /// Node → (replicas, primaries) it holds over every namespace's placement (derived from
    /// `namespaces`, kept current by every change of a placement; rebuilt after a snapshot is
    /// loaded): what a new namespace's placement balances by, without a scan.
    #[serde(skip)]
    pub placement_load: BTreeMap<u64, (usize, usize)>,
    /// The ids of `namespaces` (derived likewise): a new namespace's id is checked for a
    /// collision without a scan.
    #[serde(skip)]
    pub namespace_ids: std::collections::HashSet<u64>,
}

impl Catalogue {
    /// How many records a snapshot holds (what [`crate::pacing`] scales the snapshot
    /// interval by).
    pub fn records(&self) -> usize {
        self.namespaces.len()
            + self.sessions.len()
            + self.keys.len()
            + self.quotas.len()
            + self.token_denials.len()
            + self.webhooks.len()
    }

    fn update_key(
        &mut self,
        key_id: String,
        name: Option<String>,
        grants: Option<Option<Vec<Grant>>>,
    ) -> CommandResult {
        match self.keys.get_mut(&key_id) {
            Some(k) => {
                if let Some(n) = name {
                    k.name = n;
                }
                if let Some(g) = grants {
                    k.grants = g;
                }
                CommandResult::Key { entry: k.clone() }
            }
            None => CommandResult::NotFound(key_id),
        }
    }

    /// Recompute the ceiling of every namespace `pattern` matches.
    fn refresh_ceilings(&mut self, pattern: &str) {
        let quotas = &self.quotas;
        for ns in self.namespaces.values_mut().filter(|n| pattern_matches(pattern, &n.name)) {
            ns.ceiling = quota::ceiling_of(&ns.name, quotas.values());
        }
    }

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
                    return CommandResult::Namespace { entry: existing.clone(), created: false };
                }
                if self.namespace_ids.contains(&entry.id) {
                    return CommandResult::Rejected("namespace id collision; retry".into());
                }
                // A key wrapped under a KEK that was rotated away meanwhile would be unreadable.
                if self.encryption.as_ref().is_some_and(|e| e.kek_version != entry.data_key.kek_version) {
                    return CommandResult::Rejected("stale key-encryption key; retry".into());
                }
                if let Some(why) = quota::refuse_namespace(&entry.name, self.quotas.values(), self.namespaces.values())
                {
                    return CommandResult::QuotaExceeded(why);
                }
                let mut entry = entry;
                entry.placement.primary_since = entry.placement.epoch;
                entry.ceiling = quota::ceiling_of(&entry.name, self.quotas.values());
                self.count_placement(&entry.placement, true);
                self.namespace_ids.insert(entry.id);
                self.namespaces.insert(entry.name.clone(), entry.clone());
                CommandResult::Namespace { entry, created: true }
            }
            Command::SetPolicy { name, policy } => match self.namespaces.get_mut(&name) {
                Some(ns) => {
                    ns.policy = policy;
                    CommandResult::Namespace { entry: ns.clone(), created: false }
                }
                None => CommandResult::NotFound(name),
            },
            Command::DeleteNamespace { name } => match self.namespaces.remove(&name) {
                Some(entry) => {
                    self.count_placement(&entry.placement, false);
                    self.namespace_ids.remove(&entry.id);
                    self.sessions.retain(|_, holders| {
                        holders.remove(&name);
                        !holders.is_empty()
                    });
                    CommandResult::NamespaceDeleted { entry }
                }
                None => CommandResult::NotFound(name),
            },
            Command::CreateKey { entry } => {
                if self.keys.contains_key(&entry.key_id) || self.key_index.contains_key(&entry.secret_sha256) {
                    return CommandResult::Rejected("key id or secret collision; retry".into());
                }
                if let Some(why) = quota::refuse_key(&entry, entry.created_at, self.quotas.values(), self.keys.values())
                {
                    return CommandResult::QuotaExceeded(why);
                }
                self.key_index.insert(entry.secret_sha256.clone(), entry.key_id.clone());
                self.keys.insert(entry.key_id.clone(), entry.clone());
                CommandResult::Key { entry }
            }
            Command::SetMaintenance { maintenance } => {
                if let Some(why) = maintenance.invalid() {
                    return CommandResult::Rejected(why);
                }
                self.maintenance = maintenance;
                CommandResult::Ok
            }
            Command::SetQuota { quota } => {
                if let Err(why) = quota::check_quota(&quota) {
                    return CommandResult::Rejected(why);
                }
                if !self.quotas.contains_key(&quota.pattern) && self.quotas.len() >= quota::MAX_QUOTAS {
                    return CommandResult::Rejected(format!("at most {} quotas", quota::MAX_QUOTAS));
                }
                let pattern = quota.pattern.clone();
                self.quotas.insert(pattern.clone(), quota.clone());
                self.refresh_ceilings(&pattern);
                CommandResult::Quota { quota }
            }
            Command::DenyToken { denial } => match crate::denials::deny(&mut self.token_denials, denial) {
                Ok(denial) => CommandResult::Denial { denial },
                Err(why) => CommandResult::Rejected(why),
            },
            Command::PutWebhook { webhook } => match crate::webhooks::put(&mut self.webhooks, webhook) {
                Ok(webhook) => CommandResult::Webhook { webhook },
                Err(why) => CommandResult::Rejected(why),
            },
            Command::DeleteWebhook { id } => match self.webhooks.remove(&id) {
                Some(webhook) => CommandResult::Webhook { webhook },
                None => CommandResult::NotFound(id),
            },
            Command::RemoveTokenDenial { id } => match self.token_denials.remove(&id) {
                Some(denial) => CommandResult::Denial { denial },
                None => CommandResult::NotFound(id),
            },
            Command::DeleteQuota { pattern } => {
                if self.quotas.remove(&pattern).is_none() {
                    return CommandResult::NotFound(pattern);
                }
                self.refresh_ceilings(&pattern);
                CommandResult::Ok
            }
            Command::UpdateKey { key_id, name, grants, at } => match self.keys.get(&key_id) {
                // Narrowed into a pattern it did not count against: it must fit that quota.
                Some(k) if grants.is_some() => {
                    let mut narrowed = k.clone();
                    if let Some(g) = &grants {
                        narrowed.grants = g.clone();
                    }
                    let now = at.max(k.created_at);
                    let newly: Vec<&Quota> = self
                        .quotas
                        .values()
                        .filter(|q| {
                            !quota::key_counts(k, &q.pattern, now) && quota::key_counts(&narrowed, &q.pattern, now)
                        })
                        .collect();
                    if let Some(why) = quota::refuse_key(&narrowed, now, newly, self.keys.values()) {
                        return CommandResult::QuotaExceeded(why);
                    }
                    self.update_key(key_id, name, grants)
                }
                Some(_) => self.update_key(key_id, name, grants),
                None => CommandResult::NotFound(key_id),
            },
            Command::DeactivateKey { key_id, at } => match self.keys.get_mut(&key_id) {
                Some(k) => {
                    k.active = false;
                    k.deactivated_at.get_or_insert(at);
                    CommandResult::Key { entry: k.clone() }
                }
                None => CommandResult::NotFound(key_id),
            },
            Command::DeleteKey { key_id } => match self.keys.remove(&key_id) {
                Some(k) => {
                    self.key_index.remove(&k.secret_sha256);
                    CommandResult::Key { entry: k }
                }
                None => CommandResult::NotFound(key_id),
            },
            Command::RotateKey { old_key_id, new_entry, old_expires_at } => {
                let Some(old) = self.keys.get(&old_key_id) else {
                    return CommandResult::NotFound(old_key_id);
                };
                let now = new_entry.created_at;
                if !old.usable_at(now) || old.rotated_to.is_some() {
                    return CommandResult::Rejected("the key is not active, or was rotated already".into());
                }
                // With a grace period both secrets work for a while (the old one counts until it
                // expires): the new one must fit the quota.
                if old_expires_at > now
                    && let Some(why) = quota::refuse_key(&new_entry, now, self.quotas.values(), self.keys.values())
                {
                    return CommandResult::QuotaExceeded(why);
                }
                let Some(old) = self.keys.get_mut(&old_key_id) else {
                    return CommandResult::NotFound(old_key_id);
                };
                old.rotated_to = Some(new_entry.key_id.clone());
                old.expires_at = Some(old.expires_at.map_or(old_expires_at, |e| e.min(old_expires_at)));
                self.key_index.insert(new_entry.secret_sha256.clone(), new_entry.key_id.clone());
                self.keys.insert(new_entry.key_id.clone(), new_entry.clone());
                CommandResult::Key { entry: new_entry }
            }
            Command::SetPlacement { name, expected_epoch, placement } => match self.namespaces.get_mut(&name) {
                Some(ns) if ns.placement.epoch == expected_epoch && placement.epoch > expected_epoch => {
                    let mut placement = placement;
                    placement.primary_since = if placement.primary() == ns.placement.primary() {
                        ns.placement.primary_since
                    } else {
                        placement.epoch
                    };
                    let old = std::mem::replace(&mut ns.placement, placement);
                    let entry = ns.clone();
                    self.count_placement(&old, false);
                    self.count_placement(&entry.placement, true);
                    CommandResult::Namespace { entry, created: false }
                }
                Some(ns) => CommandResult::Rejected(format!(
                    "placement of '{name}' is at epoch {}, not {expected_epoch}",
                    ns.placement.epoch
                )),
                None => CommandResult::NotFound(name),
            },
            Command::SetReembed { name, job } => match self.namespaces.get_mut(&name) {
                Some(ns) if ns.embedder.generation.checked_add(1) == Some(job.target.generation) => {
                    ns.reembed = Some(job);
                    CommandResult::Namespace { entry: ns.clone(), created: false }
                }
                Some(_) => CommandResult::Rejected(format!("'{name}' switched embedders meanwhile")),
                None => CommandResult::NotFound(name),
            },
            Command::SwitchEmbedder { name, target } => match self.namespaces.get_mut(&name) {
                Some(ns) if ns.embedder.generation.checked_add(1) == Some(target.generation) => {
                    ns.dimension = target.dimension;
                    ns.embedder = target;
                    if let Some(job) = ns.reembed.as_mut() {
                        job.state = "completed".into();
                        job.done = job.total.max(job.done);
                    }
                    CommandResult::Namespace { entry: ns.clone(), created: false }
                }
                Some(_) => CommandResult::Rejected(format!("'{name}' switched embedders meanwhile")),
                None => CommandResult::NotFound(name),
            },
            Command::SetDraining { node, draining } => {
                if draining {
                    self.draining.insert(node);
                } else {
                    self.draining.remove(&node);
                }
                CommandResult::Ok
            }
            Command::RotateEncryption { params, rewrapped, rewrapped_webhooks } => {
                match &self.encryption {
                    Some(cur) if cur.kek_version.checked_add(1) == Some(params.kek_version) => {}
                    _ => return CommandResult::Rejected("stale encryption rotation".into()),
                }
                // All or nothing: every namespace must be covered.
                if rewrapped.len() != self.namespaces.len()
                    || rewrapped.iter().any(|(n, _)| !self.namespaces.contains_key(n))
                {
                    return CommandResult::Rejected("the rotation does not cover every namespace; retry".into());
                }
                if rewrapped_webhooks.len() != self.webhooks.len()
                    || rewrapped_webhooks.iter().any(|(id, _)| !self.webhooks.contains_key(id))
                {
                    return CommandResult::Rejected("the rotation does not cover every webhook; retry".into());
                }
                for (id, key) in rewrapped_webhooks {
                    if let Some(w) = self.webhooks.get_mut(&id) {
                        w.secret = key;
                    }
                }
                for (name, key) in rewrapped {
                    if let Some(ns) = self.namespaces.get_mut(&name) {
                        ns.data_key = key;
                    }
                }
                self.encryption = Some(params);
                CommandResult::Ok
            }
            Command::RegisterSession { session_id, namespace } => {
                if !self.namespaces.contains_key(&namespace) {
                    return CommandResult::NotFound(namespace);
                }
                self.sessions.entry(session_id).or_default().insert(namespace);
                CommandResult::Ok
            }
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceEntry> {
        self.namespaces.get(name)
    }

    /// Rebuild derived indexes (after deserialising a snapshot).
    pub fn reindex(&mut self) {
        self.key_index = self.keys.values().map(|k| (k.secret_sha256.clone(), k.key_id.clone())).collect();
        self.placement_load.clear();
        for ns in self.namespaces.values() {
            count_placement(&mut self.placement_load, &ns.placement, true);
        }
        self.namespace_ids = self.namespaces.values().map(|n| n.id).collect();
    }

    /// Add (or remove) one placement's replicas and primary to `placement_load`.
    fn count_placement(&mut self, p: &Placement, add: bool) {
        count_placement(&mut self.placement_load, p, add);
    }

    pub fn key_by_secret_hash(&self, hash_hex: &str) -> Option<&ApiKeyEntry> {
        self.key_index.get(hash_hex).and_then(|id| self.keys.get(id))
    }

    /// The namespaces holding a session of this id.
    pub fn session_namespaces(&self, session_id: &str) -> impl Iterator<Item = &str> {
        self.sessions.get(session_id).into_iter().flatten().map(String::as_str)
    }
}

/// Add (or remove) one placement's replicas and primary to a node → (replicas, primaries) load.
fn count_placement(load: &mut BTreeMap<u64, (usize, usize)>, p: &Placement, add: bool) {
    for (i, r) in p.replicas.iter().enumerate() {
        let e = load.entry(*r).or_default();
        let d = (1, usize::from(i == 0));
        *e = if add { (e.0 + d.0, e.1 + d.1) } else { (e.0.saturating_sub(d.0), e.1.saturating_sub(d.1)) };
        if *e == (0, 0) {
            load.remove(r);
        }
    }
}

#[cfg(test)]
#[path = "catalogue_tests.rs"]
mod tests;
