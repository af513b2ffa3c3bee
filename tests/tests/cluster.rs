//! Clusters of real Loci nodes in one process: gossip over UDP, Raft and replication over gRPC,
//! all on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use loci_storage::model::{DataOp, DataResult};
use loci_tests::{TestCluster, create_key, eventually, ids_of};
use serde_json::{Value, json};

async fn status(c: &TestCluster, i: usize) -> Value {
    let (s, v) = c.client(i).get("/v1/admin/cluster/status").await;
    assert_eq!(s, 200, "{v}");
    v
}

/// What node `i` holds locally for a namespace (not routed): sorted (id, content).
fn placement_of(c: &TestCluster, i: usize, ns: &str) -> loci_raft::catalogue::Placement {
    c.handle(i).core.namespace(ns).expect("namespace").placement
}

#[tokio::test]
async fn three_and_five_node_clusters_form_from_seeds_and_agree() {
    for (n, voters) in [(3usize, 3usize), (5, 5)] {
        let c = TestCluster::start_with(n, move |a| a.voters = voters).await;
        // The reconciler promotes learners to the voter target; every node reports the same.
        let agreed = eventually(Duration::from_secs(30), || async {
            let mut seen = BTreeSet::new();
            for i in c.running() {
                let s = status(&c, i).await;
                let voters: Vec<String> =
                    s["voters"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                let members = s["members"].as_array().unwrap().len();
                let all_alive = s["members"].as_array().unwrap().iter().all(|m| m["state"] == "alive");
                if voters.len() != voters_target(n, voters.len()) || members != n || !all_alive {
                    return false;
                }
                seen.insert((s["leader"].to_string(), voters, s["cluster_id"].to_string()));
            }
            seen.len() == 1
        })
        .await;
        assert!(agreed, "{n}-node cluster status does not agree: {}", status(&c, 0).await);
        let s = status(&c, n - 1).await;
        assert_eq!(s["voters"].as_array().unwrap().len(), voters);
        assert_eq!(s["state"], "healthy");
        for m in s["members"].as_array().unwrap() {
            assert!(m["rpc_addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{m}");
            assert!(m["node_id"].as_str().is_some());
        }
        let (_, nodes) = c.client(0).get("/v1/admin/cluster/nodes").await;
        assert_eq!(nodes["total"], n);
    }
}

fn voters_target(n: usize, got: usize) -> usize {
    if got == n { n } else { usize::MAX }
}

#[tokio::test]
async fn write_anywhere_read_anywhere_100_namespaces_evenly_spread() {
    let c = TestCluster::start(3).await;
    for k in 0..100 {
        let ns = format!("tenant-{k}");
        let via = k % 3;
        let (s, v) = c
            .client(via)
            .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("fact of {ns}")}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let mut primaries: BTreeMap<u64, usize> = BTreeMap::new();
    for k in 0..100 {
        let ns = format!("tenant-{k}");
        for reader in 0..3 {
            let (s, v) =
                c.client(reader).post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}})).await;
            assert_eq!(s, 200);
            assert_eq!(v["memories"][0]["content"], format!("fact of {ns}"), "read of {ns} through node {reader}");
        }
        let p = placement_of(&c, 0, &ns);
        assert_eq!(p.replicas.len(), 3);
        *primaries.entry(p.primary().unwrap()).or_default() += 1;
    }
    // Even spread of primaries: within ±20 % of 100/3.
    for (node, count) in &primaries {
        assert!((27..=40).contains(count), "node {node} is primary of {count} namespaces: {primaries:?}");
    }
    // Responses say which node served them; a non-primary forwarded.
    let ns = "tenant-7";
    let primary = placement_of(&c, 0, ns).primary().unwrap();
    let other = (0..3).find(|i| c.node_id(*i) != primary).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/memories/recall/batch", c.client(other).base))
        .bearer_auth(loci_tests::ROOT_KEY)
        .json(&json!({"agent_id": ns, "filter": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-loci-node"].to_str().unwrap(), c.node_id(other).to_string());
    let (_, m) = c.client(other).get("/metrics").await;
    assert!(m.as_str().unwrap().contains("loci_forwarded_requests_total"));
    // Every replica holds the same data.
    for k in [0, 33, 99] {
        let ns = format!("tenant-{k}");
        let a = c.local_content(0, &ns).await;
        assert_eq!(a, c.local_content(1, &ns).await);
        assert_eq!(a, c.local_content(2, &ns).await);
    }
}

#[tokio::test]
async fn keys_are_cluster_wide_and_revocation_is_immediate_everywhere() {
    let c = TestCluster::start(3).await;
    let (id, secret) =
        create_key(c.client(0), "/admin/keys", &json!({"name": "roaming", "scope": "write", "namespaces": ["roam"]}))
            .await;
    // Usable through node C at once (the call returned only once every node applied it).
    let via_c = c.client(2).with_key(Some(&secret));
    let (s, v) = via_c.post("/v1/memory/store", &json!({"agent_id": "roam", "content": "hello from C"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.client(1).with_key(Some(&secret)).get("/v1/auth/whoami").await.0, 200);
    // Revoked through node B: refused on every node immediately.
    let (s, _) = c.client(1).delete(&format!("/admin/keys/{id}")).await;
    assert_eq!(s, 200);
    for i in 0..3 {
        let (s, v) = c.client(i).with_key(Some(&secret)).get("/v1/auth/whoami").await;
        assert_eq!(s, 401, "node {i} still accepts a revoked key: {v}");
    }
}

#[tokio::test]
async fn killing_a_primary_mid_stream_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3).await;
    let ns = "stream";
    let (s, _) = c.client(0).post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": "seed"})).await;
    assert_eq!(s, 200);
    let p0 = placement_of(&c, 0, ns);
    let primary = p0.primary().unwrap();
    let victim = c.index_of(primary).unwrap();
    let writers: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    // Stream writes through the surviving nodes; remember what was acknowledged.
    let clients: Vec<_> = writers.iter().map(|i| c.client(*i).clone()).collect();
    let stream = tokio::spawn(async move {
        let mut acked: Vec<(String, String)> = Vec::new();
        let mut refused = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut k = 0;
        while tokio::time::Instant::now() < deadline {
            let content = format!("acknowledged write {k}");
            let (s, v) =
                clients[k % clients.len()].post("/v1/memory/store", &json!({"agent_id": ns, "content": content})).await;
            if s == 200 {
                acked.push((v["memory"]["id"].as_str().unwrap().to_string(), content));
            } else {
                assert!(s == 503 || s == 409, "only retryable errors during failover, got {s}: {v}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            k += 1;
            if acked.len() >= 150 && tokio::time::Instant::now() + Duration::from_secs(8) > deadline {
                break;
            }
        }
        (acked, refused)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed_at = std::time::Instant::now();
    c.crash(victim).await;
    // Failover: a surviving replica becomes primary under a higher epoch.
    let survivor = writers[0];
    let moved = eventually(Duration::from_secs(30), || {
        let p = placement_of(&c, survivor, ns);
        async move { p.primary() != Some(primary) }
    })
    .await;
    assert!(moved, "no failover happened");
    let failover_secs = failed_at.elapsed().as_secs_f64();
    let p1 = placement_of(&c, survivor, ns);
    assert!(p1.epoch > p0.epoch, "epochs strictly increase");
    let (acked, refused) = stream.await.unwrap();
    assert!(acked.len() > 20, "too few acknowledged writes: {}", acked.len());
    println!(
        "failover took {failover_secs:.1}s; {} writes acknowledged, {refused} refused during failover",
        acked.len()
    );
    // Every acknowledged write is readable from every surviving node, with its content.
    for i in &writers {
        let (s, v) = c
            .client(*i)
            .post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}, "limit": 10000}))
            .await;
        assert_eq!(s, 200);
        let have: BTreeMap<String, String> = v["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
            .collect();
        for (id, content) in &acked {
            assert_eq!(have.get(id), Some(content), "acknowledged write {content} lost (read via node {i})");
        }
        // No id appears with two contents (ids are unique keys; contents are unique per write).
        let mut contents: Vec<&String> = have.values().collect();
        let n = contents.len();
        contents.sort();
        contents.dedup();
        assert_eq!(contents.len(), n, "a write was applied twice");
    }
}

#[tokio::test]
async fn a_partitioned_minority_cannot_commit_and_replicas_converge_after_healing() {
    let c = TestCluster::start_with(3, |a| a.failover_after_secs = 60).await;
    let ns = "split";
    assert_eq!(
        c.client(0)
            .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": "before the partition"}))
            .await
            .0,
        200
    );
    let p = placement_of(&c, 0, ns);
    let primary = p.primary().unwrap();
    let minority = c.index_of(primary).unwrap();
    let majority: Vec<usize> = (0..3).filter(|i| *i != minority).collect();
    c.partition(minority, true);
    // The minority side (holding the primary) cannot acknowledge writes: no write quorum.
    let (s, v) = c
        .client(minority)
        .post("/v1/memory/store", &json!({"agent_id": ns, "content": "written in the minority"}))
        .await;
    assert_eq!(s, 503, "{v}");
    // Nor commit catalogue changes: no Raft quorum.
    let (s, v) = c.client(minority).post("/v1/namespaces", &json!({"name": "minority-made", "dimension": 4})).await;
    assert!(s == 503 || s >= 500, "catalogue change committed without quorum: {s} {v}");
    // The majority side still serves what it has and can commit catalogue changes.
    let (s, _) = c.client(majority[0]).post("/v1/namespaces", &json!({"name": "majority-made", "dimension": 4})).await;
    assert_eq!(s, 201);
    c.partition(minority, false);
    // After healing: the write that was never acknowledged may exist, but all replicas agree.
    let (s, v) = c
        .client(majority[0])
        .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": "after healing"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let converged = eventually(Duration::from_secs(30), || async {
        let a = c.local_content(0, ns).await;
        a.is_some() && a == c.local_content(1, ns).await && a == c.local_content(2, ns).await
    })
    .await;
    assert!(
        converged,
        "replicas diverged: {:?} / {:?} / {:?}",
        c.local_content(0, ns).await,
        c.local_content(1, ns).await,
        c.local_content(2, ns).await
    );
    let content = c.local_content(0, ns).await.unwrap();
    assert!(content.iter().any(|(_, t)| t == "after healing"));
    assert!(c.handle(minority).core.namespace("minority-made").is_none());
    let caught_up =
        eventually(Duration::from_secs(20), || async { c.handle(minority).core.namespace("majority-made").is_some() })
            .await;
    assert!(caught_up, "the healed node caught up with the catalogue");
}

#[tokio::test]
async fn the_whole_cluster_restarts_with_everything_and_never_reinitialises() {
    let mut c = TestCluster::start(3).await;
    let mut ids = Vec::new();
    for k in 0..10 {
        let ns = format!("keep-{k}");
        let (_, v) = c
            .client(k % 3)
            .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("kept {k}")}))
            .await;
        ids.push((ns, v["memory"]["id"].as_str().unwrap().to_string()));
    }
    let (_, secret) = create_key(c.client(0), "/admin/keys", &json!({"name": "persist", "scope": "read"})).await;
    let cluster_id = status(&c, 0).await["cluster_id"].clone();
    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    c.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(status(&c, 1).await["cluster_id"], cluster_id, "the cluster was re-initialised");
    for (k, (ns, id)) in ids.iter().enumerate() {
        let (s, v) = c.client((k + 1) % 3).get(&format!("/v1/memory/get/{id}?agent_id={ns}")).await;
        assert_eq!(s, 200, "{ns}: {v}");
        assert_eq!(v["content"], format!("kept {k}"));
    }
    assert_eq!(c.client(2).with_key(Some(&secret)).get("/v1/auth/whoami").await.0, 200);
}

