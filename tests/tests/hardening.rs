//! Attacks on shared resources by one tenant, against real three-node clusters: each is refused
//! with nothing changed, and the cluster keeps committing and serving everyone else.

use std::time::Duration;

use loci_tests::{TestCluster, create_key, eventually};
use serde_json::json;

/// Namespace metadata and policy strings become Raft entries replicated to every node: an
/// oversized one is refused before it is proposed, nothing is created, and the catalogue keeps
/// committing on every node, including one that was cut off while bounded entries piled up.
#[tokio::test]
async fn oversized_catalogue_entries_are_refused_and_raft_keeps_committing() {
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let root = c.client(0).clone();
    let (_, k) =
        create_key(&root, "/admin/keys", &json!({"name": "t", "scope": "admin", "namespaces": ["tenant-*"]})).await;
    let tenant = root.with_key(Some(&k));

    // ~9.5 MB of metadata in one request (under the 10 MiB body limit): refused, nothing created.
    let blob = "x".repeat(9_500_000);
    let (s, v) =
        tenant.post("/v1/namespaces", &json!({"name": "tenant-big", "dimension": 16, "metadata": {"b": blob}})).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    // Just over the namespace metadata bound (8 KiB) is refused too; just under is accepted.
    let (s, _) = tenant
        .post("/v1/namespaces", &json!({"name": "tenant-over", "dimension": 16, "metadata": {"b": "y".repeat(8200)}}))
        .await;
    assert_eq!(s, 413);
    let (s, v) = tenant
        .post("/v1/namespaces", &json!({"name": "tenant-under", "dimension": 16, "metadata": {"b": "z".repeat(8000)}}))
        .await;
    assert_eq!(s, 201, "{v}");
    for i in 0..3 {
        let client = c.client(i);
        for ns in ["tenant-big", "tenant-over"] {
            let (s, _) = client.get(&format!("/v1/namespaces/{ns}")).await;
            assert_eq!(s, 404, "node {i} holds the refused namespace {ns}");
        }
    }
    // A policy string far beyond any decay or mode name: refused, the policy unchanged.
    let (_, before) = tenant.get("/v1/namespaces/tenant-under/memory_policy").await;
    let (s, v) =
        tenant.put("/v1/namespaces/tenant-under/memory_policy", &json!({"working_decay": "d".repeat(100_000)})).await;
    assert_eq!(s, 400, "{v}");
    let (_, after) = tenant.get("/v1/namespaces/tenant-under/memory_policy").await;
    assert_eq!(before, after);

    // Node 2 is cut off while 120 near-limit entries commit; healed, it applies them all and a
    // key revoked afterwards is refused on it as on every node.
    c.partition(2, true);
    let pad = "p".repeat(7900);
    for n in 0..120 {
        let (s, v) = tenant
            .post(
                "/v1/namespaces",
                &json!({"name": format!("tenant-fill-{n}"), "dimension": 16, "metadata": {"p": pad}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (victim_id, victim) =
        create_key(&root, "/admin/keys", &json!({"name": "victim", "scope": "read", "namespaces": ["tenant-*"]})).await;
    c.partition(2, false);
    let caught_up = eventually(Duration::from_secs(30), || async {
        c.client(2).get("/v1/namespaces/tenant-fill-119").await.0 == 200
            && c.client(2).with_key(Some(&victim)).get("/v1/namespaces").await.0 == 200
    })
    .await;
    assert!(caught_up, "the follower that was cut off did not catch up");
    let (s, _) = root.delete(&format!("/admin/keys/{victim_id}")).await;
    assert!(s == 200 || s == 204);
    for i in 0..3 {
        let (s, _) = c.client(i).with_key(Some(&victim)).get("/v1/namespaces").await;
        assert_eq!(s, 401, "node {i} still accepts a revoked key");
    }
}

/// `POST /v1/memory/importance` names memories by id: the list is capped, de-duplicated and
/// applied as one write, all or nothing.
#[tokio::test]
async fn importance_updates_are_capped_deduplicated_and_all_or_nothing() {
    let node = loci_tests::TestNode::start().await;
    let root = node.client.clone();
    let ns = "imp-tenant";
    let a = root.store(ns, "first memory").await;
    let b = root.store(ns, "second memory").await;
    let importance_of = |id: String| {
        let root = root.clone();
        async move { root.get(&format!("/v1/memory/get/{id}?agent_id={ns}")).await.1["importance"].as_f64() }
    };
    let before = (importance_of(a.clone()).await, importance_of(b.clone()).await);

    // More ids than a batch may hold: refused before any work.
    let many: Vec<String> = (0..1001).map(|i| format!("m{i}")).collect();
    let (s, v) =
        root.post("/v1/memory/importance", &json!({"agent_id": ns, "memory_ids": many, "importance": 0.9})).await;
    assert_eq!(s, 400, "{v}");
    // One existing and one missing id: nothing changes.
    let (s, _) = root
        .post("/v1/memory/importance", &json!({"agent_id": ns, "memory_ids": [a, "no-such-memory"], "importance": 0.9}))
        .await;
    assert_eq!(s, 404);
    assert_eq!((importance_of(a.clone()).await, importance_of(b.clone()).await), before);
    // The same id 500 times is one update of one memory.
    let dup: Vec<&str> = std::iter::repeat_n(a.as_str(), 500).collect();
    let (s, v) =
        root.post("/v1/memory/importance", &json!({"agent_id": ns, "memory_ids": dup, "importance": 0.8})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["updated_count"], 1);
    assert_eq!(v["memory_ids"], json!([a]));
    // Two ids in one request: both change.
    let (s, v) =
        root.post("/v1/memory/importance", &json!({"agent_id": ns, "memory_ids": [a, b], "importance": 0.3})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["updated_count"], 2);
    assert_eq!((importance_of(a.clone()).await, importance_of(b.clone()).await), (Some(0.3), Some(0.3)));
    // Another agent's memory in the same namespace is not this agent's to change.
    let (s, v) = root
        .post("/v1/memory/store", &json!({"namespace": ns, "agent_id": "other-agent", "content": "not yours"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let other = v["memory"]["id"].as_str().unwrap().to_string();
    let (s, _) = root
        .post(
            "/v1/memory/importance",
            &json!({"namespace": ns, "agent_id": "some-agent", "memory_ids": [other], "importance": 0.99}),
        )
        .await;
    assert_eq!(s, 404);
}

/// A leaked tenant-admin key cannot rotate itself away nor revoke or change its sibling admin
/// keys; it still manages the keys strictly below it, and the owner's wider key manages it.
#[tokio::test]
async fn a_tenant_admin_cannot_lock_out_its_owner_or_siblings() {
    let node = loci_tests::TestNode::start().await;
    let root = node.client.clone();
    let admin = json!({"name": "acme admin", "scope": "admin", "namespaces": ["acme-*"]});
    let (a1_id, a1) = create_key(&root, "/admin/keys", &admin).await;
    let (a2_id, a2) = create_key(&root, "/admin/keys", &admin).await;
    let (owner_id, owner) = create_key(
        &root,
        "/admin/keys",
        &json!({"name": "owner", "scope": "admin", "namespaces": ["acme-*", "acme2-*"]}),
    )
    .await;
    let leaked = root.with_key(Some(&a1));
    // On itself and on its sibling: rotate (zero grace), deactivate, delete, rename, re-scope.
    for target in [&a1_id, &a2_id, &owner_id] {
        for (m, path, body) in [
            (reqwest::Method::POST, format!("/admin/keys/{target}/rotate"), json!({"grace_secs": 0})),
            (reqwest::Method::POST, format!("/admin/keys/{target}/deactivate"), json!({})),
            (reqwest::Method::DELETE, format!("/admin/keys/{target}"), json!({})),
            (reqwest::Method::PATCH, format!("/admin/keys/{target}"), json!({"name": "taken over"})),
            (reqwest::Method::DELETE, format!("/v1/namespaces/acme-x/keys/{target}"), json!({})),
        ] {
            let (s, v) = leaked.request(m.clone(), &path, Some(&body)).await;
            assert!(s == 403 || s == 404, "{m} {path} → {s} {v}");
        }
    }
    // Every one of them still works, unchanged.
    for (id, secret) in [(&a1_id, &a1), (&a2_id, &a2), (&owner_id, &owner)] {
        let (s, v) = root.with_key(Some(secret)).get("/v1/auth/whoami").await;
        assert_eq!(s, 200, "key {id} was locked out: {v}");
        let (_, k) = root.get(&format!("/admin/keys/{id}")).await;
        assert_ne!(k["name"], "taken over");
    }
    // Keys strictly below it are still its to manage.
    let (w_id, _) =
        create_key(&leaked, "/admin/keys", &json!({"name": "writer", "scope": "write", "namespaces": ["acme-x"]}))
            .await;
    let (s, v) = leaked.post(&format!("/admin/keys/{w_id}/rotate"), &json!({"grace_secs": 0})).await;
    assert_eq!(s, 200, "{v}");
    let new_w = v["key_id"].as_str().unwrap().to_string();
    let (s, _) = leaked.post(&format!("/admin/keys/{new_w}/deactivate"), &json!({})).await;
    assert_eq!(s, 200);
    // The owner's wider key (and the root key) manage the tenant admins.
    let (s, v) = root.with_key(Some(&owner)).post(&format!("/admin/keys/{a1_id}/deactivate"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(root.with_key(Some(&a1)).get("/v1/auth/whoami").await.0, 401);
    let (s, _) = root.post(&format!("/admin/keys/{a2_id}/rotate"), &json!({"grace_secs": 60})).await;
    assert_eq!(s, 200);
}

/// Guessing the cluster secret on the node-to-node port: each wrong token is refused, and after
/// five an address is refused without any comparison (even with the right token) for a minute,
/// while the cluster's own traffic goes on.
#[tokio::test]
async fn bad_cluster_tokens_are_throttled_and_the_cluster_keeps_working() {
    use loci_service::cluster::wire::pb;
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let target = c.handle(0).cluster_addr.to_string();
    let call = |token: &'static str| {
        let target = target.clone();
        async move {
            // From 127.0.0.2: another host, as far as the node can tell.
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
                .expect("endpoint")
                .local_address(Some(std::net::IpAddr::from([127, 0, 0, 2])))
                .connect()
                .await
                .expect("connect");
            let mut client = pb::internal_client::InternalClient::new(ch);
            let mut req = tonic::Request::new(pb::NodeInfoRequest {});
            req.metadata_mut().insert("x-loci-cluster-token", token.parse().expect("ascii"));
            client.node_info(req).await.map(|_| ()).map_err(|s| s.code())
        }
    };
    assert_eq!(call(loci_tests::CLUSTER_SECRET).await, Ok(()), "the right token is answered");
    for _ in 0..5 {
        assert_eq!(call("guess-0000000000000000").await, Err(tonic::Code::Unauthenticated));
    }
    // Blocked: refused without comparing, the right secret included.
    assert_eq!(call("guess-0000000000000001").await, Err(tonic::Code::ResourceExhausted));
    assert_eq!(call(loci_tests::CLUSTER_SECRET).await, Err(tonic::Code::ResourceExhausted));
    // The members (on 127.0.0.1) are not affected: a store through node 1 is served.
    let (s, v) =
        c.client(1).post_retrying("/v1/memory/store", &json!({"agent_id": "tok", "content": "still up"})).await;
    assert_eq!(s, 200, "{v}");
    let text = reqwest::get(format!("http://{}/metrics", c.handle(0).http_addr)).await.unwrap().text().await.unwrap();
    assert!(text.contains("loci_cluster_token_refused_total"), "refusals are not counted");
}

/// `--metrics-auth`: the cluster-wide page needs an operator's key on the public port; the
/// `--metrics-addr` listener serves it without one (a private interface for the scraper).
#[tokio::test]
async fn metrics_can_require_an_operator_key_or_move_to_its_own_listener() {
    let port = loci_tests::free_port();
    let node = loci_tests::TestNode::start_with(move |a| {
        a.metrics_auth = true;
        a.metrics_addr = Some(format!("127.0.0.1:{port}"));
    })
    .await;
    let root = node.client.clone();
    root.store("metrics-tenant", "something").await;
    let anonymous = root.with_key(None);
    let (s, _) = anonymous.get("/metrics").await;
    assert_eq!(s, 401, "the page is open without a key");
    let (_, tenant) = create_key(
        &root,
        "/admin/keys",
        &json!({"name": "tenant", "scope": "admin", "namespaces": ["metrics-tenant"]}),
    )
    .await;
    let (s, v) = root.with_key(Some(&tenant)).get("/metrics").await;
    assert_eq!(s, 403, "a tenant's key reads cluster-wide counts: {v}");
    let (_, operator) = create_key(&root, "/admin/keys", &json!({"name": "scraper", "scope": "read"})).await;
    let page =
        reqwest::Client::new().get(format!("{}/metrics", root.base)).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("loci_http_requests_total"));
    // The private listener: no key needed, and nothing but /metrics there.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("loci_http_requests_total"));
    let other = reqwest::get(format!("http://127.0.0.1:{port}/v1/namespaces")).await.unwrap();
    assert_eq!(other.status(), 404);
}

/// Erasing a namespace in a three-node cluster leaves its wrapped data key in no node's Raft
/// files and its unwrapped key in no node's memory.
#[tokio::test]
async fn erasure_leaves_no_key_material_on_any_node() {
    let c = TestCluster::start_with(3, |a| a.replication_factor = 3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let root = c.client(0).clone();
    let ns = "erase-everywhere";
    for i in 0..5 {
        let (s, v) =
            root.post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("fact {i}")})).await;
        assert_eq!(s, 200, "{v}");
    }
    // Every replica serves (and so unwraps the key) once it has the data.
    let (ns_id, wrapped) = {
        let cat = c.handle(0).core.catalogue.view.read();
        let e = &cat.namespaces[ns];
        (e.id, serde_json::to_string(&e.data_key.sealed).unwrap())
    };
    let everywhere = eventually(Duration::from_secs(20), || async {
        (0..3).all(|i| !loci_tests::files_containing(&c.node(i).path().join("raft"), wrapped.as_bytes()).is_empty())
    })
    .await;
    assert!(everywhere, "the wrapped key should be in every node's Raft files before the erasure");
    let (s, receipt) = c.client(1).delete(&format!("/v1/namespaces/{ns}")).await;
    assert_eq!(s, 200, "{receipt}");
    assert_eq!(receipt["catalogue_history_purged"], true, "{receipt}");
    for i in 0..3 {
        let hits = loci_tests::files_containing(&c.node(i).path().join("raft"), wrapped.as_bytes());
        assert!(hits.is_empty(), "node {i} still holds the wrapped key in {hits:?}");
        assert!(!c.handle(i).core.contexts.holds_key(ns_id), "node {i} still holds the unwrapped key in memory");
    }
    // The cluster goes on: another namespace is written and read through every node.
    let (s, v) =
        c.client(2).post_retrying("/v1/memory/store", &json!({"agent_id": "after-erase", "content": "ok"})).await;
    assert_eq!(s, 200, "{v}");
}

/// Listings without a namespace visit at most 1000 namespaces, however many the key reads, and
/// say so; per namespace, nothing is cut.
#[tokio::test]
async fn agentless_listings_visit_a_bounded_number_of_namespaces() {
    let node = loci_tests::TestNode::start().await;
    let root = node.client.clone();
    root.store("aaa-first", "listed").await;
    let (s, _) = root.post("/v1/sessions/start", &json!({"agent_id": "aaa-first"})).await;
    assert_eq!(s, 200);
    for i in 0..1001 {
        let (s, v) = root.post("/v1/namespaces", &json!({"name": format!("fan-{i:04}"), "dimension": 8})).await;
        assert_eq!(s, 201, "{v}");
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/agents", root.base))
        .bearer_auth(&root_key(&node))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("x-loci-namespaces-truncated").map(|v| v.to_str().unwrap()), Some("true"));
    let agents: serde_json::Value = resp.json().await.unwrap();
    assert!(agents.as_array().unwrap().iter().any(|a| a["agent_id"] == "aaa-first"), "{agents}");
    // A key reading a few namespaces is not truncated.
    let (_, k) =
        create_key(&root, "/admin/keys", &json!({"name": "few", "scope": "read", "namespaces": ["aaa-first"]})).await;
    let resp = reqwest::Client::new().get(format!("{}/v1/agents", root.base)).bearer_auth(&k).send().await.unwrap();
    assert!(resp.headers().get("x-loci-namespaces-truncated").is_none());
    let (s, v) = root.with_key(Some(&k)).get("/v1/sessions").await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 1, "{v}");
    assert!(v.get("namespaces_truncated").is_none());
}

fn root_key(node: &loci_tests::TestNode) -> String {
    node.client.key.clone().expect("root key")
}

/// A node cut off from the catalogue group cannot learn of a revocation: it stops taking minted
/// keys once it has not heard from the group for the freshness bound, so a key revoked meanwhile
/// is never accepted there; healed, it refuses the revoked key as every node does.
#[tokio::test]
async fn a_cut_off_node_never_accepts_a_key_revoked_while_it_was_away() {
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let root = c.client(0).clone();
    let (id, secret) = create_key(&root, "/admin/keys", &json!({"name": "victim", "scope": "read"})).await;
    let (_, other) = create_key(&root, "/admin/keys", &json!({"name": "bystander", "scope": "read"})).await;
    for i in 0..3 {
        assert_eq!(c.client(i).with_key(Some(&secret)).get("/v1/namespaces").await.0, 200);
    }
    // Which node is cut off: one that is not the catalogue leader.
    let leader = c.handle(0).core.catalogue.raft.metrics().borrow().current_leader.expect("leader");
    let cut = (0..3).find(|i| c.node_id(*i) != leader).expect("a follower");
    let rest: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    c.partition(cut, true);
    let stale = eventually(Duration::from_secs(20), || async {
        c.client(cut).with_key(Some(&secret)).get("/v1/namespaces").await.0 == 503
    })
    .await;
    assert!(stale, "the cut-off node kept taking minted keys");
    let (s, _) = c.client(rest[0]).delete(&format!("/admin/keys/{id}")).await;
    assert!(s == 200 || s == 204);
    // The revoked key is never accepted on the cut-off node; the majority refuses it too and
    // keeps serving other keys.
    assert_eq!(c.client(cut).with_key(Some(&secret)).get("/v1/namespaces").await.0, 503);
    for i in &rest {
        assert_eq!(c.client(*i).with_key(Some(&secret)).get("/v1/namespaces").await.0, 401);
        assert_eq!(c.client(*i).with_key(Some(&other)).get("/v1/namespaces").await.0, 200);
    }
    // The operator's root key still reads the cut-off node.
    assert_eq!(c.client(cut).get("/v1/namespaces").await.0, 200);
    c.partition(cut, false);
    let healed = eventually(Duration::from_secs(30), || async {
        c.client(cut).with_key(Some(&other)).get("/v1/namespaces").await.0 == 200
    })
    .await;
    assert!(healed, "the healed node does not take keys again");
    assert_eq!(c.client(cut).with_key(Some(&secret)).get("/v1/namespaces").await.0, 401);
}

/// A revocation, once acknowledged, is in force on a node that is still in touch with the
/// catalogue group but has not applied it yet: here the leader's traffic to one follower is cut
/// (one way), so that follower keeps asking the leader and hearing back, but receives no log.
/// Without the read-index freshness rule it would take the revoked key for up to the freshness
/// bound after the revocation was acknowledged (found on the rig after a one-way partition).
#[tokio::test]
async fn a_revoked_key_is_refused_at_once_by_a_follower_that_has_not_applied_the_revocation() {
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let root = c.client(0).clone();
    let (id, secret) = create_key(&root, "/admin/keys", &json!({"name": "victim", "scope": "read"})).await;
    let (_, other) = create_key(&root, "/admin/keys", &json!({"name": "bystander", "scope": "read"})).await;
    for i in 0..3 {
        assert_eq!(c.client(i).with_key(Some(&secret)).get("/v1/namespaces").await.0, 200);
    }
    let leader_id = c.handle(0).core.catalogue.raft.metrics().borrow().current_leader.expect("leader");
    let leader = (0..3).find(|i| c.node_id(*i) == leader_id).expect("the leader runs");
    let lagging = (0..3).find(|i| *i != leader).expect("a follower");
    // One way: nothing the leader sends reaches `lagging`; `lagging` still reaches everyone.
    let (l, f) = (c.handle(leader), c.handle(lagging));
    l.cluster.pool.set_blocked(&f.cluster_addr.to_string(), true);
    let (s, _) = c.client(leader).delete(&format!("/admin/keys/{id}")).await;
    assert!(s == 200 || s == 204, "revocation answered {s}");
    // Acknowledged: no node takes the key any more, the lagging one included.
    for i in 0..3 {
        let (s, _) = c.client(i).with_key(Some(&secret)).get("/v1/namespaces").await;
        assert!(s == 401 || s == 503, "node {i} answered {s} to a key revoked and acknowledged");
    }
    let lagging_applied = f.core.catalogue.view.applied_index();
    let leader_applied = l.core.catalogue.view.applied_index();
    assert!(lagging_applied < leader_applied, "the follower was meant to lag ({lagging_applied} >= {leader_applied})");
    for i in (0..3).filter(|i| *i != lagging) {
        assert_eq!(c.client(i).with_key(Some(&other)).get("/v1/namespaces").await.0, 200);
    }
    l.cluster.pool.set_blocked(&f.cluster_addr.to_string(), false);
    let healed = eventually(Duration::from_secs(30), || async {
        c.client(lagging).with_key(Some(&other)).get("/v1/namespaces").await.0 == 200
    })
    .await;
    assert!(healed, "the healed follower does not take keys again");
    assert_eq!(c.client(lagging).with_key(Some(&secret)).get("/v1/namespaces").await.0, 401);
}

/// Operator ceilings per namespace pattern (`/admin/quotas`): a tenant admin can neither change
/// them nor exceed them (namespaces, keys, memories, its own policy), every node enforces them,
/// nothing is created past a ceiling, and other tenants are untouched.
#[tokio::test]
async fn tenant_admins_cannot_exceed_or_lift_the_operators_quotas() {
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let root = c.client(0).clone();
    let quota = json!({"pattern": "acme-*", "max_namespaces": 2, "max_keys": 2, "max_memories": 3});
    let (s, v) = root.put("/admin/quotas", &quota).await;
    assert_eq!(s, 200, "{v}");
    let (_, admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme-admin", "scope": "admin", "namespaces": ["acme-*"]}))
            .await;
    let tenant = |i: usize| c.client(i).with_key(Some(&admin));

    // The tenant's admin cannot read, raise or delete the operator's quota.
    let (s, _) = tenant(1).put("/admin/quotas", &json!({"pattern": "acme-*", "max_namespaces": 1000})).await;
    assert_eq!(s, 403);
    assert_eq!(tenant(2).get("/admin/quotas").await.0, 403);
    assert_eq!(tenant(2).delete("/admin/quotas/acme-*").await.0, 403);
    let (_, v) = c.client(2).get("/admin/quotas/acme-*").await;
    assert_eq!(v["max_namespaces"], 2, "the quota is unchanged: {v}");

    // Namespaces: two, created through two nodes; the third is refused and does not exist.
    for (i, ns) in [(1, "acme-a"), (2, "acme-b")] {
        let (s, v) = tenant(i).post("/v1/memory/store", &json!({"agent_id": ns, "content": "first"})).await;
        assert_eq!(s, 200, "{ns}: {v}");
    }
    let (s, v) = tenant(0).post("/v1/memory/store", &json!({"agent_id": "acme-c", "content": "first"})).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "QUOTA_EXCEEDED");
    assert_eq!(root.get("/v1/namespaces/acme-c").await.0, 404, "nothing was created past the ceiling");

    // Keys: the admin key is one of the two; one more, then refused (and not created).
    let (s, v) =
        tenant(1).post("/admin/keys", &json!({"name": "acme-reader", "scope": "read", "namespaces": ["acme-a"]})).await;
    assert!(s == 200 || s == 201, "{v}");
    let (_, before) = root.get("/admin/keys").await;
    let (s, v) = tenant(2)
        .post("/admin/keys", &json!({"name": "one-too-many", "scope": "read", "namespaces": ["acme-b"]}))
        .await;
    assert_eq!(s, 413, "{v}");
    let (_, after) = root.get("/admin/keys").await;
    let ids = |v: &serde_json::Value| {
        let list = v.get("keys").unwrap_or(v).as_array().cloned().unwrap_or_default();
        list.iter().filter_map(|k| k["key_id"].as_str().map(str::to_string)).collect::<Vec<_>>()
    };
    assert!(!ids(&before).is_empty(), "{before}");
    assert_eq!(ids(&before), ids(&after), "no key was created past the ceiling");

    // Memories: the ceiling holds with no policy of the tenant's own, and the tenant cannot
    // lift it through its policy (refused, policy unchanged); a lower preference of its own
    // applies.
    for n in 2..=3 {
        assert_eq!(
            tenant(n % 3).post("/v1/memory/store", &json!({"agent_id": "acme-b", "content": format!("m{n}")})).await.0,
            200
        );
    }
    let (s, v) = tenant(1).post("/v1/memory/store", &json!({"agent_id": "acme-b", "content": "fourth"})).await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = tenant(0).put("/v1/namespaces/acme-a/memory_policy", &json!({"max_memories": 1000})).await;
    assert_eq!(s, 413, "{v}");
    let (_, policy) = tenant(0).get("/v1/namespaces/acme-a/memory_policy").await;
    assert!(policy.get("max_memories").is_none(), "the policy is unchanged: {policy}");
    let (s, _) = tenant(0).put("/v1/namespaces/acme-a/memory_policy", &json!({"max_memories": 1})).await;
    assert_eq!(s, 200);
    assert_eq!(tenant(2).post("/v1/memory/store", &json!({"agent_id": "acme-a", "content": "second"})).await.0, 413);

    // Another tenant is untouched.
    for n in 0..5 {
        assert_eq!(
            root.post("/v1/memory/store", &json!({"agent_id": "beta-x", "content": format!("b{n}")})).await.0,
            200
        );
    }
    // The operator raises the ceiling: in force on every node at once, existing namespaces too.
    let (s, _) = root
        .put("/admin/quotas", &json!({"pattern": "acme-*", "max_namespaces": 3, "max_keys": 2, "max_memories": 4}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(tenant(2).post("/v1/memory/store", &json!({"agent_id": "acme-b", "content": "fourth"})).await.0, 200);
    assert_eq!(tenant(1).post("/v1/memory/store", &json!({"agent_id": "acme-c", "content": "first"})).await.0, 200);
    let (_, v) = root.get("/admin/quotas").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(root.delete("/admin/quotas/acme-*").await.0, 200);
    assert_eq!(root.get("/admin/quotas/acme-*").await.0, 404);
}
