//! The knowledge graph, the trash and feedback against real stores: they survive a restart,
//! a follower applying the primary's entries converges to the same state, and erasure takes
//! every row.

use super::*;
use crate::graph::{EdgeType, Link};

fn ctx() -> NsContext {
    test_context(11, "g", 3)
}

fn exec(store: &Store, ctx: &NsContext, op: DataOp) -> Executed {
    store.execute(ctx, op).expect("execute")
}

fn store_one(store: &Store, ctx: &NsContext, content: &str) -> (String, ReplEntry) {
    let e = exec(store, ctx, DataOp::Store { items: vec![NewMemory::text("a", content)] });
    let DataResult::Stored(r) = e.result else { panic!("stored") };
    (r[0].id.clone(), e.replicate.expect("replicates"))
}

/// A deduplication of the whole namespace: cosine 0.8 and half the words in common.
fn dedup_params() -> DedupParams {
    DedupParams {
        agent: None,
        memory_type: None,
        threshold: 0.8,
        min_text_overlap: 0.5,
        dry_run: false,
        retention_secs: 3600,
        max_scan: 100,
        same_session_only: false,
    }
}

/// What a namespace holds of the graph, trash and feedback, comparably.
fn state(store: &Store, ctx: &NsContext) -> (Vec<Link>, Vec<String>, usize) {
    let DataResult::Links(links) =
        exec(store, ctx, DataOp::Links { agent: None, edge_type: None, min_weight: None, limit: 1000 }).result
    else {
        panic!("links")
    };
    let DataResult::Trash(trash) = exec(store, ctx, DataOp::ListTrash { agent: None, limit: 100 }).result else {
        panic!("trash")
    };
    let mut ids: Vec<String> = trash.into_iter().map(|t| t.record.id).collect();
    ids.sort();
    (links, ids, store.text_len_for_tests(ctx))
}

impl Store {
    fn text_len_for_tests(&self, ctx: &NsContext) -> usize {
        self.text.list(&ctx.key).map(|m| m.len()).unwrap_or(0)
    }
}

#[test]
fn graph_trash_and_feedback_persist_replicate_and_are_erased() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let primary = Store::open(dirs[0].path(), StoreConfig::default()).expect("open");
    let follower = Store::open(dirs[1].path(), StoreConfig::default()).expect("open");
    let c = ctx();
    let mut log = Vec::new();
    let (a, e) = store_one(&primary, &c, "Anna lives in Berlin with her cat");
    log.push(e);
    // Alike enough for a similarity link.
    let (b, e) = store_one(&primary, &c, "Anna lives in Berlin with her cat now");
    log.push(e);
    let (z, e) = store_one(&primary, &c, "Quarterly revenue grew in Lyon");
    log.push(e);
    let (links, _, _) = state(&primary, &c);
    assert!(links.iter().any(|l| l.edge_type == EdgeType::RelatedTo && l.from_id == b && l.to_id == a), "{links:?}");
    let link = Link {
        from_id: a.clone(),
        to_id: z.clone(),
        edge_type: EdgeType::LinkedBy,
        weight: 1.0,
        label: Some("x".into()),
        created_at: 0,
    };
    log.push(exec(&primary, &c, DataOp::Link { links: vec![link], agent: None }).replicate.expect("link"));
    let refused = primary.execute(
        &c,
        DataOp::Link {
            links: vec![Link {
                from_id: a.clone(),
                to_id: "mem_elsewhere".into(),
                edge_type: EdgeType::LinkedBy,
                weight: 1.0,
                label: None,
                created_at: 0,
            }],
            agent: None,
        },
    );
    assert!(matches!(refused, Err(StorageError::NotFound(_))), "a link to a memory not in the namespace");
    log.push(
        exec(&primary, &c, DataOp::Feedback { id: a.clone(), agent: None, signal: "upvote".into(), delta: 0.1 })
            .replicate
            .expect("fb"),
    );
    let params = dedup_params();
    let e = exec(&primary, &c, DataOp::Deduplicate(params));
    let DataResult::Deduplicated(report) = &e.result else { panic!("dedup") };
    assert_eq!(report.moved, 1, "{report:?}");
    log.push(e.replicate.expect("dedup replicates"));
    let before = state(&primary, &c);
    assert_eq!(before.1.len(), 1);
    assert!(
        before.0.iter().all(|l| before.1.iter().all(|t| &l.from_id != t && &l.to_id != t)),
        "a trashed memory's links go"
    );

    // A follower applying the same entries holds the same graph, trash and feedback.
    for (i, entry) in log.iter().enumerate() {
        assert!(matches!(
            follower
                .apply_replicated(&c, Some(1), (i > 0).then(|| (log[i - 1].seq, 1)), std::slice::from_ref(entry))
                .expect("apply"),
            ApplyOutcome::Applied { .. }
        ));
    }
    assert_eq!(state(&follower, &c), before);
    let history = |s: &Store| match s.execute(&c, DataOp::FeedbackHistory { id: a.clone(), agent: None }) {
        Ok(Executed { result: DataResult::FeedbackHistory(h), .. }) => h.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!((history(&primary), history(&follower)), (1, 1));

    // A restart rebuilds the same state from the rows.
    drop(primary);
    let primary = Store::open(dirs[0].path(), StoreConfig::default()).expect("reopen");
    assert_eq!(state(&primary, &c), before);
    assert_eq!(history(&primary), 1);

    // Erasure takes every row of the namespace: nothing of it is read back.
    primary.drop_namespace(c.id).expect("drop");
    drop(primary);
    let primary = Store::open(dirs[0].path(), StoreConfig::default()).expect("reopen");
    assert!(primary.stored_namespace_ids().expect("ids").iter().all(|id| *id != c.id));
    let (links, trash, _) = state(&primary, &c);
    assert!(links.is_empty() && trash.is_empty());
}

