//! Attacks on the security layer against a running node: every refusal is checked, and so is the
//! absence of any effect (an admin read afterwards).

use std::time::Duration;

use loci_tests::{Client, RedisServer, TestNode, create_key, eventually, files_containing, ids_of};
use serde_json::{Value, json};

fn as_key(c: &Client, secret: &str) -> Client {
    c.with_key(Some(secret))
}

/// The admin view of a namespace: sorted (id, content) pairs.
async fn snapshot(root: &Client, ns: &str) -> Vec<(String, String)> {
    let (_, v) = root.post("/v1/memories/recall/batch", &json!({"namespace": ns, "filter": {}, "limit": 10000})).await;
    let mut out: Vec<(String, String)> = v["memories"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["id"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Need {
    Read,
    Write,
    Admin,
}

/// One operation of the matrix: returns the HTTP status.
async fn run_op(root: &Client, c: &Client, op: &str, ns: &str) -> u16 {
    // A fresh target memory (created by root) for operations that need one.
    let target = root
        .post(
            "/v1/memory/store",
            &json!({"namespace": ns, "agent_id": ns, "content": format!("target in {ns}"), "tags": ["t"]}),
        )
        .await
        .1["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = match op {
        "store" => c.post("/v1/memory/store", &json!({"agent_id": ns, "content": "written by the role"})).await,
        "recall" => c.post("/v1/memory/recall", &json!({"agent_id": ns, "query": "target"})).await,
        "get" => c.get(&format!("/v1/memory/get/{target}?agent_id={ns}")).await,
        "update" => {
            c.put(&format!("/v1/memory/update/{target}?agent_id={ns}"), &json!({"content": "changed by the role"}))
                .await
        }
        "forget" => c.post("/v1/memory/forget", &json!({"agent_id": ns, "memory_ids": [target]})).await,
        "batch_forget" => {
            c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": ns, "filter": {"tags": ["t"]}})).await
        }
        "list" => c.get(&format!("/v1/agents/{ns}/memories")).await,
        "delete_namespace" => c.delete(&format!("/v1/namespaces/{ns}")).await,
        _ => unreachable!(),
    };
    s
}

fn need(op: &str) -> Need {
    match op {
        "recall" | "get" | "list" => Need::Read,
        "delete_namespace" => Need::Admin,
        _ => Need::Write,
    }
}

#[tokio::test]
async fn role_matrix_every_cell() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let namespaces = ["user-alice", "user-bob", "team-red", "shared-org"];
    for ns in namespaces {
        root.store(ns, &format!("seed memory of {ns}")).await;
    }
    let perms = |list: &[(&str, &[&str])]| -> Value {
        json!(list.iter().map(|(n, s)| json!({"namespace": n, "scopes": s})).collect::<Vec<_>>())
    };
    let (_, user) = create_key(
        &root,
        "/v1/api-keys",
        &json!({"label": "alice", "permissions": perms(&[("user-alice", &["read", "write", "delete"]), ("shared-org", &["read"])])}),
    )
    .await;
    let (_, team) = create_key(
        &root,
        "/v1/api-keys",
        &json!({"label": "red-member", "permissions": perms(&[("team-red", &["read", "write"]), ("shared-org", &["read"])])}),
    )
    .await;
    let (_, moderator) = create_key(
        &root,
        "/v1/api-keys",
        &json!({"label": "moderator", "permissions": perms(&[("user-*", &["read"]), ("team-*", &["read"]), ("shared-org", &["read", "write"])])}),
    )
    .await;
    let (_, admin) = create_key(&root, "/admin/keys", &json!({"name": "admin", "scope": "admin"})).await;

    // What each role holds on each namespace (None = nothing).
    let grant = |role: &str, ns: &str| -> Option<Need> {
        match (role, ns) {
            ("admin", _) => Some(Need::Admin),
            ("user", "user-alice") => Some(Need::Write),
            ("user", "shared-org") | ("team", "shared-org") => Some(Need::Read),
            ("team", "team-red") => Some(Need::Write),
            ("moderator", "shared-org") => Some(Need::Write),
            ("moderator", n) if n.starts_with("user-") || n.starts_with("team-") => Some(Need::Read),
            _ => None,
        }
    };
    let roles = [
        ("user", user.as_str()),
        ("team", team.as_str()),
        ("moderator", moderator.as_str()),
        ("admin", admin.as_str()),
    ];
    let ops = ["store", "recall", "get", "update", "forget", "batch_forget", "list"];
    let mut cells = 0;
    for (role, secret) in roles {
        let c = as_key(&root, secret);
        for ns in namespaces {
            for op in ops {
                let allowed = grant(role, ns).is_some_and(|g| g >= need(op));
                let before = snapshot(&root, ns).await;
                let status = run_op(&root, &c, op, ns).await;
                cells += 1;
                if allowed {
                    assert_eq!(status, 200, "{role} {op} {ns} should succeed");
                } else {
                    assert_eq!(status, 403, "{role} {op} {ns} should be refused");
                    // The refused call changed nothing (beyond the target root just added).
                    let after = snapshot(&root, ns).await;
                    let added: Vec<_> = after.iter().filter(|x| !before.contains(x)).collect();
                    assert!(
                        added.len() == 1
                            && added[0].1 == format!("target in {ns}")
                            && before.iter().all(|x| after.contains(x)),
                        "{role} {op} {ns} changed data: before {before:?} after {after:?}"
                    );
                }
            }
        }
    }
    // Deleting namespaces: only the admin may, and a refused delete leaves everything in place.
    for (role, secret) in roles.iter().filter(|(r, _)| *r != "admin") {
        for ns in namespaces {
            let before = snapshot(&root, ns).await;
            let (s, _) = as_key(&root, secret).delete(&format!("/v1/namespaces/{ns}")).await;
            cells += 1;
            assert_eq!(s, 403, "{role} delete {ns}");
            assert_eq!(snapshot(&root, ns).await, before);
        }
    }
    for ns in namespaces {
        let (s, v) = as_key(&root, &admin).delete(&format!("/v1/namespaces/{ns}")).await;
        cells += 1;
        assert_eq!(s, 200, "admin delete {ns}: {v}");
    }
    assert_eq!(cells, 4 * 4 * 7 + 3 * 4 + 4);
}

#[tokio::test]
async fn namespaces_a_key_cannot_reach_are_invisible() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    root.store("user-a", "a's memory").await;
    root.store("user-b", "b's memory").await;
    let (_, k) =
        create_key(&root, "/admin/keys", &json!({"name": "a", "scope": "write", "namespaces": ["user-a"]})).await;
    let a = as_key(&root, &k);
    let (_, v) = a.get("/v1/namespaces").await;
    assert_eq!(v["namespaces"], json!(["user-a"]));
    assert!(v["kinds"].get("user-b").is_none());
    let (_, v) = a.get("/v1/agents").await;
    assert!(v.as_array().unwrap().iter().all(|x| x["agent_id"] == "user-a"));
    // An existing and a non-existing namespace answer identically.
    let (s1, v1) = a.get("/v1/namespaces/user-b").await;
    let (s2, v2) = a.get("/v1/namespaces/user-zzz").await;
    assert_eq!((s1, s2), (403, 403));
    assert_eq!(v1["code"], v2["code"]);
    assert_eq!(
        v1["error"].as_str().unwrap().replace("user-b", "X"),
        v2["error"].as_str().unwrap().replace("user-zzz", "X")
    );
    // Reading b's memory through every path fails without leaking it.
    let b_id = ids_of(
        &root.post("/v1/memories/recall/batch", &json!({"agent_id": "user-b", "filter": {}})).await.1["memories"],
    )[0]
    .clone();
    let (s, v) = a.get(&format!("/v1/memory/get/{b_id}")).await;
    assert_eq!(s, 404, "agent-less get must not search namespaces the key can't read: {v}");
    let (s, v) = a.post("/v1/memory/recall", &json!({"agent_id": "user-b", "query": "memory"})).await;
    assert_eq!(s, 403);
    assert!(!v.to_string().contains("b's memory"));
    let (s, _) = a.get("/v1/sessions?agent_id=user-b").await;
    assert_eq!(s, 403);
    // The `_dakera_agent_` form of a name is the same namespace, for grants too.
    let (s, _) = a.post("/v1/memory/store", &json!({"agent_id": "_dakera_agent_user-a", "content": "via alias"})).await;
    assert_eq!(s, 200);
    let (s, _) = a.post("/v1/memory/store", &json!({"agent_id": "_dakera_agent_user-b", "content": "via alias"})).await;
    assert_eq!(s, 403);
    // Node-wide routes need a global key.
    let (s, _) = a.get("/admin/keys").await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn delegated_tenant_admin_stays_inside_its_prefix() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (_, acme) =
        create_key(&root, "/admin/keys", &json!({"name": "acme-admin", "scope": "admin", "namespaces": ["acme-*"]}))
            .await;
    let t = as_key(&root, &acme);
    // Namespaces: inside yes, outside no.
    assert_eq!(t.post("/v1/namespaces", &json!({"name": "acme-one", "dimension": 8})).await.0, 201);
    let (s, _) = t.post("/v1/namespaces", &json!({"name": "globex-one", "dimension": 8})).await;
    assert_eq!(s, 403);
    assert_eq!(root.get("/v1/namespaces/globex-one").await.0, 404, "nothing was created");
    // Minting: inside its prefix, never more scope, never global.
    let (kid, inner) =
        create_key(&t, "/v1/namespaces/acme-one/keys", &json!({"name": "acme-writer", "scope": "write"})).await;
    let (_, sub_admin) = create_key(
        &t,
        "/admin/keys",
        &json!({"name": "acme-team-admin", "scope": "admin", "namespaces": ["acme-team-*"]}),
    )
    .await;
    for (path, body) in [
        ("/admin/keys", json!({"name": "x", "scope": "read", "namespaces": ["globex-one"]})),
        ("/admin/keys", json!({"name": "x", "scope": "read", "namespaces": ["acm*"]})),
        ("/admin/keys", json!({"name": "x", "scope": "read"})),
        ("/admin/keys", json!({"name": "x", "scope": "super_admin", "namespaces": ["acme-one"]})),
        (
            "/v1/api-keys",
            json!({"label": "x", "permissions": [{"namespace": "acme-one", "scopes": ["read"]}, {"namespace": "other", "scopes": ["read"]}]}),
        ),
    ] {
        let (s, v) = t.post(path, &body).await;
        assert_eq!(s, 403, "{body} → {v}");
    }
    let (s, _) = t.post("/v1/namespaces/globex-one/keys", &json!({"name": "x", "scope": "read"})).await;
    assert_eq!(s, 403);
    // The key it minted works inside only.
    let w = as_key(&root, &inner);
    assert_eq!(w.post("/v1/memory/store", &json!({"agent_id": "acme-one", "content": "x"})).await.0, 200);
    assert_eq!(w.post("/v1/memory/store", &json!({"agent_id": "acme-two", "content": "x"})).await.0, 403);
    // A write key cannot mint at all; the sub-admin cannot reach outside acme-team-*.
    assert_eq!(w.post("/v1/namespaces/acme-one/keys", &json!({"name": "y", "scope": "read"})).await.0, 403);
    let sa = as_key(&root, &sub_admin);
    assert_eq!(sa.post("/admin/keys", &json!({"name": "y", "scope": "read", "namespaces": ["acme-one"]})).await.0, 403);
    // Listing shows only keys it can manage; others are not found.
    let (_, root_made) =
        create_key(&root, "/admin/keys", &json!({"name": "elsewhere", "scope": "read", "namespaces": ["globex-one"]}))
            .await;
    let _ = root_made;
    let (s, v) = t.get("/admin/keys").await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"acme-writer") && !names.contains(&"elsewhere"), "{names:?}");
    let (_, all) = root.get("/admin/keys").await;
    let other_id = all["keys"].as_array().unwrap().iter().find(|k| k["name"] == "elsewhere").unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.post(&format!("/admin/keys/{other_id}/deactivate"), &json!({})).await.0, 404);
    assert_eq!(t.post(&format!("/admin/keys/{kid}/deactivate"), &json!({})).await.0, 200);
    assert_eq!(w.get("/v1/auth/whoami").await.0, 401);
}

