//! Unit tests of the catalogue's state machine (`Catalogue::apply`) and its derived indexes.
use super::*;

#[test]
fn session_ids_are_per_namespace_and_old_snapshots_still_load() {
    // A snapshot written when a session id named one namespace.
    let mut v = serde_json::to_value(Catalogue::default()).unwrap();
    v["sessions"] = serde_json::json!({"s1": "a"});
    let old: Catalogue = serde_json::from_value(v).unwrap();
    assert_eq!(old.session_namespaces("s1").collect::<Vec<_>>(), vec!["a"]);
    let mut c = Catalogue::default();
    for ns in ["a", "b"] {
        let entry: NamespaceEntry = serde_json::from_value(serde_json::json!({
            "id": if ns == "a" { 1 } else { 3 }, "name": ns, "kind": "data", "dimension": 16,
            "distance": "cosine", "embedder": {"provider": "hash", "dimension": 16, "generation": 0},
            "policy": {}, "data_key": {"kek_version": 1, "dek_version": 1, "sealed": []},
            "metadata": null, "created_at": 0,
        }))
        .expect("entry");
        assert!(matches!(c.apply(Command::CreateNamespace { entry }), CommandResult::Namespace { .. }));
    }
    for ns in ["a", "b"] {
        let r = c.apply(Command::RegisterSession { session_id: "s1".into(), namespace: ns.into() });
        assert_eq!(r, CommandResult::Ok, "the same id in another namespace is another session");
    }
    assert_eq!(c.session_namespaces("s1").collect::<Vec<_>>(), vec!["a", "b"]);
    let round: Catalogue = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(round.sessions, c.sessions);
    c.apply(Command::DeleteNamespace { name: "a".into() });
    assert_eq!(c.session_namespaces("s1").collect::<Vec<_>>(), vec!["b"]);
    c.apply(Command::DeleteNamespace { name: "b".into() });
    assert!(c.sessions.is_empty());
}

#[test]
fn rendezvous_is_deterministic_and_moves_little_when_a_node_joins() {
    let three = [1, 2, 3];
    let four = [1, 2, 3, 4];
    let mut moved = 0;
    let mut primaries = BTreeMap::new();
    for ns in 0..1000u64 {
        let a = rendezvous(ns, &three, 1);
        assert_eq!(a, rendezvous(ns, &three, 1));
        let b = rendezvous(ns, &four, 1);
        if a != b {
            moved += 1;
            assert_eq!(b, vec![4], "a namespace only ever moves to the new node");
        }
        *primaries.entry(b[0]).or_insert(0) += 1;
    }
    assert!((150..350).contains(&moved), "moved {moved} of 1000");
    for (_, n) in primaries {
        assert!((200..300).contains(&n), "uneven spread {n}");
    }
    assert_eq!(rendezvous(7, &three, 3).len(), 3);
    assert_eq!(rendezvous(7, &three, 5).len(), 3);
}

fn placement(epoch: u64, replicas: &[u64]) -> Placement {
    Placement {
        epoch,
        replicas: replicas.to_vec(),
        states: replicas.iter().map(|n| (*n, ReplicaState::Active)).collect(),
        rf: replicas.len(),
        leaving: Default::default(),
        // Whatever a proposer sends, the catalogue decides.
        primary_since: 999,
    }
}

/// Found by review while writing the catalogue fuzz target: a generation or KEK version at
/// `u64::MAX` overflowed (a panic in a debug build, a wrapped comparison in release).
#[test]
fn version_counters_at_their_limit_are_refused_not_overflowed() {
    let entry: NamespaceEntry = serde_json::from_value(serde_json::json!({
        "id": 7, "name": "ns", "kind": "data", "dimension": 16, "distance": "cosine",
        "embedder": {"provider": "hash", "dimension": 16, "generation": u64::MAX}, "policy": {},
        "data_key": {"kek_version": u32::MAX, "dek_version": 1, "sealed": []},
        "metadata": null, "created_at": 0,
    }))
    .expect("entry");
    let mut c = Catalogue::default();
    assert!(matches!(c.apply(Command::CreateNamespace { entry }), CommandResult::Namespace { .. }));
    let target = EmbedderSpec { provider: "hash".into(), dimension: 32, generation: 0 };
    let r = c.apply(Command::SwitchEmbedder { name: "ns".into(), target: target.clone() });
    assert!(matches!(r, CommandResult::Rejected(_)), "{r:?}");
    assert_eq!(c.namespaces["ns"].embedder.generation, u64::MAX);
    let job = ReembedJob {
        target,
        state: "running".into(),
        total: 1,
        done: 0,
        node: 1,
        started_at: 0,
        updated_at: 0,
        finished_at: None,
        error: None,
    };
    assert!(matches!(c.apply(Command::SetReembed { name: "ns".into(), job }), CommandResult::Rejected(_)));
    assert!(c.namespaces["ns"].reembed.is_none());
}