#[test]
fn an_agent_scoped_path_or_unlink_stays_within_the_agents_memories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let c = NsContext { auto_link_threshold: None, ..ctx() };
    let stored = |agent: &str, content: &str| {
        let e = exec(&store, &c, DataOp::Store { items: vec![NewMemory::text(agent, content)] });
        let DataResult::Stored(r) = e.result else { panic!("stored") };
        r[0].id.clone()
    };
    let x1 = stored("x", "first of x");
    let y1 = stored("y", "one of y");
    let x2 = stored("x", "second of x");
    // A namespace-wide caller links x1 - y1 - x2 (both agents).
    let link = |from: &str, to: &str| Link {
        from_id: from.into(),
        to_id: to.into(),
        edge_type: EdgeType::LinkedBy,
        weight: 1.0,
        label: None,
        created_at: 0,
    };
    exec(&store, &c, DataOp::Link { links: vec![link(&x1, &y1), link(&y1, &x2)], agent: None });
    let path = |agent: Option<&str>| {
        let op = DataOp::Path {
            from: x1.clone(),
            to: x2.clone(),
            max_depth: 5,
            entity_types: None,
            agent: agent.map(str::to_string),
        };
        match exec(&store, &c, op).result {
            DataResult::Path(p) => p,
            _ => panic!("path"),
        }
    };
    assert_eq!(path(None), Some(vec![x1.clone(), y1.clone(), x2.clone()]));
    // Agent x's path may not go through y's memory.
    assert_eq!(path(Some("x")), None);
    // Agent x cannot remove the link to y's memory; the namespace-wide caller can.
    let unlink = |agent: Option<&str>| {
        let op = DataOp::Unlink { from: x1.clone(), to: y1.clone(), edge_type: None, agent: agent.map(str::to_string) };
        match exec(&store, &c, op).result {
            DataResult::Deleted(n) => n,
            _ => panic!("unlink"),
        }
    };
    assert_eq!(unlink(Some("x")), 0);
    assert_eq!(path(None).map(|p| p.len()), Some(3), "the link is still there");
    assert_eq!(unlink(None), 1);
    assert_eq!(path(None), None);
}

#[test]
fn a_group_changed_between_the_dedup_scan_and_the_move_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let c = NsContext { auto_link_threshold: None, ..ctx() };
    let (a, _) = store_one(&store, &c, "Anna lives in Berlin with her cat");
    store_one(&store, &c, "Anna lives in Berlin with her cat now");
    let params = dedup_params();
    let ns = store.namespace(&c).expect("ns");
    let scan = store.dedup_scan(&ns, &params, now_secs()).expect("scan");
    // A writer edits a member after the scan: its group is no longer what was measured.
    let mut edit = NewMemory::text("a", "Anna moved to Hamburg last spring");
    edit.id = Some(a.clone());
    exec(&store, &c, DataOp::Store { items: vec![edit] });
    let (report, entry) = store.dedup_apply(&ns, &c, &params, scan, now_secs()).expect("apply");
    assert_eq!((report.moved, report.skipped_changed, report.groups.len()), (0, 1, 0), "{report:?}");
    assert!(entry.is_none(), "nothing written");
    assert!(state(&store, &c).1.is_empty(), "nothing trashed");
    // Scanned again, the two are no longer alike.
    let DataResult::Deduplicated(again) = exec(&store, &c, DataOp::Deduplicate(params)).result else { panic!("dedup") };
    assert_eq!((again.moved, again.skipped_changed), (0, 0));
}