#[tokio::test]
async fn rotation_revocation_expiry_and_no_in_place_upgrade() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (id, old) =
        create_key(&root, "/admin/keys", &json!({"name": "app", "scope": "write", "namespaces": ["app-a"]})).await;
    assert_eq!(as_key(&root, &old).get("/v1/auth/whoami").await.0, 200);
    // Rotate at once: the old secret is refused immediately, the new one works.
    let (s, v) = root.post(&format!("/admin/keys/{id}/rotate"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let new = v["new_key"].as_str().unwrap().to_string();
    let new_id = v["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(as_key(&root, &old).get("/v1/auth/whoami").await.0, 401);
    let (s, who) = as_key(&root, &new).get("/v1/auth/whoami").await;
    assert_eq!(s, 200);
    assert_eq!(who["namespaces"], json!(["app-a"]), "same permissions after rotation");
    // Rotation with grace: both work until the grace ends.
    let (s, v) = root.post(&format!("/admin/keys/{new_id}/rotate"), &json!({"grace_secs": 2})).await;
    assert_eq!(s, 200, "{v}");
    let newer = v["new_key"].as_str().unwrap().to_string();
    assert_eq!(as_key(&root, &new).get("/v1/auth/whoami").await.0, 200);
    assert_eq!(as_key(&root, &newer).get("/v1/auth/whoami").await.0, 200);
    assert!(
        eventually(Duration::from_secs(6), || {
            let c = as_key(&root, &new);
            async move { c.get("/v1/auth/whoami").await.0 == 401 }
        })
        .await
    );
    // Widening in place is refused; narrowing is allowed.
    let newer_id = v["key_id"].as_str().unwrap().to_string();
    let (s, _) = root
        .request(
            reqwest::Method::PATCH,
            &format!("/admin/keys/{newer_id}"),
            Some(&json!({"namespaces": ["app-a", "app-b"]})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = root
        .request(reqwest::Method::PATCH, &format!("/admin/keys/{newer_id}"), Some(&json!({"namespaces": null})))
        .await;
    assert_eq!(s, 403);
    let (s, v) = root
        .request(reqwest::Method::PATCH, &format!("/admin/keys/{newer_id}"), Some(&json!({"name": "renamed"})))
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("renamed")));
    let (s, _) = root.post("/admin/keys", &json!({"name": "x", "scope": "read", "permissions": []})).await;
    assert_eq!(s, 422, "unknown fields on key creation are 422");
    // Expiry.
    let soon = loci_storage::model::now_secs() + 1;
    let (_, exp) = create_key(
        &root,
        "/v1/api-keys",
        &json!({"label": "short", "permissions": [{"namespace": "app-a", "scopes": ["read"]}], "expires_at": soon}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let c = as_key(&root, &exp);
            async move {
                let (s, v) = c.get("/v1/auth/whoami").await;
                s == 401 && v["code"] == "API_KEY_EXPIRED"
            }
        })
        .await
    );
    // Deactivate and delete.
    let (did, dk) = create_key(&root, "/admin/keys", &json!({"name": "d", "scope": "read"})).await;
    assert_eq!(root.post(&format!("/admin/keys/{did}/deactivate"), &json!({})).await.0, 200);
    assert_eq!(as_key(&root, &dk).get("/v1/auth/whoami").await.0, 401);
    let (xid, xk) = create_key(&root, "/admin/keys", &json!({"name": "x", "scope": "read"})).await;
    assert_eq!(root.delete(&format!("/admin/keys/{xid}")).await.0, 200);
    assert_eq!(as_key(&root, &xk).get("/v1/auth/whoami").await.0, 401);
    assert_eq!(root.get(&format!("/admin/keys/{xid}")).await.0, 404);
    // Usage counters.
    let (s, u) = root.get(&format!("/admin/keys/{newer_id}/usage")).await;
    assert_eq!(s, 200);
    assert!(u["total_requests"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn gdpr_erasure_leaves_nothing_behind() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let canary = "ERASEMEcanary7713";
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, v) = root
            .post(
                "/v1/memory/store",
                &json!({"agent_id": "gdpr-user", "content": format!("{canary} fact number {i}"), "tags": [canary], "metadata": {"k": canary}}),
            )
            .await;
        assert_eq!(s, 200);
        ids.push(v["memory"]["id"].as_str().unwrap().to_string());
    }
    let keep = root.store("other-user", &format!("unrelated {canary} memory")).await;
    let (s, _) = root.post("/v1/sessions/start", &json!({"agent_id": "gdpr-user"})).await;
    assert_eq!(s, 200);
    let (_, user_key) =
        create_key(&root, "/admin/keys", &json!({"name": "gdpr-user", "scope": "write", "namespaces": ["gdpr-user"]}))
            .await;
    let wrapped = {
        let core = &node.handle.as_ref().unwrap().core;
        let cat = core.catalogue.view.read();
        let k = &cat.namespaces["gdpr-user"].data_key;
        serde_json::to_string(&k.sealed).unwrap()
    };
    // Erase.
    let (s, receipt) = root.delete("/v1/namespaces/gdpr-user").await;
    assert_eq!(s, 200, "{receipt}");
    assert_eq!(receipt["namespace"], "gdpr-user");
    assert_eq!(receipt["memories_deleted"], 20);
    assert_eq!(receipt["data_key_destroyed"], true);
    assert_eq!(receipt["catalogue_history_purged"], true);
    assert!(receipt["deleted_at"].is_u64());
    // Nothing comes back through any read path.
    assert_eq!(root.get("/v1/namespaces/gdpr-user").await.0, 404);
    let (s, v) = root.post("/v1/memory/recall", &json!({"agent_id": "gdpr-user", "query": canary})).await;
    assert_eq!((s, v["memories"].as_array().unwrap().len()), (200, 0));
    for id in &ids {
        assert_eq!(root.get(&format!("/v1/memory/get/{id}?agent_id=gdpr-user")).await.0, 404);
        assert_eq!(root.get(&format!("/v1/memory/get/{id}")).await.0, 404);
    }
    let (_, v) = root.get("/v1/agents/gdpr-user/memories").await;
    assert_eq!(v, json!([]));
    // The user's key reaches nothing any more (the namespace is gone; a new one would be empty).
    let (s, v) = as_key(&root, &user_key)
        .post("/v1/memories/recall/batch", &json!({"agent_id": "gdpr-user", "filter": {}}))
        .await;
    assert_eq!((s, v["total"].as_u64()), (200, Some(0)));
    // Other tenants are untouched.
    assert_eq!(root.recall_ids("other-user", canary, 5).await, vec![keep]);
    // The wrapped data key is gone from the catalogue and from every Raft file.
    {
        let core = &node.handle.as_ref().unwrap().core;
        assert!(core.catalogue.view.read().namespaces.get("gdpr-user").is_none());
    }
    let raft_dir = node.path().join("raft");
    let hits = files_containing(&raft_dir, wrapped.as_bytes());
    assert!(hits.is_empty(), "wrapped key still on disk in {hits:?}");
    // The memory ids (the only plaintext a row key carries) are gone from the data files.
    let data_dir = node.path().join("data");
    for id in &ids {
        let hits = files_containing(&data_dir, id.as_bytes());
        assert!(hits.is_empty(), "erased memory id {id} still in {hits:?}");
    }
    assert!(files_containing(node.path(), canary.as_bytes()).is_empty());
}

#[tokio::test]
async fn batch_forget_by_filter_removes_from_storage_and_both_indexes() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    let (_, sess) = c.post("/v1/sessions/start", &json!({"agent_id": "bf"})).await;
    let sid = sess["session"]["id"].as_str().unwrap().to_string();
    let tagged = c
        .post("/v1/memory/store", &json!({"agent_id": "bf", "content": "zebra migration notes", "tags": ["drop"]}))
        .await
        .1["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let in_session = c
        .post("/v1/memory/store", &json!({"agent_id": "bf", "content": "zebra stripes session", "session_id": sid}))
        .await
        .1["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = c.store("bf", "zebra facts to keep").await;
    for (filter, gone) in [(json!({"tags": ["drop"]}), &tagged), (json!({"session_id": sid}), &in_session)] {
        let (s, v) = c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": "bf", "filter": filter})).await;
        assert_eq!((s, v["deleted_count"].as_u64()), (200, Some(1)), "{v}");
        for routing in ["vector", "bm25", "hybrid"] {
            let (_, v) = c
                .post(
                    "/v1/memory/recall",
                    &json!({"agent_id": "bf", "query": "zebra", "routing": routing, "top_k": 10}),
                )
                .await;
            assert!(!ids_of(&v["memories"]).contains(gone), "{routing} still returns a forgotten memory");
        }
    }
    // Before-date filter: everything created up to now.
    let (s, v) = c
        .delete_with(
            "/v1/memories/forget/batch",
            &json!({"agent_id": "bf", "filter": {"created_before": loci_storage::model::now_secs() + 1}}),
        )
        .await;
    assert_eq!((s, v["deleted_count"].as_u64()), (200, Some(1)), "{v}");
    assert!(!c.recall_ids("bf", "zebra", 10).await.contains(&kept));
    // Unknown filter operators are refused, not ignored.
    let (s, v) =
        c.delete_with("/v1/memories/forget/batch", &json!({"agent_id": "bf", "filter": {"$where": "1"}})).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn encryption_key_rotation_survives_restart_with_only_the_new_key() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    let mut ids = Vec::new();
    for ns in ["rot-a", "rot-b"] {
        ids.push((ns, c.store(ns, &format!("memory sealed before rotation in {ns}")).await));
    }
    let new_key = "a1".repeat(32);
    let (s, v) = c.post("/admin/encryption/rotate", &json!({"new_key": new_key})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rotated"], 2);
    assert!(v.get("new_key").is_none(), "a supplied key is never echoed");
    // Still readable and writable before the restart.
    ids.push(("rot-c", c.store("rot-c", "memory created after rotation").await));
    let (s, _) = c.post("/v1/admin/encryption/rotate-key", &json!({"namespace": "rot-a"})).await;
    assert_eq!(s, 501);
    let (_, key_non_admin) = create_key(&c, "/admin/keys", &json!({"name": "adm", "scope": "admin"})).await;
    assert_eq!(c.with_key(Some(&key_non_admin)).post("/admin/encryption/rotate", &json!({})).await.0, 403);
    let dir = node.stop().await;
    // The old key no longer unlocks the cluster.
    let mut old_args = loci_tests::serve_args(dir.path());
    old_args.encryption_key = Some(loci_tests::ENCRYPTION_KEY.into());
    assert!(loci_node::start(old_args).await.is_err());
    let node = TestNode::start_in(dir, |a| a.encryption_key = Some(new_key.clone())).await;
    for (ns, id) in &ids {
        let (s, v) = node.client.get(&format!("/v1/memory/get/{id}?agent_id={ns}")).await;
        assert_eq!(s, 200, "{ns}: {v}");
        assert!(v["content"].as_str().unwrap().contains("memory"));
    }
    assert_eq!(node.client.recall_ids("rot-a", "sealed before rotation", 1).await, vec![ids[0].1.clone()]);
}

#[tokio::test]
async fn retention_and_quotas_are_enforced() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    c.store("quota", "one").await;
    let (s, v) = c.put("/v1/namespaces/quota/memory_policy", &json!({"max_memories": 2})).await;
    assert_eq!(s, 200, "{v}");
    c.store("quota", "two").await;
    let (s, v) = c.post("/v1/memory/store", &json!({"agent_id": "quota", "content": "three"})).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "QUOTA_EXCEEDED");
    assert!(v["error"].as_str().unwrap().contains("max_memories of 2"));
    let (s, _) =
        c.post("/v1/memories/store/batch", &json!({"agent_id": "quota", "memories": [{"content": "a"}]})).await;
    assert_eq!(s, 413);
    let (_, v) = c.get("/v1/namespaces/quota").await;
    assert_eq!(v["memory_count"], 2, "nothing beyond the quota was stored");
    // Retention: memories older than the window are swept in the background.
    let old = c.store("retain", "old memory").await;
    let (s, _) = c.put("/v1/namespaces/retain/memory_policy", &json!({"retention_seconds": 1})).await;
    assert_eq!(s, 200);
    assert!(
        eventually(Duration::from_secs(10), || {
            let c = c.clone();
            let old = old.clone();
            async move { c.get(&format!("/v1/memory/get/{old}?agent_id=retain")).await.0 == 404 }
        })
        .await
    );
}

#[tokio::test]
async fn rate_limits_per_key_and_per_namespace() {
    let node = TestNode::start_with(|a| {
        a.rate_limit_rps = 5.0;
        a.rate_limit_burst = 5;
    })
    .await;
    let c = node.client.clone();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/auth/whoami", c.base))
            .bearer_auth(loci_tests::ROOT_KEY)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        last = Some(resp);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    let last = last.unwrap();
    assert_eq!(last.status().as_u16(), 429);
    let h = last.headers();
    assert!(h.get("retry-after").is_some());
    assert_eq!(h.get("ratelimit-limit").unwrap(), "5");
    assert_eq!(h.get("ratelimit-remaining").unwrap(), "0");
    assert!(h.get("x-ratelimit-reset").is_some());
    let body: Value = last.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    // Another key has its own budget.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, other) = create_key(&c, "/admin/keys", &json!({"name": "other", "scope": "admin"})).await;
    let o = c.with_key(Some(&other));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, _) = o.put("/v1/namespaces/limited/memory_policy", &json!({})).await;
    assert!(s == 404 || s == 200);
    // Per-namespace store limit from the policy.
    o.post("/v1/memory/store", &json!({"agent_id": "limited", "content": "first"})).await;
    let (s, v) = o
        .put(
            "/v1/namespaces/limited/memory_policy",
            &json!({"rate_limit_enabled": true, "rate_limit_stores_per_minute": 1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s1, _) = o.post("/v1/memory/store", &json!({"agent_id": "limited", "content": "a"})).await;
    let (s2, v2) = o.post("/v1/memory/store", &json!({"agent_id": "limited", "content": "b"})).await;
    assert_eq!((s1, s2), (200, 429), "{v2}");
    assert_eq!(v2["error"], "rate_limited", "{v2}");
    assert!(v2["details"].as_str().unwrap().contains("namespace 'limited'"), "{v2}");
}

#[tokio::test]
async fn redis_outage_falls_back_to_local_limits_and_recovers() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let node = TestNode::start_with(|a| {
        a.rate_limit_rps = 20.0;
        a.rate_limit_burst = 20;
        a.redis_url = Some(redis.url());
    })
    .await;
    let base = node.client.base.clone();
    let hit = || {
        let base = base.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/v1/auth/whoami"))
                .bearer_auth(loci_tests::ROOT_KEY)
                .send()
                .await
                .unwrap();
            let backend = r.headers().get("x-ratelimit-backend").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), backend)
        }
    };
    let (s, b) = hit().await;
    assert_eq!((s, b.as_deref()), (200, Some("redis")));
    redis.kill();
    // Limiting continues locally: a burst beyond the budget is refused, never unlimited.
    let started = std::time::Instant::now();
    let mut refused = 0;
    let mut local = 0;
    for _ in 0..60 {
        let (s, b) = hit().await;
        if s == 429 {
            refused += 1;
        }
        if b.as_deref() == Some("local") {
            local += 1;
        }
    }
    assert!(refused > 0, "no request was limited while Redis was down");
    assert!(local > 0);
    assert!(started.elapsed() < Duration::from_secs(20), "fallback must be fast");
    let (_, metrics) = node.client.get("/metrics").await;
    assert!(metrics.as_str().unwrap().contains("loci_ratelimit_backend{backend=\"local\"} 1"));
    // Redis returns on the same port: the limiter goes back to it.
    let _redis2 = RedisServer::start_on(port);
    assert!(
        eventually(Duration::from_secs(15), || {
            let hit = hit.clone();
            async move { hit().await.1.as_deref() == Some("redis") }
        })
        .await
    );
}

