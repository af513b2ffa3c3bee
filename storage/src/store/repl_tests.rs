//! Replication: fencing, divergence, full-copy repair and embedder switches against real stores.

use super::*;
use crate::crypto::SecretKey;
use crate::embed::HashEmbedder;

fn ctx(epoch: u64) -> NsContext {
    NsContext {
        id: 7,
        name: "ns".into(),
        key: DataKey::new(7, 1, SecretKey::from_bytes([9; 32])),
        dimension: 16,
        embedder: Arc::new(HashEmbedder::new(16)),
        max_memories: None,
        max_agents: None,
        max_sessions_per_agent: None,
        metric: crate::vector::Metric::Cosine,
        epoch,
        generation: 0,
        auto_link_threshold: None,
        max_auto_links: 0,
    }
}

fn write(store: &Store, ctx: &NsContext, content: &str) -> Result<ReplEntry> {
    let op = DataOp::Store { items: vec![NewMemory::text("a", content)] };
    Ok(store.execute(ctx, op)?.replicate.expect("a write replicates"))
}

fn contents(store: &Store, ctx: &NsContext) -> Vec<String> {
    let op = DataOp::List { filter: MemoryFilter::default(), sort: SortBy::CreatedAtAsc, limit: 100, offset: 0 };
    match store.execute(ctx, op).expect("list").result {
        DataResult::Memories { memories, .. } => memories.into_iter().map(|m| m.content).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn fencing_and_divergence_are_detected_and_a_copy_repairs() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let open = |i: usize| Store::open(dirs[i].path(), StoreConfig::default()).expect("open");
    let (old_primary, follower, new_primary) = (open(0), open(1), open(2));
    let (e1, e2) = (ctx(1), ctx(2));

    // Epoch 1: the first write reaches everyone.
    let first = write(&old_primary, &e1, "one").expect("write");
    for s in [&follower, &new_primary] {
        assert_eq!(
            s.apply_replicated(&e1, Some(1), None, &[first.clone()]).expect("apply"),
            ApplyOutcome::Applied { seq: 1 }
        );
    }
    // The old primary's second write reaches the follower only (never acknowledged).
    let stale = write(&old_primary, &e1, "never acknowledged").expect("write");
    assert_eq!(
        follower.apply_replicated(&e1, Some(1), Some((1, 1)), &[stale.clone()]).expect("apply"),
        ApplyOutcome::Applied { seq: 2 }
    );
    // Epoch 2: the new primary fences the follower and writes its own seq 2.
    assert_eq!(follower.fence(&e1, 2).expect("fence"), NsProgress { applied_seq: 2, epoch: 1 });
    let fresh = write(&new_primary, &e2, "two").expect("write");
    assert_eq!((fresh.seq, fresh.epoch), (2, 2));

    // The old primary is refused by the fenced follower, and refuses itself once fenced.
    assert_eq!(
        follower.apply_replicated(&e1, Some(1), None, &[stale]).expect("apply"),
        ApplyOutcome::Fenced { epoch: 2 }
    );
    old_primary.fence(&e1, 2).expect("fence");
    assert!(matches!(write(&old_primary, &e1, "late"), Err(StorageError::Fenced(2))));

    // Same sequence number from another epoch: divergence, not a silent duplicate.
    assert!(matches!(
        follower.apply_replicated(&e2, Some(2), Some((1, 1)), &[fresh.clone()]).expect("apply"),
        ApplyOutcome::Diverged { .. }
    ));
    // A next entry whose predecessor differs from the follower's: divergence too.
    let third = write(&new_primary, &e2, "three").expect("write");
    assert!(matches!(
        follower.apply_replicated(&e2, Some(2), Some((2, 2)), &[third.clone()]).expect("apply"),
        ApplyOutcome::Diverged { .. }
    ));

    // A full copy (rows and log) repairs the follower; it then follows the new primary.
    let (progress, rows) = new_primary.export_namespace(7).expect("export");
    follower.import_begin(7, 2, 1).expect("begin");
    follower.import_rows(1, &rows).expect("rows");
    follower.import_finish(7, 1, progress).expect("finish");
    assert_eq!(contents(&follower, &e2), vec!["one", "two", "three"]);
    assert_eq!(follower.log_epoch_at(&e2, 3).expect("log"), Some(2));
    let fourth = write(&new_primary, &e2, "four").expect("write");
    assert_eq!(
        follower.apply_replicated(&e2, Some(2), Some((3, 2)), &[fourth]).expect("apply"),
        ApplyOutcome::Applied { seq: 4 }
    );
    assert_eq!(contents(&follower, &e2), vec!["one", "two", "three", "four"]);
    // Truncation keeps the last applied entry (the anchor of the next check).
    follower.truncate_repl(&e2, 10).expect("truncate");
    assert_eq!(follower.repl_floor(7).expect("floor"), Some(4));
}

#[test]
fn a_fence_survives_a_restart() {
    let (primary_dir, replica_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let old_primary = Store::open(primary_dir.path(), StoreConfig::default()).expect("open");
    let first = write(&old_primary, &ctx(1), "one").expect("write");
    let late = write(&old_primary, &ctx(1), "late").expect("write");
    {
        let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("open");
        replica.apply_replicated(&ctx(1), Some(1), None, &[first]).expect("apply");
        // A new primary of epoch 5 fences it; the replica's catalogue still says epoch 1.
        replica.fence(&ctx(1), 5).expect("fence");
        replica.shutdown().expect("shutdown");
    }
    let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("reopen");
    // The deposed primary (epoch 1) is still refused after the restart, and nothing is applied.
    assert_eq!(
        replica.apply_replicated(&ctx(1), Some(1), Some((1, 1)), &[late]).expect("apply"),
        ApplyOutcome::Fenced { epoch: 5 }
    );
    assert_eq!(contents(&replica, &ctx(1)), vec!["one"]);
}

/// Every text maps to the same unit vector: unlike the hash embedder's vectors, so a test
/// can tell which embedder made a stored vector.
struct ConstantEmbedder;

impl crate::embed::Embedder for ConstantEmbedder {
    fn provider(&self) -> &str {
        "constant"
    }
    fn dimension(&self) -> usize {
        16
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|_| vec![0.25; 16]).collect())
    }
}

