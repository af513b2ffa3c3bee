//! The knowledge graph and entities over REST: memory links, graph traversal and paths, the
//! `/v1/knowledge/*` views and exports, entity extraction and a namespace's entity settings.
//! Transport only: the rules are in `loci_service::graph`. Answers follow the shapes the
//! published clients parse (docs/api.md, "Knowledge graph").

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use loci_raft::catalogue::Scope;
use loci_service::graph::{self as g, Located};
use loci_service::memories::target;
use loci_storage::entities::Entity;
use loci_storage::graph::{EdgeType, Link};
use loci_storage::model::{GraphNode, GraphView};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire::{Json, JsonBody, MemoryOut};

fn edge_json(l: &Link) -> Value {
    let mut v = json!({
        "from_id": l.from_id, "to_id": l.to_id, "edge_type": l.edge_type.as_str(),
        "weight": l.weight, "created_at": l.created_at,
    });
    if let Some(label) = &l.label {
        v["label"] = Value::from(label.as_str());
    }
    v
}

fn entity_json(e: &Entity) -> Value {
    json!({"entity_type": e.entity_type, "value": e.value, "score": e.confidence, "start": e.start, "end": e.end})
}

/// Edge types as a query gives them (comma-separated), each known.
fn edge_types(raw: Option<&str>) -> ApiResult<Option<Vec<EdgeType>>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else { return Ok(None) };
    raw.split(',')
        .map(|t| {
            EdgeType::parse(t).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown edge_type '{}' (known: related_to, shares_entity, precedes, linked_by, supersedes)",
                    loci_service::validate::printable(t)
                ))
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

#[derive(Deserialize, Default)]
pub struct Scoped {
    agent_id: Option<String>,
    namespace: Option<String>,
    depth: Option<i64>,
    to: Option<String>,
    target: Option<String>,
    /// Accepted: the agent export is always JSON.
    #[allow(dead_code)]
    format: Option<String>,
}

async fn locate(state: &AppState, p: &loci_service::access::Principal, id: &str, q: &Scoped) -> ApiResult<Located> {
    Ok(state
        .core
        .graph(&state.limiter)
        .locate(p, id, q.namespace.as_deref(), q.agent_id.as_deref(), Scope::Read)
        .await?)
}

/// Each node with the edges it was reached through (none for the root).
fn nodes_json(view: &GraphView) -> Vec<Value> {
    let depth: HashMap<&str, usize> = view.nodes.iter().map(|n| (n.id.as_str(), n.depth)).collect();
    view.nodes
        .iter()
        .map(|n| {
            let incoming: Vec<Value> = view
                .edges
                .iter()
                .filter(|e| {
                    let other = e.other(&n.id);
                    (e.from_id == n.id || e.to_id == n.id) && depth.get(other).is_some_and(|d| *d < n.depth)
                })
                .map(edge_json)
                .collect();
            json!({
                "memory_id": n.id, "depth": n.depth, "content_preview": n.content_preview,
                "importance": n.importance, "memory_type": n.memory_type.as_str(), "edges": incoming,
            })
        })
        .collect()
}

/// `GET /v1/memories/{id}/graph?depth=1..5`: every edge type (clients filter).
pub async fn memory_graph(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<Scoped>,
) -> ApiResult<Json<Value>> {
    let depth = g::check_depth(q.depth, 1)?;
    let located = locate(&state, &p, &id, &q).await?;
    let view = state.core.graph(&state.limiter).around(&located, depth, None, g::MAX_GRAPH_NODES, 200).await?;
    let edges: Vec<Value> = view.edges.iter().map(edge_json).collect();
    Ok(Json(json!({
        "root_id": located.memory.id, "depth": depth, "node_count": view.nodes.len(),
        "nodes": nodes_json(&view), "edges": edges, "truncated": view.truncated,
    })))
}

/// `GET /v1/memories/{id}/path?to=`: 404 when the two are not connected.
pub async fn memory_path(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<Scoped>,
) -> ApiResult<Json<Value>> {
    let to = q.to.clone().or(q.target.clone()).ok_or_else(|| ApiError::bad_request("to is required"))?;
    let located = locate(&state, &p, &id, &q).await?;
    let path = state.core.graph(&state.limiter).path(&located, &to, 10).await?;
    let path = path.ok_or_else(|| {
        ApiError::from(loci_service::ServiceError::not_found(
            "path",
            format!("no path from {id} to {to} within 10 hops"),
        ))
    })?;
    Ok(Json(json!({"from_id": located.memory.id, "to_id": to, "hop_count": path.len() - 1, "path": path})))
}