#[tokio::test]
async fn content_screening_flags_or_blocks() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    c.store("screened", "hello").await;
    c.store("flagged", "hello").await;
    assert_eq!(c.put("/v1/namespaces/screened/memory_policy", &json!({"content_screening": "block"})).await.0, 200);
    assert_eq!(c.put("/v1/namespaces/flagged/memory_policy", &json!({"content_screening": "flag"})).await.0, 200);
    let attack = "'; DROP TABLE memories; --";
    let (s, v) = c.post("/v1/memory/store", &json!({"agent_id": "screened", "content": attack})).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sql"));
    let (s, v) =
        c.post("/v1/memory/store", &json!({"agent_id": "screened", "content": "<script>steal()</script>"})).await;
    assert_eq!(s, 422);
    assert!(v["error"].as_str().unwrap().contains("xss"));
    let (s, v) = c.post("/v1/memory/store", &json!({"agent_id": "flagged", "content": attack})).await;
    assert_eq!(s, 200);
    assert_eq!(v["memory"]["content"], attack);
    assert!(v["memory"]["tags"].as_array().unwrap().contains(&json!("screened:sql")));
    // Identifiers with NUL or CRLF are always refused.
    for bad in ["a\r\nb", "a\u{0}b"] {
        let (s, _) = c.post("/v1/memory/store", &json!({"agent_id": bad, "content": "x"})).await;
        assert_eq!(s, 400);
        let (s, _) = c.post("/v1/memory/store", &json!({"agent_id": "ok", "content": "x", "session_id": bad})).await;
        assert_eq!(s, 400);
    }
}

