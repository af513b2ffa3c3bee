//! The catalogue's snapshots on a real one-node Raft group: taken once the log since the last
//! one holds as many entries as the catalogue holds records (and at least the minimum), not
//! before; the catalogue reopens from the snapshot plus the log after it.

use std::time::Duration;

use loci_raft::catalogue::{Command, NamespaceEntry};
use loci_raft::{CatalogueNode, ChannelPool, NodeAddr, OpenedStore, RaftSettings};

fn addr() -> NodeAddr {
    NodeAddr { rpc_addr: "127.0.0.1:1".into(), http_addr: "127.0.0.1:2".into(), gossip_addr: "127.0.0.1:3".into() }
}

fn settings() -> RaftSettings {
    RaftSettings { snapshot_logs: 20, ..RaftSettings::default() }
}

/// Create namespaces `from..to` (one entry and one record each).
async fn register(node: &CatalogueNode, from: usize, to: usize) {
    for i in from..to {
        let entry: NamespaceEntry = serde_json::from_value(serde_json::json!({
            "id": i + 1, "name": format!("ns-{i}"), "kind": "data", "dimension": 16,
            "distance": "cosine", "embedder": {"provider": "hash", "dimension": 16, "generation": 0},
            "policy": {}, "data_key": {"kek_version": 1, "dek_version": 1, "sealed": []},
            "metadata": null, "created_at": 0,
        }))
        .expect("entry");
        node.write(Command::CreateNamespace { entry }).await.expect("write");
    }
}

fn snapshot_index(node: &CatalogueNode) -> Option<u64> {
    node.raft.metrics().borrow().snapshot.map(|l| l.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_paced_by_the_catalogue_size() {
    let dir = tempfile::tempdir().expect("dir");
    let node = CatalogueNode::start(
        OpenedStore::open(dir.path()).expect("open"),
        1,
        addr(),
        &settings(),
        ChannelPool::with_tls(None),
        "token".into(),
    )
    .await
    .expect("start");
    node.initialize_single().await.expect("init");
    node.wait_for_leader(Duration::from_secs(10)).await.expect("leader");

    // 15 namespaces after ~17 entries: below the minimum of 20, no snapshot.
    register(&node, 0, 15).await;
    tokio::time::sleep(3 * loci_raft::PACE_EVERY).await;
    assert_eq!(snapshot_index(&node), None, "no snapshot below the minimum interval");

    // Past the minimum: a snapshot comes.
    register(&node, 15, 200).await;
    let mut rx = node.raft.metrics();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.snapshot.is_some()))
        .await
        .expect("a snapshot within 10 s")
        .expect("metrics");
    drop(rx);

    // After every round of writes, once the pacer has looked: the log behind the snapshot is
    // within what `snapshot_due` allows (half the catalogue, or the minimum).
    let mut total = 200;
    for round in 0..4 {
        tokio::time::sleep(3 * loci_raft::PACE_EVERY).await;
        let applied = node.view.applied_index();
        let snap = snapshot_index(&node).expect("snapshot");
        let records = node.view.read().records();
        assert_eq!(records, total);
        assert!(
            !loci_raft::pacing::snapshot_due(applied, Some(snap), records, 20),
            "round {round}: applied {applied}, snapshot {snap}, {records} records: a snapshot was due and not taken"
        );
        register(&node, total, total + 150).await;
        total += 150;
    }
    // A large catalogue waits: right after a snapshot of 800 namespaces, 50 more entries (past
    // the minimum of 20, where a fixed interval would snapshot) take none.
    let applied = node.view.applied_index();
    node.raft.trigger().snapshot().await.expect("trigger");
    let mut rx = node.raft.metrics();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied)))
        .await
        .expect("the triggered snapshot")
        .expect("metrics");
    drop(rx);
    let fresh = snapshot_index(&node);
    register(&node, total, total + 50).await;
    total += 50;
    tokio::time::sleep(3 * loci_raft::PACE_EVERY).await;
    assert_eq!(snapshot_index(&node), fresh, "no snapshot 50 entries after one, with {total} namespaces");

    node.shutdown().await;
    drop(node);

    // The catalogue reopens whole from the snapshot and the entries after it.
    let mut reopened = None;
    for _ in 0..50 {
        // Raft's tasks may hold the database for a moment after the shutdown.
        match OpenedStore::open(dir.path()) {
            Ok(o) => {
                reopened = Some(o);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let reopened = reopened.expect("reopen");
    assert_eq!(reopened.view.read().namespaces.len(), total);
}
