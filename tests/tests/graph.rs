//! Memory that organises itself (issue 16), through the REST API of a real node: the knowledge
//! graph (links, traversal, paths, exports, similarity links, entities), deduplication and its
//! trash, consolidation, decay in ranking, feedback, truncation reports and the autopilot. Every
//! cross-tenant attempt is refused and shown to leave the other tenant's data as it was.

use loci_tests::{Client, TestNode, create_key, files_containing};
use serde_json::{Value, json};

async fn ok(c: &Client, path: &str, body: &Value) -> Value {
    let (s, v) = c.post(path, body).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

async fn got(c: &Client, path: &str) -> Value {
    let (s, v) = c.get(path).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

async fn store_in(c: &Client, ns: &str, content: &str) -> String {
    let v = ok(c, "/v1/memory/store", &json!({"namespace": ns, "content": content})).await;
    v["memory"]["id"].as_str().expect("id").to_string()
}

fn has_edge(edges: &Value, from: &str, to: &str) -> bool {
    edges.as_array().is_some_and(|a| a.iter().any(|e| e["from_id"] == from && e["to_id"] == to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_traverse_and_export_within_one_namespace_and_never_across() {
    let node = TestNode::start().await;
    let root = &node.client;
    let a1 = store_in(root, "tenant-a", "Anna lives in Berlin").await;
    let a2 = store_in(root, "tenant-a", "Anna works at Siemens in Munich").await;
    let a3 = store_in(root, "tenant-a", "The quarterly report is due on Friday").await;
    let b1 = store_in(root, "tenant-b", "Bob keeps the launch codes in a drawer").await;
    let (_, ka) =
        create_key(root, "/admin/keys", &json!({"name": "a", "scope": "write", "namespaces": ["tenant-a"]})).await;
    let (_, kb) =
        create_key(root, "/admin/keys", &json!({"name": "b", "scope": "write", "namespaces": ["tenant-b"]})).await;
    let (ta, tb) = (root.with_key(Some(&ka)), root.with_key(Some(&kb)));

    let link = ok(
        &ta,
        &format!("/v1/memories/{a1}/links"),
        &json!({"target_id": a2, "agent_id": "tenant-a", "label": "same person <x>"}),
    )
    .await;
    assert_eq!(
        (link["from_id"].as_str(), link["to_id"].as_str(), link["edge_type"].as_str()),
        (Some(a1.as_str()), Some(a2.as_str()), Some("linked_by"))
    );
    assert!(link.get("error").is_none());
    ok(
        &ta,
        &format!("/v1/memories/{a2}/links"),
        &json!({"target_id": a3, "agent_id": "tenant-a", "edge_type": "precedes"}),
    )
    .await;

    // Traversal by id alone (the clients send no agent): depth 1 reaches a2, depth 2 a3.
    let g1 = got(&ta, &format!("/v1/memories/{a1}/graph?depth=1")).await;
    assert_eq!(g1["root_id"], a1.as_str());
    let ids = |g: &Value| -> Vec<String> {
        g["nodes"].as_array().unwrap().iter().map(|n| n["memory_id"].as_str().unwrap().to_string()).collect()
    };
    assert!(ids(&g1).contains(&a2) && !ids(&g1).contains(&a3), "{g1}");
    let g2 = got(&ta, &format!("/v1/memories/{a1}/graph?depth=2")).await;
    assert!(ids(&g2).contains(&a3), "{g2}");
    assert!(has_edge(&g2["edges"], &a1, &a2));
    let (s, _) = ta.get(&format!("/v1/memories/{a1}/graph?depth=9")).await;
    assert_eq!(s, 400);

    let path = got(&ta, &format!("/v1/memories/{a1}/path?to={a3}")).await;
    assert_eq!(path["path"], json!([a1, a2, a3]));
    assert_eq!(path["hop_count"], 2);
    let kp = got(&ta, &format!("/v1/knowledge/path?agent_id=tenant-a&from={a3}&to={a1}")).await;
    assert_eq!(kp["path"], json!([a3, a2, a1]), "edges are followed both ways");

    let export = got(&ta, "/v1/agents/tenant-a/graph/export?format=json").await;
    assert_eq!(export["namespace"], "_dakera_agent_tenant-a");
    assert_eq!(export["edge_count"], 2);
    let kq = got(&ta, "/v1/knowledge/query?agent_id=tenant-a&edge_type=linked_by").await;
    assert!(has_edge(&kq["edges"], &a1, &a2));
    assert!(kq["edges"].as_array().unwrap().iter().all(|e| e["edge_type"] == "linked_by"));
    let (s, xml) = ta.get("/v1/knowledge/export?agent_id=tenant-a&format=graphml").await;
    assert_eq!(s, 200);
    let xml = xml.as_str().expect("xml text").to_string();
    assert!(xml.contains("<graphml") && xml.contains("same person &lt;x&gt;") && !xml.contains("<x>"), "{xml}");

    // Entities of a stored memory, found by id alone; extraction of a text stores nothing.
    let ents = got(&ta, &format!("/v1/memory/entities/{a2}")).await;
    assert_eq!(ents["memory_id"], a2.as_str());
    let values: Vec<&str> = ents["entities"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap()).collect();
    assert!(values.contains(&"Siemens") && values.contains(&"Munich"), "{ents}");
    assert_eq!(ents["count"], values.len());
    // Anna is in a1 and a2: a derived shares_entity edge relates them too.
    assert!(g1["edges"].as_array().unwrap().iter().any(|e| e["edge_type"] == "shares_entity"), "{g1}");
    let (s, _) =
        ta.put("/v1/namespaces/tenant-a/config", &json!({"extract_entities": false, "entity_types": []})).await;
    assert_eq!(s, 200);
    assert_eq!(got(&ta, &format!("/v1/memory/entities/{a2}")).await["count"], 0);
    let g = got(&ta, &format!("/v1/memories/{a1}/graph?depth=1")).await;
    assert!(g["edges"].as_array().unwrap().iter().all(|e| e["edge_type"] != "shares_entity"));
    let ex = ok(&ta, "/v1/memories/extract", &json!({"content": "Mail ops@example.org about the $300 invoice"})).await;
    let types: Vec<&str> =
        ex["entities"].as_array().unwrap().iter().map(|e| e["entity_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["email", "amount"]);
    let (s, _) = ta.post("/v1/memories/extract", &json!({"content": "x", "entity_types": ["planets"]})).await;
    assert_eq!(s, 400);

    // Recall over the graph: the hit's neighbours come as associated memories, never the hit.
    let r = ok(
        &ta,
        "/v1/memory/recall",
        &json!({"namespace": "tenant-a", "query": "quarterly report due Friday", "top_k": 1,
        "include_associated": true, "associated_memories_depth": 2}),
    )
    .await;
    assert_eq!(r["memories"][0]["memory"]["id"], a3.as_str(), "{r}");
    let assoc: Vec<(&str, u64)> = r["associated_memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["memory"]["id"].as_str().unwrap(), m["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(assoc, [(a2.as_str(), 1), (a1.as_str(), 2)], "{r}");
    let plain = ok(
        &ta,
        "/v1/memory/recall",
        &json!({"namespace": "tenant-a", "query": "quarterly report due Friday", "top_k": 1}),
    )
    .await;
    assert!(plain.get("associated_memories").is_none());
    let (s, _) = ta
        .post(
            "/v1/memory/recall",
            &json!({"namespace": "tenant-a", "query": "x", "include_associated": true, "associated_memories_depth": 4}),
        )
        .await;
    assert_eq!(s, 400);

    // Attacks. A link from tenant A to B's memory: not found, and nothing written anywhere.
    let before_a = got(root, &format!("/v1/memories/{a1}/graph?depth=5")).await;
    let before_b = got(root, &format!("/v1/memories/{b1}/graph?depth=5")).await;
    let (s, v) = ta.post(&format!("/v1/memories/{a1}/links"), &json!({"target_id": b1, "agent_id": "tenant-a"})).await;
    assert_eq!(s, 404, "{v}");
    assert!(!v.to_string().contains("launch codes"));
    // Naming B's namespace with A's key: refused by scope.
    let (s, _) = ta.post(&format!("/v1/memories/{b1}/links"), &json!({"target_id": a1, "agent_id": "tenant-b"})).await;
    assert_eq!(s, 403);
    // B reading A's graph, path, entities, export: nothing.
    for path in [
        format!("/v1/memories/{a1}/graph?depth=2"),
        format!("/v1/memories/{a1}/path?to={a2}"),
        format!("/v1/memory/entities/{a1}"),
    ] {
        let (s, v) = tb.get(&path).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert!(!v.to_string().contains("Berlin"), "{path}: {v}");
    }
    for path in [
        "/v1/agents/tenant-a/graph/export",
        "/v1/knowledge/query?agent_id=tenant-a",
        "/v1/knowledge/export?agent_id=tenant-a",
    ] {
        let (s, v) = tb.get(path).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert!(!v.to_string().contains(&a1), "{path}: {v}");
    }
    assert_eq!(got(root, &format!("/v1/memories/{a1}/graph?depth=5")).await, before_a);
    assert_eq!(got(root, &format!("/v1/memories/{b1}/graph?depth=5")).await, before_b);

    // Labels are encrypted at rest like memories.
    assert!(files_containing(node.path(), b"same person").is_empty(), "a link label is on disk in the clear");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_memories_are_linked_on_store_unless_the_namespace_says_not() {
    let node = TestNode::start().await;
    let c = &node.client;
    let a = store_in(c, "sim", "the user prefers dark roast coffee every single morning").await;
    let b = store_in(c, "sim", "the user prefers dark roast coffee every single morning today").await;
    let far = store_in(c, "sim", "quarterly revenue grew in the northern region").await;
    let g = got(c, &format!("/v1/memories/{b}/graph?depth=1&namespace=sim")).await;
    let related: Vec<&Value> =
        g["edges"].as_array().unwrap().iter().filter(|e| e["edge_type"] == "related_to").collect();
    assert_eq!(related.len(), 1, "{g}");
    assert!(related[0]["from_id"] == b.as_str() && related[0]["to_id"] == a.as_str());
    assert!(related[0]["weight"].as_f64().unwrap() >= 0.85);
    assert!(!g.to_string().contains(&far));

    let (s, v) = c.put("/v1/namespaces/sim/memory_policy", &json!({"graph_link_threshold": null})).await;
    assert_eq!(s, 200, "{v}");
    let d = store_in(c, "sim", "the user prefers dark roast coffee every single morning again").await;
    let g = got(c, &format!("/v1/memories/{d}/graph?depth=1&namespace=sim")).await;
    assert!(g["edges"].as_array().unwrap().iter().all(|e| e["edge_type"] != "related_to"), "{g}");
    let (s, _) = c.put("/v1/namespaces/sim/memory_policy", &json!({"graph_link_threshold": 1.5})).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicated_memories_go_to_a_trash_they_can_be_restored_from() {
    let node = TestNode::start().await;
    let c = &node.client;
    let keep = ok(
        c,
        "/v1/memory/store",
        &json!({"agent_id": "dd", "content": "Alice's flight to Paris leaves at 9am on Monday", "importance": 0.4}),
    )
    .await["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dup = ok(
        c,
        "/v1/memory/store",
        &json!({"agent_id": "dd", "content": "Alice's flight to Paris leaves at 9am on Monday.", "importance": 0.9}),
    )
    .await["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = c.store("dd", "The office plants need water twice a week").await;

    let dry = ok(c, "/v1/knowledge/deduplicate", &json!({"agent_id": "dd", "dry_run": true})).await;
    assert_eq!(dry["duplicates_found"], 1, "{dry}");
    assert_eq!(dry["duplicates_merged"], 0);
    // The survivor is the more important one.
    assert_eq!(dry["groups"][0]["canonical_id"], dup.as_str());
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 0, "a dry run moves nothing");

    // Another tenant cannot deduplicate, list or restore here.
    let (_, k) =
        create_key(c, "/admin/keys", &json!({"name": "x", "scope": "write", "namespaces": ["intruder"]})).await;
    let x = c.with_key(Some(&k));
    let (s, _) = x.post("/v1/knowledge/deduplicate", &json!({"agent_id": "dd", "dry_run": false})).await;
    assert_eq!(s, 403);

    let real = ok(c, "/v1/knowledge/deduplicate", &json!({"agent_id": "dd", "dry_run": false})).await;
    assert_eq!(real["duplicates_merged"], 1, "{real}");
    let recalled = c.recall_ids("dd", "flight to Paris", 10).await;
    assert!(recalled.contains(&dup) && !recalled.contains(&keep), "{recalled:?}");
    assert!(c.recall_ids("dd", "plants", 10).await.contains(&other));
    let trash = got(c, "/v1/memory/deduplicated?agent_id=dd").await;
    assert_eq!(trash["count"], 1);
    assert_eq!(trash["memories"][0]["id"], keep.as_str());
    assert_eq!(trash["memories"][0]["kind"], "deduplication");
    assert_eq!(trash["memories"][0]["survivor_id"], dup.as_str());
    assert!(trash["memories"][0]["restorable_until"].as_u64() > trash["memories"][0]["deleted_at"].as_u64());
    let (s, v) = x.get("/v1/memory/deduplicated?agent_id=dd").await;
    assert_eq!(s, 403);
    assert!(!v.to_string().contains("Paris"));
    let (s, _) =
        x.request(reqwest::Method::POST, &format!("/v1/memory/deduplicated/{keep}/restore?agent_id=dd"), None).await;
    assert_eq!(s, 403);

    // Restored (no body, as the clients send it): recalled again.
    let (s, m) =
        c.request(reqwest::Method::POST, &format!("/v1/memory/deduplicated/{keep}/restore?agent_id=dd"), None).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["id"], keep.as_str());
    assert_eq!(m["content"], "Alice's flight to Paris leaves at 9am on Monday");
    assert!(c.recall_ids("dd", "flight to Paris", 10).await.contains(&keep));
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 0);
    let (s, _) =
        c.request(reqwest::Method::POST, &format!("/v1/memory/deduplicated/{keep}/restore?agent_id=dd"), None).await;
    assert_eq!(s, 404, "restored once");
    let (s, _) =
        c.request(reqwest::Method::POST, "/v1/memory/deduplicated/mem_does_not_exist/restore?agent_id=dd", None).await;
    assert_eq!(s, 404);

    // Forgetting a memory forgets its trashed copy too: nothing is left to restore.
    ok(c, "/v1/knowledge/deduplicate", &json!({"agent_id": "dd", "dry_run": false})).await;
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 1);
    let (s, v) = c.post("/v1/memory/forget", &json!({"agent_id": "dd", "memory_ids": [keep]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 0, "a forgotten memory leaves no copy");
    let (s, _) =
        c.request(reqwest::Method::POST, &format!("/v1/memory/deduplicated/{keep}/restore?agent_id=dd"), None).await;
    assert_eq!(s, 404);
    c.post(
        "/v1/memory/store",
        &json!({"agent_id": "dd", "content": "Alice's flight to Paris leaves at 9am on Monday"}),
    )
    .await;

    // Two agents' memories are never duplicates of each other, even in one namespace.
    for agent in ["u1", "u2"] {
        ok(
            c,
            "/v1/memory/store",
            &json!({"namespace": "shared", "agent_id": agent, "content": "my locker code is 4412"}),
        )
        .await;
    }
    let r = ok(c, "/v1/knowledge/deduplicate", &json!({"namespace": "shared", "dry_run": false})).await;
    assert_eq!(r["duplicates_found"], 0, "{r}");

    // Erasure takes the trash with the namespace.
    ok(c, "/v1/knowledge/deduplicate", &json!({"agent_id": "dd", "dry_run": false})).await;
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 1);
    let (s, v) = c.delete("/v1/namespaces/dd").await;
    assert_eq!(s, 200, "{v}");
    c.store("dd", "a new life").await;
    assert_eq!(got(c, "/v1/memory/deduplicated?agent_id=dd").await["count"], 0, "the trash went with the namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_merges_into_one_memory_that_keeps_every_source() {
    let node = TestNode::start().await;
    let c = &node.client;
    let mut ids = Vec::new();
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let v = ok(c, "/v1/memory/store", &json!({"agent_id": "cons", "content": format!("Consolidation test memory variation {i}: similar content about testing"),
            "importance": 0.3 + 0.2 * i as f64, "tags": [tag]})).await;
        ids.push(v["memory"]["id"].as_str().unwrap().to_string());
    }
    let unrelated = c.store("cons", "Bananas are rich in potassium").await;
    // Nothing alike enough: nothing merged, nothing lost.
    let none = ok(c, "/v1/memory/consolidate", &json!({"agent_id": "cons", "threshold": 0.9999})).await;
    assert_eq!(none["memories_removed"], 0, "{none}");
    let r = ok(c, "/v1/memory/consolidate", &json!({"agent_id": "cons", "threshold": 0.6})).await;
    assert_eq!(r["memories_removed"], 3, "{r}");
    let mut sources: Vec<String> =
        r["source_memory_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    sources.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sources, want, "every source is in the provenance");
    let merged = &r["consolidated_memory"];
    let mut prov: Vec<String> = merged["metadata"]["_loci_consolidated_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    prov.sort();
    assert_eq!(prov, want);
    assert!((merged["importance"].as_f64().unwrap() - 0.7).abs() < 1e-9, "the highest importance");
    let tags: Vec<&str> = merged["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tags, ["a", "b", "c"]);
    for i in 0..3 {
        assert!(merged["content"].as_str().unwrap().contains(&format!("variation {i}")));
    }
    let left = c.recall_ids("cons", "consolidation test memory", 10).await;
    assert!(
        left.contains(&merged["id"].as_str().unwrap().to_string()) && left.iter().all(|id| !ids.contains(id)),
        "{left:?}"
    );
    assert!(c.recall_ids("cons", "bananas", 10).await.contains(&unrelated));
    let trash = got(c, "/v1/memory/deduplicated?agent_id=cons").await;
    assert_eq!(trash["count"], 3);
    assert!(
        trash["memories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] == "consolidation" && m["survivor_id"] == merged["id"])
    );
    // Explicit ids: at least two, of this agent.
    let (s, _) = c.post("/v1/memory/consolidate", &json!({"agent_id": "cons", "memory_ids": [unrelated]})).await;
    assert_eq!(s, 400);
    let (s, _) =
        c.post("/v1/memory/consolidate", &json!({"agent_id": "cons", "memory_ids": [unrelated, "mem_nope"]})).await;
    assert_eq!(s, 404);
    assert!(c.recall_ids("cons", "bananas", 10).await.contains(&unrelated), "a refused consolidation changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decay_changes_ranking_as_the_documented_formula_says() {
    let node = TestNode::start().await;
    let c = &node.client;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let old = now - 20 * 86_400;
    // The same content twice: the same relevance, so importance and recency decide.
    let lines = format!(
        "{}\n{}\n",
        json!({"id": "m_old", "agent_id": "decay", "content": "the garden shed key is under the mat", "importance": 1.0, "created_at": old}),
        json!({"id": "m_new", "agent_id": "decay", "content": "the garden shed key is under the mat", "importance": 0.5}),
    );
    let (s, v) = c
        .raw(reqwest::Method::POST, "/v1/import?namespace=decay", Some("application/x-ndjson"), lines.into_bytes())
        .await;
    assert_eq!(s, 200, "{v}");
    // Search (not recall): it records no access, and an access would reset the decay clock.
    let recall = || async {
        let v = ok(c, "/v1/memory/search", &json!({"agent_id": "decay", "query": "garden shed key", "top_k": 2})).await;
        v["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["memory"]["id"].as_str().unwrap().to_string(), m["weighted_score"].as_f64().unwrap()))
            .collect::<Vec<_>>()
    };
    let off = recall().await;
    assert_eq!(off[0].0, "m_old", "without decay the important memory wins: {off:?}");

    let (s, v) = c
        .put(
            "/v1/admin/decay/config",
            &json!({"strategy": "exponential", "half_life_hours": 24.0, "min_importance": 0.1, "access_boost": 0.0}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["config"]["enabled"], true);
    let on = recall().await;
    assert_eq!(on[0].0, "m_new", "decay lets the fresh memory win: {on:?}");
    // score = relevance × (0.75 + 0.25·i_eff) × (0.85 + 0.15·2^(−age/14)), i_eff = 0.1 + 0.9·2^(−age_h/24)
    let relevance =
        off.iter().find(|x| x.0 == "m_old").unwrap().1 / ((0.75 + 0.25) * (0.85 + 0.15 * 0.5f64.powf(20.0 / 14.0)));
    let i_eff = 0.1 + 0.9 * 0.5f64.powf(20.0 * 24.0 / 24.0);
    let want = relevance * (0.75 + 0.25 * i_eff) * (0.85 + 0.15 * 0.5f64.powf(20.0 / 14.0));
    let got_old = on.iter().find(|x| x.0 == "m_old").unwrap().1;
    assert!((got_old - want).abs() < 2e-3, "{got_old} vs {want}");
    let stats = got(c, "/v1/admin/decay/stats").await;
    assert!(stats["total_decayed"].as_u64().unwrap() >= 1, "{stats}");
    // A namespace may keep its own (here: none).
    let (s, _) = c.put("/v1/namespaces/decay/memory_policy", &json!({"decay": {"enabled": false}})).await;
    assert_eq!(s, 200);
    assert_eq!(recall().await[0].0, "m_old");
    let (s, _) = c.put("/v1/admin/decay/config", &json!({"half_life_hours": -1.0})).await;
    assert_eq!(s, 400);
    // Only a global admin sets the cluster's default.
    let (_, k) = create_key(c, "/admin/keys", &json!({"name": "t", "scope": "admin", "namespaces": ["decay"]})).await;
    let (s, _) = c.with_key(Some(&k)).put("/v1/admin/decay/config", &json!({"enabled": false})).await;
    assert_eq!(s, 403);
    assert_eq!(got(c, "/v1/admin/decay/config").await["enabled"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_moves_importance_within_bounds_and_keeps_a_history() {
    let node = TestNode::start().await;
    let c = &node.client;
    let id = ok(c, "/v1/memory/store", &json!({"agent_id": "fb", "content": "prefers tea", "importance": 0.85})).await
        ["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = ok(c, "/v1/memory/feedback", &json!({"agent_id": "fb", "memory_id": id, "signal": "upvote"})).await;
    assert!((v["new_importance"].as_f64().unwrap() - 0.95).abs() < 1e-9);
    let v = ok(c, &format!("/v1/memories/{id}/feedback"), &json!({"agent_id": "fb", "signal": "positive"})).await;
    assert_eq!(v["new_importance"], 1.0, "capped at 1");
    assert_eq!(v["signal"], "upvote");
    ok(c, &format!("/v1/memories/{id}/feedback"), &json!({"agent_id": "fb", "signal": "flag"})).await;
    let (s, _) = c.post(&format!("/v1/memories/{id}/feedback"), &json!({"agent_id": "fb", "signal": "meh"})).await;
    assert_eq!(s, 400);
    let h = got(c, &format!("/v1/memories/{id}/feedback?agent_id=fb")).await;
    let signals: Vec<&str> = h["entries"].as_array().unwrap().iter().map(|e| e["signal"].as_str().unwrap()).collect();
    assert_eq!(signals, ["upvote", "upvote", "flag"], "oldest first; the refused signal is not recorded");
    assert!((h["entries"][2]["new_importance"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    let (s, _) = c.get(&format!("/v1/memories/{id}/feedback")).await;
    assert_eq!(s, 400, "agent_id is required");
    let sum = got(c, "/v1/agents/fb/feedback/summary").await;
    assert_eq!(
        (sum["upvotes"].as_u64(), sum["flags"].as_u64(), sum["total_feedback"].as_u64()),
        (Some(2), Some(1), Some(3)),
        "{sum}"
    );
    // 0.5 + 0.5 · (2 − 2·1) / 3
    assert!((sum["health_score"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let health = got(c, "/v1/feedback/health?agent_id=fb").await;
    assert_eq!(health["memory_count"], 1);
    let (_, k) = create_key(c, "/admin/keys", &json!({"name": "r", "scope": "read", "namespaces": ["fb"]})).await;
    let (s, _) = c
        .with_key(Some(&k))
        .post("/v1/memory/feedback", &json!({"agent_id": "fb", "memory_id": id, "signal": "downvote"}))
        .await;
    assert_eq!(s, 403, "a read key gives no feedback");
    assert!(
        (got(c, &format!("/v1/memory/get/{id}?agent_id=fb")).await["importance"].as_f64().unwrap() - 0.8).abs() < 1e-9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_text_reports_what_its_vector_covers() {
    let node = TestNode::start().await;
    let c = &node.client;
    let text: String = (0..400).map(|i| format!("fact {i} about the project schedule. ")).collect();
    let v = ok(c, "/v1/memory/store", &json!({"agent_id": "tr", "content": text})).await;
    assert_eq!(v["truncated"], true, "{v}");
    assert_eq!(v["max_tokens"], 256);
    assert_eq!(v["embedded_tokens"], 256);
    assert_eq!(v["content_tokens"], 2400);
    let short = ok(c, "/v1/memory/store", &json!({"agent_id": "tr", "content": "short"})).await;
    assert!(short.get("truncated").is_none());
    let b = ok(
        c,
        "/v1/memories/store/batch",
        &json!({"agent_id": "tr", "memories": [{"content": "short"}, {"content": text}]}),
    )
    .await;
    let cuts = b["truncated"].as_array().expect("truncated list");
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0]["id"], b["stored"][1]["id"]);
    // The tail is still found by keyword.
    assert!(c.recall_ids("tr", "fact 399", 5).await.contains(&v["memory"]["id"].as_str().unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autopilot_deduplicates_in_merge_mode_and_reports_its_pass() {
    let node = TestNode::start().await;
    let c = &node.client;
    c.store("ap", "Remember to renew the passport before June").await;
    c.store("ap", "Remember to renew the passport before June.").await;
    let status = got(c, "/v1/admin/autopilot/status").await;
    assert_eq!(status["config"]["dedup_mode"], "report");
    assert!(status["config"]["trash_retention_hours"].is_u64());
    let r = ok(c, "/v1/admin/autopilot/trigger", &json!({"action": "dedup"})).await;
    assert_eq!(r["dedup"]["duplicates_found"], 1, "{r}");
    assert_eq!(r["dedup"]["duplicates_removed"], 0, "report mode moves nothing");
    let (s, v) = c.put("/v1/admin/autopilot/config", &json!({"dedup_mode": "merge", "trash_retention_hours": 2})).await;
    assert_eq!(s, 200, "{v}");
    let r = ok(c, "/v1/admin/autopilot/trigger", &json!({"action": "all"})).await;
    assert_eq!(r["dedup"]["duplicates_removed"], 1, "{r}");
    let trash = got(c, "/v1/memory/deduplicated?agent_id=ap").await;
    assert_eq!(trash["count"], 1);
    let m = &trash["memories"][0];
    assert_eq!(m["restorable_until"].as_u64().unwrap() - m["deleted_at"].as_u64().unwrap(), 7200);
    let status = got(c, "/v1/admin/autopilot/status").await;
    assert_eq!(status["last_dedup"]["duplicates_removed"], 1, "{status}");
    // The passes are counted in the node's metrics (two manual ones, one of them moving one).
    let (_, m) = c.get("/metrics").await;
    let m = m.as_str().expect("metrics text").to_string();
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(value("loci_autopilot_passes_total{trigger=\"manual\"}"), 2.0, "{m}");
    assert_eq!(value("loci_autopilot_duplicates_moved_total"), 1.0);
    let (s, _) = c.put("/v1/admin/autopilot/config", &json!({"dedup_mode": "sometimes"})).await;
    assert_eq!(s, 400);
    let (s, _) = c.put("/v1/admin/autopilot/config", &json!({"nonsense": 1})).await;
    assert_eq!(s, 400);
    let (s, _) = c.post("/v1/admin/autopilot/trigger", &json!({"action": "explode"})).await;
    assert_eq!(s, 400);
    let (_, k) = create_key(c, "/admin/keys", &json!({"name": "t", "scope": "admin", "namespaces": ["ap"]})).await;
    let (s, _) = c.with_key(Some(&k)).post("/v1/admin/autopilot/trigger", &json!({"action": "all"})).await;
    assert_eq!(s, 403, "a tenant admin does not run the cluster's autopilot");
}

fn authed<T>(key: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii"));
    r
}

/// The typed gRPC services stand for the same calls: same answers, same refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_and_maintenance_are_served_over_typed_grpc_with_the_same_rules() {
    use loci_api::pb;
    use loci_api::pb::knowledge_client::KnowledgeClient;
    use loci_api::pb::maintenance_client::MaintenanceClient;
    let node = TestNode::start().await;
    let c = &node.client;
    let a = store_in(c, "g1", "Anna lives in Berlin").await;
    let b = store_in(c, "g1", "Anna works at Siemens").await;
    let other = store_in(c, "g2", "Bob's secret plans").await;
    let (_, k) = create_key(c, "/admin/keys", &json!({"name": "g1", "scope": "write", "namespaces": ["g1"]})).await;
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let chan = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut kg = KnowledgeClient::new(chan.clone());
    let mut mt = MaintenanceClient::new(chan);
    let link = kg
        .link(authed(
            &k,
            pb::LinkRequest { id: a.clone(), target_id: b.clone(), namespace: Some("g1".into()), ..Default::default() },
        ))
        .await
        .expect("link")
        .into_inner();
    assert_eq!(
        (link.from_id.as_str(), link.to_id.as_str(), link.edge_type.as_str()),
        (a.as_str(), b.as_str(), "linked_by")
    );
    let g = kg
        .memory_graph(authed(&k, pb::MemoryGraphRequest { id: a.clone(), depth: Some(1), ..Default::default() }))
        .await
        .expect("graph")
        .into_inner();
    assert_eq!(g.root_id, a);
    assert!(g.edges.iter().any(|e| e.from_id == a && e.to_id == b && e.edge_type == "linked_by"));
    let p = kg
        .memory_path(authed(&k, pb::MemoryPathRequest { id: a.clone(), to: b.clone(), ..Default::default() }))
        .await
        .expect("path")
        .into_inner();
    assert_eq!(p.path, vec![a.clone(), b.clone()]);
    let ex = kg
        .extract(authed(&k, pb::ExtractRequest { content: "Write to anna@example.org".into(), ..Default::default() }))
        .await
        .expect("extract")
        .into_inner();
    assert_eq!(ex.entities[0].entity_type, "email");
    let fb = mt
        .feedback(authed(
            &k,
            pb::FeedbackRequest {
                id: a.clone(),
                namespace: Some("g1".into()),
                signal: "upvote".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("feedback")
        .into_inner();
    assert!((fb.new_importance - 0.6).abs() < 1e-9);
    let d = mt
        .deduplicate(authed(
            &k,
            pb::DeduplicateRequest { namespace: Some("g1".into()), dry_run: true, ..Default::default() },
        ))
        .await
        .expect("dedup")
        .into_inner();
    assert!(d.dry_run && d.duplicates_merged == 0);
    // The same refusals as REST: another namespace's memory is not found, the cluster's settings
    // are a global admin's.
    let e = kg
        .link(authed(
            &k,
            pb::LinkRequest {
                id: a.clone(),
                target_id: other.clone(),
                namespace: Some("g1".into()),
                ..Default::default()
            },
        ))
        .await
        .expect_err("cross-tenant link");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = kg
        .memory_graph(authed(&k, pb::MemoryGraphRequest { id: other.clone(), depth: Some(1), ..Default::default() }))
        .await
        .expect_err("another tenant's graph");
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(!e.message().contains("secret"));
    let e = mt
        .set_decay_config(authed(&k, pb::SetDecayConfigRequest { enabled: Some(true), ..Default::default() }))
        .await
        .expect_err("tenant");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(got(c, "/v1/admin/decay/config").await["enabled"], false, "nothing changed");
    assert_eq!(got(c, &format!("/v1/memories/{other}/graph?namespace=g2")).await["edges"], json!([]));
}