#[tokio::test]
async fn security_headers_and_cors() {
    let node = TestNode::start_with(|a| a.cors_origins = "https://app.example".into()).await;
    let c = &node.client;
    for path in ["/health", "/v1/namespaces", "/no/such"] {
        let r = reqwest::Client::new().get(format!("{}{path}", c.base)).send().await.unwrap();
        let h = r.headers();
        for name in [
            "strict-transport-security",
            "x-frame-options",
            "x-content-type-options",
            "referrer-policy",
            "content-security-policy",
        ] {
            assert!(h.get(name).is_some(), "{path} lacks {name}");
        }
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    }
    let pre = |origin: &str| {
        let base = c.base.clone();
        let origin = origin.to_string();
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, format!("{base}/v1/memory/recall"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap()
        }
    };
    let ok = pre("https://app.example").await;
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
    let bad = pre("https://evil.example").await;
    assert!(bad.headers().get("access-control-allow-origin").is_none());
    // A wildcard with credentials refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let mut args = loci_tests::serve_args(dir.path());
    args.cors_origins = "*".into();
    args.cors_credentials = true;
    let err = loci_node::start(args).await.err().expect("must refuse").to_string();
    assert!(err.contains("credentials"), "{err}");
    // Strict preset.
    let strict = TestNode::start_with(|a| a.security_preset = "strict".into()).await;
    let r = reqwest::Client::new().get(format!("{}/health", strict.client.base)).send().await.unwrap();
    assert!(r.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("sandbox"));
}