#[derive(Deserialize)]
pub struct LinkBody {
    target_id: String,
    agent_id: Option<String>,
    namespace: Option<String>,
    label: Option<String>,
    /// Loci: a type other than `linked_by` (`related_to`, `precedes`, `supersedes`).
    edge_type: Option<String>,
    weight: Option<f32>,
}

/// `POST /v1/memories/{id}/links {target_id, agent_id, label?}`: both memories must be in the
/// namespace the body names (a memory of another namespace is not found: 404).
pub async fn link(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<LinkBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let edge_type = match b.edge_type.as_deref() {
        None => EdgeType::LinkedBy,
        Some(s) => match EdgeType::parse(s) {
            Some(EdgeType::SharesEntity) => {
                return Err(ApiError::bad_request("shares_entity edges are derived from entities, not made"));
            }
            Some(t) => t,
            None => {
                return Err(ApiError::bad_request(format!(
                    "unknown edge_type '{}'",
                    loci_service::validate::printable(s)
                )));
            }
        },
    };
    let link = state
        .core
        .graph(&state.limiter)
        .link(&p, &t, &id, &b.target_id, edge_type, b.weight.unwrap_or(1.0), b.label)
        .await?;
    Ok(Json(json!({
        "from_id": link.from_id, "to_id": link.to_id, "edge_type": link.edge_type.as_str(), "edge": edge_json(&link),
    })))
}

#[derive(Deserialize)]
pub struct UnlinkQuery {
    target_id: String,
    agent_id: Option<String>,
    namespace: Option<String>,
    edge_type: Option<String>,
}

/// `DELETE /v1/memories/{id}/links?target_id=&agent_id=[&edge_type=]` (Loci).
pub async fn unlink(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<UnlinkQuery>,
) -> ApiResult<Json<Value>> {
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    let edge_type = edge_types(q.edge_type.as_deref())?.and_then(|v| v.into_iter().next());
    let n = state.core.graph(&state.limiter).unlink(&p, &t, &id, &q.target_id, edge_type).await?;
    Ok(Json(json!({"from_id": id, "to_id": q.target_id, "deleted": n})))
}

