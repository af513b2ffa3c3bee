//! Domain types: memories, sessions, filters and the operations a namespace executes.
//!
//! Every operation on a namespace's data is a [`DataOp`] and answers a [`DataResult`]; both are
//! serde types so a node can execute an operation locally or forward it to the namespace's owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::decay::DecayConfig;
pub use crate::graph::{EdgeType, Link};

/// Seconds since the Unix epoch (the wire format of every timestamp).
pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

pub fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemoryType {
    #[default]
    Episodic,
    Semantic,
    Procedural,
    Working,
}

impl MemoryType {
    pub const ALL: [MemoryType; 4] =
        [MemoryType::Episodic, MemoryType::Semantic, MemoryType::Procedural, MemoryType::Working];

    pub fn as_str(&self) -> &'static str {
        match self {
            MemoryType::Episodic => "episodic",
            MemoryType::Semantic => "semantic",
            MemoryType::Procedural => "procedural",
            MemoryType::Working => "working",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "episodic" => Some(MemoryType::Episodic),
            "semantic" => Some(MemoryType::Semantic),
            "procedural" => Some(MemoryType::Procedural),
            "working" => Some(MemoryType::Working),
            _ => None,
        }
    }
}

/// A stored memory, exactly as the API returns it (embedding kept apart).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryRecord {
    pub id: String,
    pub namespace: String,
    pub agent_id: String,
    pub content: String,
    pub memory_type: MemoryType,
    pub importance: f64,
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    pub session_id: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_accessed_at: u64,
    pub access_count: u64,
    pub expires_at: Option<u64>,
    /// Bumped on every change; lets the text index detect stale entries after a crash.
    pub version: u64,
    /// Microsecond insertion order within the namespace (stable ordering of same-second writes).
    #[serde(default)]
    pub order: u64,
}

impl MemoryRecord {
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A memory to store, validated by the API layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NewMemory {
    pub id: Option<String>,
    pub agent_id: String,
    pub content: String,
    pub memory_type: MemoryType,
    pub importance: f64,
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    pub session_id: Option<String>,
    pub expires_at: Option<u64>,
    pub embedding: Option<Vec<f32>>,
    /// The creation time to keep (an import of an export; at most the time of the store). Unset:
    /// the time of the store.
    #[serde(default)]
    pub created_at: Option<u64>,
}

impl NewMemory {
    /// A plain text memory of `agent_id` with the defaults a store request without options
    /// gets (episodic type, importance 0.5, no tags, metadata, session, expiry or vector).
    pub fn text(agent_id: impl Into<String>, content: impl Into<String>) -> Self {
        NewMemory {
            id: None,
            agent_id: agent_id.into(),
            content: content.into(),
            memory_type: MemoryType::default(),
            importance: 0.5,
            tags: Vec::new(),
            metadata: None,
            session_id: None,
            expires_at: None,
            embedding: None,
            created_at: None,
        }
    }
}

/// Fields of an update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryPatch {
    pub content: Option<String>,
    pub memory_type: Option<MemoryType>,
    pub importance: Option<f64>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<serde_json::Value>,
    pub expires_at: Option<Option<u64>>,
    pub embedding: Option<Vec<f32>>,
    /// Recorded as `metadata._dakera_lang`, keeping the rest of the metadata.
    pub lang: Option<String>,
}

/// Which memories an operation applies to. All given predicates must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryFilter {
    pub ids: Option<Vec<String>>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub memory_type: Option<MemoryType>,
    /// Memory has at least one of these tags.
    pub tags_any: Option<Vec<String>>,
    /// Memory has every one of these tags.
    pub tags_all: Option<Vec<String>>,
    pub min_importance: Option<f64>,
    pub max_importance: Option<f64>,
    pub created_after: Option<u64>,
    pub created_before: Option<u64>,
    /// The metadata must pass this filter (the vector and document routes' DSL).
    #[serde(default)]
    pub metadata: Option<crate::filter::MetaFilter>,
}

