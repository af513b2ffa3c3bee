//! Entities off the write path (issue 16), through a real node whose extractor is an
//! OpenAI-compatible chat endpoint (a stand-in server on a free port): stores are acknowledged
//! while the extractor is held, progress and metrics show the queue, entities become graph
//! nodes of the exports and of a query by entity, and another tenant reaches none of it.

use std::sync::Arc;

use loci_tests::{Client, TestNode, create_key};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

async fn got(c: &Client, path: &str) -> Value {
    let (s, v) = c.get(path).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

async fn store_in(c: &Client, ns: &str, content: &str) -> String {
    let (s, v) = c.post("/v1/memory/store", &json!({"namespace": ns, "content": content})).await;
    assert_eq!(s, 200, "{v}");
    v["memory"]["id"].as_str().expect("id").to_string()
}

/// A chat-completions stand-in: every word starting with `zq` is an organisation; a text with
/// `boom` fails; each call waits for a permit of `gate`.
async fn stand_in(gate: Arc<Semaphore>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.expect("gate open").forget();
                let text = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
                if text.contains("boom") {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "boom"})));
                }
                let found: Vec<Value> = text
                    .split_whitespace()
                    .filter(|w| w.starts_with("zq"))
                    .map(|w| json!({"type": "organization", "text": w}))
                    .collect();
                let content = json!({ "entities": found }).to_string();
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"choices": [{"message": {"role": "assistant", "content": content}}]})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    url
}

