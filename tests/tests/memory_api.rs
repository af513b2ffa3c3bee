//! The memory API against a running node (real RocksDB, tantivy, Raft catalogue).

use std::time::Duration;

use loci_tests::{Client, TestNode, eventually, files_containing, ids_of};
use serde_json::{Value, json};

#[tokio::test]
async fn store_then_recall_finds_it() {
    let node = TestNode::start().await;
    let c = &node.client;
    let coffee = c.store("alice", "Alice prefers dark roast coffee in the morning").await;
    c.store("alice", "The quarterly planning meeting moved to Tuesday").await;
    c.store("alice", "Her cat is called Miso and dislikes thunder").await;
    let ids = c.recall_ids("alice", "which coffee does she like", 1).await;
    assert_eq!(ids, vec![coffee.clone()]);
    // The stored fields come back exactly.
    let (s, m) = c.get(&format!("/v1/memory/get/{coffee}?agent_id=alice")).await;
    assert_eq!(s, 200);
    assert_eq!(m["content"], "Alice prefers dark roast coffee in the morning");
    assert_eq!(m["agent_id"], "alice");
    assert_eq!(m["namespace"], "alice");
    assert_eq!(m["memory_type"], "episodic");
    assert!(m["created_at"].is_u64());
    // Another agent's namespace never sees it.
    assert!(c.recall_ids("bob", "coffee", 5).await.is_empty());
}

#[tokio::test]
async fn forget_means_never_recalled_and_get_404() {
    let node = TestNode::start().await;
    let c = &node.client;
    let id = c.store("alice", "The vault code is kept in the blue folder").await;
    let other = c.store("alice", "The blue folder is on the second shelf").await;
    assert!(c.recall_ids("alice", "blue folder vault", 5).await.contains(&id));
    let (s, v) = c.post("/v1/memory/forget", &json!({"agent_id": "alice", "memory_ids": [id]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted_count"], 1);
    for q in ["vault code", "blue folder vault", "kept"] {
        let ids = c.recall_ids("alice", q, 10).await;
        assert!(!ids.contains(&id), "forgotten memory recalled for {q:?}");
    }
    assert!(c.recall_ids("alice", "second shelf", 5).await.contains(&other));
    let (s, v) = c.get(&format!("/v1/memory/get/{id}?agent_id=alice")).await;
    assert_eq!(s, 404, "{v}");
    // Also gone from keyword search and listing.
    let (_, v) = c.post("/v1/memory/search", &json!({"agent_id": "alice", "query": "vault", "routing": "bm25"})).await;
    assert!(!ids_of(&v["memories"]).contains(&id));
    let (_, v) = c.get("/v1/agents/alice/memories").await;
    assert!(!ids_of(&v).contains(&id));
    // Forgetting with no selector is refused rather than deleting everything.
    let (s, _) = c.post("/v1/memory/forget", &json!({"agent_id": "alice"})).await;
    assert_eq!(s, 400);
    assert_eq!(c.recall_ids("alice", "shelf", 5).await, vec![other]);
}

#[tokio::test]
async fn update_changes_what_recall_sees() {
    let node = TestNode::start().await;
    let c = &node.client;
    let id = c.store("anna", "Anna lives in Berlin").await;
    let (s, v) = c
        .put(
            &format!("/v1/memory/update/{id}?agent_id=anna"),
            &json!({"content": "Anna lives in Hamburg", "tags": ["city"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["content"], "Anna lives in Hamburg");
    assert_eq!(v["tags"], json!(["city"]));
    let bm25 = |q: &'static str| {
        let c = c.clone();
        async move {
            let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "anna", "query": q, "routing": "bm25"})).await;
            v["memories"].clone()
        }
    };
    assert!(ids_of(&bm25("Berlin").await).is_empty(), "old content still indexed");
    let hits = bm25("Hamburg").await;
    assert_eq!(ids_of(&hits), vec![id.clone()]);
    assert_eq!(hits[0]["memory"]["content"], "Anna lives in Hamburg");
    // Hybrid recall returns only the new content.
    let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "anna", "query": "where does Anna live"})).await;
    for m in v["memories"].as_array().unwrap() {
        assert_eq!(m["memory"]["content"], "Anna lives in Hamburg");
    }
    // Importance updates, both forms.
    let (s, _) =
        c.post("/v1/memory/importance", &json!({"agent_id": "anna", "memory_id": id, "importance": 0.95})).await;
    assert_eq!(s, 200);
    let (s, v) = c
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/memories/{id}/importance"),
            Some(&json!({"agent_id": "anna", "importance": 0.2})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["importance"], 0.2);
    assert_eq!(v["id"], id.as_str());
}

