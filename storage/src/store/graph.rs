//! The knowledge graph on the store: explicit links (one replicated write), similarity links
//! made on store, traversal, shortest paths and listings over a namespace's links, with
//! `shares_entity` edges derived from the entity index. The decisions are in [`crate::graph`].

use super::{Namespace, NsContext, NsState, Store};
use crate::error::{Result, StorageError};
use crate::graph::{self, EdgeType, Link};
use crate::model::*;

/// Derived `shares_entity` neighbours one node contributes at most (an entity every memory
/// mentions must not make every traversal visit the whole namespace).
const MAX_ENTITY_NEIGHBOURS: usize = 20;
/// Nodes a path search visits at most.
const MAX_PATH_VISITS: usize = 10_000;

fn entity_edges(st: &NsState, id: &str, types: &[String], created_at: u64) -> Vec<Link> {
    let mine = st.entities.entities_of(id).len().max(1);
    st.entities
        .neighbours(id, types, MAX_ENTITY_NEIGHBOURS)
        .into_iter()
        .map(|(other, shared)| {
            let (from_id, to_id) = if id < other.as_str() { (id.to_string(), other) } else { (other, id.to_string()) };
            Link {
                from_id,
                to_id,
                edge_type: EdgeType::SharesEntity,
                weight: (shared as f32 / mine as f32).min(1.0),
                label: None,
                created_at,
            }
        })
        .collect()
}

/// The memories mentioning an entity: `type:value`, or `value` as any of `types` (all when
/// empty); case-insensitive.
fn mentioned_by(st: &NsState, entity: &str, types: &[String]) -> std::collections::HashSet<String> {
    let e = entity.trim().to_lowercase();
    let keys: Vec<String> = match e.split_once(':').and_then(|(t, v)| Some((crate::entities::canonical_type(t)?, v))) {
        Some((t, v)) => vec![format!("{t}:{}", v.trim())],
        None => crate::entities::TYPES
            .iter()
            .filter(|t| types.is_empty() || types.iter().any(|x| crate::entities::canonical_type(x) == Some(**t)))
            .map(|t| format!("{t}:{e}"))
            .collect(),
    };
    keys.iter().flat_map(|k| st.entities.mentions(k)).collect()
}

/// The entities (of `types`; all when empty) the given memories mention, each with the ones
/// mentioning it; most mentioned first, then by key; at most [`MAX_GRAPH_ENTITIES`].
fn entity_nodes<'a>(st: &NsState, ids: impl Iterator<Item = &'a str>, types: &[String]) -> Vec<EntityNode> {
    let wanted = |t: &str| types.is_empty() || types.iter().any(|x| crate::entities::canonical_type(x) == Some(t));
    let mut by_key: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for id in ids {
        for k in st.entities.entities_of(id) {
            if wanted(k.split(':').next().unwrap_or("")) {
                by_key.entry(k.as_str()).or_default().push(id.to_string());
            }
        }
    }
    let mut out: Vec<EntityNode> = by_key
        .into_iter()
        .map(|(k, mut mentions)| {
            mentions.sort();
            let (t, v) = k.split_once(':').unwrap_or(("", k));
            EntityNode { key: k.to_string(), entity_type: t.to_string(), value: v.to_string(), mentions }
        })
        .collect();
    out.sort_by(|a, b| b.mentions.len().cmp(&a.mentions.len()).then_with(|| a.key.cmp(&b.key)));
    out.truncate(MAX_GRAPH_ENTITIES);
    out
}

impl Store {
    /// Before a read that walks `shares_entity` edges: wait (boundedly) for the namespace's
    /// queued extractions, so a client's own writes are related.
    fn settle_for(&self, ns: &Namespace, entities: bool) {
        if entities && !self.settle_extractions(ns.ctx.id, super::extraction::SETTLE_TIMEOUT) {
            tracing::debug!(namespace = %ns.ctx.name, "entity extraction still queued; answering with what is extracted");
        }
    }

    /// `DataOp::Link`: every end a live memory of the namespace (of `agent` when given), no
    /// self-links; one replicated write.
    pub(super) fn link(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        links: Vec<Link>,
        agent: Option<&str>,
        now: u64,
    ) -> Result<(Vec<Link>, ReplEntry)> {
        let _w = ns.write_lock()?;
        {
            let st = ns.state.read();
            for l in &links {
                if l.from_id == l.to_id {
                    return Err(StorageError::Invalid("a memory cannot be linked to itself".into()));
                }
                if !(0.0..=1.0).contains(&l.weight) || !l.weight.is_finite() {
                    return Err(StorageError::Invalid("weight must be between 0 and 1".into()));
                }
                for end in [&l.from_id, &l.to_id] {
                    let ok = st.metas.get(end).is_some_and(|m| m.live(now) && agent.is_none_or(|a| a == m.agent_id));
                    if !ok {
                        return Err(StorageError::NotFound(format!("memory {end}")));
                    }
                }
            }
        }
        let links: Vec<Link> = links.into_iter().map(|l| Link { created_at: now, ..l }).collect();
        let entry = self.commit_local(ns, ctx, vec![Mutation::PutLinks { links: links.clone() }])?;
        Ok((links, entry))
    }