#[tokio::test]
async fn a_fourth_node_receives_namespaces_without_failed_requests() {
    let mut c = TestCluster::start_with(3, |a| a.replication_factor = 2).await;
    let namespaces: Vec<String> = (0..12).map(|k| format!("move-{k}")).collect();
    for ns in &namespaces {
        for j in 0..5 {
            let (s, _) = c
                .client(0)
                .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("{ns} memory {j}")}))
                .await;
            assert_eq!(s, 200);
        }
    }
    let i4 = c.add_node().await;
    let new_id = c.node_id(i4);
    // Traffic during the move: only retryable 503s are allowed.
    let client = c.client(0).clone();
    let nss = namespaces.clone();
    let traffic = tokio::spawn(async move {
        let mut bad = Vec::new();
        let mut ok = 0;
        for round in 0..60 {
            for ns in &nss {
                let (s, v) = client.post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}})).await;
                match s {
                    200 => {
                        ok += 1;
                        if v["total"].as_u64().unwrap_or(0) < 5 {
                            bad.push(format!("{ns} returned {} memories in round {round}", v["total"]));
                        }
                    }
                    503 => {}
                    other => bad.push(format!("{ns}: {other} {v}")),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (ok, bad)
    });
    let received = eventually(Duration::from_secs(60), || async {
        let held = namespaces.iter().filter(|ns| placement_of(&c, 0, ns).replicas.contains(&new_id)).count();
        let settled = namespaces.iter().all(|ns| {
            let p = placement_of(&c, 0, ns);
            p.replicas.len() == 2 && p.active_count() == 2
        });
        held >= 4 && settled
    })
    .await;
    let (ok, bad) = traffic.await.unwrap();
    assert!(bad.is_empty(), "requests failed during the move: {bad:?}");
    assert!(ok > 0);
    assert!(
        received,
        "the new node did not receive a share: {:?}",
        namespaces.iter().map(|ns| placement_of(&c, 0, ns)).collect::<Vec<_>>()
    );
    // All data intact, including on the new node's copies.
    for ns in &namespaces {
        let (_, v) = c.client(i4).post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}})).await;
        assert_eq!(v["total"], 5, "{ns}");
        if placement_of(&c, 0, ns).replicas.contains(&new_id) {
            assert_eq!(c.local_content(i4, ns).await.map(|v| v.len()), Some(5), "{ns} copy on the new node");
        }
    }
    let (_, m) = c.client(0).get("/metrics").await;
    assert!(m.as_str().unwrap().contains("loci_moves_total"));
}