#[tokio::test]
async fn ttl_expiry_hides_and_deletes() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c
        .post(
            "/v1/memory/store",
            &json!({"agent_id": "tmp", "content": "ephemeral launch code banana", "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["memory"]["id"].as_str().unwrap().to_string();
    let keep = c.store("tmp", "durable banana fact").await;
    assert!(v["memory"]["expires_at"].as_u64().unwrap() > 0);
    let gone = eventually(Duration::from_secs(5), || {
        let c = c.clone();
        let id = id.clone();
        async move { c.get(&format!("/v1/memory/get/{id}?agent_id=tmp")).await.0 == 404 }
    })
    .await;
    assert!(gone, "expired memory still readable");
    let ids = c.recall_ids("tmp", "banana launch code", 10).await;
    assert!(!ids.contains(&id));
    assert!(ids.contains(&keep));
    let (_, v) = c.post("/v1/memories/recall/batch", &json!({"agent_id": "tmp", "filter": {}})).await;
    assert_eq!(ids_of(&v["memories"]), vec![keep]);
    // An explicit expires_at in the past is refused.
    let (s, _) = c.post("/v1/memory/store", &json!({"agent_id": "tmp", "content": "x", "expires_at": 1000})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn recall_filters() {
    let node = TestNode::start().await;
    let c = &node.client;
    let mk = |content: &str, ty: &str, imp: f64, tags: Value, session: Option<&str>| {
        let mut b = json!({"agent_id": "f", "content": content, "memory_type": ty, "importance": imp, "tags": tags});
        if let Some(s) = session {
            b["session_id"] = json!(s);
        }
        b
    };
    let mut ids = Vec::new();
    for body in [
        mk("project alpha kickoff notes", "episodic", 0.9, json!(["work", "alpha"]), Some("s1")),
        mk("project alpha budget approved", "semantic", 0.3, json!(["work"]), None),
        mk("project alpha holiday party", "episodic", 0.5, json!(["social"]), Some("s1")),
        mk("how to deploy project alpha", "procedural", 0.7, json!([]), None),
    ] {
        let (s, v) = c.post("/v1/memory/store", &body).await;
        assert_eq!(s, 200, "{v}");
        ids.push(v["memory"]["id"].as_str().unwrap().to_string());
    }
    let recall = |extra: Value| {
        let c = c.clone();
        async move {
            let mut body = json!({"agent_id": "f", "query": "project alpha", "top_k": 10});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (s, v) = c.post("/v1/memory/recall", &body).await;
            assert_eq!(s, 200, "{v}");
            let mut got = ids_of(&v["memories"]);
            got.sort();
            got
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(recall(json!({"memory_type": "episodic"})).await, sorted(vec![ids[0].clone(), ids[2].clone()]));
    assert_eq!(recall(json!({"tags": ["work"]})).await, sorted(vec![ids[0].clone(), ids[1].clone()]));
    assert_eq!(recall(json!({"tags": ["social", "alpha"]})).await, sorted(vec![ids[0].clone(), ids[2].clone()]));
    assert_eq!(recall(json!({"min_importance": 0.6})).await, sorted(vec![ids[0].clone(), ids[3].clone()]));
    assert_eq!(recall(json!({"session_id": "s1"})).await, sorted(vec![ids[0].clone(), ids[2].clone()]));
    assert_eq!(recall(json!({"since": "2000-01-01T00:00:00Z"})).await.len(), 4);
    assert!(recall(json!({"until": "2000-01-01T00:00:00Z"})).await.is_empty());
    assert_eq!(recall(json!({"routing": "vector", "top_k": 2})).await.len(), 2);
    assert_eq!(recall(json!({"fusion": "rrf", "vector_weight": 0.2})).await.len(), 4);
    // top_k bounds the answer; ranks never rise.
    let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "f", "query": "alpha budget", "top_k": 3})).await;
    let scores: Vec<f64> =
        v["memories"].as_array().unwrap().iter().map(|m| m["rank_score"].as_f64().unwrap()).collect();
    assert_eq!(scores.len(), 3);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(ids_of(&v["memories"])[0], ids[1]);
}

#[tokio::test]
async fn batch_endpoints() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c
        .post(
            "/v1/memories/store/batch",
            &json!({"agent_id": "b", "memories": [
                {"content": "first batch memory", "tags": ["x", "y"], "importance": 0.9},
                {"content": "second batch memory", "tags": ["x"], "memory_type": "semantic", "id": "mem-custom-1"},
                {"content": "third batch memory", "tags": ["z"], "importance": 0.1},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stored_count"], 3);
    assert_eq!(v["stored"][1]["id"], "mem-custom-1");
    assert!(v["total_embedding_time_ms"].is_u64());
    assert!(v.get("warnings").is_none());
    // Batch recall: ALL-tags filter.
    let (s, v) = c.post("/v1/memories/recall/batch", &json!({"agent_id": "b", "filter": {"tags": ["x", "y"]}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 3);
    assert_eq!(v["filtered"], 1);
    assert_eq!(v["memories"][0]["content"], "first batch memory");
    let (_, v) = c
        .post("/v1/memories/recall/batch", &json!({"agent_id": "b", "filter": {"min_importance": 0.5}, "limit": 1}))
        .await;
    assert_eq!(v["filtered"], 2);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["memories"].as_array().unwrap().len(), 1);
    // Batch forget refuses an empty filter, deletes by filter otherwise.
    let (s, _) = c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": "b", "filter": {}})).await;
    assert_eq!(s, 400);
    let (s, v) = c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": "b", "filter": {"tags": ["x"]}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted_count"], 2);
    let (_, v) = c.post("/v1/memories/recall/batch", &json!({"agent_id": "b", "filter": {}})).await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["memories"][0]["content"], "third batch memory");
    assert!(c.recall_ids("b", "first batch memory", 10).await.iter().all(|id| id != "mem-custom-1"));
    // Too many items.
    let many: Vec<Value> = (0..1001).map(|i| json!({"content": format!("m{i}")})).collect();
    let (s, _) = c.post("/v1/memories/store/batch", &json!({"agent_id": "b", "memories": many})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn eight_concurrent_writers_times_1000_all_readable() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(1000);
            for i in 0..1000 {
                let (s, v) = c
                    .post(
                        "/v1/memory/store",
                        &json!({"agent_id": "shared", "content": format!("writer {w} memory {i}"), "tags": [format!("w{w}")]}),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                ids.push(v["memory"]["id"].as_str().unwrap().to_string());
            }
            (w, ids)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (w, ids) = r.unwrap();
        all.push((w, ids));
    }
    let (_, v) = c.get("/v1/namespaces/shared").await;
    assert_eq!(v["memory_count"], 8000, "{v}");
    for (w, ids) in &all {
        let (s, v) = c
            .post(
                "/v1/memories/recall/batch",
                &json!({"agent_id": "shared", "filter": {"tags": [format!("w{w}")]}, "limit": 2000}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["filtered"], 1000);
        let mut got = ids_of(&v["memories"]);
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want);
    }
    // Spot-check contents through get.
    for (w, ids) in &all {
        let (s, v) = c.get(&format!("/v1/memory/get/{}?agent_id=shared", ids[999])).await;
        assert_eq!(s, 200);
        assert_eq!(v["content"], format!("writer {w} memory 999"));
    }
}

#[tokio::test]
async fn canary_never_reaches_disk_in_plaintext() {
    let node = TestNode::start().await;
    let c = &node.client;
    let canary = "CANARYzq7xw93plaintextleak";
    let (s, v) = c
        .post(
            "/v1/memory/store",
            &json!({
                "agent_id": "vault",
                "content": format!("the secret word is {canary} and nothing else"),
                "tags": [canary, "other"],
                "metadata": {"note": canary, canary: {"nested": canary}},
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = c
        .post(
            "/v1/memories/store/batch",
            &json!({"agent_id": "vault", "memories": [{"content": format!("{canary} again"), "tags": [canary]}]}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c.post("/v1/sessions/start", &json!({"agent_id": "vault", "metadata": {"topic": canary}})).await;
    assert_eq!(s, 200);
    // Make the indexes commit and the memtables flush, then read every byte of the data dir.
    assert_eq!(c.recall_ids("vault", canary, 5).await.len(), 2);
    let dir = node.path().to_path_buf();
    let hits = files_containing(&dir, canary.as_bytes());
    assert!(hits.is_empty(), "plaintext canary found in {hits:?}");
    let dir_kept = node.stop().await;
    let hits = files_containing(dir_kept.path(), canary.as_bytes());
    assert!(hits.is_empty(), "plaintext canary found after shutdown in {hits:?}");
    // The lower-cased form (what a text index would store) is absent too.
    let hits = files_containing(dir_kept.path(), canary.to_lowercase().as_bytes());
    assert!(hits.is_empty(), "lower-cased canary found in {hits:?}");
}

#[tokio::test]
async fn wrong_or_missing_key_is_401() {
    let node = TestNode::start().await;
    let c = &node.client;
    let id = c.store("alice", "private note").await;
    let anon = c.with_key(None);
    let wrong = c.with_key(Some("dk_not-the-key"));
    for client in [&anon, &wrong] {
        for (method, path, body) in [
            (reqwest::Method::POST, "/v1/memory/store".to_string(), Some(json!({"agent_id": "alice", "content": "x"}))),
            (
                reqwest::Method::POST,
                "/v1/memory/recall".to_string(),
                Some(json!({"agent_id": "alice", "query": "note"})),
            ),
            (reqwest::Method::GET, format!("/v1/memory/get/{id}?agent_id=alice"), None),
            (reqwest::Method::GET, "/v1/namespaces".to_string(), None),
            (reqwest::Method::DELETE, "/v1/namespaces/alice".to_string(), None),
            (reqwest::Method::GET, "/v1/auth/whoami".to_string(), None),
        ] {
            let (s, v) = client.request(method.clone(), &path, body.as_ref()).await;
            assert_eq!(s, 401, "{method} {path}: {v}");
            assert!(v["code"].as_str().unwrap().contains("API_KEY") || v["code"] == "AUTHENTICATION_REQUIRED");
            assert!(v["error"].as_str().is_some());
        }
    }
    // Nothing was written or deleted by the refused calls.
    let (_, v) = c.get("/v1/namespaces/alice").await;
    assert_eq!(v["memory_count"], 1);
    // Health needs no key; X-API-Key works too.
    assert_eq!(anon.get("/health").await.0, 200);
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/auth/whoami", c.base))
        .header("x-api-key", loci_tests::ROOT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let node = TestNode::start_with(|a| {
        a.max_body_size = 64 * 1024;
        a.max_content_bytes = 1000;
    })
    .await;
    let c = &node.client;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bad json", b"{\"agent_id\": \"a\", ".to_vec(), 400, "malformed JSON"),
        ("wrong type", br#"{"agent_id":"a","content":42}"#.to_vec(), 400, "invalid type"),
        ("missing content", br#"{"agent_id":"a"}"#.to_vec(), 400, "content is required"),
        (
            "unknown memory_type",
            br#"{"agent_id":"a","content":"x","memory_type":"dream"}"#.to_vec(),
            400,
            "memory_type",
        ),
        ("importance high", br#"{"agent_id":"a","content":"x","importance":1.5}"#.to_vec(), 400, "importance"),
        ("importance negative", br#"{"agent_id":"a","content":"x","importance":-0.1}"#.to_vec(), 400, "importance"),
        ("bad agent id", br#"{"agent_id":"a/../b","content":"x"}"#.to_vec(), 400, "agent_id"),
        ("metadata not object", br#"{"agent_id":"a","content":"x","metadata":[1]}"#.to_vec(), 400, "metadata"),
        ("null byte tag", b"{\"agent_id\":\"a\",\"content\":\"x\",\"tags\":[\"a\\u0000b\"]}".to_vec(), 400, "control"),
        (
            "content too large",
            format!(r#"{{"agent_id":"a","content":"{}"}}"#, "x".repeat(2000)).into_bytes(),
            413,
            "content is 2000 bytes",
        ),
        (
            "body too large",
            format!(r#"{{"agent_id":"a","content":"{}"}}"#, "x".repeat(100_000)).into_bytes(),
            413,
            "LOCI_MAX_BODY_SIZE",
        ),
    ];
    for (name, body, status, needle) in cases {
        let (s, v) = c.raw(reqwest::Method::POST, "/v1/memory/store", Some("application/json"), body).await;
        assert_eq!(s, status, "{name}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{name}: message {msg:?} lacks {needle:?}");
        assert!(v["code"].is_string(), "{name}: {v}");
    }
    let (s, v) = c.raw(reqwest::Method::POST, "/v1/memory/store", Some("text/plain"), b"hello".to_vec()).await;
    assert_eq!(s, 415, "{v}");
    // Nothing above was stored.
    let (s, _) = c.get("/v1/namespaces/a").await;
    assert_eq!(s, 404);
    // Vectors: the namespace dimension is fixed.
    let (s, v) = c.post("/v1/memory/store", &json!({"agent_id": "vec", "content": "x", "embedding": [0.1, 0.2]})).await;
    assert_eq!(s, 400);
    assert_eq!(v["code"], "DIMENSION_MISMATCH");
    let (s, v) = c.post("/v1/memory/recall", &json!({"agent_id": "vec", "query": "x", "top_k": 0})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = c.post("/v1/memory/recall", &json!({"agent_id": "vec", "query": "x", "routing": "psychic"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = c.get("/v1/no/such/route").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("ROUTE_NOT_FOUND")));
    let (s, v) = c.request(reqwest::Method::PATCH, "/v1/memory/store", None).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")));
}

#[tokio::test]
async fn content_is_data_and_returned_byte_for_byte() {
    let node = TestNode::start().await;
    let c = &node.client;
    for content in [
        "'; DROP TABLE memories; --",
        "<script>alert(1)</script>",
        "émoji 🧠 \u{200b} \"quoted\" \\ back",
        "line1\r\nline2\ttab",
    ] {
        let (s, v) = c.post("/v1/memory/store", &json!({"agent_id": "data", "content": content})).await;
        assert_eq!(s, 200, "{v}");
        let id = v["memory"]["id"].as_str().unwrap();
        let (_, m) = c.get(&format!("/v1/memory/get/{id}?agent_id=data")).await;
        assert_eq!(m["content"], content);
    }
}

#[tokio::test]
async fn sessions_and_agents() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c.post("/v1/sessions/start", &json!({"agent_id": "sam", "metadata": {"type": "test"}})).await;
    assert_eq!(s, 200, "{v}");
    let sid = v["session"]["id"].as_str().unwrap().to_string();
    for i in 0..3 {
        let (s, _) = c
            .post("/v1/memory/store", &json!({"agent_id": "sam", "content": format!("turn {i}"), "session_id": sid}))
            .await;
        assert_eq!(s, 200);
    }
    c.store("sam", "outside the session").await;
    // A session id that was never started is accepted on store.
    let (s, _) =
        c.post("/v1/memory/store", &json!({"agent_id": "sam", "content": "x", "session_id": "urn:chat:42"})).await;
    assert_eq!(s, 200);
    let (s, v) = c.get(&format!("/v1/sessions/{sid}/memories")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 3);
    assert_eq!(v["memories"][0]["content"], "turn 0");
    let (_, v) = c.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(v["memory_count"], 3);
    assert!(v.get("ended_at").is_none());
    let (_, v) = c.get("/v1/sessions?agent_id=sam").await;
    assert_eq!(v["total"], 1);
    let (s, v) = c.post(&format!("/v1/sessions/{sid}/end"), &json!({"summary": "three turns"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["session"]["ended_at"].is_u64());
    assert_eq!(v["memory_count"], 3);
    let (_, v) = c.get("/v1/sessions?agent_id=sam&active_only=true").await;
    assert_eq!(v["total"], 0);
    let (s, _) = c.get("/v1/sessions/sess_nope").await;
    assert_eq!(s, 404);
    // Agents.
    let (_, v) = c.get("/v1/agents").await;
    let sam = v.as_array().unwrap().iter().find(|a| a["agent_id"] == "sam").unwrap().clone();
    assert_eq!(sam["memory_count"], 5);
    assert_eq!(sam["session_count"], 1);
    let (_, v) = c.get("/v1/agents/sam/stats").await;
    assert_eq!(v["total_memories"], 5);
    assert_eq!(v["memories_by_type"]["episodic"], 5);
    let (_, v) = c.get("/v1/agents/sam/memories?limit=2").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = c.get("/v1/agents/sam/sessions").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = c.get("/v1/agents/nobody/stats").await;
    assert_eq!(v["total_memories"], 0);
}

#[tokio::test]
async fn namespaces_and_policies() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "docs", "dimension": 8, "distance": "cosine"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["namespace"], "docs");
    assert_eq!(v["dimension"], 8);
    assert!(v.get("name").is_none() && v.get("dimensions").is_none(), "one spelling each: {v}");
    let (s, v) = c.put("/v1/namespaces/docs", &json!({"dimension": 8})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["created"], false);
    let (s, _) = c.put("/v1/namespaces/docs", &json!({"dimension": 16})).await;
    assert_eq!(s, 409);
    // No dimension: the node's default embedder and dimension (the seeds create namespaces so).
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "nodim"})).await;
    assert_eq!((s, v["dimension"].as_u64()), (201, Some(384)), "{v}");
    let (s, _) = c.post("/v1/namespaces", &json!({"name": "Bad_Name", "dimension": 8})).await;
    assert_eq!(s, 400);
    // Memories in a data namespace with client vectors of its dimension.
    let (s, v) = c
        .post("/v1/memory/store", &json!({"namespace": "docs", "agent_id": "writer", "content": "doc one", "embedding": [1, 0, 0, 0, 0, 0, 0, 0]}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .post(
            "/v1/memory/recall",
            &json!({"namespace": "docs", "query": "", "embedding": [0.9, 0.1, 0, 0, 0, 0, 0, 0], "routing": "vector"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["memories"][0]["memory"]["content"], "doc one");
    // Listing with kinds; the agent-namespace alias resolves to the same namespace.
    c.store("agent-x", "hello").await;
    let (_, v) = c.get("/v1/namespaces").await;
    assert_eq!(v["kinds"]["docs"], "data");
    assert_eq!(v["kinds"]["agent-x"], "agent");
    let (s, v) = c.get("/v1/namespaces/_dakera_agent_agent-x").await;
    assert_eq!(s, 200);
    assert_eq!(v["namespace"], "agent-x");
    assert_eq!(v["memory_count"], 1);
    let (s, v) = c.get("/v1/namespaces/missing").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("NAMESPACE_NOT_FOUND")));
    // Policy defaults, partial update.
    let (s, v) = c.get("/v1/namespaces/docs/memory_policy").await;
    assert_eq!(s, 200);
    assert_eq!(v["working_ttl_seconds"], 14400);
    assert_eq!(v["consolidation_threshold"], 0.92);
    let (s, v) =
        c.put("/v1/namespaces/docs/memory_policy", &json!({"dedup_on_store": true, "episodic_ttl_seconds": 60})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dedup_on_store"], true);
    assert_eq!(v["episodic_ttl_seconds"], 60);
    assert_eq!(v["working_ttl_seconds"], 14400);
    let (s, _) = c.put("/v1/namespaces/docs/memory_policy", &json!({"no_such_field": 1})).await;
    assert_eq!(s, 400);
    // Delete returns a receipt and the namespace is gone.
    let (s, v) = c.delete("/v1/namespaces/docs").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["namespace"], "docs");
    assert_eq!(v["memories_deleted"], 1);
    assert_eq!(v["data_key_destroyed"], true);
    let (s, _) = c.get("/v1/namespaces/docs").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn meta_endpoints() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c.get("/health").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("healthy")));
    let (s, v) = c.get("/health/ready").await;
    assert_eq!((s, v["ready"].as_bool()), (200, Some(true)));
    assert_eq!(c.get("/health/live").await.0, 200);
    let (s, v) = c.get("/v1/auth/whoami").await;
    assert_eq!(s, 200);
    assert_eq!(v["scope"], "super_admin");
    assert_eq!(v["grants_version"], 1);
    let (s, v) = c.get("/v1/capabilities").await;
    assert_eq!(s, 200);
    assert!(v["distance_metrics"].is_array());
    c.store("m", "metrics please").await;
    let (s, v) = c.get("/metrics").await;
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    assert!(text.contains("loci_http_requests_total"), "{text}");
    assert!(text.contains("loci_raft_applied_index"));
}

#[tokio::test]
async fn restart_keeps_data_and_never_reinitialises() {
    let node = TestNode::start().await;
    let id = node.client.store("persist", "this survives a restart").await;
    let (_, h1) = node.client.get("/health").await;
    let cluster1 = node.handle.as_ref().unwrap().core.catalogue.view.read().cluster_id.clone();
    let node = node.restart().await;
    let (_, h2) = node.client.get("/health").await;
    assert_eq!(h1["node_id"], h2["node_id"]);
    let cluster2 = node.handle.as_ref().unwrap().core.catalogue.view.read().cluster_id.clone();
    assert_eq!(cluster1, cluster2, "the catalogue was re-initialised");
    assert!(cluster1.is_some());
    let (s, v) = node.client.get(&format!("/v1/memory/get/{id}?agent_id=persist")).await;
    assert_eq!(s, 200);
    assert_eq!(v["content"], "this survives a restart");
    assert_eq!(node.client.recall_ids("persist", "survives restart", 1).await, vec![id]);
}

#[tokio::test]
async fn wrong_encryption_key_refuses_to_start_and_touches_nothing() {
    let node = TestNode::start().await;
    node.client.store("k", "sealed under the first key").await;
    let dir = node.stop().await;
    let snapshot = |p: &std::path::Path| {
        let mut files = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot(dir.path());
    let mut args = loci_tests::serve_args(dir.path());
    args.encryption_key = Some("0".repeat(64));
    let err = match loci_node::start(args).await {
        Ok(_) => panic!("started with the wrong key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("encryption key"), "{err}");
    assert_eq!(before, snapshot(dir.path()), "files changed");
    // The right key still works.
    let node = TestNode::start_in(dir, |_| {}).await;
    let (_, v) = node.client.post("/v1/memories/recall/batch", &json!({"agent_id": "k", "filter": {}})).await;
    assert_eq!(v["memories"][0]["content"], "sealed under the first key");
}

#[tokio::test]
async fn agentless_get_searches_readable_namespaces() {
    let node = TestNode::start().await;
    let c: &Client = &node.client;
    let id = c.store("one", "only in one").await;
    let (s, v) = c.get(&format!("/v1/memory/get/{id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["agent_id"], "one");
    let (s, _) = c.get("/v1/memory/get/mem_doesnotexist").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn star_query_recalls_every_memory_of_the_agent_newest_first() {
    let node = TestNode::start().await;
    let c = &node.client;
    // The seed's GDPR deletion: an agent namespace ("user-u1"), recalled with `*` and top_k 1000.
    let n = 640;
    let batch = |ns: Option<&str>, agent: &str, count: usize, word: &str| {
        let memories: Vec<Value> = (0..count)
            .map(|i| json!({"content": format!("{word} memory number {i}"), "importance": (i % 10) as f64 / 10.0}))
            .collect();
        let mut body = json!({"agent_id": agent, "memories": memories});
        if let Some(ns) = ns {
            body["namespace"] = json!(ns);
        }
        body
    };
    let mut mine = Vec::new();
    for _ in 0..2 {
        let (s, v) = c.post("/v1/memories/store/batch", &batch(None, "user-u1", n / 2, "private")).await;
        assert_eq!(s, 200, "{v}");
        mine.extend(ids_of(&v["stored"]));
    }
    assert_eq!(mine.len(), n);
    // Another agent's namespace, and another agent inside a shared namespace.
    let (s, v) = c.post("/v1/memories/store/batch", &batch(None, "user-u2", 30, "private")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c.post("/v1/memories/store/batch", &batch(Some("shared"), "user-u1", 20, "shared")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c.post("/v1/memories/store/batch", &batch(Some("shared"), "user-u2", 25, "shared")).await;
    assert_eq!(s, 200, "{v}");

    let (s, v) = c.post("/v1/memory/recall", &json!({"agent_id": "user-u1", "query": "*", "top_k": 1000})).await;
    assert_eq!(s, 200, "{v}");
    let hits = v["memories"].as_array().expect("memories").clone();
    let got = ids_of(&v["memories"]);
    assert_eq!(got.len(), n, "every memory of the agent, once");
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    let mut expected = mine.clone();
    expected.sort();
    assert_eq!(sorted, expected, "exactly the agent's memories");
    assert!(hits.iter().all(|h| h["memory"]["agent_id"] == "user-u1" && h["memory"]["namespace"] == "user-u1"));
    // Newest first, ties (same second) by importance.
    for w in hits.windows(2) {
        let (a, b) = (&w[0]["memory"], &w[1]["memory"]);
        let (ta, tb) = (a["created_at"].as_u64().expect("time"), b["created_at"].as_u64().expect("time"));
        assert!(ta >= tb, "not newest first: {a} before {b}");
        if ta == tb {
            assert!(a["importance"].as_f64() >= b["importance"].as_f64(), "tie not by importance: {a} before {b}");
        }
    }
    // Scores are defined: relevance (`score`) 1; `weighted_score` the importance and recency
    // weighting of 1 (the default); no vector or text score.
    for h in &hits {
        assert_eq!(h["score"], 1.0, "{h}");
        let importance = h["memory"]["importance"].as_f64().expect("importance");
        let weighted = h["weighted_score"].as_f64().expect("weighted");
        // Fresh memories: the recency factor is 1 to within a few seconds' decay.
        assert!((weighted - (0.75 + 0.25 * importance)).abs() < 1e-3, "{h}");
        assert!(h.get("vector_score").is_none() && h.get("text_score").is_none(), "{h}");
    }

    // Filters still apply, top_k still caps, and a shared namespace's agent filter holds.
    let (_, v) = c
        .post(
            "/v1/memory/recall",
            &json!({"agent_id": "user-u1", "query": " * ", "top_k": 1000, "min_importance": 0.9}),
        )
        .await;
    assert_eq!(ids_of(&v["memories"]).len(), n / 10);
    let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "user-u1", "query": "*", "top_k": 7})).await;
    assert_eq!(ids_of(&v["memories"]), got[..7].to_vec());
    let (_, v) = c
        .post("/v1/memory/recall", &json!({"namespace": "shared", "agent_id": "user-u1", "query": "*", "top_k": 1000}))
        .await;
    let shared = v["memories"].as_array().expect("memories");
    assert_eq!(shared.len(), 20, "{v}");
    assert!(shared.iter().all(|h| h["memory"]["agent_id"] == "user-u1" && h["memory"]["namespace"] == "shared"));

    // The seed then forgets them all: nothing of the agent is left, the others are untouched.
    let (s, v) = c.post("/v1/memory/forget", &json!({"agent_id": "user-u1", "memory_ids": got})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted_count"], n as u64);
    let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "user-u1", "query": "*", "top_k": 1000})).await;
    assert!(ids_of(&v["memories"]).is_empty(), "{v}");
    let (_, v) = c.post("/v1/memory/recall", &json!({"agent_id": "user-u2", "query": "*", "top_k": 1000})).await;
    assert_eq!(ids_of(&v["memories"]).len(), 30);
}
