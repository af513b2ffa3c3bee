//! Vector queries answered with ids and scores only: the same hits as the full answer, in the
//! same order, with the filters applied.

use super::*;

fn ctx() -> NsContext {
    test_context(21, "v", 5)
}

fn unit(seed: u64, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|i| (((seed * 7919 + i as u64 * 104_729) % 1000) as f32 / 500.0) - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn query(records: bool, filter: MemoryFilter) -> DataOp {
    DataOp::Query(VectorQuery {
        vector: Some(unit(1_000, 64)),
        text: None,
        top_k: 10,
        filter,
        include_vectors: false,
        records,
    })
}

#[test]
fn ids_only_answers_the_same_hits_in_the_same_order_as_the_full_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let ctx = ctx();
    let items: Vec<NewMemory> = (0..60)
        .map(|i| NewMemory {
            id: Some(format!("m{i:02}")),
            tags: if i % 2 == 0 { vec!["even".into()] } else { vec![] },
            embedding: Some(unit(i, 64)),
            ..NewMemory::text("a", format!("memory {i}"))
        })
        .collect();
    store.execute(&ctx, DataOp::Store { items }).expect("store");

    for filter in
        [MemoryFilter::default(), MemoryFilter { tags_all: Some(vec!["even".into()]), ..MemoryFilter::default() }]
    {
        let DataResult::Hits(full) = store.execute(&ctx, query(true, filter.clone())).expect("full").result else {
            panic!("hits")
        };
        let DataResult::Scores(ids) = store.execute(&ctx, query(false, filter.clone())).expect("ids").result else {
            panic!("scores")
        };
        assert_eq!(full.len(), 10);
        let expected: Vec<(String, f32)> = full.iter().map(|h| (h.record.id.clone(), h.score)).collect();
        assert_eq!(ids, expected, "filter {filter:?}");
        if filter.tags_all.is_some() {
            assert!(ids.iter().all(|(id, _)| id[1..].parse::<u32>().expect("n") % 2 == 0), "{ids:?}");
        }
    }

    // A query asking for vectors still gets records.
    let DataResult::Hits(with_vectors) = store
        .execute(
            &ctx,
            DataOp::Query(VectorQuery {
                vector: Some(unit(1_000, 64)),
                text: None,
                top_k: 3,
                filter: MemoryFilter::default(),
                include_vectors: true,
                records: false,
            }),
        )
        .expect("vectors")
        .result
    else {
        panic!("a query with vectors answers records")
    };
    assert!(with_vectors.iter().all(|h| h.vector.as_ref().is_some_and(|v| v.len() == 64)));
}

#[test]
fn a_query_from_an_older_node_without_the_field_answers_records() {
    let old = serde_json::json!({"vector": [1.0, 0.0], "text": null, "top_k": 3, "filter": MemoryFilter::default(), "include_vectors": false});
    let q: VectorQuery = serde_json::from_value(old).expect("decode");
    assert!(q.records);
}