#[test]
fn primary_since_moves_only_when_the_primary_changes() {
    let entry: NamespaceEntry = serde_json::from_value(serde_json::json!({
        "id": 7, "name": "ns", "kind": "data", "dimension": 16, "distance": "cosine",
        "embedder": {"provider": "hash", "dimension": 16}, "policy": {},
        "data_key": {"kek_version": 1, "dek_version": 1, "sealed": []},
        "metadata": null, "created_at": 0,
    }))
    .expect("entry");
    let mut c = Catalogue::default();
    let set = |c: &mut Catalogue, expected_epoch: u64, p: Placement| match c.apply(Command::SetPlacement {
        name: "ns".into(),
        expected_epoch,
        placement: p,
    }) {
        CommandResult::Namespace { entry, .. } => entry.placement.primary_since,
        other => panic!("unexpected {other:?}"),
    };
    let created =
        c.apply(Command::CreateNamespace { entry: NamespaceEntry { placement: placement(3, &[1, 2]), ..entry } });
    assert!(matches!(created, CommandResult::Namespace { ref entry, .. } if entry.placement.primary_since == 3));
    // A follower added: same primary, same take-over.
    assert_eq!(set(&mut c, 3, placement(4, &[1, 2, 3])), 3);
    // A failover to node 2: a new take-over from epoch 5.
    assert_eq!(set(&mut c, 4, placement(5, &[2, 3, 1])), 5);
    // Node 1 marked dead: still node 2's since 5.
    let mut p = placement(6, &[2, 3, 1]);
    p.states.insert(1, ReplicaState::Dead);
    assert_eq!(set(&mut c, 5, p), 5);
}

/// The derived placement load and id set follow every create, move and delete, and a
/// snapshot round trip rebuilds them equal.
#[test]
fn placement_load_and_ids_follow_every_change() {
    let entry = |id: u64, name: &str, p: Placement| -> NamespaceEntry {
        let e: NamespaceEntry = serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "kind": "data", "dimension": 16, "distance": "cosine",
            "embedder": {"provider": "hash", "dimension": 16}, "policy": {},
            "data_key": {"kek_version": 1, "dek_version": 1, "sealed": []},
            "metadata": null, "created_at": 0,
        }))
        .expect("entry");
        NamespaceEntry { placement: p, ..e }
    };
    let check = |c: &Catalogue| {
        let mut rebuilt = c.clone();
        rebuilt.reindex();
        assert_eq!(c.placement_load, rebuilt.placement_load, "kept current = rebuilt from scratch");
        assert_eq!(c.namespace_ids, c.namespaces.values().map(|n| n.id).collect());
    };
    let mut c = Catalogue::default();
    for (id, name, replicas) in [(1, "a", vec![1, 2, 3]), (2, "b", vec![2, 3, 1]), (3, "c", vec![3])] {
        assert!(matches!(
            c.apply(Command::CreateNamespace { entry: entry(id, name, placement(1, &replicas)) }),
            CommandResult::Namespace { created: true, .. }
        ));
        check(&c);
    }
    assert_eq!(c.placement_load[&1], (2, 1));
    assert_eq!(c.placement_load[&3], (3, 1));
    // The same id again is a collision; the same name is the existing namespace.
    assert!(matches!(
        c.apply(Command::CreateNamespace { entry: entry(2, "d", placement(1, &[1])) }),
        CommandResult::Rejected(_)
    ));
    assert!(matches!(
        c.apply(Command::CreateNamespace { entry: entry(9, "a", placement(1, &[4])) }),
        CommandResult::Namespace { created: false, .. }
    ));
    check(&c);
    // A move, a refused move (stale epoch), a delete.
    let moved =
        c.apply(Command::SetPlacement { name: "a".into(), expected_epoch: 1, placement: placement(2, &[4, 2]) });
    assert!(matches!(moved, CommandResult::Namespace { .. }));
    check(&c);
    let stale = c.apply(Command::SetPlacement { name: "a".into(), expected_epoch: 1, placement: placement(3, &[1]) });
    assert!(matches!(stale, CommandResult::Rejected(_)));
    check(&c);
    assert_eq!(c.placement_load[&4], (1, 1));
    assert!(matches!(c.apply(Command::DeleteNamespace { name: "c".into() }), CommandResult::NamespaceDeleted { .. }));
    check(&c);
    assert!(!c.namespace_ids.contains(&3));
    assert!(!c.placement_load.contains_key(&3) || c.placement_load[&3] == (1, 0));
    // Through a snapshot: the derived fields are not serialised, and rebuilt.
    let mut back: Catalogue = serde_json::from_slice(&serde_json::to_vec(&c).expect("json")).expect("back");
    assert!(back.placement_load.is_empty());
    back.reindex();
    assert_eq!(back, c);
}