impl MemoryFilter {
    /// True when the filter selects everything (guards destructive calls).
    pub fn is_empty(&self) -> bool {
        self == &MemoryFilter::default()
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    #[default]
    CreatedAtDesc,
    CreatedAtAsc,
    LastAccessedAt,
    Importance,
    AccessCount,
}

/// How candidates from the two indexes are combined.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    #[default]
    Minmax,
    Rrf,
}

/// Which indexes a recall consults.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    #[default]
    Auto,
    Vector,
    Bm25,
    Hybrid,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecallParams {
    pub query: String,
    pub query_embedding: Option<Vec<f32>>,
    pub top_k: usize,
    pub filter: MemoryFilter,
    pub routing: Routing,
    pub fusion: Fusion,
    /// Weight of the vector score in hybrid fusion (0–1); `None` = default 0.7.
    pub vector_weight: Option<f32>,
    pub min_score: Option<f32>,
    /// Weigh the relevance by importance and recency (the documented formula).
    pub importance_weighted: bool,
    /// Recall (not search) records an access on every returned memory.
    pub record_access: bool,
    /// Importance decay ranking applies (the namespace's, else the cluster's default; the
    /// service fills it in). `None`: none.
    #[serde(default)]
    pub decay: Option<DecayConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScoredMemory {
    pub memory: MemoryRecord,
    /// Final fused score (what results are ordered by).
    pub score: f32,
    /// Relevance before importance / recency weighting.
    pub relevance: f32,
    pub vector_score: Option<f32>,
    pub text_score: Option<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub id: String,
    pub agent_id: String,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub summary: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub last_activity_at: u64,
    pub ended_reason: Option<String>,
    pub idle_timeout_secs: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub session: Session,
    pub memory_count: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentStats {
    pub agent_id: String,
    pub total_memories: u64,
    pub memories_by_type: BTreeMap<String, u64>,
    pub total_sessions: u64,
    pub active_sessions: u64,
    pub avg_importance: Option<f64>,
    pub oldest_memory_at: Option<u64>,
    pub newest_memory_at: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentSummary {
    pub agent_id: String,
    pub memory_count: u64,
    pub session_count: u64,
    pub active_sessions: u64,
    pub vector_count: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NamespaceStats {
    pub memory_count: u64,
    pub vector_count: u64,
    pub session_count: u64,
    pub dimension: Option<usize>,
    pub estimated_storage_bytes: u64,
}

/// One operation on one namespace's data.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum DataOp {
    Store {
        items: Vec<NewMemory>,
    },
    Get {
        id: String,
        record_access: bool,
    },
    Update {
        id: String,
        patch: MemoryPatch,
    },
    /// Set the importance of several memories in one write (all or nothing: an id that is not
    /// a live memory, or not `agent`'s when given, fails it with nothing changed).
    SetImportance {
        ids: Vec<String>,
        importance: f64,
        agent: Option<String>,
    },
    Forget {
        filter: MemoryFilter,
    },
    List {
        filter: MemoryFilter,
        sort: SortBy,
        limit: usize,
        offset: usize,
    },
    Recall(RecallParams),
    StartSession {
        id: Option<String>,
        agent_id: String,
        metadata: Option<serde_json::Value>,
        idle_timeout_secs: Option<u64>,
    },
    EndSession {
        id: String,
        summary: Option<String>,
    },
    GetSession {
        id: String,
    },
    ListSessions {
        agent_id: Option<String>,
        active_only: bool,
        limit: usize,
        offset: usize,
    },
    /// `None`: the whole namespace.
    AgentStats {
        agent_id: Option<String>,
    },
    TouchSession {
        id: String,
    },
    ListAgents,
    Stats,
    /// A page of `(id, version, content)` in id order after `after` (a re-embedding job reads
    /// the namespace with it).
    ContentPage {
        after: Option<String>,
        limit: usize,
    },
    /// Stage vectors for embedder `generation` (a re-embedding job writes them with it).
    StageVectors {
        generation: u64,
        items: Vec<(String, u64, Vec<f32>)>,
    },
    /// Nearest neighbours of a vector (or of a text, embedded on the primary) with their raw
    /// similarity scores, for the vector routes.
    Query(VectorQuery),
    /// A page of the records that pass the filter, in id order after `after`, with their
    /// vectors when asked.
    Export {
        after: Option<String>,
        limit: usize,
        include_vectors: bool,
        #[serde(default)]
        filter: MemoryFilter,
    },
    /// How many live records pass the filter.
    Count {
        filter: MemoryFilter,
    },
    /// Delete at most `limit` of the records that pass the filter (one write).
    DeleteMatching {
        filter: MemoryFilter,
        limit: usize,
    },
    /// Set (or, with `null`, remove) top-level metadata fields of at most `limit` of the records
    /// that pass the filter (one write).
    PatchMetadata {
        filter: MemoryFilter,
        set: serde_json::Map<String, serde_json::Value>,
        limit: usize,
        /// A record whose metadata would grow beyond this (compact JSON) is left unchanged and
        /// reported.
        max_metadata_bytes: usize,
    },
    /// The namespace's full-text statistics (over at most `sample` documents).
    TextStats {
        sample: usize,
    },
    /// Add links between memories of the namespace (both ends must be live memories, of
    /// `agent` when given); a link that exists is replaced (new weight and label).
    Link {
        links: Vec<Link>,
        agent: Option<String>,
    },
    /// Remove the links from `from` to `to` (of one type, or every type).
    Unlink {
        from: String,
        to: String,
        edge_type: Option<EdgeType>,
        /// Only links between `agent`'s memories.
        #[serde(default)]
        agent: Option<String>,
    },
    /// The graph around a memory (see [`GraphQuery`]).
    Graph(GraphQuery),
    /// The fewest hops from one memory to another.
    Path {
        from: String,
        to: String,
        max_depth: usize,
        /// Follow derived `shares_entity` edges of these entity types (none: stored links only).
        entity_types: Option<Vec<String>>,
        /// Only through `agent`'s memories (both ends too).
        #[serde(default)]
        agent: Option<String>,
    },
    /// Links of the namespace (of `agent`'s memories when given) passing the filters, in key
    /// order, at most `limit`.
    Links {
        agent: Option<String>,
        edge_type: Option<EdgeType>,
        min_weight: Option<f32>,
        limit: usize,
    },
    /// Near-duplicate groups among an agent's memories (see [`DedupParams`]); unless a dry run,
    /// every duplicate moves to the namespace's trash, restorable until its retention ends.
    Deduplicate(DedupParams),
    /// Merge memories into one new memory that keeps their provenance (see
    /// [`ConsolidateParams`]); the sources move to the trash.
    Consolidate(ConsolidateParams),
    /// The trash (of `agent` when given): what deduplication and consolidation moved there.
    ListTrash {
        agent: Option<String>,
        limit: usize,
    },
    /// Put a trashed memory back (of `agent` when given).
    RestoreTrash {
        id: String,
        agent: Option<String>,
    },
    /// Erase trashed memories whose retention ended before `now` (at most `limit`).
    PurgeTrash {
        now: u64,
        limit: usize,
    },
    /// Apply feedback to a memory's importance: `delta` added, within [0, 1], recorded in its
    /// feedback history (the last [`MAX_FEEDBACK_HISTORY`] signals).
    Feedback {
        id: String,
        agent: Option<String>,
        signal: String,
        delta: f64,
    },
    /// Feedback signals over an agent's live memories, with its memory count and mean importance.
    FeedbackSummary {
        agent: String,
    },
    /// A memory's feedback history, oldest first.
    FeedbackHistory {
        id: String,
        agent: Option<String>,
    },
    /// Memories the graph relates to `roots` (recall's `include_associated`): within `depth`
    /// hops, reached over an edge of at least `min_weight`, nearest and strongest first, at most
    /// `cap`, none of the roots.
    Associated {
        roots: Vec<String>,
        agent: Option<String>,
        depth: usize,
        cap: usize,
        min_weight: f32,
        entity_types: Option<Vec<String>>,
    },
    /// How decay leaves the namespace's (or `agent`'s) memories now.
    DecayStats {
        decay: DecayConfig,
        agent: Option<String>,
    },
}

/// Feedback signals a memory keeps.
pub const MAX_FEEDBACK_HISTORY: usize = 100;

/// A graph traversal (`DataOp::Graph`): from `root` (or, without one, over the namespace's
/// most important memories, at most `max_nodes`), `depth` hops, edges of `types`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GraphQuery {
    pub root: Option<String>,
    pub agent: Option<String>,
    pub depth: usize,
    pub max_nodes: usize,
    pub types: Option<Vec<EdgeType>>,
    pub min_weight: Option<f32>,
    /// Derive `shares_entity` edges from these entity types (`None`: no derived edges).
    pub entity_types: Option<Vec<String>>,
    /// Characters of content each node carries.
    pub preview_chars: usize,
    /// Without a root: only the memories mentioning this entity (`type:value`, or a value of
    /// any of `entity_types`; case-insensitive).
    #[serde(default)]
    pub mentioning: Option<String>,
}

/// An entity of a graph answer: a node of its own, linked to the memories of the answer that
/// mention it (`mentions` edges in an export).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EntityNode {
    /// `type:value`, the value lower-cased.
    pub key: String,
    pub entity_type: String,
    pub value: String,
    /// Ids of the answer's memories mentioning it.
    pub mentions: Vec<String>,
}

/// One node of a graph answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GraphNode {
    pub id: String,
    pub agent_id: String,
    pub content_preview: String,
    pub importance: f64,
    pub memory_type: MemoryType,
    pub tags: Vec<String>,
    pub created_at: u64,
    /// Bytes of the whole content.
    pub content_len: usize,
    pub depth: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GraphView {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Link>,
    pub truncated: bool,
    /// The entities the nodes mention (when the namespace extracts entities), at most
    /// [`MAX_GRAPH_ENTITIES`], most mentioned first.
    #[serde(default)]
    pub entities: Vec<EntityNode>,
}

/// Entities one graph answer carries at most.
pub const MAX_GRAPH_ENTITIES: usize = 1_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DedupParams {
    pub agent: Option<String>,
    pub memory_type: Option<MemoryType>,
    /// Cosine similarity at or above which two memories are near-duplicates.
    pub threshold: f32,
    /// And the share of words they must have in common (Jaccard over word sets).
    pub min_text_overlap: f32,
    pub dry_run: bool,
    /// How long a moved duplicate stays restorable.
    pub retention_secs: u64,
    /// The newest memories examined at most (bounds the work of one run).
    pub max_scan: usize,
    /// Only pairs within one session are duplicates (autopilot's `dedup_cross_session: false`).
    pub same_session_only: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DupGroup {
    pub canonical_id: String,
    pub duplicate_ids: Vec<String>,
    pub avg_similarity: f32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DedupReport {
    pub groups: Vec<DupGroup>,
    pub scanned: u64,
    /// Memories moved to the trash (0 on a dry run).
    pub moved: u64,
    /// Groups left alone because a member changed (or went) between the scan and the move.
    #[serde(default)]
    pub skipped_changed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConsolidateParams {
    pub agent: String,
    /// These memories (at least 2); without them the largest group of memories at least
    /// `threshold` alike is taken (none: nothing is merged).
    pub ids: Option<Vec<String>>,
    pub threshold: f32,
    pub target_type: Option<MemoryType>,
    pub retention_secs: u64,
    pub max_scan: usize,
    /// The id of the merged memory (the service makes it, so a retry is idempotent).
    pub new_id: String,
    /// Its vector, when the namespace's embedder is the client's (else it is embedded).
    pub embedding: Option<Vec<f32>>,
    /// Without ids, only memories of one session form a group (autopilot's
    /// `consolidate_cross_session: false`).
    #[serde(default)]
    pub same_session_only: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Consolidated {
    pub memory: Option<MemoryRecord>,
    pub source_ids: Vec<String>,
}

/// Why a memory is in the trash.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrashKind {
    Deduplication,
    Consolidation,
}

/// A memory moved aside by deduplication or consolidation, whole (record and vector), until
/// `restorable_until`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrashEntry {
    pub record: MemoryRecord,
    pub vector: Option<Vec<f32>>,
    pub kind: TrashKind,
    pub survivor_id: String,
    pub deleted_at: u64,
    pub restorable_until: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FeedbackEntry {
    pub signal: String,
    pub timestamp: u64,
    pub old_importance: f64,
    pub new_importance: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FeedbackSummary {
    pub upvotes: u64,
    pub downvotes: u64,
    pub flags: u64,
    pub memory_count: u64,
    pub avg_importance: f64,
}

impl FeedbackSummary {
    /// 0.5 with no signals; up to 1 when all are upvotes, down to 0 when all are downvotes or
    /// flags (a flag counts twice).
    pub fn health_score(&self) -> f64 {
        let total = self.upvotes + self.downvotes + self.flags;
        if total == 0 {
            return 0.5;
        }
        let net = self.upvotes as f64 - self.downvotes as f64 - 2.0 * self.flags as f64;
        (0.5 + 0.5 * net / total as f64).clamp(0.0, 1.0)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DecayStats {
    pub memories: u64,
    /// Memories whose ranking importance is below their stored importance.
    pub decayed: u64,
    pub avg_importance: f64,
    pub avg_effective_importance: f64,
}

/// A nearest-neighbour search (`DataOp::Query`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VectorQuery {
    /// The query vector; without one, `text` is embedded with the namespace's embedder.
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub top_k: usize,
    pub filter: MemoryFilter,
    pub include_vectors: bool,
    /// Whether the answer carries the records (metadata, text). `false` (and no vectors): ids
    /// and scores only ([`DataResult::Scores`]), and no record is read or decrypted. A query
    /// from a node that predates the field carries none: records.
    #[serde(default = "records_by_default")]
    pub records: bool,
}

fn records_by_default() -> bool {
    true
}

/// One record of a vector search or an export, with its vector when asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VectorHit {
    pub record: MemoryRecord,
    pub score: f32,
    pub vector: Option<Vec<f32>>,
}

/// Full-text statistics of a namespace (`DataOp::TextStats`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TextStats {
    /// Live records with text.
    pub documents: u64,
    /// Distinct terms (after lower-casing and stemming) over the documents examined.
    pub unique_terms: u64,
    /// Mean terms per document over the documents examined.
    pub avg_doc_length: f64,
    /// Documents examined (all of them unless the namespace holds more than the sample).
    pub examined: u64,
}

impl DataOp {
    /// Operations that change data (and therefore replicate).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            DataOp::Store { .. }
                | DataOp::Update { .. }
                | DataOp::SetImportance { .. }
                | DataOp::Forget { .. }
                | DataOp::StartSession { .. }
                | DataOp::EndSession { .. }
                | DataOp::TouchSession { .. }
                | DataOp::StageVectors { .. }
                | DataOp::DeleteMatching { .. }
                | DataOp::PatchMetadata { .. }
                | DataOp::Link { .. }
                | DataOp::Unlink { .. }
                | DataOp::Deduplicate(_)
                | DataOp::Consolidate(_)
                | DataOp::RestoreTrash { .. }
                | DataOp::PurgeTrash { .. }
                | DataOp::Feedback { .. }
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum DataResult {
    Stored(Vec<MemoryRecord>),
    Memory(MemoryRecord),
    Deleted(u64),
    Memories {
        memories: Vec<MemoryRecord>,
        total: u64,
    },
    Recalled(Vec<ScoredMemory>),
    Session(SessionInfo),
    Sessions {
        sessions: Vec<SessionInfo>,
        total: u64,
    },
    AgentStats(AgentStats),
    Agents(Vec<AgentSummary>),
    Stats(NamespaceStats),
    ContentPage(Vec<(String, u64, String)>),
    Staged(u64),
    Hits(Vec<VectorHit>),
    /// A vector query's ids and scores, best first (`VectorQuery::records` false).
    Scores(Vec<(String, f32)>),
    /// `more`: records follow the last one returned.
    Exported {
        items: Vec<VectorHit>,
        total: u64,
        more: bool,
    },
    Count(u64),
    Patched {
        updated: u64,
        errors: Vec<String>,
    },
    TextStats(TextStats),
    Links(Vec<Link>),
    Graph(GraphView),
    Path(Option<Vec<String>>),
    Deduplicated(DedupReport),
    Consolidated(Consolidated),
    Trash(Vec<TrashEntry>),
    Feedback {
        memory: MemoryRecord,
        old_importance: f64,
    },
    FeedbackHistory(Vec<FeedbackEntry>),
    FeedbackSummary(FeedbackSummary),
    DecayStats(DecayStats),
    /// `(memory, depth, weight of the edge that reached it)`.
    Associated(Vec<(MemoryRecord, usize, f32)>),
}

/// One change to a namespace's data, as replicated from the primary to its followers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Mutation {
    PutMemory {
        record: MemoryRecord,
        vector: Option<Vec<f32>>,
    },
    DeleteMemories {
        ids: Vec<String>,
    },
    PutSession {
        session: Session,
    },
    /// Vectors a re-embedding job computed for embedder `generation`: `(id, version, vector)`,
    /// kept aside until the namespace switches to that generation.
    StageVectors {
        generation: u64,
        items: Vec<(String, u64, Vec<f32>)>,
    },
    PutLinks {
        links: Vec<Link>,
    },
    DeleteLinks {
        keys: Vec<crate::graph::LinkKey>,
    },
    /// Memories moved to the trash (their rows and links go as by `DeleteMemories`).
    PutTrash {
        entries: Vec<TrashEntry>,
    },
    DeleteTrash {
        ids: Vec<String>,
    },
    /// A memory's whole feedback history (replaces the one stored).
    PutFeedback {
        id: String,
        history: Vec<FeedbackEntry>,
    },
}

/// A replication-log entry: the mutations of one write, under the namespace's next sequence
/// number and the placement epoch of the primary that made it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplEntry {
    pub seq: u64,
    pub epoch: u64,
    pub mutations: Vec<Mutation>,
    /// The embedder generation its vectors were made with (a replica that already switched to a
    /// newer one embeds that content again).
    #[serde(default)]
    pub generation: u64,
}

/// What a follower did with an entry.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied {
        seq: u64,
    },
    /// Already had it (a retry).
    Duplicate {
        applied: u64,
    },
    /// Missing earlier entries: send from `applied + 1`.
    Gap {
        applied: u64,
    },
    /// The sender's epoch is older than this replica's: it is no longer the primary.
    Fenced {
        epoch: u64,
    },
    /// This replica's log disagrees with the sender's (it holds entries of a deposed primary
    /// that the current one never had): only a full copy can repair it.
    Diverged {
        applied: u64,
    },
}

/// Replication progress of one namespace on one node (stored in the `nsmeta` column family in
/// the same batch as the data).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NsProgress {
    pub applied_seq: u64,
    pub epoch: u64,
}

/// The result of executing an operation locally, and what followers must apply.
#[derive(Clone, Debug)]
pub struct Executed {
    pub result: DataResult,
    pub replicate: Option<ReplEntry>,
}