#[tokio::test]
async fn audit_log_is_complete_chained_and_free_of_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.log");
    let ap = audit_path.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
        a.audit_request_body = true;
        a.audit_max_body_size = 4096;
    })
    .await;
    let c = node.client.clone();
    let (kid, secret) =
        create_key(&c, "/admin/keys", &json!({"name": "audited", "scope": "write", "namespaces": ["aud"]})).await;
    let k = c.with_key(Some(&secret));
    assert_eq!(k.post("/v1/memory/store", &json!({"agent_id": "aud", "content": "audited memory"})).await.0, 200);
    assert_eq!(k.post("/v1/memory/store", &json!({"agent_id": "other", "content": "x"})).await.0, 403);
    assert_eq!(c.with_key(Some("dk_wrong")).get("/v1/namespaces").await.0, 401);
    let (s, rot) = c.post(&format!("/admin/keys/{kid}/rotate"), &json!({})).await;
    assert_eq!(s, 200);
    let rotated_secret = rot["new_key"].as_str().unwrap().to_string();
    c.put("/v1/namespaces/aud/memory_policy", &json!({"dedup_on_store": true})).await;
    let (s, _) = c.post("/admin/encryption/rotate", &json!({"new_key": "correct horse battery staple"})).await;
    assert_eq!(s, 200);
    c.delete("/v1/namespaces/aud").await;
    node.stop().await;

    let text = std::fs::read_to_string(&audit_path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for e in
        ["key_created", "key_rotated", "auth_failure", "namespace_created", "namespace_erased", "encryption_rotated"]
    {
        assert!(events.contains(&e), "missing event {e}: {events:?}");
    }
    let refused = lines.iter().find(|l| l["type"] == "request" && l["status"] == 403).expect("the 403 is audited");
    assert_eq!(refused["key_id"], kid.as_str());
    assert_eq!(refused["namespaces"], json!(["other"]));
    assert!(refused["latency_ms"].is_number() && refused["ip"].is_string());
    let policy = lines.iter().find(|l| l["path"] == "/v1/namespaces/aud/memory_policy").unwrap();
    assert_eq!(policy["request_body"]["dedup_on_store"], true, "bodies are captured");
    // No secret anywhere: created key, rotated key, root key, the new master passphrase.
    for s in [secret.as_str(), rotated_secret.as_str(), loci_tests::ROOT_KEY, "correct horse battery staple"] {
        assert!(!text.contains(s), "secret leaked into the audit log");
    }
    assert_eq!(
        loci_service::audit::verify(&audit_path).unwrap(),
        loci_service::audit::Verdict::Intact { lines: lines.len() as u64 }
    );
    // Tampering is detected.
    std::fs::write(&audit_path, text.replacen("\"status\":403", "\"status\":200", 1)).unwrap();
    assert!(matches!(loci_service::audit::verify(&audit_path).unwrap(), loci_service::audit::Verdict::Broken { .. }));
}

