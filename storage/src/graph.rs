//! The knowledge graph of one namespace, IO-free: typed, weighted links between memories, the
//! adjacency a namespace keeps in memory, traversal to a depth, shortest paths and GraphML.
//!
//! Links are stored (encrypted, replicated, erased with the namespace) by the store; this module
//! only decides. Edges are traversed in both directions: a link from `a` to `b` relates `b` to
//! `a` too. Edges of type [`EdgeType::SharesEntity`] are not stored: the caller derives them
//! from the entities the memories mention and passes them in as `extra` neighbours.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Deepest traversal a request may ask for.
pub const MAX_DEPTH: usize = 5;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EdgeType {
    /// Made on store: the two memories' vectors are at least the namespace's threshold alike.
    RelatedTo,
    /// Derived: the two memories mention a common entity.
    SharesEntity,
    /// The earlier memory of one session precedes the later.
    Precedes,
    /// An explicit link a client made.
    LinkedBy,
    /// A consolidated memory supersedes its sources.
    Supersedes,
}

impl EdgeType {
    pub const ALL: [EdgeType; 5] =
        [EdgeType::RelatedTo, EdgeType::SharesEntity, EdgeType::Precedes, EdgeType::LinkedBy, EdgeType::Supersedes];

    pub fn as_str(&self) -> &'static str {
        match self {
            EdgeType::RelatedTo => "related_to",
            EdgeType::SharesEntity => "shares_entity",
            EdgeType::Precedes => "precedes",
            EdgeType::LinkedBy => "linked_by",
            EdgeType::Supersedes => "supersedes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EdgeType::ALL.into_iter().find(|t| t.as_str() == s.trim().to_ascii_lowercase())
    }
}

/// One edge between two memories of a namespace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub from_id: String,
    pub to_id: String,
    pub edge_type: EdgeType,
    /// In [0, 1].
    pub weight: f32,
    #[serde(default)]
    pub label: Option<String>,
    pub created_at: u64,
}

impl Link {
    pub fn key(&self) -> LinkKey {
        (self.from_id.clone(), self.to_id.clone(), self.edge_type)
    }

    /// The other end of this edge seen from `id`.
    pub fn other(&self, id: &str) -> &str {
        if self.from_id == id { &self.to_id } else { &self.from_id }
    }
}

/// A link's identity: at most one link of a type from one memory to another.
pub type LinkKey = (String, String, EdgeType);

/// A namespace's stored links with their adjacency (both ends).
#[derive(Default, Debug, Clone)]
pub struct Graph {
    links: HashMap<LinkKey, Link>,
    adjacency: HashMap<String, BTreeSet<LinkKey>>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn get(&self, key: &LinkKey) -> Option<&Link> {
        self.links.get(key)
    }

    pub fn insert(&mut self, link: Link) {
        let key = link.key();
        self.adjacency.entry(link.from_id.clone()).or_default().insert(key.clone());
        self.adjacency.entry(link.to_id.clone()).or_default().insert(key.clone());
        self.links.insert(key, link);
    }

    pub fn remove(&mut self, key: &LinkKey) -> Option<Link> {
        let link = self.links.remove(key)?;
        for end in [&link.from_id, &link.to_id] {
            if let Some(set) = self.adjacency.get_mut(end) {
                set.remove(key);
                if set.is_empty() {
                    self.adjacency.remove(end);
                }
            }
        }
        Some(link)
    }