#[test]
fn an_entry_from_before_an_embedder_switch_is_embedded_again() {
    let (primary_dir, replica_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let primary = Store::open(primary_dir.path(), StoreConfig::default()).expect("open");
    let replica = Store::open(replica_dir.path(), StoreConfig::default()).expect("open");
    let old = ctx(1);
    let first = write(&primary, &old, "written before the switch").expect("write");
    // Made with the old embedder (generation 0), but applied here only after the switch.
    let straggler = write(&primary, &old, "applied after the switch").expect("write");
    assert_eq!(straggler.generation, 0);
    replica.apply_replicated(&old, Some(1), None, &[first]).expect("apply");
    let new = NsContext { generation: 1, embedder: Arc::new(ConstantEmbedder), ..ctx(1) };
    assert_eq!(
        replica.apply_replicated(&new, Some(1), Some((1, 1)), &[straggler]).expect("apply"),
        ApplyOutcome::Applied { seq: 2 }
    );
    let recall = DataOp::Recall(RecallParams {
        query: String::new(),
        query_embedding: Some(vec![0.25; 16]),
        top_k: 10,
        filter: MemoryFilter::default(),
        routing: Routing::Vector,
        fusion: Fusion::default(),
        vector_weight: None,
        min_score: None,
        importance_weighted: false,
        record_access: false,
        decay: None,
    });
    let DataResult::Recalled(hits) = replica.execute(&new, recall).expect("recall").result else {
        panic!("not a recall answer")
    };
    // Both vectors are the new embedder's: the promoted one and the straggler's.
    assert_eq!(hits.len(), 2);
    for h in &hits {
        let score = h.vector_score.expect("vector score");
        assert!(score > 0.999, "{}: vector score {score}", h.memory.content);
    }
}

#[test]
fn log_batches_are_bounded_by_bytes_and_always_make_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let c = ctx(1);
    let big = "x".repeat(50_000);
    for _ in 0..10 {
        write(&store, &c, &big).expect("write");
    }
    // Ten ~50 KB entries: a 120 KB bound yields the first three (the third crosses it).
    let batch = store.repl_entries_within(&c, 1, 1000, 120_000).expect("batch");
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    // An entry larger than the bound on its own still comes, alone: a follower always advances.
    let one = store.repl_entries_within(&c, 4, 1000, 10).expect("batch");
    assert_eq!(one.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
    // The count limit still applies under the byte bound.
    assert_eq!(store.repl_entries_within(&c, 1, 2, usize::MAX).expect("batch").len(), 2);
    // Walking the log batch by batch reaches every entry exactly once.
    let (mut from, mut seen) = (1, Vec::new());
    loop {
        let b = store.repl_entries_within(&c, from, 1000, 120_000).expect("batch");
        let Some(last) = b.last() else { break };
        from = last.seq + 1;
        seen.extend(b.iter().map(|e| e.seq));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_fence_older_than_the_replicas_own_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let e1 = ctx(1);
    write(&store, &e1, "one").expect("write");
    assert_eq!(store.fence(&e1, 5).expect("fence"), NsProgress { applied_seq: 1, epoch: 1 });
    // A take-over at epoch 3 (a deposed primary whose catalogue lags) learns nothing.
    assert!(matches!(store.fence(&e1, 3), Err(StorageError::Fenced(5))));
    assert_eq!(store.fence_epoch(&e1).expect("fence epoch"), 5, "the refusal did not lower the fence");
    // The same epoch again, or a newer one, is answered.
    assert_eq!(store.fence(&e1, 5).expect("fence").applied_seq, 1);
    store.fence(&e1, 6).expect("fence");
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    assert_eq!(store.fence_epoch(&e1).expect("fence epoch"), 6, "the fence survives a restart");
    assert!(matches!(store.fence(&e1, 5), Err(StorageError::Fenced(6))));
}

#[test]
fn a_copy_is_installed_only_when_complete_and_never_over_a_newer_fence() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let primary = Store::open(dirs[0].path(), StoreConfig::default()).expect("open");
    let e2 = ctx(2);
    for c in ["one", "two", "three"] {
        write(&primary, &e2, c).expect("write");
    }
    let (progress, rows) = primary.export_namespace(7).expect("export");
    let replica_dir = dirs[1].path();
    {
        let replica = Store::open(replica_dir, StoreConfig::default()).expect("open");
        let first = primary.repl_entries(&e2, 1, 1).expect("log");
        replica.apply_replicated(&e2, Some(2), None, &first).expect("apply");
        replica.fence(&e2, 2).expect("fence");
        // A copy that begins and is then lost: the replica keeps what it held.
        replica.import_begin(7, 2, 1).expect("begin");
        replica.import_rows(1, &rows[..rows.len() / 2]).expect("rows");
        assert_eq!(contents(&replica, &e2), vec!["one"], "nothing staged is visible");
        assert_eq!(replica.progress(&e2).expect("progress").applied_seq, 1);
        replica.shutdown().expect("shutdown");
    }
    // After a restart the unfinished copy is gone and the replica is as it was.
    let replica = Store::open(replica_dir, StoreConfig::default()).expect("reopen");
    assert_eq!(contents(&replica, &e2), vec!["one"]);
    assert!(replica.import_rows(1, &rows).is_err(), "rows of a copy that did not begin are refused");
    assert!(replica.import_finish(7, 1, progress).is_err(), "so is its end");
    assert_eq!(contents(&replica, &e2), vec!["one"]);

    // A sender older than the fence is refused at once.
    replica.fence(&e2, 4).expect("fence");
    assert!(matches!(replica.import_begin(7, 3, 2), Err(StorageError::Fenced(4))));
    // A sender older than the epoch of the last entry the replica applied is refused too.
    assert!(matches!(replica.import_begin(7, 1, 2), Err(StorageError::Fenced(4))));
    // A copy accepted at epoch 4 is aborted when the replica is fenced past it meanwhile.
    replica.import_begin(7, 4, 3).expect("begin");
    replica.import_rows(3, &rows).expect("rows");
    replica.fence(&e2, 5).expect("fence");
    assert!(matches!(replica.import_finish(7, 3, progress), Err(StorageError::Fenced(5))));
    assert_eq!(contents(&replica, &e2), vec!["one"], "an aborted copy changes nothing");

    // A copy accepted while the replica still applies entries is aborted too.
    replica.import_begin(7, 5, 4).expect("begin");
    replica.import_rows(4, &rows).expect("rows");
    let second = primary.repl_entries(&e2, 2, 1).expect("log");
    let e5 = ctx(5);
    assert_eq!(
        replica.apply_replicated(&e5, Some(5), Some((1, 2)), &second).expect("apply"),
        ApplyOutcome::Applied { seq: 2 }
    );
    assert!(replica.import_finish(7, 4, progress).is_err());
    assert_eq!(contents(&replica, &e5), vec!["one", "two"]);

    // A copy replaced by a newer one: the first one's rows and end are refused.
    replica.import_begin(7, 5, 5).expect("begin");
    replica.import_begin(7, 5, 6).expect("a newer copy replaces it");
    assert!(replica.import_rows(5, &rows).is_err());
    assert!(replica.import_finish(7, 5, progress).is_err());

    // A complete copy is installed; the fence survives it.
    replica.import_rows(6, &rows).expect("rows");
    replica.import_finish(7, 6, progress).expect("finish");
    assert_eq!(contents(&replica, &e5), vec!["one", "two", "three"]);
    assert_eq!(replica.progress(&e5).expect("progress"), progress);
    assert_eq!(replica.fence_epoch(&e5).expect("fence"), 5, "the fence survived the install");
    assert!(matches!(replica.fence(&e2, 4), Err(StorageError::Fenced(5))));
}

#[test]
fn an_abandoned_copy_is_dropped_and_one_in_progress_is_kept() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let primary = Store::open(dirs[0].path(), StoreConfig::default()).expect("open");
    let e2 = ctx(2);
    write(&primary, &e2, "one").expect("write");
    let (progress, rows) = primary.export_namespace(7).expect("export");
    let replica = Store::open(dirs[1].path(), StoreConfig::default()).expect("open");
    replica.import_begin(7, 2, 9).expect("begin");
    replica.import_rows(9, &rows).expect("rows");
    // Recent: kept.
    assert_eq!(replica.drop_abandoned_copies(std::time::Duration::from_secs(600)).expect("sweep"), 0);
    replica.import_finish(7, 9, progress).expect("a kept copy still installs");
    assert_eq!(contents(&replica, &e2), vec!["one"]);
    // Idle past the bound (as of 11 minutes from now): dropped, and its rows and end are refused.
    replica.import_begin(7, 2, 10).expect("begin");
    replica.import_rows(10, &rows).expect("rows");
    let later = now_secs() + 660;
    assert_eq!(replica.drop_copies_idle_at(std::time::Duration::from_secs(600), later).expect("sweep"), 1);
    assert!(replica.import_rows(10, &rows).is_err());
    assert!(replica.import_finish(7, 10, progress).is_err());
    assert_eq!(contents(&replica, &e2), vec!["one"], "the replica is as it was");
}

