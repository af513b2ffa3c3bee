//! A namespace's memory policy: the Dakera `memory_policy` fields (TTLs, decay curves,
//! consolidation, rate limits, deduplication) and Loci's own settings (retention, limits,
//! screening, write quorum, the knowledge graph, entities, decay and autopilot overrides), with
//! their defaults. Stored in the namespace's catalogue entry ([`crate::catalogue::NamespaceEntry`]).

use serde::{Deserialize, Serialize};

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
    /// Loci: the same in seconds (finer; the smaller of the two applies).
    pub retention_seconds: Option<u64>,
    /// Loci: refuse stores beyond this many memories.
    pub max_memories: Option<u64>,
    /// Loci: refuse a write that would bring a new `agent_id` into the namespace beyond this
    /// many distinct agents (a tenant's `max_users`, docs/multi-tenancy.md).
    #[serde(alias = "max_users")]
    pub max_agents: Option<u64>,
    /// Loci: refuse to start a session for an agent that already has this many sessions in
    /// the namespace (a tenant's `max_conversations_per_user`).
    #[serde(alias = "max_conversations_per_user")]
    pub max_sessions_per_agent: Option<u64>,
    /// Loci: `off`, `flag` (tag suspicious content) or `block` (refuse it with 422).
    pub content_screening: String,
    /// Loci: replicas (the primary included) that must hold a write before it is acknowledged;
    /// default a majority of the replication factor.
    pub write_quorum: Option<usize>,
    /// Seed 003's `webhook_url`: the target of the webhook this policy created on the namespace.
    pub webhook_url: Option<String>,
    /// That webhook's id (set by the node, not by clients).
    pub webhook_id: Option<String>,
    /// Loci: a store links each new memory to the most alike memories of its agent at least
    /// this similar (`related_to` edges of the knowledge graph); null: no similarity links.
    pub graph_link_threshold: Option<f64>,
    /// Loci: similarity links one new memory gets at most.
    pub graph_max_links: u64,
    /// Entities of memories are extracted (and shown, and relate memories in the graph).
    pub extract_entities: bool,
    /// The entity types extracted (`person`, `org`, `location`, `date`, `email`, `url`,
    /// `amount`).
    pub entity_types: Vec<String>,
    /// Loci: this namespace's importance decay; null: the cluster's default.
    pub decay: Option<loci_storage::decay::DecayConfig>,
    /// Loci: this namespace's autopilot settings; null: the cluster's.
    pub autopilot: Option<crate::maintenance::AutopilotConfig>,
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
            retention_seconds: None,
            max_memories: None,
            max_agents: None,
            max_sessions_per_agent: None,
            content_screening: "off".into(),
            write_quorum: None,
            webhook_url: None,
            webhook_id: None,
            graph_link_threshold: Some(0.85),
            graph_max_links: 3,
            extract_entities: true,
            entity_types: loci_storage::entities::default_types(),
            decay: None,
            autopilot: None,
        }
    }
}
