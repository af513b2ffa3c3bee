//! Backups and restore (issue 17 item 1): a backup taken from the primaries while a writer keeps
//! writing, restored into a fresh cluster of another size; erasure reaching into backups;
//! incremental backups; verification that finds damage; the archive round trip.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use loci_tests::{Client, TestCluster, TestNode, create_key};
use parking_lot::Mutex;
use serde_json::{Value, json};

async fn export_ids(c: &Client, ns: &str) -> (u16, Vec<(String, String)>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/export?namespace={ns}", c.base))
        .bearer_auth(c.key.as_deref().unwrap_or(""))
        .send()
        .await
        .expect("sent");
    let s = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let mut out: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["id"].as_str()?.to_string(), v["content"].as_str()?.to_string())))
        .collect();
    out.sort();
    (s, out)
}

async fn fill(c: &Client, ns: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for start in (0..n).step_by(100) {
        let memories: Vec<Value> = (start..(start + 100).min(n))
            .map(|i| {
                let id = format!("{prefix}{i:05}");
                ids.push(id.clone());
                json!({"id": id, "content": format!("{ns} says {prefix} number {i}"), "tags": [prefix]})
            })
            .collect();
        let (s, v) = c
            .post("/v1/memories/store/batch", &json!({"namespace": ns, "agent_id": "agent", "memories": memories}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    ids
}

/// Poll `path` until its `status` is final; the final state.
async fn finished(c: &Client, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = c.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        if v["status"] == "completed" || v["status"] == "failed" {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn backup_done(c: &Client, id: &str) -> Value {
    finished(c, &format!("/v1/admin/backups/{id}")).await
}

async fn restore_done(c: &Client, id: &str) -> Value {
    finished(c, &format!("/v1/admin/backups/restore/{id}")).await
}

async fn create_backup(c: &Client, body: Value) -> Value {
    let (s, v) = c.post("/v1/admin/backups", &body).await;
    assert_eq!(s, 202, "{v}");
    let id = v["backup"]["backup_id"].as_str().expect("backup id").to_string();
    let done = backup_done(c, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_writes_restores_into_a_smaller_cluster_without_loss_or_leak() {
    let store = tempfile::tempdir().expect("tempdir");
    let dir = store.path().to_path_buf();
    let a = TestCluster::start_with(3, move |args| args.backup_dir = Some(dir.clone())).await;
    let root = a.client(0).clone();
    let a_ids = fill(&root, "acme-a", "a", 600).await;
    let b_ids = fill(&root, "acme-b", "b", 300).await;
    fill(&root, "gone-ns", "g", 50).await;
    let (_, tenant_key) =
        create_key(&root, "/admin/keys", &json!({"name": "acme-a reader", "scope": "read", "namespaces": ["acme-a"]}))
            .await;

    // A writer keeps writing to acme-a through another node while the backup runs.
    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let started = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, acked, started, stop) = (a.client(1).clone(), acked.clone(), started.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("w{i:05}");
                let (s, _) = c
                    .post(
                        "/v1/memories/store/batch",
                        &json!({"namespace": "acme-a", "agent_id": "agent", "memories": [{"id": id, "content": format!("live write {i}")}]}),
                    )
                    .await;
                // Acknowledged before the backup was asked for: it must be in the backup.
                let before_backup = !started.load(Ordering::SeqCst);
                if s == 200 {
                    acked.lock().push((id, before_backup));
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    started.store(true, Ordering::SeqCst);
    let full = create_backup(&root, json!({"name": "nightly", "backup_type": "full"})).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let acked_before: Vec<String> =
        acked.lock().iter().filter(|(_, before)| *before).map(|(id, _)| id.clone()).collect();
    assert!(acked_before.len() > 5, "the writer wrote before the backup: {}", acked_before.len());
    assert!(acked.lock().len() > acked_before.len(), "the writer kept writing during the backup");
    let names: BTreeSet<String> = full["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    assert!(["acme-a", "acme-b", "gone-ns"].iter().all(|n| names.contains(*n)), "{full}");
    assert!(full["vector_count"].as_u64().unwrap_or(0) >= 950, "{full}");

    // Verification passes on the sound store.
    let id = full["backup_id"].as_str().expect("id").to_string();
    let (s, v) = root.post(&format!("/v1/admin/backups/{id}/verify"), &json!({})).await;
    assert_eq!((s, v["ok"].clone()), (200, json!(true)), "{v}");

    // Erase gone-ns after the backup: its key leaves the store with it.
    let (s, v) = root.delete("/v1/namespaces/gone-ns").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["backup_key_destroyed"], true, "{v}");
    let (_, v) = root.get(&format!("/v1/admin/backups/{id}")).await;
    assert_eq!(v["erased_namespaces"], 1, "{v}");
    assert!(!v["namespaces"].as_array().expect("names").iter().any(|n| n == "gone-ns"), "{v}");

    // A fresh cluster of two nodes, on the same store, restores it.
    let dir = store.path().to_path_buf();
    let b = TestCluster::start_with(2, move |args| args.backup_dir = Some(dir.clone())).await;
    let broot = b.client(1).clone();
    let (s, r) = broot.post("/v1/admin/backups/restore", &json!({"backup_id": id})).await;
    assert_eq!(s, 202, "{r}");
    let rid = r["restore_id"].as_str().expect("restore id").to_string();
    let r = restore_done(&broot, &rid).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["erased_namespaces"], 1, "{r}");
    // The other node answers for the restore too (its status is in the store).
    let (s, other) = b.client(0).get(&format!("/v1/admin/backups/restore/{rid}")).await;
    assert_eq!((s, other["status"].clone(), other["details"].clone()), (200, json!("completed"), r["details"].clone()));
    assert!(r["keys_restored"].as_u64().unwrap_or(0) >= 1, "{r}");

    for i in 0..2 {
        let c = b.client(i);
        let (s, got) = export_ids(c, "acme-a").await;
        assert_eq!(s, 200);
        let have: BTreeSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        for want in a_ids.iter().chain(acked_before.iter()) {
            assert!(have.contains(want.as_str()), "node {i}: acknowledged {want} is missing after the restore");
        }
        // Nothing of another tenant: every memory is one written to acme-a.
        for (mid, content) in &got {
            assert!(mid.starts_with('a') || mid.starts_with('w'), "node {i}: {mid} in acme-a");
            assert!(!content.contains("acme-b") && !content.contains("gone-ns"), "node {i}: {content}");
        }
        let (_, got_b) = export_ids(c, "acme-b").await;
        let ids: Vec<&str> = got_b.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, b_ids.iter().map(String::as_str).collect::<Vec<_>>(), "node {i}: acme-b is exactly its own");
        // The erased namespace did not come back.
        let (s, _) = c.get("/v1/namespaces/gone-ns").await;
        assert_eq!(s, 404, "node {i}: gone-ns is restorable after its erasure");
    }
    // Placement is the new cluster's: both of its nodes, none of the old cluster's.
    let b_nodes: BTreeSet<u64> = (0..2).map(|i| b.node_id(i)).collect();
    let placed = b.handle(0).core.namespace("acme-a").expect("restored").placement.replicas;
    assert!(!placed.is_empty() && placed.iter().all(|n| b_nodes.contains(n)), "{placed:?} on {b_nodes:?}");
    // The tenant's key works on the restored cluster, and only for its namespace.
    let tenant = broot.with_key(Some(&tenant_key));
    let (s, _) = export_ids(&tenant, "acme-a").await;
    assert_eq!(s, 200);
    let (s, leaked) = export_ids(&tenant, "acme-b").await;
    assert!(s == 403 || s == 404, "a tenant key reads another tenant's restored namespace: {s}");
    assert!(leaked.is_empty());
    // Writes go on in the restored namespace.
    let (s, v) = broot
        .post("/v1/memories/store/batch", &json!({"namespace": "acme-a", "agent_id": "agent", "memories": [{"id": "after", "content": "after the restore"}]}))
        .await;
    assert_eq!(s, 200, "{v}");

    // A second restore of the same backup changes nothing that exists.
    let (_, r2) = broot.post("/v1/admin/backups/restore", &json!({"backup_id": id})).await;
    let r2 = restore_done(&broot, r2["restore_id"].as_str().expect("restore id")).await;
    assert!(r2["details"].as_array().expect("details").iter().all(|d| d["status"] == "skipped"), "{r2}");
    let (_, again) = export_ids(&broot, "acme-a").await;
    assert!(again.iter().any(|(id, _)| id == "after"), "the restore overwrote a live namespace");

    // With overwrite, acme-b goes back to the backup's point: a write made since is gone.
    let (s, _) = broot
        .post("/v1/memories/store/batch", &json!({"namespace": "acme-b", "agent_id": "agent", "memories": [{"id": "later", "content": "after the backup"}]}))
        .await;
    assert_eq!(s, 200);
    let (s, r3) = broot
        .post(
            "/v1/admin/backups/restore",
            &json!({"backup_id": id, "target_namespaces": ["acme-b"], "overwrite": true}),
        )
        .await;
    assert_eq!(s, 202, "{r3}");
    let r3 = restore_done(&broot, r3["restore_id"].as_str().expect("restore id")).await;
    assert_eq!(r3["status"], "completed", "{r3}");
    let (_, got_b) = export_ids(&broot, "acme-b").await;
    let ids: Vec<&str> = got_b.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, b_ids.iter().map(String::as_str).collect::<Vec<_>>(), "acme-b is the backup's again");
    let (_, again) = export_ids(&broot, "acme-a").await;
    assert!(again.iter().any(|(id, _)| id == "after"), "an overwrite of acme-b touched acme-a");
}

#[tokio::test]
async fn incremental_backups_reuse_unchanged_chunks_and_verification_finds_damage() {
    let store = tempfile::tempdir().expect("tempdir");
    let dir = store.path().to_path_buf();
    let node = TestNode::start_with(move |a| a.backup_dir = Some(dir.clone())).await;
    let c = node.client.clone();
    fill(&c, "t1", "x", 400).await;
    fill(&c, "t2", "y", 400).await;
    let full = create_backup(&c, json!({"name": "first", "compression": "lz4"})).await;
    let chunks = |p: &std::path::Path| std::fs::read_dir(p.join("chunks")).map(|d| d.count()).unwrap_or(0);
    let after_full = chunks(store.path());
    // Only t1 changes.
    fill(&c, "t1", "z", 10).await;
    let inc = create_backup(&c, json!({"name": "second", "backup_type": "incremental"})).await;
    assert_eq!(inc["backup_type"], "incremental", "{inc}");
    assert_eq!(inc["parent"], full["backup_id"], "{inc}");
    let added = chunks(store.path()) - after_full;
    let manifest = |id: &Value| -> Value {
        let id = id.as_str().expect("id");
        serde_json::from_slice(
            &std::fs::read(store.path().join("manifests").join(format!("{id}.json"))).expect("manifest"),
        )
        .expect("json")
    };
    let (mf, mi) = (manifest(&full["backup_id"]), manifest(&inc["backup_id"]));
    // t2 did not change: its part is the full backup's, chunk for chunk; t1's did.
    let parts = |m: &Value| m["namespaces"].as_object().expect("namespaces").clone();
    let (pf, pi) = (parts(&mf), parts(&mi));
    // (Its entry is sealed again: this backup compresses with zstd, the first with lz4.)
    let same: Vec<&String> =
        pi.keys().filter(|k| pf.get(*k).map(|p| &p["chunks"]) == pi.get(*k).map(|p| &p["chunks"])).collect();
    assert_eq!(same.len(), 1, "exactly the unchanged namespace keeps its chunks: {pf:?} {pi:?}");
    let data = |p: &serde_json::Map<String, Value>| -> BTreeSet<String> {
        p.values()
            .flat_map(|p| p["chunks"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["sha256"].as_str().map(str::to_string))
            .collect()
    };
    let (df, di) = (data(&pf), data(&pi));
    let new_data = di.difference(&df).count();
    assert!(new_data < di.len(), "an incremental backup rewrote all {new_data} of its data chunks");
    // New files: those data chunks, the two entries and the catalogue part, nothing else.
    assert!(added <= new_data + 3, "{added} new files for {new_data} new data chunks");
    assert_eq!(inc["vector_count"].as_u64(), Some(810), "{inc}");

    // Deleting the full backup keeps every chunk the incremental one needs.
    let fid = full["backup_id"].as_str().expect("id");
    let (s, v) = c.delete(&format!("/v1/admin/backups/{fid}")).await;
    assert_eq!(s, 200, "{v}");
    let iid = inc["backup_id"].as_str().expect("id").to_string();
    let (s, v) = c.post(&format!("/v1/admin/backups/{iid}/verify"), &json!({})).await;
    assert_eq!((s, v["ok"].clone()), (200, json!(true)), "{v}");

    // Flip a byte in one of its chunks and remove another: verification names both.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(store.path().join("manifests").join(format!("{iid}.json"))).expect("manifest"),
    )
    .expect("json");
    let files: Vec<_> = manifest["namespaces"]
        .as_object()
        .expect("namespaces")
        .values()
        .flat_map(|p| p["chunks"].as_array().expect("chunks").clone())
        .map(|c| store.path().join("chunks").join(c["sha256"].as_str().expect("sha")))
        .collect();
    let mut bytes = std::fs::read(&files[0]).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&files[0], bytes).expect("write");
    std::fs::remove_file(&files[1]).expect("remove");
    let (s, v) = c.post(&format!("/v1/admin/backups/{iid}/verify"), &json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["faults"].as_array().map(Vec::len), Some(2), "{v}");
}

#[tokio::test]
async fn backup_requests_are_checked_and_scoped() {
    let store = tempfile::tempdir().expect("tempdir");
    let dir = store.path().to_path_buf();
    let node = TestNode::start_with(move |a| a.backup_dir = Some(dir.clone())).await;
    let c = node.client.clone();
    fill(&c, "acme-x", "x", 10).await;
    for (body, why) in [
        (json!({}), "no name"),
        (json!({"name": "n", "include_data": true}), "unknown field"),
        (json!({"name": "n", "backup_type": "weekly"}), "bad type"),
        (json!({"name": "n", "compression": "gzip"}), "bad compression"),
        (json!({"name": "n", "encrypt": false}), "unencrypted"),
    ] {
        let (s, v) = c.post("/v1/admin/backups", &body).await;
        assert_eq!(s, 422, "{why}: {v}");
    }
    let (s, _) = c.post("/v1/admin/backups", &json!({"name": "n", "namespaces": ["nope"]})).await;
    assert_eq!(s, 404);
    assert_eq!(c.get("/v1/admin/backups").await.1["total"], 0, "a refused request made a backup");
    let (s, _) = c.post("/v1/admin/backups/restore", &json!({"backup_id": "bk_1", "point_in_time": 5})).await;
    assert_eq!(s, 422);
    let (s, _) = c.get("/v1/admin/backups/bk_nope").await;
    assert_eq!(s, 404);

    // A tenant admin can neither back up nor restore nor list.
    let (_, admin) =
        create_key(&c, "/admin/keys", &json!({"name": "acme admin", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let t = c.with_key(Some(&admin));
    assert_eq!(t.post("/v1/admin/backups", &json!({"name": "n"})).await.0, 403);
    assert_eq!(t.get("/v1/admin/backups").await.0, 403);
    assert_eq!(t.post("/v1/admin/backups/restore", &json!({"backup_id": "x"})).await.0, 403);
    // A global admin backs up but does not restore or download (super_admin only).
    let (_, gadmin) = create_key(&c, "/admin/keys", &json!({"name": "ops", "scope": "admin"})).await;
    let g = c.with_key(Some(&gadmin));
    let done = create_backup(&g, json!({"name": "by-admin", "namespaces": ["acme-x"]})).await;
    let id = done["backup_id"].as_str().expect("id");
    assert_eq!(g.post("/v1/admin/backups/restore", &json!({"backup_id": id})).await.0, 403);
    assert_eq!(g.get(&format!("/v1/admin/backups/{id}/download")).await.0, 403);

    // Schedule: checked, stored, read back.
    let (s, _) = c.post("/v1/admin/backups/schedule", &json!({"cron": "*/5 * * * *"})).await;
    assert_eq!(s, 422);
    let (s, _) = c.post("/v1/admin/backups/schedule", &json!({"colour": "red"})).await;
    assert_eq!(s, 422);
    let (s, v) =
        c.post("/v1/admin/backups/schedule", &json!({"enabled": true, "cron": "@every 6h", "max_backups": 3})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["next_backup_at"].as_u64().is_some(), "{v}");
    let (_, v) = c.get("/v1/admin/backups/schedule").await;
    assert_eq!(
        (v["enabled"].clone(), v["cron"].clone(), v["max_backups"].clone()),
        (json!(true), json!("@every 6h"), json!(3))
    );
}

#[tokio::test]
async fn a_downloaded_backup_uploads_into_another_store_and_restores_there() {
    let s1 = tempfile::tempdir().expect("tempdir");
    let d1 = s1.path().to_path_buf();
    let n1 = TestNode::start_with(move |a| a.backup_dir = Some(d1.clone())).await;
    let c1 = n1.client.clone();
    let ids = fill(&c1, "moving", "m", 120).await;
    let done = create_backup(&c1, json!({"name": "to-move"})).await;
    let id = done["backup_id"].as_str().expect("id");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/admin/backups/{id}/download", c1.base))
        .bearer_auth(c1.key.as_deref().unwrap_or(""))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let archive = resp.bytes().await.expect("body").to_vec();
    assert_eq!(&archive[..2], &[0x1f, 0x8b], "a gzip file");
    assert!(!archive.windows(9).any(|w| w == b"moving sa"), "plaintext content in the archive");

    let s2 = tempfile::tempdir().expect("tempdir");
    let d2 = s2.path().to_path_buf();
    let n2 = TestNode::start_with(move |a| a.backup_dir = Some(d2.clone())).await;
    let c2 = n2.client.clone();
    let up = |body: Vec<u8>| {
        let c2 = c2.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{}/v1/admin/backups/upload", c2.base))
                .bearer_auth(c2.key.as_deref().unwrap_or(""))
                .header("content-type", "application/gzip")
                .body(body)
                .send()
                .await
                .expect("sent");
            let s = resp.status().as_u16();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // A truncated archive is refused and leaves no backup.
    let (s, v) = up(archive[..archive.len() / 2].to_vec()).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(c2.get("/v1/admin/backups").await.1["total"], 0);
    let (s, v) = up(archive.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["backup"]["backup_id"], id);
    let (s, r) = c2.post("/v1/admin/backups/restore", &json!({"backup_id": id, "target_namespaces": ["moving"]})).await;
    assert_eq!(s, 202, "{r}");
    let r = restore_done(&c2, r["restore_id"].as_str().expect("id")).await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, got) = export_ids(&c2, "moving").await;
    assert_eq!(got.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), ids);
}

/// A real local S3 server (moto's, installed by `scripts/ensure-deps.sh`), killed on drop.
struct S3Server {
    child: std::process::Child,
    url: String,
}

impl S3Server {
    async fn start() -> S3Server {
        let venv = std::env::var("LOCI_MOTO_VENV").unwrap_or_else(|_| "/var/tmp/loci-moto-venv".into());
        let bin = std::path::Path::new(&venv).join("bin/moto_server");
        assert!(bin.exists(), "{} is missing: run scripts/ensure-deps.sh (make deps)", bin.display());
        let port = loci_tests::free_port();
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(&url).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        S3Server { child, url }
    }

    async fn bucket(&self, name: &str) {
        let r = reqwest::Client::new().put(format!("{}/{name}", self.url)).send().await.expect("create bucket");
        assert!(r.status().is_success(), "bucket: {}", r.status());
    }

    /// Every object key under the bucket (moto's ListObjects, unauthenticated).
    async fn keys(&self, bucket: &str) -> Vec<String> {
        let text = reqwest::Client::new()
            .get(format!("{}/{bucket}", self.url))
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("body");
        text.split("<Key>").skip(1).filter_map(|p| p.split("</Key>").next().map(str::to_string)).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_s3_store_backs_up_erases_and_restores() {
    let s3 = S3Server::start().await;
    s3.bucket("loci-backups").await;
    let endpoint = s3.url.clone();
    let on_s3 = move |a: &mut loci_node::ServeArgs| {
        a.backup_dir = Some("s3://loci-backups/cluster-a".into());
        a.backup_s3_endpoint = Some(endpoint.clone());
        a.backup_s3_access_key = Some("test".into());
        a.backup_s3_secret_key = Some("test".into());
    };
    let n1 = TestNode::start_with(on_s3.clone()).await;
    let c1 = n1.client.clone();
    let kept = fill(&c1, "s3-kept", "k", 250).await;
    fill(&c1, "s3-erased", "e", 20).await;
    let done = create_backup(&c1, json!({"name": "to-s3"})).await;
    let id = done["backup_id"].as_str().expect("id").to_string();
    let keys = s3.keys("loci-backups").await;
    assert!(keys.iter().any(|k| k == &format!("cluster-a/manifests/{id}.json")), "{keys:?}");
    assert!(keys.iter().any(|k| k == "cluster-a/params.json"), "{keys:?}");
    assert!(keys.iter().filter(|k| k.starts_with("cluster-a/chunks/")).count() >= 3, "{keys:?}");
    let (s, v) = c1.post(&format!("/v1/admin/backups/{id}/verify"), &json!({})).await;
    assert_eq!((s, v["ok"].clone()), (200, json!(true)), "{v}");
    let keys_before = s3.keys("loci-backups").await.iter().filter(|k| k.contains("/keys/")).count();
    let (s, v) = c1.delete("/v1/namespaces/s3-erased").await;
    assert_eq!((s, v["backup_key_destroyed"].clone()), (200, json!(true)), "{v}");
    let keys_after = s3.keys("loci-backups").await.iter().filter(|k| k.contains("/keys/")).count();
    assert_eq!(keys_after + 1, keys_before, "the erased namespace's key is still in the bucket");

    // Another node on the same bucket restores it.
    let n2 = TestNode::start_with(on_s3).await;
    let c2 = n2.client.clone();
    let (s, r) = c2.post("/v1/admin/backups/restore", &json!({"backup_id": id})).await;
    assert_eq!(s, 202, "{r}");
    let r = restore_done(&c2, r["restore_id"].as_str().expect("id")).await;
    assert_eq!((r["status"].clone(), r["erased_namespaces"].clone()), (json!("completed"), json!(1)), "{r}");
    let (_, got) = export_ids(&c2, "s3-kept").await;
    assert_eq!(got.into_iter().map(|(id, _)| id).collect::<Vec<_>>(), kept);
    assert_eq!(c2.get("/v1/namespaces/s3-erased").await.0, 404);
}

#[tokio::test]
async fn the_scheduler_takes_the_due_backup_and_retention_keeps_the_newest() {
    let store = tempfile::tempdir().expect("tempdir");
    let dir = store.path().to_path_buf();
    let node = TestNode::start_with(move |a| a.backup_dir = Some(dir.clone())).await;
    let c = node.client.clone();
    fill(&c, "sched", "s", 30).await;
    let core = node.handle.as_ref().expect("running").core.clone();
    assert_eq!(core.backups().tick().await.expect("tick"), None, "a disabled schedule took a backup");
    let (s, v) = c
        .post(
            "/v1/admin/backups/schedule",
            &json!({"enabled": true, "cron": "@every 1h", "backup_type": "full", "max_backups": 2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Due at once, then not for an hour.
    let scheduled = core.backups().tick().await.expect("tick").expect("a backup was due");
    assert_eq!(core.backups().tick().await.expect("tick"), None);
    let (_, v) = c.get(&format!("/v1/admin/backups/{scheduled}")).await;
    assert_eq!(v["status"], "completed", "{v}");
    let (_, sch) = c.get("/v1/admin/backups/schedule").await;
    let last = sch["last_backup_at"].as_u64().expect("last_backup_at");
    assert_eq!(sch["next_backup_at"].as_u64(), Some(last + 3600), "{sch}");
    // Two more; retention at two keeps the newest two.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = create_backup(&c, json!({"name": "second"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = create_backup(&c, json!({"name": "third"})).await;
    let removed = core.backups().apply_retention(0, 2).await.expect("retention");
    assert_eq!(removed, vec![scheduled.clone()]);
    let (_, list) = c.get("/v1/admin/backups").await;
    let ids: BTreeSet<String> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["backup_id"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> =
        [&second, &third].iter().map(|b| b["backup_id"].as_str().expect("id").to_string()).collect();
    assert_eq!(ids, want);
    // What is left still verifies (retention removed no chunk they need).
    for id in &want {
        let (_, v) = c.post(&format!("/v1/admin/backups/{id}/verify"), &json!({})).await;
        assert_eq!(v["ok"], true, "{v}");
    }
}
