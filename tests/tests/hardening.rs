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
