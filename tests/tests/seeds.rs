//! Behaviour the seeds (/work/shared/seeds, replayed whole by tests/seeds/) need from the server:
//! name-only namespaces with descriptions, `POST /admin/namespaces`, `/admin/keys` with one
//! `namespace`, master-key rotation checked against `old_key`, the tenant limits `max_agents`
//! and `max_sessions_per_agent`, and batch forget by top-level ids.

use loci_tests::{Client, TestNode, create_key};
use serde_json::{Value, json};

#[tokio::test]
async fn a_namespace_created_by_name_alone_gets_the_default_embedder_and_keeps_its_description() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c
        .post("/v1/namespaces", &json!({"name": "shared-org", "description": "Organization-wide knowledge base"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["dimension"].as_u64(), v["description"].as_str()),
        (Some(384), Some("Organization-wide knowledge base"))
    );
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "user-alice-chen"})).await;
    assert_eq!((s, v["created"].as_bool()), (201, Some(true)), "{v}");
    let (_, g) = c.get("/v1/namespaces/shared-org").await;
    assert_eq!(g["description"], "Organization-wide knowledge base");
    assert_eq!(g["embedding"], json!({"provider": "hash", "dimension": 384}));
    let (_, l) = c.get("/v1/namespaces").await;
    assert_eq!(l["namespaces"], json!(["shared-org", "user-alice-chen"]));
    assert_eq!(l["descriptions"], json!({"shared-org": "Organization-wide knowledge base"}));
    // The description survives a restart (it lives in the replicated catalogue).
    let node = node.restart().await;
    let (_, g) = node.client.get("/v1/namespaces/shared-org").await;
    assert_eq!(g["description"], "Organization-wide knowledge base");
    // Oversized or control-character descriptions are refused, nothing created.
    for d in ["x".repeat(1025), "bell\u{7}".to_string()] {
        let (s, _) = node.client.post("/v1/namespaces", &json!({"name": "bad-desc", "description": d})).await;
        assert_eq!(s, 400);
    }
    assert_eq!(node.client.get("/v1/namespaces/bad-desc").await.0, 404);
    // A given dimension still means that dimension.
    let (s, v) = node.client.post("/v1/namespaces", &json!({"name": "wide", "dimension": 1024})).await;
    assert_eq!((s, v["dimension"].as_u64()), (201, Some(1024)));
}

