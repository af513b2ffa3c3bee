//! The published `dakera-client` 0.12.3 against a live Loci node (started by `run.sh`, which
//! sets DAKERA_TEST_URL and DAKERA_API_KEY): namespaces, store, recall, get, update, forget,
//! sessions and errors, asserting on what comes back.

use dakera_client::memory::{ForgetRequest, RecallRequest, StoreMemoryRequest};
use dakera_client::{CreateNamespaceRequest, DakeraClient};

fn client() -> DakeraClient {
    let url = std::env::var("DAKERA_TEST_URL").expect("run.sh sets DAKERA_TEST_URL");
    let key = std::env::var("DAKERA_API_KEY").expect("run.sh sets DAKERA_API_KEY");
    DakeraClient::builder(&url).api_key(&key).build().expect("client")
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{n:x}")
}

#[tokio::test]
async fn namespaces_round_trip() {
    let c = client();
    let ns = unique("rs-ns");
    let created = c
        .create_namespace(&ns, CreateNamespaceRequest { dimensions: Some(16), ..Default::default() })
        .await
        .expect("create");
    assert_eq!(created.name, ns);
    assert_eq!(created.dimensions, Some(16));
    // Idempotent: the same request again answers created=false, not an error.
    let again = c
        .create_namespace(&ns, CreateNamespaceRequest { dimensions: Some(16), ..Default::default() })
        .await
        .expect("create again");
    assert_eq!(again.created, Some(false));
    let info = c.get_namespace(&ns).await.expect("get");
    assert_eq!((info.name.as_str(), info.dimensions), (ns.as_str(), Some(16)));
    assert!(c.list_namespaces().await.expect("list").contains(&ns));
    c.delete_namespace_admin(&ns).await.expect("delete");
    let gone = c.get_namespace(&ns).await.expect_err("deleted");
    assert!(gone.is_not_found(), "{gone:?}");
}

#[tokio::test]
async fn what_is_stored_is_recalled_and_forgotten() {
    let c = client();
    let agent = unique("rs-agent");
    let stored = c
        .store_memory(
            StoreMemoryRequest::new(&agent, "The deploy key rotates every Tuesday at noon")
                .with_importance(0.8)
                .with_tags(vec!["ops".to_string()]),
        )
        .await
        .expect("store");
    assert!(!stored.memory_id.is_empty());
    c.store_memory(StoreMemoryRequest::new(&agent, "Lunch is usually soup").with_importance(0.2))
        .await
        .expect("store");
    let recalled = c.recall(RecallRequest::new(&agent, "when does the deploy key rotate").with_top_k(2)).await.expect("recall");
    let top = recalled.memories.first().expect("a memory");
    assert_eq!(top.id, stored.memory_id);
    assert_eq!(top.content, "The deploy key rotates every Tuesday at noon");
    assert!((top.importance - 0.8).abs() < 1e-6);
    let got = c.get_memory(&agent, &stored.memory_id).await.expect("get");
    assert_eq!(got.content, "The deploy key rotates every Tuesday at noon");
    c.forget(ForgetRequest::by_ids(&agent, vec![stored.memory_id.clone()])).await.expect("forget");
    let err = c.get_memory(&agent, &stored.memory_id).await.expect_err("forgotten");
    assert!(err.is_not_found(), "{err:?}");
    let after = c.recall(RecallRequest::new(&agent, "deploy key").with_top_k(5)).await.expect("recall");
    assert!(after.memories.iter().all(|m| m.id != stored.memory_id));
}

#[tokio::test]
async fn sessions_and_errors() {
    let c = client();
    let agent = unique("rs-sess");
    let session = c.start_session(&agent).await.expect("start");
    let stored = c
        .store_memory(StoreMemoryRequest::new(&agent, "said inside the session").with_session(&session.id))
        .await
        .expect("store");
    assert_eq!(stored.session_state.as_deref(), Some("active"));
    let listed = c.list_sessions(&agent).await.expect("list");
    assert!(listed.iter().any(|s| s.id == session.id));
    c.end_session(&session.id, None).await.expect("end");
    // A wrong key is an authentication error, not a silent empty answer.
    let url = std::env::var("DAKERA_TEST_URL").unwrap();
    let wrong = DakeraClient::builder(&url).api_key("dk-not-a-real-key").build().unwrap();
    let err = wrong.list_namespaces().await.expect_err("refused");
    assert!(err.is_auth_error(), "{err:?}");
}

/// Backups through the client's own types (run.sh gives the node a backup store): create, poll
/// `get_backup` until completed, find it in `list_backups`, restore (everything exists: skipped),
/// poll the restore, delete.
#[tokio::test]
async fn backups_round_trip() {
    use dakera_client::{CreateBackupRequest, RestoreBackupRequest};
    let c = client();
    let agent = unique("rs-bk");
    c.store_memory(StoreMemoryRequest::new(&agent, "kept through a backup")).await.expect("store");
    let created = c
        .create_backup(CreateBackupRequest {
            name: unique("rs-backup"),
            backup_type: Some("full".into()),
            namespaces: None,
            encrypt: Some(true),
            compression: Some("lz4".into()),
        })
        .await
        .expect("create");
    let id = created.backup.backup_id.clone();
    let mut info = c.get_backup(&id).await.expect("get");
    for _ in 0..300 {
        if info.status == "completed" || info.status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        info = c.get_backup(&id).await.expect("get");
    }
    assert_eq!(info.status, "completed", "{info:?}");
    assert!(info.encrypted && info.vector_count >= 1, "{info:?}");
    let listed = c.list_backups().await.expect("list");
    assert!(listed.backups.iter().any(|b| b.backup_id == id));
    assert_eq!(listed.total as usize, listed.backups.len());
    let r = c
        .restore_backup(RestoreBackupRequest {
            backup_id: id.clone(),
            target_namespaces: None,
            overwrite: None,
            point_in_time: None,
        })
        .await
        .expect("restore");
    assert!(!r.restore_id.is_empty());
    let refused = c
        .restore_backup(RestoreBackupRequest {
            backup_id: id.clone(),
            target_namespaces: None,
            overwrite: None,
            point_in_time: Some(1),
        })
        .await
        .expect_err("point_in_time is refused");
    assert!(format!("{refused:?}").contains("422") || format!("{refused:?}").contains("point_in_time"), "{refused:?}");
    c.delete_backup(&id).await.expect("delete");
    assert!(c.get_backup(&id).await.expect_err("deleted").is_not_found());
}
