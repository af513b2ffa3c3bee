//! The knowledge graph and entities as both fronts call them (`core.graph()`): explicit links,
//! traversal, paths, listings and exports of one namespace's graph, and entity extraction
//! (on demand, and per stored memory with the namespace's entity types).
//!
//! Every call is inside one namespace: a link's two ends must be memories of the namespace the
//! request addresses (an id of another namespace is not found there, so a cross-tenant link is
//! refused with 404 and tells nothing), and a traversal never leaves the namespace's own graph.
//! A call that names only a memory id finds its namespace among those the key reads
//! ([`crate::memories::Memories::locate`]).

use loci_raft::catalogue::{NamespaceEntry, Scope};
use loci_storage::entities::{self, Entity};
use loci_storage::graph::{EdgeType, Link, MAX_DEPTH};
use loci_storage::model::{DataOp, DataResult, GraphQuery, GraphView, MemoryRecord};

use crate::access::Principal;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};
use crate::memories::{Target, target};
use crate::ratelimit::RateLimiter;
use crate::validate;

/// Nodes one graph answer carries at most.
pub const MAX_GRAPH_NODES: usize = 1_000;
/// Links one listing carries at most.
pub const MAX_LINKS: usize = 10_000;
/// Characters of a link's label.
pub const MAX_LABEL_CHARS: usize = 256;
/// Bytes of text one extraction call takes.
pub const MAX_EXTRACT_BYTES: usize = 100_000;

/// The graph calls of a node's service (see the module documentation).
#[derive(Clone, Copy)]
pub struct Graphs<'a> {
    core: &'a Core,
    limiter: &'a RateLimiter,
}

impl Core {
    pub fn graph<'a>(&'a self, limiter: &'a RateLimiter) -> Graphs<'a> {
        Graphs { core: self, limiter }
    }
}

fn unexpected() -> ServiceError {
    ServiceError::internal("unexpected result")
}

/// The entity types a namespace extracts (none when it extracts none).
pub fn entity_types_of(entry: &NamespaceEntry) -> Option<Vec<String>> {
    entry.policy.extract_entities.then(|| entry.policy.entity_types.clone())
}

/// Entity types as a request names them, as wire names (an unknown one is a 400).
pub fn check_entity_types(types: &[String]) -> ServiceResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let c = entities::canonical_type(t).ok_or_else(|| {
            ServiceError::bad_request(format!(
                "unknown entity type '{}' (known: {})",
                validate::printable(t),
                entities::TYPES.join(", ")
            ))
        })?;
        if !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

/// A traversal depth as a request gives it: 1 to 5.
pub fn check_depth(depth: Option<i64>, default: usize) -> ServiceResult<usize> {
    match depth {
        None => Ok(default),
        Some(d) if (1..=MAX_DEPTH as i64).contains(&d) => Ok(d as usize),
        Some(_) => Err(ServiceError::bad_request(format!("depth must be between 1 and {MAX_DEPTH}"))),
    }
}

/// Check a text given to an extraction call.
fn check_extract_text(text: &str) -> ServiceResult<()> {
    if text.len() > MAX_EXTRACT_BYTES {
        return Err(ServiceError::payload_too_large(format!("text must be at most {MAX_EXTRACT_BYTES} bytes")));
    }
    Ok(())
}

/// Run an extractor on the blocking pool (a remote one makes an HTTP call).
async fn run_extractor(
    extractor: loci_storage::extract::SharedExtractor,
    text: String,
    types: Vec<String>,
) -> ServiceResult<Vec<Entity>> {
    tokio::task::spawn_blocking(move || extractor.extract(&text, &types))
        .await
        .map_err(|_| ServiceError::internal("the extraction task failed"))?
        .map_err(Into::into)
}

/// The scope of a memory-id call: where the memory is and whose memories count.
pub struct Located {
    pub entry: NamespaceEntry,
    pub agent: Option<String>,
    pub memory: MemoryRecord,
}

impl<'a> Graphs<'a> {
    /// The namespace a call names (`namespace` / `agent_id`), or the one holding `id` among
    /// those the key reads; the key needs `scope` there.
    pub async fn locate(
        &self,
        p: &Principal,
        id: &str,
        namespace: Option<&str>,
        agent_id: Option<&str>,
        scope: Scope,
    ) -> ServiceResult<Located> {
        validate::memory_id(id)
            .map_err(|_| ServiceError::not_found("memory", format!("memory {} not found", validate::printable(id))))?;
        let mems = self.core.memories(self.limiter);
        let (entry, memory, agent) = if namespace.unwrap_or("").is_empty() && agent_id.unwrap_or("").is_empty() {
            let (entry, memory) = mems.locate(p, id).await?;
            (entry, memory, None)
        } else {
            let t = target(namespace, agent_id)?;
            let memory = mems.get(p, id, namespace, agent_id).await?;
            let entry = self
                .core
                .namespace(&t.namespace)
                .ok_or_else(|| ServiceError::not_found("memory", format!("memory {id} not found")))?;
            (entry, memory, t.agent_filter)
        };
        p.require(&entry.name, scope)?;
        Ok(Located { entry, agent, memory })
    }