    /// Keep only the links both of whose ends pass `keep` (a namespace's load drops links to
    /// memories that are gone, e.g. expired here before the link arrived).
    pub fn retain_ends(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<LinkKey> = self.links.keys().filter(|k| !keep(&k.0) || !keep(&k.1)).cloned().collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// The keys of every link touching `id` (what deleting that memory must delete).
    pub fn keys_of(&self, id: &str) -> Vec<LinkKey> {
        self.adjacency.get(id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every link touching `id`, in key order.
    pub fn links_of<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a Link> + 'a {
        self.adjacency.get(id).into_iter().flat_map(|s| s.iter()).filter_map(|k| self.links.get(k))
    }

    /// Every link, in key order (deterministic answers).
    pub fn all(&self) -> Vec<&Link> {
        let mut v: Vec<&Link> = self.links.values().collect();
        v.sort_by_key(|l| l.key());
        v
    }
}

/// What a traversal reached: each node with its depth (the root at 0), and every edge between
/// reached nodes that was followed or seen, once each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traversal {
    pub nodes: Vec<(String, usize)>,
    pub edges: Vec<Link>,
    /// The node bound stopped the walk before the depth did.
    pub truncated: bool,
}

/// Breadth-first from `root` to `depth` hops over stored links plus `extra(id)` (derived
/// edges), keeping edges whose type passes `types` (all when `None`), at most `max_nodes` nodes.
/// `live(id)` hides edges to memories that no longer exist.
pub fn traverse(
    graph: &Graph,
    root: &str,
    depth: usize,
    max_nodes: usize,
    types: Option<&[EdgeType]>,
    extra: &dyn Fn(&str) -> Vec<Link>,
    live: &dyn Fn(&str) -> bool,
) -> Traversal {
    let depth = depth.min(MAX_DEPTH);
    let keep = |t: EdgeType| types.is_none_or(|ts| ts.contains(&t));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = vec![(root.to_string(), 0)];
    seen.insert(root.to_string(), 0);
    let mut edges: BTreeMap<LinkKey, Link> = BTreeMap::new();
    let mut queue = VecDeque::from([(root.to_string(), 0usize)]);
    let mut truncated = false;
    while let Some((id, d)) = queue.pop_front() {
        if d >= depth {
            continue;
        }
        let mut around: Vec<Link> = graph.links_of(&id).cloned().collect();
        around.extend(extra(&id));
        for link in around {
            if !keep(link.edge_type) {
                continue;
            }
            let other = link.other(&id).to_string();
            if !live(&other) {
                continue;
            }
            if !seen.contains_key(&other) {
                if seen.len() >= max_nodes {
                    truncated = true;
                    continue;
                }
                seen.insert(other.clone(), d + 1);
                order.push((other.clone(), d + 1));
                queue.push_back((other, d + 1));
            }
            edges.entry(link.key()).or_insert(link);
        }
    }
    Traversal { nodes: order, edges: edges.into_values().collect(), truncated }
}

/// The fewest hops from `from` to `to` (both included), over edges in either direction, at most
/// `max_depth` hops and `max_visits` nodes visited; ties go to the lexicographically first path.
/// `None` when there is none within those bounds.
pub fn shortest_path(
    graph: &Graph,
    from: &str,
    to: &str,
    max_depth: usize,
    max_visits: usize,
    extra: &dyn Fn(&str) -> Vec<Link>,
    live: &dyn Fn(&str) -> bool,
) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![from.to_string()]);
    }
    let mut parent: HashMap<String, String> = HashMap::new();
    parent.insert(from.to_string(), String::new());
    let mut frontier = vec![from.to_string()];
    for _ in 0..max_depth {
        let mut next = BTreeSet::new();
        for id in &frontier {
            let mut around: Vec<Link> = graph.links_of(id).cloned().collect();
            around.extend(extra(id));
            let mut others: Vec<String> = around.iter().map(|l| l.other(id).to_string()).collect();
            others.sort();
            for other in others {
                if parent.contains_key(&other) || !live(&other) {
                    continue;
                }
                parent.insert(other.clone(), id.clone());
                if other == to {
                    let mut path = vec![other];
                    while let Some(p) = parent.get(path.last()?).filter(|p| !p.is_empty()) {
                        path.push(p.clone());
                    }
                    path.reverse();
                    return Some(path);
                }
                next.insert(other);
                if parent.len() >= max_visits {
                    return None;
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        frontier = next.into_iter().collect();
    }
    None
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A graph as GraphML (nodes with a content preview and importance, directed edges with type,
/// weight and label), for tools such as Gephi, yEd or networkx.
pub fn graphml(nodes: &[(String, String, f64)], edges: &[Link], entities: &[(String, Vec<String>)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n\
         <key id=\"content\" for=\"node\" attr.name=\"content_preview\" attr.type=\"string\"/>\n\
         <key id=\"importance\" for=\"node\" attr.name=\"importance\" attr.type=\"double\"/>\n\
         <key id=\"type\" for=\"edge\" attr.name=\"edge_type\" attr.type=\"string\"/>\n\
         <key id=\"weight\" for=\"edge\" attr.name=\"weight\" attr.type=\"double\"/>\n\
         <key id=\"label\" for=\"edge\" attr.name=\"label\" attr.type=\"string\"/>\n\
         <key id=\"kind\" for=\"node\" attr.name=\"kind\" attr.type=\"string\"/>\n\
         <graph id=\"G\" edgedefault=\"directed\">\n",
    );
    for (id, preview, importance) in nodes {
        out.push_str(&format!(
            "<node id=\"{}\"><data key=\"content\">{}</data><data key=\"importance\">{}</data></node>\n",
            xml_escape(id),
            xml_escape(preview),
            importance
        ));
    }
    for e in edges {
        out.push_str(&format!(
            "<edge source=\"{}\" target=\"{}\"><data key=\"type\">{}</data><data key=\"weight\">{}</data>",
            xml_escape(&e.from_id),
            xml_escape(&e.to_id),
            e.edge_type.as_str(),
            e.weight
        ));
        if let Some(l) = &e.label {
            out.push_str(&format!("<data key=\"label\">{}</data>", xml_escape(l)));
        }
        out.push_str("</edge>\n");
    }
    // Entities are nodes of their own, linked from the memories that mention them.
    for (id, mentions) in entities {
        out.push_str(&format!("<node id=\"{}\"><data key=\"kind\">entity</data></node>\n", xml_escape(id)));
        for m in mentions {
            out.push_str(&format!(
                "<edge source=\"{}\" target=\"{}\"><data key=\"type\">mentions</data><data key=\"weight\">1</data></edge>\n",
                xml_escape(m),
                xml_escape(id)
            ));
        }
    }
    out.push_str("</graph>\n</graphml>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: &str, b: &str, t: EdgeType) -> Link {
        Link { from_id: a.into(), to_id: b.into(), edge_type: t, weight: 1.0, label: None, created_at: 0 }
    }

    fn chain() -> Graph {
        let mut g = Graph::default();
        g.insert(link("a", "b", EdgeType::LinkedBy));
        g.insert(link("b", "c", EdgeType::RelatedTo));
        g.insert(link("d", "c", EdgeType::LinkedBy));
        g.insert(link("a", "x", EdgeType::Precedes));
        g
    }

    fn none(_: &str) -> Vec<Link> {
        Vec::new()
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn traversal_stops_at_the_depth_and_follows_edges_both_ways() {
        let g = chain();
        let t = traverse(&g, "a", 1, 100, None, &none, &all);
        let ids: Vec<&str> = t.nodes.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "x"]);
        assert_eq!(t.edges.len(), 2);
        let t = traverse(&g, "a", 3, 100, None, &none, &all);
        let d: BTreeMap<&str, usize> = t.nodes.iter().map(|(id, d)| (id.as_str(), *d)).collect();
        assert_eq!(d["d"], 3, "d is reached backwards over d→c");
        assert_eq!(t.edges.len(), 4);
        assert!(!t.truncated);
    }

    #[test]
    fn traversal_keeps_only_the_asked_types_the_node_bound_and_live_nodes() {
        let g = chain();
        let t = traverse(&g, "a", 5, 100, Some(&[EdgeType::LinkedBy]), &none, &all);
        assert!(t.edges.iter().all(|e| e.edge_type == EdgeType::LinkedBy));
        assert_eq!(t.nodes.len(), 2, "b→c is related_to, so c is not reached");
        let t = traverse(&g, "a", 5, 2, None, &none, &all);
        assert_eq!(t.nodes.len(), 2);
        assert!(t.truncated);
        let t = traverse(&g, "a", 5, 100, None, &none, &|id| id != "b");
        let ids: Vec<&str> = t.nodes.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "x"], "a deleted memory is not reached");
    }

    #[test]
    fn derived_edges_are_followed_like_stored_ones() {
        let g = chain();
        let extra = |id: &str| if id == "x" { vec![link("x", "z", EdgeType::SharesEntity)] } else { Vec::new() };
        let t = traverse(&g, "a", 2, 100, None, &extra, &all);
        assert!(t.nodes.iter().any(|(id, d)| id == "z" && *d == 2));
    }

    #[test]
    fn shortest_path_takes_the_fewest_hops_within_the_bounds() {
        let g = chain();
        assert_eq!(shortest_path(&g, "a", "d", 5, 100, &none, &all).unwrap(), ["a", "b", "c", "d"]);
        assert_eq!(shortest_path(&g, "d", "a", 5, 100, &none, &all).unwrap(), ["d", "c", "b", "a"]);
        assert_eq!(shortest_path(&g, "a", "d", 2, 100, &none, &all), None);
        assert_eq!(shortest_path(&g, "a", "nowhere", 5, 100, &none, &all), None);
        assert_eq!(shortest_path(&g, "a", "a", 5, 100, &none, &all).unwrap(), ["a"]);
        assert_eq!(shortest_path(&g, "a", "d", 5, 100, &none, &|id| id != "c"), None);
    }

    #[test]
    fn removing_a_node_finds_every_link_touching_it() {
        let mut g = chain();
        let keys = g.keys_of("c");
        assert_eq!(keys.len(), 2);
        for k in &keys {
            g.remove(k);
        }
        assert_eq!(g.len(), 2);
        assert!(g.keys_of("c").is_empty());
        assert!(g.keys_of("d").is_empty());
    }

    #[test]
    fn graphml_escapes_what_it_quotes() {
        let mut l = link("a\"<", "b", EdgeType::LinkedBy);
        l.label = Some("x & y".into());
        let out = graphml(
            &[("a\"<".into(), "<script>".into(), 0.5)],
            &[l],
            &[("entity:org:a&b".into(), vec!["a\"<".into()])],
        );
        assert!(out.contains("a&quot;&lt;"));
        // An entity is a node of its own, with a `mentions` edge from each memory naming it.
        assert!(out.contains("<node id=\"entity:org:a&amp;b\"><data key=\"kind\">entity</data></node>"));
        assert!(
            out.contains(
                "<edge source=\"a&quot;&lt;\" target=\"entity:org:a&amp;b\"><data key=\"type\">mentions</data>"
            )
        );
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains("x &amp; y"));
        assert!(!out.contains("<script>"));
    }

    #[test]
    fn edge_types_parse_their_wire_names() {
        for t in EdgeType::ALL {
            assert_eq!(EdgeType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
        assert_eq!(EdgeType::parse("nope"), None);
    }
}
