//! Raw vectors and documents over REST against real nodes: upsert, query (filters, bounds),
//! batch query, delete, count, export, bulk delete and update, the text routes, full-text,
//! hybrid, cache warming; scope refusals and cross-tenant invisibility; validation that changes
//! nothing; replication across three nodes.

use std::time::Duration;

use loci_tests::{Client, TestCluster, TestNode, create_key, eventually};
use serde_json::{Value, json};

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

async fn count(c: &Client, ns: &str, filter: Option<Value>) -> u64 {
    let body = match filter {
        Some(f) => json!({"filter": f}),
        None => json!({}),
    };
    let (s, v) = c.post(&format!("/v1/namespaces/{ns}/vectors/count"), &body).await;
    assert_eq!(s, 200, "count: {v}");
    v["count"].as_u64().expect("count")
}

/// Four 3-dimensional vectors with metadata in a new namespace.
async fn seed(c: &Client, ns: &str) {
    let (s, v) = c.put(&format!("/v1/namespaces/{ns}"), &json!({"dimension": 3})).await;
    assert!(s == 200 || s == 201, "create: {v}");
    let (s, v) = c
        .post(
            &format!("/v1/namespaces/{ns}/vectors"),
            &json!({"vectors": [
                {"id": "v-x", "values": [1.0, 0.0, 0.0], "metadata": {"color": "red", "n": 1, "tags": ["a"]}},
                {"id": "v-xy", "values": [0.9, 0.1, 0.0], "metadata": {"color": "red", "n": 2}},
                {"id": "v-y", "values": [0.0, 1.0, 0.0], "metadata": {"color": "blue", "n": 3}},
                {"id": "v-z", "values": [0.0, 0.0, 1.0]},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "upsert: {v}");
    assert_eq!(v["upserted_count"], 4);
}

#[tokio::test]
async fn vectors_upsert_query_filter_count_export_delete() {
    let node = TestNode::start().await;
    let c = &node.client;
    seed(c, "vec-basic").await;

    // Nearest first, raw cosine scores.
    let (s, v) = c.post("/v1/namespaces/vec-basic/query", &json!({"vector": [1.0, 0.0, 0.0], "top_k": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["v-x", "v-xy"]);
    let top = v["results"][0]["score"].as_f64().expect("score");
    assert!((top - 1.0).abs() < 1e-4, "exact match scores 1, got {top}");
    assert_eq!(v["results"][0]["metadata"]["color"], "red");
    assert!(v["results"][0].get("vector").is_none(), "vectors only when asked");

    // include_vectors / include_metadata.
    let (_, v) = c
        .post(
            "/v1/namespaces/vec-basic/query",
            &json!({"vector": [0.0, 1.0, 0.0], "top_k": 1, "include_vectors": true, "include_metadata": false}),
        )
        .await;
    assert_eq!(ids(&v), ["v-y"]);
    assert_eq!(v["results"][0]["vector"], json!([0.0, 1.0, 0.0]));
    assert!(v["results"][0].get("metadata").is_none());

    // Filters narrow the candidates before top_k.
    let (_, v) = c
        .post(
            "/v1/namespaces/vec-basic/query",
            &json!({"vector": [1.0, 0.0, 0.0], "top_k": 10, "filter": {"color": "blue"}}),
        )
        .await;
    assert_eq!(ids(&v), ["v-y"]);
    let (_, v) = c
        .post(
            "/v1/namespaces/vec-basic/query",
            &json!({"vector": [1.0, 0.0, 0.0], "top_k": 10, "filter": {"$or": [{"n": {"$gte": 3}}, {"tags": {"$contains": "a"}}]}}),
        )
        .await;
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, ["v-x", "v-y"]);

    // Counts with and without a filter.
    assert_eq!(count(c, "vec-basic", None).await, 4);
    assert_eq!(count(c, "vec-basic", Some(json!({"color": "red"}))).await, 2);
    assert_eq!(count(c, "vec-basic", Some(json!({"color": {"$exists": false}}))).await, 1);
    assert_eq!(count(c, "vec-basic", Some(json!({"n": {"$in": [1, 3]}}))).await, 2);

    // Batch query: one answer per query, in order.
    let (s, v) = c
        .post(
            "/v1/namespaces/vec-basic/batch-query",
            &json!({"queries": [
                {"id": "q1", "vector": [0.0, 0.0, 1.0], "top_k": 1},
                {"vector": [0.0, 1.0, 0.0], "top_k": 2, "filter": {"color": "red"}},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["query_count"], 2);
    assert_eq!(v["results"][0]["id"], "q1");
    assert_eq!(ids(&v["results"][0]), ["v-z"]);
    assert_eq!(ids(&v["results"][1]), ["v-xy", "v-x"]);

    // Export pages in id order with a cursor.
    let (s, v) = c.post("/v1/namespaces/vec-basic/export", &json!({"top_k": 3})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total_count"], 4);
    assert_eq!(v["returned_count"], 3);
    let first: Vec<&str> = v["vectors"].as_array().expect("vectors").iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(first, ["v-x", "v-xy", "v-y"]);
    assert_eq!(v["vectors"][0]["values"], json!([1.0, 0.0, 0.0]));
    let cursor = v["next_cursor"].as_str().expect("a next page").to_string();
    let (_, v) = c.post("/v1/namespaces/vec-basic/export", &json!({"top_k": 3, "cursor": cursor})).await;
    assert_eq!(v["returned_count"], 1);
    assert_eq!(v["vectors"][0]["id"], "v-z");
    assert!(v.get("next_cursor").is_none(), "last page: {v}");

    // Upsert replaces by id.
    let (s, _) = c
        .post(
            "/v1/namespaces/vec-basic/vectors",
            &json!({"vectors": [{"id": "v-z", "values": [0.0, 1.0, 0.0], "metadata": {"color": "green"}}]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(count(c, "vec-basic", None).await, 4);
    assert_eq!(count(c, "vec-basic", Some(json!({"color": "green"}))).await, 1);

    // Bulk update sets metadata on what matches; bulk delete removes it.
    let (s, v) = c
        .post(
            "/v1/namespaces/vec-basic/vectors/bulk-update",
            &json!({"filter": {"color": "red"}, "update": {"stale": true}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["updated"], 2);
    assert_eq!(v["failed"], 0);
    assert_eq!(count(c, "vec-basic", Some(json!({"stale": true}))).await, 2);
    assert_eq!(count(c, "vec-basic", Some(json!({"stale": true, "color": "red"}))).await, 2);
    let (s, v) = c.post("/v1/namespaces/vec-basic/vectors/bulk-delete", &json!({"filter": {"stale": true}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted"], 2);
    assert_eq!(count(c, "vec-basic", None).await, 2);

    // Delete by id: only existing ids count.
    let (s, v) = c.post("/v1/namespaces/vec-basic/vectors/delete", &json!({"ids": ["v-y", "nope"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted_count"], 1);
    let (_, v) = c.post("/v1/namespaces/vec-basic/query", &json!({"vector": [0.0, 1.0, 0.0], "top_k": 10})).await;
    assert_eq!(ids(&v), ["v-z"]);

    // Cache warming counts what exists.
    let (s, v) = c.post("/v1/namespaces/vec-basic/cache/warm", &json!({"vector_ids": ["v-z", "gone"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["entries_warmed"].as_u64(), v["entries_skipped"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["success"], true);

    // The namespace reports its vectors; erasing it takes them all.
    let (_, v) = c.get("/v1/namespaces/vec-basic").await;
    assert_eq!(v["vector_count"], 1);
    let (s, _) = c.delete("/v1/namespaces/vec-basic").await;
    assert_eq!(s, 200);
    let (s, v) = c.post("/v1/namespaces/vec-basic/query", &json!({"vector": [0.0, 1.0, 0.0]})).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("NAMESPACE_NOT_FOUND")));
}

#[tokio::test]
async fn an_upsert_creates_a_missing_namespace_at_the_vectors_dimension() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c
        .post(
            "/v1/namespaces/vec-auto/vectors",
            &json!({"vectors": [{"id": "a", "values": [0.5, 0.5, 0.5, 0.5, 0.5]}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = c.get("/v1/namespaces/vec-auto").await;
    assert_eq!((v["dimension"].as_u64(), v["kind"].as_str()), (Some(5), Some("data")));
}

#[tokio::test]
async fn documents_text_queries_fulltext_and_hybrid() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, _) = c.put("/v1/namespaces/docs", &json!({"dimension": 256})).await;
    assert!(s == 200 || s == 201);
    let (s, v) = c
        .post(
            "/v1/namespaces/docs/upsert-text",
            &json!({"documents": [
                {"id": "doc-1", "text": "Machine learning transforms data into insights", "metadata": {"lang": "en"}},
                {"id": "doc-2", "text": "Natural language processing understands text"},
                {"id": "doc-3", "text": "Deep learning uses neural networks", "metadata": {"lang": "en"}},
            ], "model": "minilm"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["upserted_count"], 3);
    assert_eq!(v["model"], "hash");
    assert!(v["tokens_processed"].as_u64().unwrap_or(0) >= 15, "{v}");

    // Query by text: embedded with the namespace's embedder on the primary.
    let (s, v) =
        c.post("/v1/namespaces/docs/query-text", &json!({"text": "neural networks deep learning", "top_k": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v)[0], "doc-3", "{v}");
    assert_eq!(v["results"][0]["text"], "Deep learning uses neural networks");
    let (_, v) = c
        .post(
            "/v1/namespaces/docs/query-text",
            &json!({"text": "neural networks", "top_k": 3, "include_text": false, "filter": {"lang": "en"}}),
        )
        .await;
    assert!(v["results"][0].get("text").is_none());
    assert!(!ids(&v).contains(&"doc-2".to_string()), "the filter applies: {v}");

    let (s, v) = c
        .post(
            "/v1/namespaces/docs/batch-query-text",
            &json!({"queries": ["language processing", "neural"], "top_k": 1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0][0]["id"], "doc-2");
    assert_eq!(v["results"][1][0]["id"], "doc-3");

    // Full-text: index, search (raw BM25), stats, delete.
    let (s, v) = c
        .post(
            "/v1/namespaces/docs/fulltext/index",
            &json!({"documents": [{"id": "ft-1", "text": "A document about zebras"}, {"id": "ft-2", "content": "zebras and zebras again"}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["indexed_count"], 2);
    let (s, v) = c.post("/v1/namespaces/docs/fulltext/search", &json!({"query": "zebras", "top_k": 5})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["ft-2", "ft-1"], "{v}");
    assert!(v["results"][0]["score"].as_f64().unwrap_or(0.0) > v["results"][1]["score"].as_f64().unwrap_or(0.0));
    assert_eq!(v["results"][1]["content"], "A document about zebras");
    assert_eq!(v["results"][1]["text"], "A document about zebras");
    let (s, v) = c.get("/v1/namespaces/docs/fulltext/stats").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["document_count"], 5);
    assert!(v["unique_terms"].as_u64().unwrap_or(0) >= 10, "{v}");
    assert!(v["avg_doc_length"].as_f64().unwrap_or(0.0) > 3.0, "{v}");
    let (s, v) = c.post("/v1/namespaces/docs/fulltext/delete", &json!({"ids": ["ft-1", "ft-2"]})).await;
    assert_eq!((s, v["deleted_count"].as_u64()), (200, Some(2)));
    let (_, v) = c.post("/v1/namespaces/docs/fulltext/search", &json!({"query": "zebras"})).await;
    assert!(ids(&v).is_empty(), "deleted documents leave the text index: {v}");

    // Hybrid: BM25 alone without a vector; fused with one.
    let (s, v) = c.post("/v1/namespaces/docs/hybrid", &json!({"text": "machine learning data", "top_k": 3})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v)[0], "doc-1", "{v}");
    assert!(v["results"][0]["text_score"].as_f64().is_some());
    assert!(v["results"][0].get("vector_score").is_none());
    let (_, q) = c.post("/v1/namespaces/docs/export", &json!({"top_k": 10})).await;
    let doc3 = q["vectors"].as_array().expect("vectors").iter().find(|x| x["id"] == "doc-3").expect("doc-3").clone();
    let (s, v) = c
        .post(
            "/v1/namespaces/docs/hybrid",
            &json!({"text": "machine learning", "vector": doc3["values"], "top_k": 3, "vector_weight": 0.9}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v)[0], "doc-3", "the vector side dominates at weight 0.9: {v}");
    assert!(v["results"][0]["vector_score"].as_f64().is_some());
}

#[tokio::test]
async fn invalid_requests_are_refused_and_change_nothing() {
    let node = TestNode::start().await;
    let c = &node.client;
    seed(c, "vec-valid").await;
    let up = |vectors: Value| json!({"vectors": vectors});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/vectors", up(json!([{"id": "new-1", "values": [1.0, 2.0]}])), 400, "DIMENSION_MISMATCH"),
        (
            "/vectors",
            up(json!([{"id": "new-1", "values": [1.0, 2.0, 3.0]}, {"id": "new-2", "values": [1.0]}])),
            400,
            "DIMENSION_MISMATCH",
        ),
        ("/vectors", up(json!([{"id": "new-1", "values": []}])), 400, "EMPTY_VECTOR"),
        ("/vectors", up(json!([])), 400, "INVALID_REQUEST"),
        ("/vectors", up(json!([{"id": "x".repeat(129), "values": [1.0, 0.0, 0.0]}])), 400, "INVALID_REQUEST"),
        ("/vectors", up(json!([{"id": "bad id", "values": [1.0, 0.0, 0.0]}])), 400, "INVALID_REQUEST"),
        (
            "/vectors",
            up(json!([{"id": "new-1", "values": [1.0, 0.0, 0.0], "metadata": {"big": "x".repeat(70_000)}}])),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        ("/vectors", up(json!([{"id": "new-1", "values": [1.0, 0.0, 0.0], "metadata": [1]}])), 400, "INVALID_REQUEST"),
        ("/query", json!({"vector": [1.0, 0.0, 0.0], "top_k": 0}), 400, "INVALID_REQUEST"),
        ("/query", json!({"vector": [1.0, 0.0, 0.0], "top_k": 10001}), 400, "INVALID_REQUEST"),
        ("/query", json!({"vector": [1.0, 0.0], "top_k": 1}), 400, "DIMENSION_MISMATCH"),
        ("/query", json!({"top_k": 1}), 400, "INVALID_REQUEST"),
        ("/query", json!({"vector": [1.0, 0.0, 0.0], "filter": {"n": {"$regex": "x"}}}), 400, "INVALID_REQUEST"),
        ("/vectors/bulk-delete", json!({"filter": {}}), 400, "INVALID_REQUEST"),
        ("/vectors/bulk-delete", json!({"filter": {"n": {"$bogus": 1}}}), 400, "INVALID_REQUEST"),
        (
            "/vectors/bulk-update",
            json!({"filter": {"color": "red"}, "update": {"_dakera_x": 1}}),
            400,
            "INVALID_REQUEST",
        ),
        ("/vectors/bulk-update", json!({"filter": {"color": "red"}, "update": 3}), 400, "INVALID_REQUEST"),
        ("/vectors/delete", json!({"ids": []}), 400, "INVALID_REQUEST"),
        ("/upsert-text", json!({"documents": [{"id": "d", "text": ""}]}), 400, "INVALID_REQUEST"),
        ("/upsert-text", json!({"documents": [{"id": "d", "text": "x".repeat(100_001)}]}), 413, "PAYLOAD_TOO_LARGE"),
        ("/hybrid", json!({"text": "x", "vector_weight": 1.5}), 400, "INVALID_REQUEST"),
        ("/export", json!({"top_k": 0}), 400, "INVALID_REQUEST"),
    ];
    for (path, body, status, code) in cases {
        let (s, v) = c.post(&format!("/v1/namespaces/vec-valid{path}"), &body).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{path} {body}: {v}");
    }
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("m-{i}"), "values": [1.0, 0.0, 0.0]})).collect();
    let (s, _) = c.post("/v1/namespaces/vec-valid/vectors", &up(Value::from(too_many))).await;
    assert_eq!(s, 400);
    let queries: Vec<Value> = (0..101).map(|_| json!({"vector": [1.0, 0.0, 0.0]})).collect();
    let (s, _) = c.post("/v1/namespaces/vec-valid/batch-query", &json!({"queries": queries})).await;
    assert_eq!(s, 400);
    // A batch with one bad query runs none.
    let (s, v) = c
        .post(
            "/v1/namespaces/vec-valid/batch-query",
            &json!({"queries": [{"vector": [1.0, 0.0, 0.0]}, {"vector": [1.0, 0.0, 0.0], "top_k": 0}]}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("queries[1]"), "{v}");
    // Nothing changed.
    assert_eq!(count(c, "vec-valid", None).await, 4);
    assert_eq!(count(c, "vec-valid", Some(json!({"color": "red"}))).await, 2);
    let (_, v) = c.post("/v1/namespaces/vec-valid/export", &json!({})).await;
    let got: Vec<&str> = v["vectors"].as_array().expect("vectors").iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(got, ["v-x", "v-xy", "v-y", "v-z"]);
}

#[tokio::test]
async fn scopes_are_enforced_and_other_tenants_are_invisible() {
    let node = TestNode::start().await;
    let root = &node.client;
    seed(root, "tenant-a").await;
    seed(root, "tenant-b").await;
    let (_, reader) =
        create_key(root, "/admin/keys", &json!({"name": "a-read", "scope": "read", "namespace": "tenant-a"})).await;
    let (_, writer) =
        create_key(root, "/admin/keys", &json!({"name": "a-write", "scope": "write", "namespace": "tenant-a"})).await;
    let reader = root.with_key(Some(&reader));
    let writer = root.with_key(Some(&writer));
    let q = json!({"vector": [1.0, 0.0, 0.0], "top_k": 10});

    // A read key reads, and cannot write: refused, and nothing changed.
    let (s, v) = reader.post("/v1/namespaces/tenant-a/query", &q).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v).len(), 4);
    let writes: Vec<(&str, Value)> = vec![
        ("/vectors", json!({"vectors": [{"id": "evil", "values": [1.0, 0.0, 0.0]}]})),
        ("/vectors/delete", json!({"ids": ["v-x"]})),
        ("/vectors/bulk-delete", json!({"filter": {"color": "red"}})),
        ("/vectors/bulk-update", json!({"filter": {"color": "red"}, "update": {"x": 1}})),
        ("/upsert-text", json!({"documents": [{"id": "evil", "text": "injected"}]})),
        ("/fulltext/index", json!({"documents": [{"id": "evil", "text": "injected"}]})),
        ("/fulltext/delete", json!({"ids": ["v-x"]})),
    ];
    for (path, body) in &writes {
        let (s, v) = reader.post(&format!("/v1/namespaces/tenant-a{path}"), body).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("INSUFFICIENT_SCOPE")), "{path}: {v}");
    }
    assert_eq!(count(root, "tenant-a", None).await, 4);
    assert_eq!(count(root, "tenant-a", Some(json!({"x": 1}))).await, 0);
    // The write key writes.
    let (s, v) = writer
        .post("/v1/namespaces/tenant-a/vectors", &json!({"vectors": [{"id": "ok", "values": [0.0, 0.0, 1.0]}]}))
        .await;
    assert_eq!(s, 200, "{v}");

    // tenant-b exists, tenant-c does not: a key for tenant-a gets the same answer for both,
    // on every route, and nothing of tenant-b comes back.
    let routes: Vec<(&str, Value)> = vec![
        ("/query", q.clone()),
        ("/batch-query", json!({"queries": [q.clone()]})),
        ("/vectors/count", json!({})),
        ("/export", json!({})),
        ("/query-text", json!({"text": "x"})),
        ("/fulltext/search", json!({"query": "x"})),
        ("/hybrid", json!({"text": "x"})),
        ("/cache/warm", json!({})),
        ("/vectors", json!({"vectors": [{"id": "evil", "values": [1.0, 0.0, 0.0]}]})),
        ("/vectors/delete", json!({"ids": ["v-x"]})),
        ("/vectors/bulk-delete", json!({"filter": {"color": "red"}})),
    ];
    for who in [&reader, &writer] {
        for (path, body) in &routes {
            let (sb, vb) = who.post(&format!("/v1/namespaces/tenant-b{path}"), body).await;
            let (sc, vc) = who.post(&format!("/v1/namespaces/tenant-c{path}"), body).await;
            assert_eq!(sb, 403, "{path}: {vb}");
            assert_eq!((sb, &vb["code"]), (sc, &vc["code"]), "{path}: tenant-b answers differ from a missing one");
            let text = vb.to_string();
            assert!(!text.contains("v-x") && !text.contains("red"), "{path} leaked tenant-b: {text}");
        }
        let (sb, vb) = who.get("/v1/namespaces/tenant-b/fulltext/stats").await;
        let (sc, vc) = who.get("/v1/namespaces/tenant-c/fulltext/stats").await;
        assert_eq!((sb, &vb["code"]), (sc, &vc["code"]));
    }
    // tenant-b is intact, tenant-c was not created.
    assert_eq!(count(root, "tenant-b", None).await, 4);
    let (s, _) = root.get("/v1/namespaces/tenant-c").await;
    assert_eq!(s, 404);
    // Without a key: 401.
    let (s, v) = root.with_key(None).post("/v1/namespaces/tenant-a/query", &q).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("AUTHENTICATION_REQUIRED")));
}

#[tokio::test]
async fn vectors_replicate_and_are_served_by_every_node() {
    let cluster = TestCluster::start(3).await;
    let c0 = cluster.client(0);
    let created = eventually(Duration::from_secs(15), || async {
        let (s, _) = c0.put("/v1/namespaces/vec-repl", &json!({"dimension": 3})).await;
        s == 200 || s == 201
    })
    .await;
    assert!(created, "the namespace could not be created");
    let vectors: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("r-{i:02}"), "values": [1.0, i as f32, 0.5], "metadata": {"i": i}}))
        .collect();
    let (s, v) = c0.post_retrying("/v1/namespaces/vec-repl/vectors", &json!({"vectors": vectors})).await;
    assert_eq!(s, 200, "{v}");
    for i in 0..3 {
        let (s, v) = cluster
            .client(i)
            .post(
                "/v1/namespaces/vec-repl/query",
                &json!({"vector": [1.0, 19.0, 0.5], "top_k": 1, "filter": {"i": {"$gte": 10}}}),
            )
            .await;
        assert_eq!(s, 200, "node {i}: {v}");
        assert_eq!(ids(&v), ["r-19"], "node {i}");
    }
    // Every replica holds the 20 records itself.
    let ok = eventually(Duration::from_secs(15), || async {
        let mut all = true;
        for i in 0..3 {
            all &= cluster.local_content(i, "vec-repl").await.is_some_and(|rows| rows.len() == 20);
        }
        all
    })
    .await;
    assert!(ok, "the vectors did not reach every replica");

    // Bulk changes through other nodes replicate too: each replica's own store agrees.
    let (s, v) = cluster
        .client(1)
        .post_retrying(
            "/v1/namespaces/vec-repl/vectors/bulk-update",
            &json!({"filter": {"i": {"$gte": 15}}, "update": {"hot": true}}),
        )
        .await;
    assert_eq!((s, v["updated"].as_u64()), (200, Some(5)), "{v}");
    let (s, v) = cluster
        .client(2)
        .post_retrying("/v1/namespaces/vec-repl/vectors/bulk-delete", &json!({"filter": {"i": {"$lt": 10}}}))
        .await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(10)), "{v}");
    let ok = eventually(Duration::from_secs(15), || async {
        let mut all = true;
        for i in 0..3 {
            all &= local_count(&cluster, i, "vec-repl", json!({})).await == Some(10);
            all &= local_count(&cluster, i, "vec-repl", json!({"hot": true})).await == Some(5);
        }
        all
    })
    .await;
    assert!(ok, "the bulk changes did not reach every replica");
}

/// How many of `ns`'s records pass `filter` in node `i`'s own store (not through the primary).
async fn local_count(cluster: &TestCluster, i: usize, ns: &str, filter: Value) -> Option<u64> {
    use loci_storage::model::{DataOp, DataResult};
    let core = &cluster.handle(i).core;
    let entry = core.namespace(ns)?;
    let filter = loci_service::vectors::parse_filter(Some(&filter)).ok()?;
    match core.cluster.local().execute(&entry, DataOp::Count { filter }).await.ok()?.result {
        DataResult::Count(n) => Some(n),
        _ => None,
    }
}

#[tokio::test]
async fn content_screening_applies_to_documents() {
    let node = TestNode::start().await;
    let c = &node.client;
    for (ns, mode) in [("docs-block", "block"), ("docs-flag", "flag")] {
        let (s, _) = c.put(&format!("/v1/namespaces/{ns}"), &json!({"dimension": 32})).await;
        assert!(s == 200 || s == 201);
        let (s, v) = c.put(&format!("/v1/namespaces/{ns}/memory_policy"), &json!({"content_screening": mode})).await;
        assert_eq!(s, 200, "{v}");
    }
    let attack = "'; DROP TABLE memories; --";
    for path in ["/upsert-text", "/fulltext/index"] {
        let (s, v) = c
            .post(
                &format!("/v1/namespaces/docs-block{path}"),
                &json!({"documents": [{"id": "fine", "text": "a harmless sentence"}, {"id": "bad", "text": attack}]}),
            )
            .await;
        assert_eq!(s, 422, "{path}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains("documents[1]"), "{v}");
    }
    assert_eq!(count(c, "docs-block", None).await, 0, "a refused batch wrote nothing");
    // A read key learns nothing of the policy: its refusal is the scope's.
    let (_, reader) =
        create_key(c, "/admin/keys", &json!({"name": "b-read", "scope": "read", "namespace": "docs-block"})).await;
    let (s, v) = c
        .with_key(Some(&reader))
        .post("/v1/namespaces/docs-block/upsert-text", &json!({"documents": [{"id": "bad", "text": attack}]}))
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("INSUFFICIENT_SCOPE")));
    // `flag` stores the document and tags it.
    let (s, v) =
        c.post("/v1/namespaces/docs-flag/upsert-text", &json!({"documents": [{"id": "bad", "text": attack}]})).await;
    assert_eq!(s, 200, "{v}");
    let (_, m) = c.get("/v1/memory/get/bad?namespace=docs-flag").await;
    assert_eq!(m["content"], attack);
    assert!(m["tags"].as_array().is_some_and(|t| t.contains(&json!("screened:sql"))), "{m}");
}