    fn entry(&self, p: &Principal, t: &Target, scope: Scope) -> ServiceResult<NamespaceEntry> {
        p.require(&t.namespace, scope)?;
        self.core
            .namespace(&t.namespace)
            .ok_or_else(|| ServiceError::not_found("namespace", format!("namespace '{}' not found", t.namespace)))
    }

    /// Link `from` to `to` in the namespace `t` addresses (write scope). Both must be memories
    /// there (of the agent, within an agent filter): a memory of another namespace is not found.
    #[allow(clippy::too_many_arguments)]
    pub async fn link(
        &self,
        p: &Principal,
        t: &Target,
        from: &str,
        to: &str,
        edge_type: EdgeType,
        weight: f32,
        label: Option<String>,
    ) -> ServiceResult<Link> {
        for id in [from, to] {
            validate::memory_id(id).map_err(|_| {
                ServiceError::not_found("memory", format!("memory {} not found", validate::printable(id)))
            })?;
        }
        if label.as_ref().is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS) {
            return Err(ServiceError::bad_request(format!("label must be at most {MAX_LABEL_CHARS} characters")));
        }
        if !(0.0..=1.0).contains(&weight) {
            return Err(ServiceError::bad_request("weight must be between 0 and 1"));
        }
        let entry = self.entry(p, t, Scope::Write)?;
        let link = Link { from_id: from.into(), to_id: to.into(), edge_type, weight, label, created_at: 0 };
        let op = DataOp::Link { links: vec![link], agent: t.agent_filter.clone() };
        match self.core.exec(&entry, op).await? {
            DataResult::Links(mut links) if !links.is_empty() => {
                let link = links.remove(0);
                self.core.namespace_event(
                    &entry,
                    "memory_linked",
                    serde_json::json!({"from_id": link.from_id, "to_id": link.to_id, "edge_type": link.edge_type}),
                );
                Ok(link)
            }
            _ => Err(unexpected()),
        }
    }

    /// Remove links from `from` to `to` (write scope): how many.
    pub async fn unlink(
        &self,
        p: &Principal,
        t: &Target,
        from: &str,
        to: &str,
        edge_type: Option<EdgeType>,
    ) -> ServiceResult<u64> {
        let entry = self.entry(p, t, Scope::Write)?;
        let op = DataOp::Unlink { from: from.into(), to: to.into(), edge_type, agent: t.agent_filter.clone() };
        match self.core.exec(&entry, op).await? {
            DataResult::Deleted(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// The graph around a memory (read scope), `depth` hops, every edge type (derived
    /// `shares_entity` edges included when the namespace extracts entities).
    pub async fn around(
        &self,
        located: &Located,
        depth: usize,
        types: Option<Vec<EdgeType>>,
        max_nodes: usize,
        preview_chars: usize,
    ) -> ServiceResult<GraphView> {
        let q = GraphQuery {
            root: Some(located.memory.id.clone()),
            agent: located.agent.clone(),
            depth,
            max_nodes: max_nodes.clamp(1, MAX_GRAPH_NODES),
            types,
            min_weight: None,
            entity_types: entity_types_of(&located.entry),
            preview_chars,
            mentioning: None,
        };
        match self.core.exec(&located.entry, DataOp::Graph(q)).await? {
            DataResult::Graph(g) => Ok(g),
            _ => Err(unexpected()),
        }
    }

    /// The graph of a namespace (read scope): from `root` when given, else its most important
    /// memories (at most `max_nodes`) and the edges among them.
    #[allow(clippy::too_many_arguments)]
    pub async fn graph(
        &self,
        p: &Principal,
        t: &Target,
        root: Option<&str>,
        depth: usize,
        types: Option<Vec<EdgeType>>,
        min_weight: Option<f32>,
        max_nodes: usize,
        preview_chars: usize,
        mentioning: Option<&str>,
    ) -> ServiceResult<(NamespaceEntry, GraphView)> {
        let entry = self.entry(p, t, Scope::Read)?;
        if mentioning.is_some() && entity_types_of(&entry).is_none() {
            return Err(ServiceError::bad_request(
                "this namespace does not extract entities (PUT /v1/namespaces/{ns}/config {\"extract_entities\": true})",
            ));
        }
        let q = GraphQuery {
            root: root.map(str::to_string),
            agent: t.agent_filter.clone(),
            depth,
            max_nodes: max_nodes.clamp(1, MAX_GRAPH_NODES),
            types,
            min_weight,
            entity_types: entity_types_of(&entry),
            preview_chars,
            mentioning: mentioning.map(str::to_string),
        };
        match self.core.exec(&entry, DataOp::Graph(q)).await? {
            DataResult::Graph(g) => Ok((entry, g)),
            _ => Err(unexpected()),
        }
    }

    /// The fewest hops between two memories of one namespace (read scope); `None`: not
    /// connected within `max_depth`.
    pub async fn path(&self, located: &Located, to: &str, max_depth: usize) -> ServiceResult<Option<Vec<String>>> {
        validate::memory_id(to)
            .map_err(|_| ServiceError::not_found("memory", format!("memory {} not found", validate::printable(to))))?;
        let op = DataOp::Path {
            from: located.memory.id.clone(),
            to: to.to_string(),
            max_depth,
            entity_types: entity_types_of(&located.entry),
            agent: located.agent.clone(),
        };
        match self.core.exec(&located.entry, op).await? {
            DataResult::Path(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    /// Links of a namespace (read scope), filtered, at most `limit`.
    pub async fn links(
        &self,
        p: &Principal,
        t: &Target,
        edge_type: Option<EdgeType>,
        min_weight: Option<f32>,
        limit: usize,
    ) -> ServiceResult<(NamespaceEntry, Vec<Link>)> {
        let entry = self.entry(p, t, Scope::Read)?;
        let op =
            DataOp::Links { agent: t.agent_filter.clone(), edge_type, min_weight, limit: limit.clamp(1, MAX_LINKS) };
        match self.core.exec(&entry, op).await? {
            DataResult::Links(l) => Ok((entry, l)),
            _ => Err(unexpected()),
        }
    }

    /// Memories related to recall hits (`include_associated`): at most `cap` (≤ 10), within
    /// `depth` (1–3) hops, over edges of at least `min_weight` (read scope, checked by the
    /// recall that found the roots).
    pub async fn associated(
        &self,
        t: &Target,
        roots: Vec<String>,
        depth: usize,
        cap: usize,
        min_weight: f32,
    ) -> ServiceResult<Vec<(MemoryRecord, usize, f32)>> {
        let Some(entry) = self.core.namespace(&t.namespace) else { return Ok(Vec::new()) };
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let op = DataOp::Associated {
            roots,
            agent: t.agent_filter.clone(),
            depth: depth.clamp(1, 3),
            cap: cap.min(10),
            min_weight,
            entity_types: entity_types_of(&entry),
        };
        match self.core.exec(&entry, op).await? {
            DataResult::Associated(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// The entities a stored memory mentions, of its namespace's entity types (none when the
    /// namespace does not extract entities), by the node's extractor.
    pub async fn entities_of(&self, located: &Located) -> ServiceResult<Vec<Entity>> {
        match entity_types_of(&located.entry) {
            Some(types) => run_extractor(self.core.store.extractor(), located.memory.content.clone(), types).await,
            None => Ok(Vec::new()),
        }
    }

    /// Extract entities from a text, nothing stored (no namespace: any valid key may). `provider`:
    /// `rules` (also `builtin`, `rule`, `gliner`: the built-in rules), the node's configured
    /// extractor by its name, or `None` for the node's extractor. The answer names the provider.
    pub async fn extract(
        &self,
        text: String,
        types: &[String],
        provider: Option<&str>,
    ) -> ServiceResult<(Vec<Entity>, String)> {
        check_extract_text(&text)?;
        let types = check_entity_types(types)?;
        let configured = self.core.store.extractor();
        let extractor = match provider {
            None => configured,
            Some("rules" | "rule" | "builtin" | "gliner") => loci_storage::extract::rules(),
            Some(p) if p == configured.name() || (p == "openai" && configured.name() == "openai-compatible") => {
                configured
            }
            Some(p) => {
                return Err(ServiceError::bad_request(format!(
                    "extractor provider '{}' is not available here (this node has: rules{})",
                    validate::printable(p),
                    if configured.name() == "rules" { String::new() } else { format!(", {}", configured.name()) }
                )));
            }
        };
        let name = extractor.name().to_string();
        Ok((run_extractor(extractor, text, types).await?, name))
    }
}