/// `GET /v1/agents/{agent}/graph/export?format=`: the agent's edges (always JSON).
pub async fn agent_export(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(agent): Path<String>,
    Query(q): Query<Scoped>,
) -> ApiResult<Json<Value>> {
    let t = target(q.namespace.as_deref(), Some(&agent))?;
    let (_, links) = state.core.graph(&state.limiter).links(&p, &t, None, None, g::MAX_LINKS).await?;
    let nodes: BTreeSet<&str> = links.iter().flat_map(|l| [l.from_id.as_str(), l.to_id.as_str()]).collect();
    let agent = loci_service::canonical_namespace(&agent).to_string();
    Ok(Json(json!({
        "agent_id": agent, "namespace": format!("{}{agent}", loci_service::AGENT_NAMESPACE_PREFIX),
        "format": "json", "node_count": nodes.len(), "edge_count": links.len(),
        "edges": links.iter().map(edge_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct KnowledgeQuery {
    agent_id: Option<String>,
    namespace: Option<String>,
    root_id: Option<String>,
    edge_type: Option<String>,
    min_weight: Option<f32>,
    max_depth: Option<i64>,
    limit: Option<i64>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// Only the memories mentioning this entity (a value, or `type:value`), and the edges
    /// among them.
    entity: Option<String>,
    entity_type: Option<String>,
}

fn entity_node_json(e: &loci_storage::model::EntityNode) -> Value {
    json!({"entity_id": format!("entity:{}", e.key), "entity_type": e.entity_type, "value": e.value,
           "mention_count": e.mentions.len(), "mentions": e.mentions})
}

fn agent_name(q_agent: Option<&str>, t: &loci_service::memories::Target) -> String {
    q_agent.map(|a| loci_service::canonical_namespace(a).to_string()).unwrap_or_else(|| t.namespace.clone())
}

/// `GET /v1/knowledge/query?agent_id=&root_id=&edge_type=&min_weight=&max_depth=3&limit=100`:
/// from a root, the edges within `max_depth` hops; else the namespace's edges.
pub async fn knowledge_query(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<KnowledgeQuery>,
) -> ApiResult<Json<Value>> {
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    let depth = g::check_depth(q.max_depth, 3)?;
    let limit = match q.limit {
        None => 100,
        Some(l) if (1..=1000).contains(&l) => l as usize,
        Some(_) => return Err(ApiError::bad_request("limit must be between 1 and 1000")),
    };
    let types = edge_types(q.edge_type.as_deref())?;
    let graph = state.core.graph(&state.limiter);
    if let Some(entity) = q.entity.as_deref().filter(|_| q.root_id.is_none()) {
        let entity = match q.entity_type.as_deref() {
            Some(ty) => format!("{}:{entity}", g::check_entity_types(&[ty.to_string()])?.join("")),
            None => entity.to_string(),
        };
        let (_, view) =
            graph.graph(&p, &t, None, 0, types, q.min_weight, g::MAX_GRAPH_NODES, 200, Some(&entity)).await?;
        let mut edges = view.edges.clone();
        edges.truncate(limit);
        return Ok(Json(json!({
            "agent_id": agent_name(q.agent_id.as_deref(), &t), "entity": entity,
            "node_count": view.nodes.len(), "edge_count": edges.len(),
            "memory_ids": view.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            "edges": edges.iter().map(edge_json).collect::<Vec<_>>(),
            "entities": view.entities.iter().map(entity_node_json).collect::<Vec<_>>(),
            "truncated": view.truncated,
        })));
    }
    let (nodes, edges) = match &q.root_id {
        Some(root) => {
            let (_, view) =
                graph.graph(&p, &t, Some(root), depth, types, q.min_weight, g::MAX_GRAPH_NODES, 200, None).await?;
            let mut edges = view.edges;
            edges.truncate(limit);
            (view.nodes.len(), edges)
        }
        None => {
            let one = types.as_ref().filter(|v| v.len() == 1).map(|v| v[0]);
            let (_, mut links) = graph.links(&p, &t, one, q.min_weight, g::MAX_LINKS).await?;
            if let Some(ts) = &types {
                links.retain(|l| ts.contains(&l.edge_type));
            }
            links.truncate(limit);
            let n: BTreeSet<&str> = links.iter().flat_map(|l| [l.from_id.as_str(), l.to_id.as_str()]).collect();
            (n.len(), links)
        }
    };
    Ok(Json(json!({
        "agent_id": agent_name(q.agent_id.as_deref(), &t), "node_count": nodes, "edge_count": edges.len(),
        "edges": edges.iter().map(edge_json).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/knowledge/path?agent_id=&from=&to=`: 404 when not connected.
pub async fn knowledge_path(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<KnowledgeQuery>,
) -> ApiResult<Json<Value>> {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::bad_request("from and to are required"));
    };
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    let scoped = Scoped { agent_id: q.agent_id.clone(), namespace: q.namespace.clone(), ..Default::default() };
    let located = locate(&state, &p, from, &scoped).await?;
    let path = state.core.graph(&state.limiter).path(&located, to, 10).await?.ok_or_else(|| {
        ApiError::from(loci_service::ServiceError::not_found(
            "path",
            format!("no path from {from} to {to} within 10 hops"),
        ))
    })?;
    Ok(Json(json!({
        "agent_id": agent_name(q.agent_id.as_deref(), &t), "from_id": from, "to_id": to,
        "hop_count": path.len() - 1, "path": path,
    })))
}

/// `GET /v1/knowledge/export?agent_id=&format=json|graphml`: the namespace's (or agent's) graph:
/// its most important memories (at most 1,000) and the edges among them.
pub async fn knowledge_export(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<KnowledgeQuery>,
) -> ApiResult<Response> {
    let t = target(q.namespace.as_deref(), q.agent_id.as_deref())?;
    let format = q.format.as_deref().unwrap_or("json").to_ascii_lowercase();
    if !matches!(format.as_str(), "json" | "graphml") {
        return Err(ApiError::bad_request("format must be json or graphml"));
    }
    let (_, view) =
        state.core.graph(&state.limiter).graph(&p, &t, None, 0, None, None, g::MAX_GRAPH_NODES, 200, None).await?;
    if format == "graphml" {
        let nodes: Vec<(String, String, f64)> =
            view.nodes.iter().map(|n| (n.id.clone(), n.content_preview.clone(), n.importance)).collect();
        let entities: Vec<(String, Vec<String>)> =
            view.entities.iter().map(|e| (format!("entity:{}", e.key), e.mentions.clone())).collect();
        let body = loci_storage::graph::graphml(&nodes, &view.edges, &entities);
        let mut r = body.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        return Ok(r);
    }
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            json!({"memory_id": n.id, "content_preview": n.content_preview, "importance": n.importance,
            "memory_type": n.memory_type.as_str(), "tags": n.tags, "created_at": n.created_at})
        })
        .collect();
    Ok(Json(json!({
        "agent_id": agent_name(q.agent_id.as_deref(), &t), "format": "json", "node_count": view.nodes.len(),
        "edge_count": view.edges.len(), "nodes": nodes, "edges": view.edges.iter().map(edge_json).collect::<Vec<_>>(),
        "entity_count": view.entities.len(), "entities": view.entities.iter().map(entity_node_json).collect::<Vec<_>>(),
        "truncated": view.truncated,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct GraphBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    memory_id: Option<String>,
    depth: Option<i64>,
    min_similarity: Option<f32>,
}

fn shared_tags(a: &GraphNode, b: &GraphNode) -> Vec<String> {
    a.tags.iter().filter(|t| b.tags.contains(t)).cloned().collect()
}

/// `POST /v1/knowledge/graph {agent_id, memory_id, depth?, min_similarity?}`: the memories
/// related to a seed memory, with the weight of the edge that reached each.
pub async fn knowledge_graph(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<GraphBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let Some(root) = b.memory_id.as_deref() else {
        return Err(ApiError::unprocessable("memory_id (the seed memory) is required"));
    };
    let depth = g::check_depth(b.depth, 2)?;
    let graph = state.core.graph(&state.limiter);
    let (_, view) =
        graph.graph(&p, &t, Some(root), depth, None, b.min_similarity, g::MAX_GRAPH_NODES, 200, None).await?;
    let memory =
        state.core.memories(&state.limiter).get(&p, root, b.namespace.as_deref(), b.agent_id.as_deref()).await?;
    let root_node = view.nodes.iter().find(|n| n.id == root);
    let best: HashMap<&str, f32> = view.edges.iter().fold(HashMap::new(), |mut m, e| {
        for end in [&e.from_id, &e.to_id] {
            let w = m.entry(end.as_str()).or_insert(0.0f32);
            *w = w.max(e.weight);
        }
        m
    });
    let related: Vec<Value> = view
        .nodes
        .iter()
        .filter(|n| n.id != root)
        .map(|n| {
            json!({"memory_id": n.id, "similarity": best.get(n.id.as_str()).copied().unwrap_or(0.0), "depth": n.depth,
                "shared_tags": root_node.map(|r| shared_tags(r, n)).unwrap_or_default()})
        })
        .collect();
    let mut m = serde_json::to_value(MemoryOut::from(&memory)).map_err(|e| ApiError::internal(e.to_string()))?;
    if m.get("metadata").is_some_and(Value::is_null) {
        m["metadata"] = json!({});
    }
    if let Value::Object(o) = &mut m {
        o.retain(|_, v| !v.is_null());
    }
    Ok(Json(json!({
        "root": {"memory": m, "similarity": 1.0, "related": related},
        "total_nodes": view.nodes.len(),
        "edges": view.edges.iter().map(edge_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct FullGraphBody {
    agent_id: Option<String>,
    namespace: Option<String>,
    max_nodes: Option<i64>,
    min_similarity: Option<f32>,
    max_edges_per_node: Option<i64>,
    content_preview_chars: Option<i64>,
    #[allow(dead_code)]
    cluster_threshold: Option<f32>,
}

/// `POST /v1/knowledge/graph/full`: the most important memories (default 100, at most 500),
/// the edges among them, their clusters (connected components) and degree centrality.
pub async fn full_graph(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(b): JsonBody<FullGraphBody>,
) -> ApiResult<Json<Value>> {
    let t = target(b.namespace.as_deref(), b.agent_id.as_deref())?;
    let max_nodes = match b.max_nodes {
        None => 100,
        Some(n) if (1..=500).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::bad_request("max_nodes must be between 1 and 500")),
    };
    let preview = match b.content_preview_chars {
        None => 200,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::bad_request("content_preview_chars must be between 1 and 10000")),
    };
    let per_node = match b.max_edges_per_node {
        None => 10,
        Some(n) if (1..=50).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::bad_request("max_edges_per_node must be between 1 and 50")),
    };
    let (_, view) = state
        .core
        .graph(&state.limiter)
        .graph(&p, &t, None, 0, None, b.min_similarity, max_nodes, preview, None)
        .await?;
    // At most `per_node` edges per node, strongest first.
    let mut edges = view.edges.clone();
    edges.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.key().cmp(&b.key())));
    let mut degree: HashMap<&str, usize> = HashMap::new();
    let mut kept = Vec::new();
    for e in &edges {
        if degree.get(e.from_id.as_str()).copied().unwrap_or(0) < per_node
            && degree.get(e.to_id.as_str()).copied().unwrap_or(0) < per_node
        {
            *degree.entry(&e.from_id).or_default() += 1;
            *degree.entry(&e.to_id).or_default() += 1;
            kept.push(e);
        }
    }
    // Clusters: connected components over the kept edges.
    let index: HashMap<&str, usize> = view.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut cluster: Vec<usize> = (0..view.nodes.len()).collect();
    fn root(c: &mut [usize], mut x: usize) -> usize {
        while c[x] != x {
            c[x] = c[c[x]];
            x = c[x];
        }
        x
    }
    for e in &kept {
        if let (Some(&a), Some(&b)) = (index.get(e.from_id.as_str()), index.get(e.to_id.as_str())) {
            let (ra, rb) = (root(&mut cluster, a), root(&mut cluster, b));
            if ra != rb {
                cluster[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let mut ids: BTreeMap<usize, usize> = BTreeMap::new();
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..view.nodes.len() {
        let r = root(&mut cluster, i);
        let next = ids.len();
        let id = *ids.entry(r).or_insert(next);
        members.entry(id).or_default().push(i);
    }
    let max_degree = degree.values().copied().max().unwrap_or(0).max(1);
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let cid = ids[&root(&mut cluster, i)];
            json!({"id": n.id, "content": n.content_preview, "memory_type": n.memory_type.as_str(),
                "importance": n.importance, "tags": n.tags, "metadata": {}, "created_at": n.created_at.to_string(),
                "cluster_id": cid, "centrality": degree.get(n.id.as_str()).copied().unwrap_or(0) as f32 / max_degree as f32,
                "content_len": n.content_len, "content_truncated": n.content_len > n.content_preview.len()})
        })
        .collect();
    let clusters: Vec<Value> = members
        .iter()
        .map(|(id, m)| {
            let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
            for i in m {
                for t in &view.nodes[*i].tags {
                    *tags.entry(t).or_default() += 1;
                }
            }
            let mut top: Vec<(&str, usize)> = tags.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let avg = m.iter().map(|i| view.nodes[*i].importance).sum::<f64>() / m.len().max(1) as f64;
            json!({"id": id, "node_count": m.len(), "top_tags": top.iter().take(5).map(|t| t.0).collect::<Vec<_>>(),
                "avg_importance": avg})
        })
        .collect();
    let n = view.nodes.len();
    let density = if n > 1 { 2.0 * kept.len() as f64 / (n * (n - 1)) as f64 } else { 0.0 };
    let hub = degree.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(id, _)| id.to_string());
    let edges: Vec<Value> = kept
        .iter()
        .map(|e| {
            json!({"source": e.from_id, "target": e.to_id, "similarity": e.weight,
            "relationship": e.edge_type.as_str(), "shared_tags": Vec::<String>::new()})
        })
        .collect();
    let mut stats = json!({"total_memories": n, "included_memories": n, "total_edges": kept.len(),
        "cluster_count": clusters.len(), "density": density});
    if let Some(h) = hub {
        stats["hub_memory_id"] = Value::from(h);
    }
    Ok(Json(json!({"nodes": nodes, "edges": edges, "clusters": clusters, "stats": stats, "truncated": view.truncated})))
}

#[derive(Deserialize)]
pub struct ExtractBody {
    content: Option<String>,
    text: Option<String>,
    entity_types: Option<Vec<String>>,
    lang: Option<String>,
    #[allow(dead_code)]
    namespace: Option<String>,
    provider: Option<String>,
}

/// `POST /v1/memories/extract {content, entity_types?, lang?}` and `POST /v1/extract {text, …}`:
/// the node's extractor (or the rules, `provider: "rules"`) on a text, nothing stored (any
/// valid key).
pub async fn extract(
    State(state): State<AppState>,
    Auth(_p): Auth,
    JsonBody(b): JsonBody<ExtractBody>,
) -> ApiResult<Json<Value>> {
    let started = std::time::Instant::now();
    let text = b.content.or(b.text).ok_or_else(|| ApiError::bad_request("content is required"))?;
    if let Some(l) = &b.lang {
        loci_service::validate::lang(l)?;
    }
    let (found, provider) = state
        .core
        .graph(&state.limiter)
        .extract(text, b.entity_types.as_deref().unwrap_or(&[]), b.provider.as_deref())
        .await?;
    Ok(Json(json!({
        "entities": found.iter().map(entity_json).collect::<Vec<_>>(),
        "provider": provider,
        "duration_ms": started.elapsed().as_millis() as u64,
    })))
}

/// `GET /v1/memory/entities/{id}`: the entities of a stored memory (its namespace's types).
pub async fn memory_entities(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<Scoped>,
) -> ApiResult<Json<Value>> {
    let located = locate(&state, &p, &id, &q).await?;
    let found = state.core.graph(&state.limiter).entities_of(&located).await?;
    Ok(Json(json!({
        "memory_id": located.memory.id, "count": found.len(),
        "entities": found.iter().map(entity_json).collect::<Vec<_>>(),
    })))
}

fn config_json(ns: &str, policy: &loci_raft::catalogue::MemoryPolicy) -> Value {
    json!({"namespace": ns, "extract_entities": policy.extract_entities, "entity_types": policy.entity_types})
}

/// `GET /v1/namespaces/{ns}/config`: the namespace's entity settings.
pub async fn get_config(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    let policy = state.core.ns().policy(&p, &ns)?;
    Ok(Json(config_json(loci_service::canonical_namespace(&ns), &policy)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    extract_entities: Option<bool>,
    entity_types: Option<Vec<String>>,
}

async fn set_config(
    state: &AppState,
    p: &loci_service::access::Principal,
    ns: &str,
    b: ConfigBody,
    replace: bool,
) -> ApiResult<Value> {
    if replace && b.extract_entities.is_none() {
        return Err(ApiError::bad_request("extract_entities is required"));
    }
    let types = match b.entity_types {
        Some(t) => Some(t),
        None if replace => Some(Vec::new()),
        None => None,
    };
    let policy = state.core.ns().set_entity_settings(p, ns, b.extract_entities, types).await?;
    Ok(config_json(loci_service::canonical_namespace(ns), &policy))
}

/// `PUT /v1/namespaces/{ns}/config {extract_entities, entity_types}`: replaces both (write).
pub async fn put_config(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(b): JsonBody<ConfigBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(set_config(&state, &p, &ns, b, true).await?))
}

/// `PATCH /v1/namespaces/{ns}/config`: changes what the body names (write).
pub async fn patch_config(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(b): JsonBody<ConfigBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(set_config(&state, &p, &ns, b, false).await?))
}

/// `GET /v1/namespaces/{ns}/extractor`: the node's entity extractor, and the namespace's
/// extractions still queued on this node (`pending`: progress of the extraction queue).
pub async fn get_extractor(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
) -> ApiResult<Json<Value>> {
    let (provider, pending) = state.core.ns().extraction(&p, &ns)?;
    Ok(Json(json!({"namespace": loci_service::canonical_namespace(&ns), "provider": provider, "pending": pending})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractorBody {
    provider: String,
    #[allow(dead_code)]
    model: Option<String>,
    #[allow(dead_code)]
    base_url: Option<String>,
}

/// `PATCH /v1/namespaces/{ns}/extractor {provider}`: the extractor is the node's
/// (`LOCI_ENTITY_EXTRACTOR`); naming it (or `rules`) is accepted, naming another is a 400.
pub async fn patch_extractor(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ns): Path<String>,
    JsonBody(b): JsonBody<ExtractorBody>,
) -> ApiResult<Json<Value>> {
    p.require(loci_service::canonical_namespace(&ns), Scope::Write)?;
    let (provider, pending) = state.core.ns().extraction(&p, &ns)?;
    if !matches!(b.provider.as_str(), "rules" | "builtin") && b.provider != provider {
        return Err(ApiError::bad_request(format!(
            "extractor provider '{}' is not available here (this node extracts with: {provider})",
            loci_service::validate::printable(&b.provider)
        )));
    }
    Ok(Json(json!({"namespace": loci_service::canonical_namespace(&ns), "provider": provider, "pending": pending})))
}