#[tokio::test]
async fn admin_namespaces_validate_their_config_and_refuse_unencrypted() {
    let node = TestNode::start().await;
    let c = &node.client;
    let body = json!({"name": "tenant-a", "config": {"vector_index": "hnsw", "encryption": true}});
    let (s, v) = c.post("/admin/namespaces", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["encryption"]["enabled"], true);
    assert_eq!(c.post("/v1/admin/namespaces", &body).await.0, 200, "idempotent, also under /v1/admin");
    for (cfg, needle) in [
        (json!({"encryption": false}), "encrypted"),
        (json!({"vector_index": "ivf_pq"}), "vector_index"),
        (json!({"replicas": 3}), "unknown field"),
        (json!({"distance": "manhattan"}), "distance"),
    ] {
        let (s, v) = c.post("/admin/namespaces", &json!({"name": "refused", "config": cfg})).await;
        assert_eq!(s, 400, "{cfg}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    assert_eq!(c.get("/v1/namespaces/refused").await.0, 404, "nothing was created");
    // Admin scope on the name is needed; a write key is refused and creates nothing.
    let (_, write_key) =
        create_key(c, "/admin/keys", &json!({"name": "w", "scope": "write", "namespace": "tenant-b"})).await;
    let w = c.with_key(Some(&write_key));
    assert_eq!(w.post("/admin/namespaces", &json!({"name": "tenant-b"})).await.0, 403);
    assert_eq!(c.get("/v1/namespaces/tenant-b").await.0, 404);
}

#[tokio::test]
async fn admin_keys_take_one_namespace() {
    let node = TestNode::start().await;
    let c = &node.client;
    let (s, v) = c
        .post(
            "/admin/keys",
            &json!({"name": "tenant-a", "scope": "write", "namespace": "tenant-a", "expires_in_days": 90}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["namespaces"], json!(["tenant-a"]));
    let t = c.with_key(v["key"].as_str());
    assert_eq!(t.post("/v1/memory/store", &json!({"agent_id": "tenant-a", "content": "mine"})).await.0, 200);
    let (s, v) = t.post("/v1/memory/store", &json!({"agent_id": "tenant-b", "content": "theirs"})).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("NAMESPACE_ACCESS_DENIED")));
    assert_eq!(c.get("/v1/namespaces/tenant-b").await.0, 404, "the refused write created nothing");
    // Together with `namespaces` it adds one more; `*` through `namespace` is refused.
    let (s, v) =
        c.post("/admin/keys", &json!({"name": "both", "scope": "read", "namespace": "a", "namespaces": ["b"]})).await;
    assert_eq!((s, v["namespaces"].clone()), (201, json!(["a", "b"])));
    assert_eq!(c.post("/admin/keys", &json!({"name": "all", "scope": "read", "namespace": "*"})).await.0, 400);
    assert_eq!(c.post("/admin/keys", &json!({"name": "x", "scope": "read", "namespace": "Bad Name"})).await.0, 400);
}

#[tokio::test]
async fn master_key_rotation_checks_old_key_and_changes_nothing_when_it_is_wrong() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    let id = c.store("vault", "sealed before rotation").await;
    let current = loci_tests::ENCRYPTION_KEY;
    for old in ["not-the-current-key", "short"] {
        let (s, v) = c.post("/admin/encryption/rotate", &json!({"old_key": old, "new_key": "new-passphrase"})).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("ENCRYPTION_KEY_MISMATCH")), "{v}");
    }
    // Nothing changed: the node restarts with the current key and reads everything.
    let node = node.restart().await;
    let (s, _) = node.client.get(&format!("/v1/memory/get/{id}?agent_id=vault")).await;
    assert_eq!(s, 200);
    let (s, v) =
        node.client.post("/admin/encryption/rotate", &json!({"old_key": current, "new_key": "new-passphrase"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rotated"], 1);
    let dir = node.stop().await;
    let mut old_args = loci_tests::serve_args(dir.path());
    old_args.encryption_key = Some(current.into());
    assert!(loci_node::start(old_args).await.is_err(), "the old key no longer unlocks the data");
    let node = TestNode::start_in(dir, |a| a.encryption_key = Some("new-passphrase".into())).await;
    let (s, v) = node.client.get(&format!("/v1/memory/get/{id}?agent_id=vault")).await;
    assert_eq!((s, v["content"].as_str()), (200, Some("sealed before rotation")));
    // A rotation by a key below super_admin is refused, old_key or not.
    let (_, admin_key) = create_key(&node.client, "/admin/keys", &json!({"name": "adm", "scope": "admin"})).await;
    let (s, _) = node
        .client
        .with_key(Some(&admin_key))
        .post("/admin/encryption/rotate", &json!({"old_key": "new-passphrase", "new_key": "third-passphrase"}))
        .await;
    assert_eq!(s, 403);
}

async fn count(c: &Client, ns: &str) -> (u64, u64) {
    let (_, v) = c.get(&format!("/v1/namespaces/{ns}")).await;
    (v["memory_count"].as_u64().unwrap_or(0), v["session_count"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn tenant_limits_cap_agents_and_sessions_and_write_nothing_when_refused() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    assert_eq!(c.post("/v1/namespaces", &json!({"name": "tenant"})).await.0, 201);
    let (s, v) =
        c.put("/v1/namespaces/tenant/memory_policy", &json!({"max_users": 2, "max_conversations_per_user": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["max_agents"].as_u64(), v["max_sessions_per_agent"].as_u64()), (Some(2), Some(2)));
    let store = |agent: &str| json!({"namespace": "tenant", "agent_id": agent, "content": format!("{agent} says hi")});
    let start = |agent: &str| json!({"namespace": "tenant", "agent_id": agent});
    assert_eq!(c.post("/v1/memory/store", &store("u1")).await.0, 200);
    assert_eq!(c.post("/v1/sessions/start", &start("u2")).await.0 / 100, 2);
    let before = count(&c, "tenant").await;
    for (path, body) in [("/v1/memory/store", store("u3")), ("/v1/sessions/start", start("u3"))] {
        let (s, v) = c.post(path, &body).await;
        assert_eq!((s, v["code"].as_str()), (413, Some("QUOTA_EXCEEDED")), "{path}: {v}");
    }
    let (s, _) = c
        .post("/v1/memories/store/batch", &json!({"namespace": "tenant", "memories": [store("u1"), store("u4")]}))
        .await;
    assert_eq!(s, 413, "a batch bringing in a new agent is refused whole");
    assert_eq!(count(&c, "tenant").await, before);
    // Sessions per agent: u2 has one; one more is fine, the third is refused.
    assert_eq!(c.post("/v1/sessions/start", &start("u2")).await.0 / 100, 2);
    let (s, v) = c.post("/v1/sessions/start", &start("u2")).await;
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_sessions_per_agent"));
    assert_eq!(count(&c, "tenant").await.1, 2);
    // Concurrent starts for a fresh namespace cannot exceed the cap.
    assert_eq!(c.post("/v1/namespaces", &json!({"name": "race"})).await.0, 201);
    c.put("/v1/namespaces/race/memory_policy", &json!({"max_sessions_per_agent": 3})).await;
    let starts: Vec<_> = (0..12)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(
                async move { c.post("/v1/sessions/start", &json!({"namespace": "race", "agent_id": "u"})).await.0 },
            )
        })
        .collect();
    let mut ok = 0;
    for h in starts {
        let s = h.await.unwrap();
        assert!(s / 100 == 2 || s == 413, "{s}");
        ok += usize::from(s / 100 == 2);
    }
    assert_eq!(ok, 3);
    assert_eq!(count(&c, "race").await.1, 3);
    // Limits must be at least 1 (omit them for no limit); a refused policy changes nothing.
    let (s, _) = c.put("/v1/namespaces/tenant/memory_policy", &json!({"max_agents": 0})).await;
    assert_eq!(s, 400);
    let (_, p) = c.get("/v1/namespaces/tenant/memory_policy").await;
    assert_eq!(p["max_agents"], 2);
    // Lifting the limit lets the new agent in; the limits survive a restart.
    let node = node.restart().await;
    let (_, p) = node.client.get("/v1/namespaces/tenant/memory_policy").await;
    assert_eq!((p["max_agents"].as_u64(), p["max_sessions_per_agent"].as_u64()), (Some(2), Some(2)));
    let (s, _) = node.client.put("/v1/namespaces/tenant/memory_policy", &json!({"max_agents": 3})).await;
    assert_eq!(s, 200);
    assert_eq!(node.client.post("/v1/memory/store", &store("u3")).await.0, 200);
}

#[tokio::test]
async fn batch_forget_takes_top_level_memory_ids_and_resource_scope_names() {
    let node = TestNode::start().await;
    let c = &node.client;
    let a = c.store("gdpr", "I live in Lisbon").await;
    let b = c.store("gdpr", "My phone number is private").await;
    let keep = c.store("gdpr", "kept").await;
    let (s, v) = c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": "gdpr", "memory_ids": [a, b]})).await;
    assert_eq!((s, v["deleted_count"].as_u64()), (200, Some(2)), "{v}");
    let (_, v) = c.post("/v1/memories/recall/batch", &json!({"agent_id": "gdpr", "filter": {}})).await;
    let left: Vec<&str> = v["memories"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(left, vec![keep.as_str()]);
    let (s, _) = c
        .delete_with(
            "/v1/memories/forget/batch",
            &json!({"agent_id": "gdpr", "memory_ids": [keep], "filter": {"memory_ids": ["x"]}}),
        )
        .await;
    assert_eq!(s, 400, "ids in both places are ambiguous");
    // `memory:write` is write, `tenant:admin` admin; an unknown resource or action is refused.
    let (s, v) = c
        .post(
            "/v1/api-keys",
            &json!({"label": "agent", "permissions": [{"namespace": "gdpr", "scopes": ["memory:read", "conversations:write"]}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["permissions"], json!([{"namespace": "gdpr", "scopes": ["write"]}]));
    for bad in ["memory:admin", "billing:read", "memory:"] {
        let body = json!({"label": "x", "permissions": [{"namespace": "gdpr", "scopes": [bad]}]});
        let (s, v): (u16, Value) = c.post("/v1/api-keys", &body).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
}