#[test]
fn a_streamed_export_is_the_whole_copy_in_bounded_chunks_and_stops_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let primary = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let e2 = ctx(2);
    for i in 0..40 {
        write(&primary, &e2, &format!("memory number {i} {}", "x".repeat(500))).expect("write");
    }
    let (progress, rows) = primary.export_namespace(7).expect("export");
    assert!(rows.len() > 40, "rows of every column family: {}", rows.len());
    let (mut parts, mut streamed, mut first) = (0, Vec::new(), None);
    primary
        .export_namespace_chunked(7, 4096, |part| {
            match part {
                ExportPart::Progress(p) => first = Some((parts, p)),
                ExportPart::Rows(r) => {
                    // A chunk passes the bound by at most its last row.
                    let size: usize = r.iter().map(|(_, k, v)| k.len() + v.len()).sum();
                    let last = r.last().map_or(0, |(_, k, v)| k.len() + v.len());
                    assert!(size < 4096 + last, "chunk of {size} bytes");
                    streamed.extend(r);
                }
            }
            parts += 1;
            true
        })
        .expect("stream");
    assert_eq!(first.map(|(at, p)| (at, p.applied_seq)), Some((0, progress.applied_seq)), "progress comes first");
    assert!(parts > 3, "several chunks: {parts}");
    assert_eq!(streamed, rows, "the same rows in the same order");
    // The sink stops the scan: nothing is read past its `false`.
    let mut calls = 0;
    primary
        .export_namespace_chunked(7, 4096, |_| {
            calls += 1;
            calls < 2
        })
        .expect("stream");
    assert_eq!(calls, 2);
}