#[tokio::test]
async fn a_key_cannot_lock_out_its_owner_or_learn_foreign_namespaces() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    root.store("secret-tenant", "not yours").await;
    let (id, secret) =
        create_key(&root, "/admin/keys", &json!({"name": "leaky", "scope": "read", "namespaces": ["mine"]})).await;
    let k = as_key(&root, &secret);
    // It may look at itself...
    assert_eq!(k.get(&format!("/admin/keys/{id}")).await.0, 200);
    // ...but not rotate, deactivate, delete or rename itself.
    for (m, path, body) in [
        (reqwest::Method::POST, format!("/admin/keys/{id}/rotate"), json!({})),
        (reqwest::Method::POST, format!("/admin/keys/{id}/deactivate"), json!({})),
        (reqwest::Method::DELETE, format!("/admin/keys/{id}"), json!({})),
        (reqwest::Method::PATCH, format!("/admin/keys/{id}"), json!({"name": "mine now"})),
    ] {
        let (s, _) = k.request(m.clone(), &path, Some(&body)).await;
        assert!(s == 403 || s == 404, "{m} {path} → {s}");
    }
    assert_eq!(k.get("/v1/auth/whoami").await.0, 200, "the key still works");
    // Refused namespaces never show up in its own usage report.
    assert_eq!(k.post("/v1/memory/recall", &json!({"agent_id": "secret-tenant", "query": "x"})).await.0, 403);
    k.get("/v1/agents").await;
    let (s, usage) = k.get(&format!("/admin/keys/{id}/usage")).await;
    assert_eq!(s, 200);
    assert!(!usage.to_string().contains("secret-tenant"), "{usage}");
    // A key is rotated once; its successor is what rotates next.
    let (s, _) = root.post(&format!("/admin/keys/{id}/rotate"), &json!({"grace_secs": 60})).await;
    assert_eq!(s, 200);
    let (s, v) = root.post(&format!("/admin/keys/{id}/rotate"), &json!({"grace_secs": 60})).await;
    assert_eq!(s, 409, "{v}");
    // Policy values are checked.
    for bad in [json!({"content_screening": "maybe"}), json!({"max_memories": 0}), json!({"write_quorum": 0})] {
        assert_eq!(root.put("/v1/namespaces/secret-tenant/memory_policy", &bad).await.0, 400, "{bad}");
    }
}