    /// `DataOp::Unlink`: the number of links removed (none when an end is not `agent`'s).
    pub(super) fn unlink(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        (from, to): (&str, &str),
        edge_type: Option<EdgeType>,
        agent: Option<&str>,
    ) -> Result<(u64, Option<ReplEntry>)> {
        let _w = ns.write_lock()?;
        let keys: Vec<graph::LinkKey> = {
            let st = ns.state.read();
            if let Some(a) = agent
                && [from, to].iter().any(|id| st.metas.get(*id).is_none_or(|m| m.agent_id != a))
            {
                return Ok((0, None));
            }
            st.graph
                .keys_of(from)
                .into_iter()
                .filter(|k| k.0 == from && k.1 == to && edge_type.is_none_or(|t| t == k.2))
                .collect()
        };
        if keys.is_empty() {
            return Ok((0, None));
        }
        let n = keys.len() as u64;
        Ok((n, Some(self.commit_local(ns, ctx, vec![Mutation::DeleteLinks { keys }])?)))
    }

    /// `related_to` links from a memory about to be stored to the most similar live memories of
    /// the same agent (at most `max`, similarity at least `threshold`); `skip`: ids of the same
    /// write.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn similarity_links(
        &self,
        st: &NsState,
        (from, agent): (&str, &str),
        vector: &[f32],
        threshold: f32,
        max: usize,
        skip: &std::collections::HashSet<String>,
        now: u64,
    ) -> Vec<Link> {
        let accept = |id: &str| {
            id != from && !skip.contains(id) && st.metas.get(id).is_some_and(|m| m.live(now) && m.agent_id == agent)
        };
        st.vectors
            .search(vector, max, &accept)
            .into_iter()
            .filter(|(_, score)| *score >= threshold)
            .map(|(id, score)| Link {
                from_id: from.to_string(),
                to_id: id,
                edge_type: EdgeType::RelatedTo,
                weight: score.clamp(0.0, 1.0),
                label: None,
                created_at: now,
            })
            .collect()
    }

    /// `DataOp::Graph`.
    pub(super) fn graph_view(&self, ns: &Namespace, q: GraphQuery, now: u64) -> Result<GraphView> {
        self.settle_for(ns, q.entity_types.is_some());
        let st = ns.state.read();
        let live = |id: &str| {
            st.metas.get(id).is_some_and(|m| m.live(now) && q.agent.as_ref().is_none_or(|a| a == &m.agent_id))
        };
        let types = q.types.as_deref();
        let min_weight = q.min_weight.unwrap_or(0.0);
        let entity_types = q.entity_types.clone();
        let extra = |id: &str| match &entity_types {
            Some(t) => entity_edges(&st, id, t, st.metas.get(id).map_or(0, |m| m.created_at)),
            None => Vec::new(),
        };
        let (nodes, edges, truncated) = match &q.root {
            Some(root) => {
                if !live(root) {
                    return Err(StorageError::NotFound(format!("memory {root}")));
                }
                let t = graph::traverse(&st.graph, root, q.depth, q.max_nodes.max(1), types, &extra, &live);
                (t.nodes, t.edges, t.truncated)
            }
            None => {
                // The whole graph: the most important live memories (ties: newest, then id),
                // and the edges among them.
                let mentioning: Option<std::collections::HashSet<String>> =
                    q.mentioning.as_deref().map(|m| mentioned_by(&st, m, entity_types.as_deref().unwrap_or(&[])));
                let mut ids: Vec<(&String, &super::rank::Meta)> = st
                    .metas
                    .iter()
                    .filter(|(id, _)| live(id) && mentioning.as_ref().is_none_or(|m| m.contains(id.as_str())))
                    .collect();
                let truncated = ids.len() > q.max_nodes;
                ids.sort_by(|a, b| {
                    b.1.importance
                        .total_cmp(&a.1.importance)
                        .then_with(|| b.1.created_at.cmp(&a.1.created_at))
                        .then_with(|| a.0.cmp(b.0))
                });
                ids.truncate(q.max_nodes);
                let chosen: std::collections::HashSet<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
                let mut edges: std::collections::BTreeMap<graph::LinkKey, Link> = Default::default();
                for id in &chosen {
                    let mut around: Vec<Link> = st.graph.links_of(id).cloned().collect();
                    around.extend(extra(id));
                    for l in around {
                        if chosen.contains(l.other(id)) && types.is_none_or(|ts| ts.contains(&l.edge_type)) {
                            edges.entry(l.key()).or_insert(l);
                        }
                    }
                }
                let nodes = ids.into_iter().map(|(id, _)| (id.clone(), 0)).collect();
                (nodes, edges.into_values().collect(), truncated)
            }
        };
        let edges: Vec<Link> = edges.into_iter().filter(|e| e.weight >= min_weight).collect();
        let entities = match &entity_types {
            Some(t) => entity_nodes(&st, nodes.iter().map(|(id, _)| id.as_str()), t),
            None => Vec::new(),
        };
        drop(st);
        let mut out = Vec::with_capacity(nodes.len());
        for (id, depth) in nodes {
            if let Some(r) = self.full_record(ns, &id)? {
                out.push(GraphNode {
                    content_preview: r.content.chars().take(q.preview_chars).collect(),
                    content_len: r.content.len(),
                    tags: r.tags,
                    id: r.id,
                    agent_id: r.agent_id,
                    importance: r.importance,
                    memory_type: r.memory_type,
                    created_at: r.created_at,
                    depth,
                });
            }
        }
        Ok(GraphView { nodes: out, edges, truncated, entities })
    }

    /// `DataOp::Path`: not found when either end is not a live memory.
    pub(super) fn graph_path(
        &self,
        ns: &Namespace,
        from: &str,
        to: &str,
        max_depth: usize,
        (entity_types, agent): (Option<&[String]>, Option<&str>),
        now: u64,
    ) -> Result<Option<Vec<String>>> {
        self.settle_for(ns, entity_types.is_some());
        let st = ns.state.read();
        let live = |id: &str| st.metas.get(id).is_some_and(|m| m.live(now) && agent.is_none_or(|a| a == m.agent_id));
        for end in [from, to] {
            if !live(end) {
                return Err(StorageError::NotFound(format!("memory {end}")));
            }
        }
        let extra = |id: &str| match entity_types {
            Some(t) => entity_edges(&st, id, t, 0),
            None => Vec::new(),
        };
        Ok(graph::shortest_path(
            &st.graph,
            from,
            to,
            max_depth.min(graph::MAX_DEPTH * 2),
            MAX_PATH_VISITS,
            &extra,
            &live,
        ))
    }

    /// `DataOp::Associated`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn associated(
        &self,
        ns: &Namespace,
        roots: &[String],
        agent: Option<&str>,
        depth: usize,
        cap: usize,
        min_weight: f32,
        entity_types: Option<&[String]>,
        now: u64,
    ) -> Result<Vec<(MemoryRecord, usize, f32)>> {
        let mut best: std::collections::HashMap<String, (usize, f32)> = std::collections::HashMap::new();
        {
            self.settle_for(ns, entity_types.is_some());
            let st = ns.state.read();
            let live =
                |id: &str| st.metas.get(id).is_some_and(|m| m.live(now) && agent.is_none_or(|a| a == m.agent_id));
            let extra = |id: &str| match entity_types {
                Some(t) => entity_edges(&st, id, t, 0),
                None => Vec::new(),
            };
            for root in roots.iter().filter(|r| live(r)) {
                let t = graph::traverse(&st.graph, root, depth, 1_000, None, &extra, &live);
                let depth_of: std::collections::HashMap<&str, usize> =
                    t.nodes.iter().map(|(id, d)| (id.as_str(), *d)).collect();
                for e in &t.edges {
                    for (near, far) in [(&e.from_id, &e.to_id), (&e.to_id, &e.from_id)] {
                        let (Some(dn), Some(df)) = (depth_of.get(near.as_str()), depth_of.get(far.as_str())) else {
                            continue;
                        };
                        if *df != dn + 1 || e.weight < min_weight || roots.contains(far) {
                            continue;
                        }
                        let slot = best.entry(far.clone()).or_insert((*df, e.weight));
                        if (*df, -e.weight) < (slot.0, -slot.1) {
                            *slot = (*df, e.weight);
                        }
                    }
                }
            }
        }
        let mut order: Vec<(String, usize, f32)> = best.into_iter().map(|(id, (d, w))| (id, d, w)).collect();
        order.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| b.2.total_cmp(&a.2)).then_with(|| a.0.cmp(&b.0)));
        order.truncate(cap);
        let mut out = Vec::with_capacity(order.len());
        for (id, d, w) in order {
            if let Some(r) = self.full_record(ns, &id)? {
                out.push((r, d, w));
            }
        }
        Ok(out)
    }

    /// `DataOp::Links`.
    pub(super) fn list_links(
        &self,
        ns: &Namespace,
        agent: Option<&str>,
        edge_type: Option<EdgeType>,
        min_weight: Option<f32>,
        limit: usize,
        now: u64,
    ) -> Vec<Link> {
        let st = ns.state.read();
        let ok = |id: &str| st.metas.get(id).is_some_and(|m| m.live(now) && agent.is_none_or(|a| a == m.agent_id));
        st.graph
            .all()
            .into_iter()
            .filter(|l| edge_type.is_none_or(|t| t == l.edge_type))
            .filter(|l| min_weight.is_none_or(|w| l.weight >= w))
            .filter(|l| ok(&l.from_id) && ok(&l.to_id))
            .take(limit)
            .cloned()
            .collect()
    }
}
