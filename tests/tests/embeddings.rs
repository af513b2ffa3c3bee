//! The built-in learned embedder (all-MiniLM-L6-v2 on candle) against an independent
//! implementation, its retrieval quality against the fallbacks, and the other providers.
//! The model is fetched by `make test` (`loci model fetch`) into a cache outside the work tree.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loci_storage::embed::Embedder;
use loci_tests::{TestNode, ids_of};
use serde_json::{Value, json};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("LOCI_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/loci-models/all-MiniLM-L6-v2"));
    assert!(
        loci_storage::minilm::verify_dir(&dir).is_ok(),
        "all-MiniLM-L6-v2 is not in {} — `make test` fetches it (make model)",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_an_independent_numpy_forward_pass() {
    let m = loci_storage::minilm::MiniLm::load(&model_dir()).unwrap();
    let golden = fixture("minilm_golden.json");
    let sentences = golden["sentences"].as_array().unwrap();
    assert!(sentences.len() >= 20);
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    // Batched (padding) and one at a time must both agree with the reference.
    let batched = m.embed(&texts).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let want: Vec<f32> = s["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(batched[i].len(), 384);
        let single = m.embed(&[texts[i]]).unwrap().remove(0);
        for (label, got) in [("batched", &batched[i]), ("single", &single)] {
            let c = cos(got, &want);
            assert!(c >= 0.999, "{label} {:?}: cosine {c}", texts[i]);
        }
        let norm: f32 = batched[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn a_burst_beyond_the_queue_is_refused_not_buffered() {
    let mut m = loci_storage::minilm::MiniLm::load_unshared(&model_dir()).unwrap();
    m.set_limits(1, 40);
    let m = Arc::new(m);
    let texts: Vec<String> = (0..32).map(|i| format!("sentence number {i} about queues")).collect();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let m = m.clone();
        let texts = texts.clone();
        handles.push(std::thread::spawn(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            m.embed(&refs)
        }));
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let overloaded = results.iter().filter(|r| matches!(r, Err(loci_storage::StorageError::Overloaded(_)))).count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded >= 1, "nothing was refused");
    assert!(ok >= 1, "everything was refused");
    assert_eq!(ok + overloaded, 6);
}

async fn store_all(c: &loci_tests::Client, ns: &str, texts: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in texts.chunks(100) {
        let items: Vec<Value> = chunk.iter().map(|t| json!({"content": t})).collect();
        let (s, v) =
            c.post("/v1/memories/store/batch", &json!({"namespace": ns, "agent_id": "agent", "memories": items})).await;
        assert_eq!(s, 200, "{v}");
        ids.extend(v["stored"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()));
    }
    ids
}

async fn recall_at_5(
    c: &loci_tests::Client,
    ns: &str,
    routing: &str,
    pairs: &[(String, String)],
    id_of: &std::collections::HashMap<String, String>,
) -> f64 {
    let mut hits = 0;
    for (q, m) in pairs {
        let (s, v) = c
            .post(
                "/v1/memory/recall",
                &json!({"namespace": ns, "agent_id": "agent", "query": q, "top_k": 5, "routing": routing}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        if ids_of(&v["memories"]).contains(&id_of[m]) {
            hits += 1;
        }
    }
    hits as f64 / pairs.len() as f64
}

#[tokio::test]
async fn hybrid_recall_with_minilm_beats_keywords_and_the_hash_fallback() {
    let dir = model_dir();
    let node = TestNode::start_with(move |a| {
        a.embedding_model_dir = Some(dir);
        a.embedding_provider = "auto".into();
    })
    .await;
    let c = &node.client;
    let (_, h) = c.get("/health").await;
    assert_eq!(h["embedder"], "builtin-minilm");
    let set = fixture("retrieval_pairs.json");
    let pairs: Vec<(String, String)> = set["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["query"].as_str().unwrap().to_string(), p["memory"].as_str().unwrap().to_string()))
        .collect();
    assert!(pairs.len() >= 200);
    let mut corpus: Vec<String> = pairs.iter().map(|(_, m)| m.clone()).collect();
    corpus.extend(set["distractors"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()));
    // One namespace on the built-in model, one on the hash fallback.
    assert_eq!(
        c.post("/v1/namespaces", &json!({"name": "quality-minilm", "embedding": {"provider": "builtin-minilm"}}))
            .await
            .0,
        201
    );
    assert_eq!(
        c.post("/v1/namespaces", &json!({"name": "quality-hash", "dimension": 384, "embedding": {"provider": "hash"}}))
            .await
            .0,
        201
    );
    let mut ids = std::collections::HashMap::new();
    for ns in ["quality-minilm", "quality-hash"] {
        let stored = store_all(c, ns, &corpus).await;
        for (text, id) in corpus.iter().zip(stored) {
            ids.entry(ns.to_string()).or_insert_with(std::collections::HashMap::new).insert(text.clone(), id);
        }
    }
    let hybrid = recall_at_5(c, "quality-minilm", "hybrid", &pairs, &ids["quality-minilm"]).await;
    let vector = recall_at_5(c, "quality-minilm", "vector", &pairs, &ids["quality-minilm"]).await;
    let bm25 = recall_at_5(c, "quality-minilm", "bm25", &pairs, &ids["quality-minilm"]).await;
    let hash = recall_at_5(c, "quality-hash", "hybrid", &pairs, &ids["quality-hash"]).await;
    let hash_vec = recall_at_5(c, "quality-hash", "vector", &pairs, &ids["quality-hash"]).await;
    println!(
        "recall@5 over {} pairs, {} memories: hybrid(minilm) {hybrid:.3}  vector(minilm) {vector:.3}  bm25 {bm25:.3}  hash(hybrid) {hash:.3}  hash(vector) {hash_vec:.3}",
        pairs.len(),
        corpus.len()
    );
    assert!(hybrid >= bm25 + 0.2, "hybrid {hybrid:.3} vs bm25 {bm25:.3}");
    assert!(hybrid >= hash + 0.2, "hybrid {hybrid:.3} vs hash {hash:.3}");
    assert!(hybrid >= 0.8, "hybrid recall@5 {hybrid:.3}");
}

#[tokio::test]
async fn providers_are_chosen_per_namespace_and_fixed() {
    // A stand-in OpenAI-compatible server: deterministic 8-dimension vectors; "fail" fails.
    let app = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            let inputs: Vec<String> =
                body["input"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            if inputs.iter().any(|i| i.contains("fail")) {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "boom"})));
            }
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut v = vec![0.0f32; 8];
                    for (k, b) in t.bytes().enumerate() {
                        v[(b as usize + k) % 8] += 1.0;
                    }
                    json!({"index": i, "embedding": v})
                })
                .collect();
            (axum::http::StatusCode::OK, axum::Json(json!({"data": data, "model": body["model"]})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = model_dir();
    let node = TestNode::start_with(move |a| {
        a.embedding_model_dir = Some(dir);
        a.embedding_provider = "auto".into();
        a.openai_embeddings_url = Some(url);
    })
    .await;
    let c = &node.client;
    // Agent namespaces get the node default (the built-in model here).
    c.store("agent-default", "hello there").await;
    let (_, v) = c.get("/v1/namespaces/agent-default").await;
    assert_eq!(v["embedding"], json!({"provider": "builtin-minilm", "dimension": 384}));
    // A data namespace asking for another dimension gets the documented hash embedder.
    let (_, v) = c.post("/v1/namespaces", &json!({"name": "wide", "dimension": 1024})).await;
    assert_eq!(v["dimension"], 1024);
    let (_, v) = c.get("/v1/namespaces/wide").await;
    assert_eq!(v["embedding"]["provider"], "hash");
    // openai-compatible.
    let (s, v) = c
        .post(
            "/v1/namespaces",
            &json!({"name": "remote", "embedding": {"provider": "openai-compatible", "dimension": 8}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .post("/v1/memory/store", &json!({"namespace": "remote", "agent_id": "a", "content": "abc remote text"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .post("/v1/memory/store", &json!({"namespace": "remote", "agent_id": "a", "content": "please fail now"}))
        .await;
    assert_eq!(s, 502, "{v}");
    let (s, v) = c
        .post(
            "/v1/memory/recall",
            &json!({"namespace": "remote", "agent_id": "a", "query": "abc remote", "routing": "vector"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["memories"][0]["memory"]["content"], "abc remote text");
    // client: vectors must come with the request.
    assert_eq!(
        c.post(
            "/v1/namespaces",
            &json!({"name": "bring-your-own", "embedding": {"provider": "client", "dimension": 3}})
        )
        .await
        .0,
        201
    );
    let (s, v) = c
        .post("/v1/memory/store", &json!({"namespace": "bring-your-own", "agent_id": "a", "content": "no vector"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("client-supplied"));
    let (s, _) = c
        .post(
            "/v1/memory/store",
            &json!({"namespace": "bring-your-own", "agent_id": "a", "content": "x", "embedding": [1, 0, 0]}),
        )
        .await;
    assert_eq!(s, 200);
    // Fixed at creation: asking for another embedder on an existing namespace is refused.
    let (s, _) = c.put("/v1/namespaces/remote", &json!({"dimension": 8, "embedding": {"provider": "hash"}})).await;
    assert_eq!(s, 409);
    let (s, _) = c
        .post(
            "/v1/namespaces",
            &json!({"name": "bad-dim", "embedding": {"provider": "builtin-minilm", "dimension": 100}}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = c
        .post("/v1/namespaces", &json!({"name": "bad-provider", "dimension": 8, "embedding": {"provider": "magic"}}))
        .await;
    assert_eq!(s, 400);
    let _ = Duration::from_secs(0);
}

async fn wait_for_job(c: &loci_tests::Client, ns: &str) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let done = loci_tests::eventually(Duration::from_secs(180), || async {
        let (s, v) = c.get(&format!("/v1/namespaces/{ns}/reembed")).await;
        let finished = s == 200 && v["job"]["state"] != "running";
        *last.lock().unwrap() = v;
        finished
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(done, "the re-embedding job did not finish: {last}");
    last
}

/// Switching a namespace from the hash fallback to the built-in model: a background job with
/// progress, writes during the job included, recall by meaning afterwards (and after a
/// restart), and the refusals around it.
#[tokio::test]
async fn a_namespace_is_re_embedded_in_the_background_and_recalls_by_meaning() {
    let dir = model_dir();
    let node = TestNode::start_with(move |a| {
        a.embedding_model_dir = Some(dir);
        a.embedding_provider = "auto".into();
    })
    .await;
    let c = node.client.clone();
    let set = fixture("retrieval_pairs.json");
    let pairs: Vec<(String, String)> = set["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .take(120)
        .map(|p| (p["query"].as_str().unwrap().to_string(), p["memory"].as_str().unwrap().to_string()))
        .collect();
    let (early, late) = pairs.split_at(100);
    let ns = "switch-me";
    let (s, v) =
        c.post("/v1/namespaces", &json!({"name": ns, "embedding": {"provider": "hash", "dimension": 64}})).await;
    assert_eq!(s, 201, "{v}");
    let texts: Vec<String> = early.iter().map(|(_, m)| m.clone()).collect();
    let mut id_of: std::collections::HashMap<String, String> =
        texts.iter().cloned().zip(store_all(&c, ns, &texts).await).collect();
    let before = recall_at_5(&c, ns, "vector", early, &id_of).await;

    // Refusals: same embedder, client vectors, and a plain change of embedder on the namespace.
    let (s, _) = c
        .post(&format!("/v1/namespaces/{ns}/reembed"), &json!({"embedding": {"provider": "hash", "dimension": 64}}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = c
        .post(&format!("/v1/namespaces/{ns}/reembed"), &json!({"embedding": {"provider": "client", "dimension": 3}}))
        .await;
    assert_eq!(s, 400);
    let (s, v) = c.put(&format!("/v1/namespaces/{ns}"), &json!({"embedding": {"provider": "builtin-minilm"}})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("reembed") || v.to_string().contains("reembed"), "{v}");

    let (s, v) =
        c.post(&format!("/v1/namespaces/{ns}/reembed"), &json!({"embedding": {"provider": "builtin-minilm"}})).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["job"]["state"], "running");
    assert_eq!(v["job"]["total"], 100);
    assert_eq!(v["job"]["target"]["dimension"], 384);
    // A second job while one runs is refused.
    let (s, _) =
        c.post(&format!("/v1/namespaces/{ns}/reembed"), &json!({"embedding": {"provider": "builtin-minilm"}})).await;
    assert!(s == 409 || s == 400, "a concurrent job was accepted: {s}");
    // Writes go on during the job: they are embedded with the new model at the switch.
    let late_texts: Vec<String> = late.iter().map(|(_, m)| m.clone()).collect();
    id_of.extend(late_texts.iter().cloned().zip(store_all(&c, ns, &late_texts).await));

    let job = wait_for_job(&c, ns).await;
    assert_eq!(job["job"]["state"], "completed", "{job}");
    assert_eq!(job["job"]["progress"], 1.0);
    assert!(job["job"]["done"].as_u64().unwrap() >= 100);
    assert_eq!(job["embedding"]["provider"], "builtin-minilm");
    assert_eq!(job["embedding"]["dimension"], 384);
    let (_, info) = c.get(&format!("/v1/namespaces/{ns}")).await;
    assert_eq!(info["dimension"], 384);
    assert_eq!(info["vector_count"], 120);

    let after = recall_at_5(&c, ns, "vector", &pairs, &id_of).await;
    let late_after = recall_at_5(&c, ns, "vector", late, &id_of).await;
    println!(
        "re-embedding hash(64) -> builtin-minilm: vector recall@5 {before:.3} -> {after:.3} (written during the job: {late_after:.3})"
    );
    assert!(after >= before + 0.3, "recall did not improve: {before} -> {after}");
    assert!(late_after >= 0.8, "memories written during the job were not re-embedded: {late_after}");

    // Restarted without the model files: reads still work, only embedding is refused.
    let data = node.stop().await;
    let node = TestNode::start_in(data, |a| a.embedding_provider = "hash".into()).await;
    let (s, v) = node
        .client
        .post("/v1/memories/recall/batch", &json!({"namespace": ns, "agent_id": "agent", "filter": {}, "limit": 500}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["memories"].as_array().unwrap().len(), 120);
    let (s, _) =
        node.client.post("/v1/memory/recall", &json!({"namespace": ns, "agent_id": "agent", "query": "x"})).await;
    assert_eq!(s, 503);
    // The switch survives a restart (the generation and the vectors are on disk).
    let data = node.stop().await;
    let dir = model_dir();
    let node = TestNode::start_in(data, move |a| {
        a.embedding_model_dir = Some(dir);
        a.embedding_provider = "auto".into();
    })
    .await;
    let c = node.client.clone();
    let again = recall_at_5(&c, ns, "vector", &pairs, &id_of).await;
    assert!((again - after).abs() < 1e-9, "recall changed across a restart: {after} -> {again}");
}

/// Decay and graph expansion on the multi-session set (`tests/fixtures/multi_session.json`),
/// with the built-in model: facts that changed between sessions (is the update ranked above the
/// stale fact?) and two-hop questions (is the answer among the hits, or among the hits and the
/// memories the graph associates with them?). The figures are in docs/recall.md.
#[tokio::test]
async fn decay_and_graph_expansion_on_the_multi_session_set() {
    let dir = model_dir();
    let node = TestNode::start_with(move |a| {
        a.embedding_model_dir = Some(dir);
        a.embedding_provider = "auto".into();
    })
    .await;
    let c = &node.client;
    let set = fixture("multi_session.json");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let month_ago = now - 30 * 86_400;
    let mut lines = Vec::new();
    let line = |id: String, content: &str, created_at: u64| {
        json!({"id": id, "agent_id": "agent", "content": content, "importance": 0.5, "created_at": created_at})
            .to_string()
    };
    let updated = set["updated"].as_array().unwrap();
    for (i, u) in updated.iter().enumerate() {
        lines.push(line(format!("old_{i}"), u["old"].as_str().unwrap(), month_ago));
        lines.push(line(format!("new_{i}"), u["new"].as_str().unwrap(), now));
    }
    let two_hop = set["two_hop"].as_array().unwrap();
    for (i, t) in two_hop.iter().enumerate() {
        lines.push(line(format!("first_{i}"), t["first"].as_str().unwrap(), month_ago));
        lines.push(line(format!("second_{i}"), t["second"].as_str().unwrap(), month_ago));
    }
    for (i, d) in set["distractors"].as_array().unwrap().iter().enumerate() {
        lines.push(line(format!("noise_{i}"), d.as_str().unwrap(), month_ago));
    }
    assert_eq!(
        c.post("/v1/namespaces", &json!({"name": "sessions", "embedding": {"provider": "builtin-minilm"}})).await.0,
        201
    );
    let (s, v) = c
        .raw(
            reqwest::Method::POST,
            "/v1/import?namespace=sessions",
            Some("application/x-ndjson"),
            (lines.join("\n") + "\n").into_bytes(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["imported_count"].as_u64(), Some(lines.len() as u64), "{v}");

    // Updated facts: search (it records no access, so asking does not reset the clock).
    let updates = || async {
        let (mut first, mut top5) = (0usize, 0usize);
        for (i, u) in updated.iter().enumerate() {
            let (s, v) = c
                .post("/v1/memory/search", &json!({"namespace": "sessions", "query": u["question"], "top_k": 5}))
                .await;
            assert_eq!(s, 200, "{v}");
            let ids = ids_of(&v["memories"]);
            let new = format!("new_{i}");
            first += usize::from(ids.first() == Some(&new));
            top5 += usize::from(ids.contains(&new));
        }
        (first as f64 / updated.len() as f64, top5 as f64 / updated.len() as f64)
    };
    let (off_1, off_5) = updates().await;
    let (s, v) = c
        .put(
            "/v1/admin/decay/config",
            &json!({"strategy": "exponential", "half_life_hours": 168.0, "min_importance": 0.1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (on_1, on_5) = updates().await;
    let (s, _) = c.put("/v1/admin/decay/config", &json!({"enabled": false})).await;
    assert_eq!(s, 200);

    // Two-hop questions: the answer among the 5 hits, or among them and up to 5 associated.
    let (mut hits_only, mut expanded) = (0usize, 0usize);
    for (i, t) in two_hop.iter().enumerate() {
        let (s, v) = c
            .post(
                "/v1/memory/recall",
                &json!({"namespace": "sessions", "query": t["question"], "top_k": 5, "include_associated": true,
                    "associated_memories_cap": 5}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let want = format!("second_{i}");
        let hits = ids_of(&v["memories"]);
        let assoc = ids_of(&v["associated_memories"]);
        hits_only += usize::from(hits.contains(&want));
        expanded += usize::from(hits.contains(&want) || assoc.contains(&want));
    }
    let (h, e) = (hits_only as f64 / two_hop.len() as f64, expanded as f64 / two_hop.len() as f64);
    println!(
        "multi-session set ({} updated facts, {} two-hop questions, {} memories): updated fact first: decay off {off_1:.3}, on {on_1:.3}; \
         updated fact in top 5: off {off_5:.3}, on {on_5:.3}; two-hop answer in top 5: hits {h:.3}, hits + associated {e:.3}",
        updated.len(),
        two_hop.len(),
        lines.len()
    );
    assert!(on_1 >= off_1, "decay must not rank stale facts above their updates more often ({on_1:.3} < {off_1:.3})");
    assert!(e >= h, "expansion only adds");
}