/// The value of a node's metric line (first one named so; a counter never set reads 0).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_extractor_runs_off_the_write_path_and_its_entities_are_graph_nodes() {
    let gate = Arc::new(Semaphore::new(0));
    let url = stand_in(gate.clone()).await;
    let node = TestNode::start_with(move |a| {
        a.entity_extractor = "openai-compatible".into();
        a.openai_extractor_url = Some(url);
    })
    .await;
    let root = &node.client;

    // Both stores are acknowledged while the extractor has answered nothing.
    let m1 = store_in(root, "tenant-x", "met zqacme about the merger").await;
    let m2 = store_in(root, "tenant-x", "zqacme called back on Friday").await;
    let m3 = store_in(root, "tenant-x", "nothing to see here").await;
    let progress = got(root, "/v1/namespaces/tenant-x/extractor").await;
    assert_eq!(progress["provider"], "openai-compatible", "{progress}");
    assert_eq!(progress["pending"], 3, "{progress}");
    let (_, m) = root.get("/metrics").await;
    let m = m.as_str().expect("metrics text").to_string();
    assert_eq!(metric(&m, "loci_entity_extraction_queue_depth"), 3.0);
    assert_eq!(metric(&m, "loci_entity_extractions_total"), 0.0);

    gate.add_permits(1_000);
    // A query by entity waits for the namespace's queue, then finds both mentions.
    let q = got(root, "/v1/knowledge/query?namespace=tenant-x&entity=ZQACME").await;
    let mut ids: Vec<&str> = q["memory_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![m1.as_str(), m2.as_str()];
    want.sort();
    assert_eq!(ids, want, "{q}");
    assert!(!q.to_string().contains(&m3));
    assert_eq!(q["entities"][0]["entity_id"], "entity:org:zqacme", "{q}");
    assert_eq!(q["entities"][0]["mention_count"], 2);
    // Typed: an org query finds it, a person query does not, an unknown type is a 400.
    let q = got(root, "/v1/knowledge/query?namespace=tenant-x&entity=zqacme&entity_type=org").await;
    assert_eq!(q["node_count"], 2, "{q}");
    let q = got(root, "/v1/knowledge/query?namespace=tenant-x&entity=zqacme&entity_type=person").await;
    assert_eq!(q["node_count"], 0, "{q}");
    let (s, _) = root.get("/v1/knowledge/query?namespace=tenant-x&entity=zqacme&entity_type=planet").await;
    assert_eq!(s, 400);
    // The shared entity relates the two memories.
    let g = got(root, &format!("/v1/memories/{m1}/graph?depth=1&namespace=tenant-x")).await;
    assert!(
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["edge_type"] == "shares_entity" && (e["from_id"] == m2.as_str() || e["to_id"] == m2.as_str())),
        "{g}"
    );

    // Exports carry the entities as nodes: JSON lists them, GraphML has a node and `mentions` edges.
    let ex = got(root, "/v1/knowledge/export?namespace=tenant-x&format=json").await;
    assert_eq!(ex["entity_count"], 1, "{ex}");
    assert_eq!(ex["entities"][0]["value"], "zqacme");
    let (s, xml) = root.get("/v1/knowledge/export?namespace=tenant-x&format=graphml").await;
    assert_eq!(s, 200);
    let xml = xml.as_str().expect("xml").to_string();
    assert!(xml.contains("<node id=\"entity:org:zqacme\"><data key=\"kind\">entity</data></node>"), "{xml}");
    assert!(xml.contains(&format!("<edge source=\"{m1}\" target=\"entity:org:zqacme\"><data key=\"type\">mentions")));

    // Explicit extraction uses the node's extractor unless the rules are asked for.
    let (s, v) = root.post("/v1/memories/extract", &json!({"content": "ask zqglobex"})).await;
    assert_eq!((s, v["provider"].as_str()), (200, Some("openai-compatible")), "{v}");
    assert_eq!(v["entities"][0]["value"], "zqglobex");
    let (s, v) = root.post("/v1/memories/extract", &json!({"content": "ask zqglobex", "provider": "rules"})).await;
    assert_eq!((s, v["provider"].as_str()), (200, Some("rules")), "{v}");
    assert!(v["entities"].as_array().unwrap().is_empty(), "{v}");
    let (s, _) = root.post("/v1/memories/extract", &json!({"content": "x", "provider": "gliner-xl"})).await;
    assert_eq!(s, 400);
    let ents = got(root, &format!("/v1/memory/entities/{m2}?namespace=tenant-x")).await;
    assert_eq!(ents["entities"][0]["value"], "zqacme", "{ents}");

    // A failing extractor leaves the store acknowledged and is counted.
    store_in(root, "tenant-x", "boom zqfail").await;
    let q = got(root, "/v1/knowledge/query?namespace=tenant-x&entity=zqfail").await;
    assert_eq!(q["node_count"], 0, "{q}");
    let (_, m) = root.get("/metrics").await;
    let m = m.as_str().expect("metrics text").to_string();
    assert_eq!(metric(&m, "loci_entity_extraction_failures_total"), 1.0);
    assert_eq!(metric(&m, "loci_entity_extractions_total"), 3.0);
    assert_eq!(metric(&m, "loci_entity_extraction_queue_depth"), 0.0);

    // Another tenant's key: the query by entity and the progress are refused and name nothing.
    let (_, ky) =
        create_key(root, "/admin/keys", &json!({"name": "y", "scope": "write", "namespaces": ["tenant-y"]})).await;
    let ty = root.with_key(Some(&ky));
    store_in(root, "tenant-y", "zqacme is ours too").await;
    for path in ["/v1/knowledge/query?namespace=tenant-x&entity=zqacme", "/v1/namespaces/tenant-x/extractor"] {
        let (s, v) = ty.get(path).await;
        assert!(s == 403 || s == 404, "{path}: {s} {v}");
        assert!(!v.to_string().contains(&m1) && !v.to_string().contains("pending"), "{path}: {v}");
    }
    // Its own query by the same entity sees only its own memory.
    let q = got(&ty, "/v1/knowledge/query?namespace=tenant-y&entity=zqacme").await;
    assert_eq!(q["node_count"], 1, "{q}");
    assert!(!q.to_string().contains(&m1) && !q.to_string().contains(&m2), "{q}");
}
