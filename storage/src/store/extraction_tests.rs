//! Entity extraction off the write path, against real stores: a store is acknowledged while the
//! extractor is stuck, a graph read then waits for the namespace's queued jobs, a failing
//! extractor leaves the memory unrelated and is counted, a job for an overwritten version is
//! not recorded over the newer one, and a namespace loaded again re-extracts with the store's
//! extractor.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::entities::Entity;
use crate::extract::EntityExtractor;
use crate::graph::EdgeType;

fn ctx() -> NsContext {
    NsContext { auto_link_threshold: None, max_auto_links: 0, ..test_context(21, "x", 5) }
}

/// Finds the word after "about" as an organisation; waits for a go-ahead first when gated;
/// fails on "fail".
struct Gated {
    gate: Option<Mutex<mpsc::Receiver<()>>>,
}

impl EntityExtractor for Gated {
    fn name(&self) -> &str {
        "gated"
    }

    fn extract(&self, text: &str, _types: &[String]) -> Result<Vec<Entity>> {
        if let Some(gate) = &self.gate {
            gate.lock().recv().map_err(|_| StorageError::ExtractorUpstream("gate closed".into()))?;
        }
        if text.contains("fail") {
            return Err(StorageError::ExtractorUpstream("extractor down".into()));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        Ok(words
            .windows(2)
            .filter(|w| w[0] == "about")
            .map(|w| Entity { entity_type: "org".into(), value: w[1].into(), start: 0, end: 0, confidence: 1.0 })
            .collect())
    }
}

fn store_one(store: &Store, c: &NsContext, id: Option<&str>, content: &str) -> String {
    let mut m = NewMemory::text("a", content);
    m.id = id.map(str::to_string);
    let e = store.execute(c, DataOp::Store { items: vec![m] }).expect("store");
    let DataResult::Stored(r) = e.result else { panic!("stored") };
    r[0].id.clone()
}

fn entity_edges(store: &Store, c: &NsContext) -> Vec<(String, String)> {
    let q = GraphQuery {
        root: None,
        agent: None,
        depth: 2,
        max_nodes: 100,
        types: None,
        min_weight: None,
        entity_types: Some(vec![]),
        preview_chars: 10,
        mentioning: None,
    };
    let DataResult::Graph(g) = store.execute(c, DataOp::Graph(q)).expect("graph").result else { panic!("graph") };
    let mut v: Vec<(String, String)> =
        g.edges.into_iter().filter(|l| l.edge_type == EdgeType::SharesEntity).map(|l| (l.from_id, l.to_id)).collect();
    v.sort();
    v
}

#[test]
fn a_stuck_extractor_does_not_hold_up_the_store_and_a_graph_read_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let (go, gate) = mpsc::channel();
    store.set_extractor(Arc::new(Gated { gate: Some(Mutex::new(gate)) }));
    let c = ctx();
    // Both stores are acknowledged while the extractor has not been allowed to run once.
    let a = store_one(&store, &c, None, "a note about Initech");
    let b = store_one(&store, &c, None, "another note about Initech");
    assert_eq!(store.pending_extractions(c.id), 2);
    assert_eq!(store.extraction_stats().extracted, 0);
    // Nothing extracted: a bounded wait gives up and says so.
    assert!(!store.settle_extractions(c.id, Duration::from_millis(50)));
    go.send(()).expect("gate");
    go.send(()).expect("gate");
    // The graph read waits for both jobs, then relates the two memories by their entity.
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(entity_edges(&store, &c), vec![(lo, hi)]);
    assert_eq!(store.pending_extractions(c.id), 0);
    let stats = store.extraction_stats();
    assert_eq!((stats.extracted, stats.failed, stats.inline, stats.queued), (2, 0, 0, 0));
}

#[test]
fn a_failing_extractor_is_counted_and_relates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    store.set_extractor(Arc::new(Gated { gate: None }));
    let c = ctx();
    store_one(&store, &c, None, "fail about Initech");
    store_one(&store, &c, None, "fail again about Initech");
    assert!(entity_edges(&store, &c).is_empty());
    let stats = store.extraction_stats();
    assert_eq!((stats.extracted, stats.failed), (0, 2));
}

#[test]
fn an_overwritten_memory_keeps_the_entities_of_its_last_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let (go, gate) = mpsc::channel();
    store.set_extractor(Arc::new(Gated { gate: Some(Mutex::new(gate)) }));
    let c = ctx();
    let other = store_one(&store, &c, None, "a note about Globex");
    let m = store_one(&store, &c, Some("m1"), "first about Initech");
    store_one(&store, &c, Some("m1"), "then about Globex");
    for _ in 0..3 {
        go.send(()).expect("gate");
    }
    // The job of the first version found the memory at a later one and recorded nothing; the
    // second version mentions Globex, as `other` does.
    let (lo, hi) = if m < other { (m, other) } else { (other, m) };
    assert_eq!(entity_edges(&store, &c), vec![(lo, hi)]);
}

#[test]
fn a_namespace_loaded_again_is_extracted_again_by_the_store_extractor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ctx();
    let (a, b) = {
        // Written with the rule-based extractor, which finds no entity in these.
        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        let a = store_one(&store, &c, None, "a note about initech");
        let b = store_one(&store, &c, None, "another note about initech");
        assert!(entity_edges(&store, &c).is_empty());
        (a, b)
    };
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open again");
    store.set_extractor(Arc::new(Gated { gate: None }));
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(entity_edges(&store, &c), vec![(lo, hi)]);
    assert_eq!(store.extraction_stats().extracted, 2);
}