#[tokio::test]
async fn a_node_with_the_wrong_cluster_secret_is_not_admitted() {
    let c = TestCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = loci_tests::serve_args(dir.path());
    args.gossip_addr = format!("127.0.0.1:{}", loci_tests::free_udp_port());
    args.join = c.gossip_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    args.cluster_secret = Some("a-completely-different-secret".into());
    let intruder = loci_tests::TestNode::start_in(dir, move |a| *a = args).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = status(&c, 0).await;
    assert_eq!(s["members"].as_array().unwrap().len(), 3, "intruder admitted: {s}");
    assert_eq!(intruder.client.get("/health/ready").await.0, 503);
    let rejected: u64 = c
        .running()
        .iter()
        .map(|i| c.handle(*i).cluster.gossip.stats.rejected.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(rejected > 0, "the foreign packets were not counted as rejected");
    // The intruder cannot use the cluster's data either.
    let (s, _) = intruder.client.post("/v1/memory/store", &json!({"agent_id": "x", "content": "y"})).await;
    assert_ne!(s, 200);

    // Right cluster secret, wrong encryption key: admitted to gossip, but it cannot read the
    // catalogue's keys, so it leaves by itself and never holds a replica.
    let dir = tempfile::tempdir().unwrap();
    let mut args = loci_tests::serve_args(dir.path());
    args.gossip_addr = format!("127.0.0.1:{}", loci_tests::free_udp_port());
    args.join = c.gossip_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    args.encryption_key = Some("0".repeat(64));
    args.cluster_secret = Some(loci_tests::CLUSTER_SECRET.into());
    let wrong_key = loci_tests::TestNode::start_in(dir, move |a| *a = args).await;
    let wrong_id = wrong_key.handle.as_ref().unwrap().node_id.to_string();
    let left = eventually(Duration::from_secs(30), || async {
        // It did join as a learner (it has the catalogue's encryption parameters)...
        let joined = wrong_key.handle.as_ref().unwrap().cluster.catalogue.view.read().encryption.is_some();
        // ...and is no member any more.
        let (s, v) = c.client(0).get("/v1/admin/cluster/status").await;
        joined
            && s == 200
            && v["members"].as_array().is_some_and(|m| m.iter().all(|m| m["node_id"] != wrong_id.as_str()))
            && wrong_key.client.get("/health/ready").await.0 == 503
    })
    .await;
    assert!(left, "the node with the wrong encryption key stayed a member: {}", status(&c, 0).await);
    // Still out a while later (not re-added by the reconciler), and holds nothing.
    let (s, _) = c.client(1).post("/v1/namespaces", &json!({"name": "after-wrong-key", "dimension": 4})).await;
    assert_eq!(s, 201);
    // Read on the node that created it (it has applied the creation when it answers).
    assert!(placement_of(&c, 1, "after-wrong-key").replicas.iter().all(|n| n.to_string() != wrong_id));
    let members = status(&c, 0).await["members"].as_array().unwrap().len();
    assert_eq!(members, 3);
}

#[tokio::test]
async fn erasing_a_namespace_erases_every_replica() {
    let c = TestCluster::start(3).await;
    let canary = "CLUSTERCANARY5521";
    for j in 0..5 {
        let (s, _) = c
            .client(j % 3)
            .post_retrying("/v1/memory/store", &json!({"agent_id": "gone", "content": format!("{canary} {j}")}))
            .await;
        assert_eq!(s, 200);
    }
    // The third replica receives the writes right after the quorum acknowledged them.
    let all = eventually(Duration::from_secs(10), || async {
        for i in 0..3 {
            if c.local_content(i, "gone").await.map(|v| v.len()) != Some(5) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(all, "every replica holds the five memories");
    let ids: Vec<String> = c.local_content(0, "gone").await.unwrap().into_iter().map(|(id, _)| id).collect();
    let (s, r) = c.client(1).delete("/v1/namespaces/gone").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["memories_deleted"], 5);
    for i in 0..3 {
        assert!(c.handle(i).core.namespace("gone").is_none());
        let data = c.node(i).path().join("data");
        for id in &ids {
            assert!(loci_tests::files_containing(&data, id.as_bytes()).is_empty(), "node {i} still holds {id}");
        }
    }
    let _ = ids_of(&Value::Null);
}

#[tokio::test]
async fn draining_a_node_moves_everything_off_before_removal() {
    let mut c = TestCluster::start_with(4, |a| {
        a.replication_factor = 2;
        a.voters = 3;
    })
    .await;
    let namespaces: Vec<String> = (0..8).map(|k| format!("drain-{k}")).collect();
    for ns in &namespaces {
        for j in 0..3 {
            let (s, _) = c
                .client(0)
                .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("{ns} fact {j}")}))
                .await;
            assert_eq!(s, 200);
        }
    }
    // Drain a node that holds some replicas (and is not the catalogue leader).
    let leader = status(&c, 0).await["leader"].as_str().unwrap().to_string();
    let target = (1..4)
        .filter(|i| c.node_id(*i).to_string() != leader)
        .max_by_key(|i| {
            namespaces.iter().filter(|ns| placement_of(&c, 0, ns).replicas.contains(&c.node_id(*i))).count()
        })
        .unwrap();
    let tid = c.node_id(target);
    let (s, v) = c.client(0).post(&format!("/v1/admin/cluster/nodes/{tid}/drain"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["draining"], true);
    let drained = eventually(Duration::from_secs(60), || async {
        namespaces.iter().all(|ns| {
            let p = placement_of(&c, 0, ns);
            !p.replicas.contains(&tid) && p.active_count() == 2
        })
    })
    .await;
    assert!(
        drained,
        "node still holds replicas: {:?}",
        namespaces.iter().map(|ns| placement_of(&c, 0, ns)).collect::<Vec<_>>()
    );
    for ns in &namespaces {
        let (s, v) =
            c.client((target + 1) % 4).post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}})).await;
        assert_eq!((s, v["total"].as_u64()), (200, Some(3)), "{ns}");
    }
    let st = status(&c, 0).await;
    let m = st["members"].as_array().unwrap().iter().find(|m| m["node_id"] == tid.to_string()).unwrap().clone();
    assert_eq!(
        (m["namespaces_primary"].as_u64(), m["namespaces_replica"].as_u64(), m["draining"].as_bool()),
        (Some(0), Some(0), Some(true))
    );
    // A live member is not removed (it would rejoin at once); once stopped, it is.
    let (s, v) = c.client(0).delete(&format!("/v1/admin/cluster/nodes/{tid}")).await;
    assert_eq!(s, 409, "{v}");
    c.stop(target).await;
    let removed = eventually(Duration::from_secs(20), || async {
        c.client(0).delete(&format!("/v1/admin/cluster/nodes/{tid}")).await.0 == 200
    })
    .await;
    assert!(removed, "the stopped node could not be removed");
    let gone = eventually(Duration::from_secs(10), || async {
        status(&c, 0).await["members"].as_array().unwrap().iter().all(|m| m["node_id"] != tid.to_string())
    })
    .await;
    assert!(gone);
    // Request ids travel with forwarded requests; cluster gauges are exported.
    let ns = &namespaces[0];
    let primary = placement_of(&c, 0, ns).primary().unwrap();
    let other = (0..4).find(|i| *i != target && c.node_id(*i) != primary).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/memories/recall/batch", c.client(other).base))
        .bearer_auth(loci_tests::ROOT_KEY)
        .header("x-request-id", "trace-me-42")
        .json(&json!({"agent_id": ns, "filter": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let (_, m) = c.client(0).get("/metrics").await;
    let text = m.as_str().unwrap();
    for metric in ["loci_gossip_members", "loci_raft_state", "loci_replication_lag_entries", "loci_raft_apply_lag"] {
        assert!(text.contains(metric), "missing {metric}");
    }
}

/// A primary cut off together with one follower still holds its write quorum (2 of 3), so it
/// keeps acknowledging. The majority side may name a new primary, but that one cannot confirm
/// it holds every acknowledged write (the replicas that do are unreachable), so it refuses to
/// serve rather than serve or overwrite stale data. After healing, every acknowledged write is
/// on every replica.
#[tokio::test]
async fn a_primary_isolated_with_its_quorum_loses_no_acknowledged_write() {
    let c = TestCluster::start_with(5, |a| {
        a.voters = 5;
        a.replication_factor = 3;
        a.failover_after_secs = 2;
    })
    .await;
    let all_voters = eventually(Duration::from_secs(60), || async {
        status(&c, 0).await["voters"].as_array().is_some_and(|v| v.len() == 5)
    })
    .await;
    assert!(all_voters, "5 voters expected: {}", status(&c, 0).await);
    let ns = "isolated-with-quorum";
    let (s, v) = c.client(0).post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": "before"})).await;
    assert_eq!(s, 200, "{v}");
    let p = placement_of(&c, 0, ns);
    let (primary, follower, other) = (p.replicas[0], p.replicas[1], p.replicas[2]);
    let side = [c.index_of(primary).unwrap(), c.index_of(follower).unwrap()];
    let majority: Vec<usize> = (0..5).filter(|i| !side.contains(i)).collect();
    c.partition_groups(&side, true);

    let mut acknowledged = vec!["before".to_string()];
    for k in 0..5 {
        let content = format!("acknowledged in the minority {k}");
        let (s, v) = c.client(side[0]).post("/v1/memory/store", &json!({"agent_id": ns, "content": content})).await;
        assert_eq!(s, 200, "{v}");
        acknowledged.push(content);
    }
    // The majority fails the namespace over to the replica it can see...
    let other_idx = c.index_of(other).unwrap();
    let failed_over =
        eventually(Duration::from_secs(30), || async { placement_of(&c, majority[0], ns).primary() == Some(other) })
            .await;
    assert!(failed_over, "the majority did not fail over: {:?}", placement_of(&c, majority[0], ns));
    // ...which refuses to serve: it cannot know what the unreachable quorum acknowledged.
    for i in [other_idx, majority.iter().copied().find(|i| *i != other_idx).unwrap()] {
        let (s, v) = c.client(i).post("/v1/memory/store", &json!({"agent_id": ns, "content": "split brain"})).await;
        assert_eq!(s, 503, "node {i} accepted a write without the acknowledged history: {v}");
        let (s, v) = c.client(i).post("/v1/memory/recall", &json!({"agent_id": ns, "query": "minority"})).await;
        assert_eq!(s, 503, "node {i} served possibly stale data: {v}");
    }

    c.partition_groups(&side, false);
    // After healing: the new primary pulls what it lacked; every node serves every write.
    for i in 0..5 {
        let served = eventually(Duration::from_secs(40), || async {
            let (s, v) = c
                .client(i)
                .post("/v1/memories/recall/batch", &json!({"agent_id": ns, "filter": {}, "limit": 100}))
                .await;
            s == 200 && {
                let got: BTreeSet<String> = v["memories"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m["content"].as_str().map(String::from)).collect())
                    .unwrap_or_default();
                acknowledged.iter().all(|a| got.contains(a))
            }
        })
        .await;
        assert!(served, "node {i} does not serve every acknowledged write");
    }
    let p = placement_of(&c, 0, ns);
    let converged = eventually(Duration::from_secs(40), || async {
        let p = placement_of(&c, 0, ns);
        let mut contents = Vec::new();
        for n in p.replicas.iter().filter(|n| p.state(**n) == Some(loci_raft::catalogue::ReplicaState::Active)) {
            contents.push(c.local_content(c.index_of(*n).unwrap(), ns).await);
        }
        contents.len() >= 2 && contents.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(converged, "active replicas differ after healing: {p:?}");
}

/// With exactly three voters, a dead voter is replaced by promoting a learner first, and only
/// then removed (never going below three voters).
#[tokio::test]
async fn a_dead_voter_is_replaced_then_removed() {
    let mut c = TestCluster::start_with(3, |a| {
        a.voters = 3;
        a.dead_node_grace_secs = 4;
    })
    .await;
    c.add_node().await;
    let formed = eventually(Duration::from_secs(60), || async {
        let st = status(&c, 0).await;
        st["voters"].as_array().is_some_and(|v| v.len() == 3) && st["learners"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert!(formed, "3 voters + 1 learner expected: {}", status(&c, 0).await);
    let st = status(&c, 0).await;
    let leader = st["leader"].as_str().unwrap().to_string();
    let victim = (1..4)
        .find(|i| {
            let id = c.node_id(*i).to_string();
            id != leader && st["voters"].as_array().unwrap().iter().any(|v| v.as_str() == Some(id.as_str()))
        })
        .unwrap();
    let victim_id = c.node_id(victim).to_string();
    c.crash(victim).await;
    let replaced = eventually(Duration::from_secs(60), || async {
        let st = status(&c, 0).await;
        let voters: Vec<String> =
            st["voters"].as_array().unwrap().iter().filter_map(|v| v.as_str().map(String::from)).collect();
        let members: Vec<String> =
            st["members"].as_array().unwrap().iter().filter_map(|m| m["node_id"].as_str().map(String::from)).collect();
        voters.len() == 3 && !voters.contains(&victim_id) && !members.contains(&victim_id)
    })
    .await;
    assert!(replaced, "the dead voter was not replaced and removed: {}", status(&c, 0).await);
    // The catalogue still commits (three live voters).
    let (s, v) = c.client(0).post("/v1/namespaces", &json!({"name": "after-replacement", "dimension": 4})).await;
    assert_eq!(s, 201, "{v}");
}

/// A re-embedding job in a cluster: staged vectors replicate like any write, every replica
/// switches, and after the primary dies the new primary serves the new embedder's vectors.
#[tokio::test]
async fn re_embedding_reaches_every_replica_and_survives_failover() {
    let mut c = TestCluster::start(3).await;
    let ns = "reembed-cluster";
    let (s, v) = c
        .client(0)
        .post("/v1/namespaces", &json!({"name": ns, "embedding": {"provider": "hash", "dimension": 8}}))
        .await;
    assert_eq!(s, 201, "{v}");
    for k in 0..30 {
        let (s, _) = c
            .client(k % 3)
            .post_retrying(
                "/v1/memory/store",
                &json!({"namespace": ns, "agent_id": "a", "content": format!("distinct fact number {k} about topic {k}")}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, v) = c
        .client(1)
        .post(&format!("/v1/namespaces/{ns}/reembed"), &json!({"embedding": {"provider": "hash", "dimension": 32}}))
        .await;
    assert_eq!(s, 202, "{v}");
    let done = eventually(Duration::from_secs(60), || async {
        let (s, v) = c.client(2).get(&format!("/v1/namespaces/{ns}/reembed")).await;
        s == 200 && v["job"]["state"] == "completed" && v["embedding"]["dimension"] == 32
    })
    .await;
    assert!(done, "{}", c.client(2).get(&format!("/v1/namespaces/{ns}/reembed")).await.1);
    // Every replica holds 30 vectors of the new dimension.
    let switched = eventually(Duration::from_secs(30), || async {
        for i in 0..3 {
            let core = &c.handle(i).core;
            let Some(entry) = core.namespace(ns) else { return false };
            match core.cluster.local().execute(&entry, DataOp::Stats).await.map(|e| e.result) {
                Ok(DataResult::Stats(s)) if s.vector_count == 30 && s.dimension == Some(32) => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(switched, "not every replica switched to the new vectors");
    // Kill the primary: the new one answers vector recall with the new embedder's vectors.
    let primary = placement_of(&c, 0, ns).primary().unwrap();
    let pi = c.index_of(primary).unwrap();
    c.crash(pi).await;
    let survivor = (0..3).find(|i| *i != pi).unwrap();
    let recalled = eventually(Duration::from_secs(30), || async {
        let (s, v) = c
            .client(survivor)
            .post(
                "/v1/memory/recall",
                &json!({"namespace": ns, "agent_id": "a", "query": "distinct fact number 7 about topic 7", "routing": "vector", "top_k": 3}),
            )
            .await;
        s == 200 && v["memories"][0]["memory"]["content"] == "distinct fact number 7 about topic 7"
    })
    .await;
    assert!(recalled, "vector recall after failover failed");
}

/// A follower that was down long enough to be marked `dead` and comes back stays `dead`
/// (counted, fenced and asked by a take-over: it may hold acknowledged writes) while the primary
/// repairs it by a full copy, then becomes `active` in place: it is never made `syncing`,
/// which would drop it from the replica count (the replication engine's `legacy_resync`).
#[tokio::test]
async fn a_replica_back_from_the_dead_is_repaired_in_place_and_never_uncounted() {
    let mut c = TestCluster::start(3).await;
    let ns = "back-from-the-dead";
    let (s, v) = c.client(0).post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": "before"})).await;
    assert_eq!(s, 200, "{v}");
    let primary = placement_of(&c, 0, ns).primary().expect("a primary");
    let p_idx = c.index_of(primary).expect("primary index");
    let victim = (0..3).find(|i| *i != p_idx).expect("a follower");
    let victim_id = c.node_id(victim);
    c.crash(victim).await;
    let dead = eventually(Duration::from_secs(30), || {
        let p = placement_of(&c, p_idx, ns);
        async move { p.state(victim_id) == Some(loci_raft::catalogue::ReplicaState::Dead) }
    })
    .await;
    assert!(dead, "the crashed follower was not marked dead: {:?}", placement_of(&c, p_idx, ns));
    // Writes go on with the two live replicas (quorum 2 of 3: the dead one still counts).
    let mut acked = vec!["before".to_string()];
    for k in 0..20 {
        let content = format!("while dead {k}");
        let (s, v) =
            c.client(p_idx).post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": content})).await;
        assert_eq!(s, 200, "{v}");
        acked.push(content);
    }
    c.restart(victim).await;
    // Watch the placement until the replica is active again; it must never be syncing, and
    // the replica count the quorum is computed from never drops below 3.
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut active = false;
    while tokio::time::Instant::now() < deadline {
        let p = placement_of(&c, p_idx, ns);
        let state = p.state(victim_id);
        seen.insert(format!("{state:?}"));
        assert_ne!(state, Some(loci_raft::catalogue::ReplicaState::Syncing), "made syncing: {p:?}");
        assert!(p.replicas.contains(&victim_id), "dropped from the placement: {p:?}");
        if state == Some(loci_raft::catalogue::ReplicaState::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(active, "the returning replica never became active again (states seen: {seen:?})");
    // It holds every acknowledged write, read from its own store.
    let holds_all = eventually(Duration::from_secs(20), || {
        let acked = acked.clone();
        let c = &c;
        async move {
            let rows = c.local_content(victim, ns).await.unwrap_or_default();
            let have: BTreeSet<String> = rows.into_iter().map(|(_, content)| content).collect();
            acked.iter().all(|a| have.contains(a))
        }
    })
    .await;
    assert!(holds_all, "the repaired replica lacks acknowledged writes: {:?}", c.local_content(victim, ns).await);
}

/// A node replaced by an empty one on the same addresses (a container re-created under the same
/// name: same gossip and cluster ports, new disk, so a new node id) joins as a new member; the
/// old id leaves after the grace period; no node panics and the cluster keeps serving, with
/// every acknowledged write still there.
#[tokio::test]
async fn a_node_replaced_on_the_same_addresses_with_an_empty_disk_rejoins_as_a_new_member() {
    let ports: Vec<u16> = (0..3).map(|_| loci_tests::free_port()).collect();
    let ports2 = ports.clone();
    let mut c = TestCluster::start_with(3, move |a| {
        // Each node keeps its cluster port across restarts (found by its gossip port).
        let i = a.join.iter().position(|j| *j == a.gossip_addr).unwrap_or(0);
        a.cluster_addr = format!("127.0.0.1:{}", ports2[i]);
        a.dead_node_grace_secs = 5;
    })
    .await;
    let _ = ports;
    let mut acked = Vec::new();
    for k in 0..10 {
        let ns = format!("replaced-{k}");
        let (s, v) = c
            .client(0)
            .post_retrying("/v1/memory/store", &json!({"agent_id": ns, "content": format!("kept {k}")}))
            .await;
        assert_eq!(s, 200, "{v}");
        acked.push((ns, v["memory"]["id"].as_str().unwrap().to_string(), format!("kept {k}")));
    }
    let old_id = c.node_id(2);
    c.replace(2).await;
    let new_id = c.node_id(2);
    assert_ne!(old_id, new_id, "an empty disk means a new node id");
    // The new member is admitted and the old one removed; every node keeps answering.
    let settled = eventually(Duration::from_secs(90), || async {
        let st = status(&c, 0).await;
        let members: Vec<String> =
            st["members"].as_array().unwrap().iter().filter_map(|m| m["node_id"].as_str().map(String::from)).collect();
        members.contains(&new_id.to_string()) && !members.contains(&old_id.to_string())
    })
    .await;
    assert!(settled, "membership did not settle: {}", status(&c, 0).await);
    for i in 0..3 {
        let (s, v) = c.client(i).get("/v1/admin/cluster/status").await;
        assert_eq!(s, 200, "node {i} stopped answering: {v}");
    }
    // Writes go on, and every acknowledged write is there, read through the new node.
    let (s, v) =
        c.client(2).post_retrying("/v1/memory/store", &json!({"agent_id": "after-replace", "content": "x"})).await;
    assert_eq!(s, 200, "{v}");
    for (ns, id, content) in &acked {
        let ok = eventually(Duration::from_secs(30), || async {
            let (s, v) = c.client(2).get(&format!("/v1/memory/get/{id}?agent_id={ns}")).await;
            s == 200 && v["content"] == content.as_str()
        })
        .await;
        assert!(ok, "{ns}/{id} lost after the replacement");
    }
}
