//! Index isolation: a namespace's recall scores depend on its own memories only.

use super::*;
use crate::crypto::SecretKey;
use crate::embed::HashEmbedder;

fn ctx(id: u64) -> NsContext {
    NsContext {
        id,
        name: format!("ns{id}"),
        key: DataKey::new(id, 1, SecretKey::from_bytes([id as u8; 32])),
        dimension: 32,
        embedder: Arc::new(HashEmbedder::new(32)),
        max_memories: None,
        max_agents: None,
        max_sessions_per_agent: None,
        metric: crate::vector::Metric::Cosine,
        epoch: 1,
        generation: 0,
        auto_link_threshold: None,
        max_auto_links: 0,
    }
}

fn store_all(store: &Store, ctx: &NsContext, agent: &str, contents: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in contents.chunks(500) {
        let items = chunk.iter().map(|c| NewMemory::text(agent, c.clone())).collect();
        match store.execute(ctx, DataOp::Store { items }).expect("store").result {
            DataResult::Stored(recs) => ids.extend(recs.into_iter().map(|r| r.id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    ids
}

/// (content, score, relevance, vector score, text score) of a recall, in answer order.
type Answer = Vec<(String, f32, f32, Option<f32>, Option<f32>)>;

fn recall(store: &Store, ctx: &NsContext, query: &str, routing: Routing) -> Answer {
    let op = DataOp::Recall(RecallParams {
        query: query.into(),
        query_embedding: None,
        top_k: 20,
        filter: MemoryFilter::default(),
        routing,
        fusion: Fusion::default(),
        vector_weight: None,
        min_score: None,
        // Recency moves with the clock; the ranking inputs under test are the indexes'.
        importance_weighted: false,
        record_access: false,
        decay: None,
    });
    let DataResult::Recalled(hits) = store.execute(ctx, op).expect("recall").result else {
        panic!("not a recall answer")
    };
    hits.into_iter().map(|h| (h.memory.content, h.score, h.relevance, h.vector_score, h.text_score)).collect()
}

fn answers(store: &Store, a: &NsContext) -> Vec<Answer> {
    ["coffee", "dark roast coffee beans", "tuesday meeting"]
        .iter()
        .flat_map(|q| [Routing::Bm25, Routing::Vector, Routing::Hybrid].map(|r| recall(store, a, q, r)))
        .collect()
}

#[test]
fn recall_scores_of_a_namespace_ignore_other_namespaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { sync_writes: false, ..StoreConfig::default() };
    let store = Store::open(dir.path(), config).expect("open");
    let (a, b) = (ctx(1), ctx(2));
    let mine: Vec<String> = [
        "The user loves dark roast coffee",
        "Coffee with oat milk every morning, coffee again at noon",
        "Meeting moved to Tuesday",
        "Tuesday: dentist, then the team meeting about beans",
        "Prefers tea in the evening",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    store_all(&store, &a, "alice", &mine);
    // A deleted memory of A stays out of A's statistics whatever the segments hold.
    let gone = store_all(&store, &a, "alice", &["coffee coffee coffee, soon forgotten".to_string()]);
    let forget = DataOp::Forget { filter: MemoryFilter { ids: Some(gone), ..MemoryFilter::default() } };
    assert!(matches!(store.execute(&a, forget).expect("forget").result, DataResult::Deleted(1)));
    assert_eq!(store.text.namespace_statistics(1).expect("stats").0, 5);
    let alone = answers(&store, &a);
    assert!(alone[0].len() >= 2 && alone[0].iter().all(|h| h.4.is_some()), "{:?}", alone[0]);

    // B: 10,000 memories, many with the same words (and denser in them) than A's.
    let theirs: Vec<String> = (0..10_000)
        .map(|i| match i % 4 {
            0 => format!("coffee coffee {i}"),
            1 => format!("dark roast coffee beans number {i}"),
            2 => format!("tuesday meeting {i} about coffee"),
            _ => format!("unrelated note {i} with many more words than the others have in them"),
        })
        .collect();
    store_all(&store, &b, "bob", &theirs);
    assert_eq!(store.text.namespace_statistics(2).expect("stats").0, 10_000);
    let crowded = answers(&store, &a);
    assert_eq!(crowded, alone, "A's scores moved when B stored 10,000 memories");

    store.drop_namespace(2).expect("drop");
    assert_eq!(store.text.namespace_statistics(2).expect("stats").0, 0);
    let after = answers(&store, &a);
    assert_eq!(after, alone, "A's scores moved when B was deleted");
}

/// A recall or a list page stops at `max_answer_bytes` of content (the memory crossing it is
/// the last), and only what it returns is recorded as accessed.
#[test]
fn answers_are_bounded_by_content_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { sync_writes: false, max_answer_bytes: 50_000, ..StoreConfig::default() };
    let store = Store::open(dir.path(), config).expect("open");
    let c = ctx(5);
    let items: Vec<NewMemory> =
        (0..30).map(|i| NewMemory::text("a", &format!("apple {i} {}", "lorem ".repeat(1_666)))).collect();
    store.execute(&c, DataOp::Store { items }).expect("store");
    let recall = |query: &str| {
        DataOp::Recall(RecallParams {
            query: query.into(),
            query_embedding: None,
            top_k: 30,
            filter: MemoryFilter::default(),
            routing: Routing::Bm25,
            fusion: Fusion::default(),
            vector_weight: None,
            min_score: None,
            importance_weighted: false,
            record_access: true,
            decay: None,
        })
    };
    for q in ["*", "apple"] {
        match store.execute(&c, recall(q)).expect("recall").result {
            DataResult::Recalled(hits) => assert_eq!(hits.len(), 5, "query {q}: 4 × 10 KB < 50 KB ≤ 5 × 10 KB"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let list = DataOp::List { filter: MemoryFilter::default(), sort: SortBy::CreatedAtAsc, limit: 30, offset: 0 };
    match store.execute(&c, list).expect("list").result {
        DataResult::Memories { memories, total } => {
            assert_eq!((memories.len(), total), (5, 30), "the page is cut, the total still counts all");
        }
        other => panic!("unexpected {other:?}"),
    }
}