/// Session ids are chosen per namespace: one tenant's client-chosen id neither blocks another's,
/// nor tells it that the id exists, nor lets it read or end the other's session.
#[tokio::test]
async fn session_ids_are_per_tenant_and_never_cross() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (_, ka) =
        create_key(&root, "/admin/keys", &json!({"name": "a", "scope": "write", "namespaces": ["tenant-a"]})).await;
    let (_, kb) =
        create_key(&root, "/admin/keys", &json!({"name": "b", "scope": "write", "namespaces": ["tenant-b"]})).await;
    let (a, b) = (as_key(&root, &ka), as_key(&root, &kb));
    let start = |ns: &str, owner: &str| json!({"agent_id": ns, "id": "shared-session-1", "metadata": {"owner": owner}});
    let (s, v) = a.post("/v1/sessions/start", &start("tenant-a", "a")).await;
    assert_eq!(s, 200, "{v}");
    a.post(
        "/v1/memory/store",
        &json!({"agent_id": "tenant-a", "content": "a's private session note", "session_id": "shared-session-1"}),
    )
    .await;

    // Before tenant b uses the id, asking for it answers exactly as for an id nobody holds.
    let (s1, v1) = b.get("/v1/sessions/shared-session-1").await;
    let (s2, v2) = b.get("/v1/sessions/no-such-session").await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(v1["code"], v2["code"]);
    assert!(!v1.to_string().contains("tenant-a") && !v1.to_string().contains("owner"));

    // Tenant b claims the same id in its own namespace: no conflict, and it gets its own session.
    let (s, v) = b.post("/v1/sessions/start", &start("tenant-b", "b")).await;
    assert_eq!(s, 200, "the id of another tenant's session must not block this one: {v}");
    let (s, v) = b.get("/v1/sessions/shared-session-1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["agent_id"], "tenant-b");
    assert_eq!(v["metadata"]["owner"], "b");
    assert_eq!(v["memory_count"], 0, "b's session must not count a's memories: {v}");
    let (s, v) = b.get("/v1/sessions/shared-session-1/memories").await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains("a's private session note"), "{v}");

    // b ends its session; a's is untouched and still its own.
    let (s, _) = b.post("/v1/sessions/shared-session-1/end", &json!({"summary": "b done"})).await;
    assert_eq!(s, 200);
    let (s, v) = a.get("/v1/sessions/shared-session-1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["agent_id"], "tenant-a");
    assert_eq!(v["metadata"]["owner"], "a");
    assert!(v.get("ended_at").is_none(), "b's end must not end a's session: {v}");
    assert_eq!(v["memory_count"], 1);

    // Starting the same id again in one namespace is idempotent: a's existing session, unchanged.
    let (s, v) = a.post("/v1/sessions/start", &start("tenant-a", "a again")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["session"]["metadata"]["owner"], "a");
    // Listings stay per tenant.
    let (_, v) = b.get("/v1/sessions").await;
    assert!(!v.to_string().contains("\"owner\":\"a\""), "{v}");
    // An admin reaching both namespaces is told the id is ambiguous rather than shown either.
    let (s, v) = root.get("/v1/sessions/shared-session-1").await;
    assert_eq!(s, 409, "{v}");
}
