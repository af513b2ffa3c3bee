//! The simulator over fixed seed ranges: the engine passes every check; the same seed replays
//! the same run; deliberately broken engines and the node's legacy behaviours are caught.

use loci_replication::engine::Faults;
use loci_replication::sim::{self, SimConfig, ViolationKind};

/// The first failing seed in `range` and its violation kinds.
fn first_failure(cfg: &SimConfig, range: std::ops::Range<u64>) -> Option<(u64, Vec<ViolationKind>)> {
    range.map(|s| sim::run(s, cfg)).find(|o| !o.ok()).map(|o| (o.seed, o.violations.iter().map(|v| v.kind).collect()))
}

#[test]
fn two_thousand_seeds_pass_every_check() {
    let cfg = SimConfig::default();
    let mut acked = 0;
    let mut failovers = 0;
    let mut copies = 0;
    for seed in 0..2_000 {
        let out = sim::run(seed, &cfg);
        assert!(out.ok(), "seed {seed}: {:?}\nreplay: make simulate ARGS='--seed {seed} --trace'", out.violations);
        acked += out.stats.acked;
        failovers += out.stats.failovers;
        copies += out.stats.copies;
    }
    // The runs did exercise the protocol.
    assert!(acked > 20_000, "acked {acked}");
    assert!(failovers > 500, "failovers {failovers}");
    assert!(copies > 500, "copies {copies}");
}

#[test]
fn five_node_clusters_pass_too() {
    let cfg = SimConfig { nodes: 5, ..SimConfig::default() };
    assert_eq!(first_failure(&cfg, 0..500), None);
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = SimConfig { trace: true, ..SimConfig::default() };
    let a = sim::run(7, &cfg);
    let b = sim::run(7, &cfg);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.stats, b.stats);
    assert!(a.trace.len() > 100);
    // Tracing does not change the run.
    let quiet = sim::run(7, &SimConfig::default());
    assert_eq!(quiet.trace_hash, a.trace_hash);
    assert!(quiet.trace.is_empty());
    assert_ne!(sim::run(8, &SimConfig::default()).trace_hash, a.trace_hash);
}

#[test]
fn acknowledging_before_the_quorum_is_caught_as_lost_writes() {
    let cfg = SimConfig { faults: Faults { ack_before_quorum: true, ..Faults::default() }, ..SimConfig::default() };
    let (seed, kinds) = first_failure(&cfg, 0..200).expect("the checker catches it");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn serving_without_taking_over_is_caught() {
    let cfg = SimConfig { faults: Faults { skip_takeover: true, ..Faults::default() }, ..SimConfig::default() };
    let (seed, kinds) = first_failure(&cfg, 0..1_000).expect("the checker catches it");
    assert!(
        kinds.iter().any(|k| matches!(k, ViolationKind::LostAckedWrite | ViolationKind::StaleRead)),
        "seed {seed}: {kinds:?}"
    );
}

// The node's current behaviours the simulator found wrong, each alone.

fn legacy(f: impl FnOnce(&mut Faults)) -> SimConfig {
    let mut faults = Faults::default();
    f(&mut faults);
    SimConfig { faults, ..SimConfig::default() }
}

#[test]
fn legacy_resync_loses_acknowledged_writes() {
    let (seed, kinds) = first_failure(&legacy(|f| f.legacy_resync = true), 0..1_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_copies_lose_acknowledged_writes() {
    let (seed, kinds) = first_failure(&legacy(|f| f.legacy_copy = true), 0..3_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_quorum_cap_loses_acknowledged_writes() {
    let (seed, kinds) = first_failure(&legacy(|f| f.legacy_quorum_cap = true), 0..2_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_unanchored_sends_leave_replicas_diverged() {
    let (seed, kinds) = first_failure(&legacy(|f| f.legacy_unanchored_send = true), 0..4_000).expect("found");
    assert!(kinds.contains(&ViolationKind::NotConverged), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_promotion_with_legacy_removal_loses_acknowledged_writes() {
    let cfg = legacy(|f| {
        f.legacy_promotion = true;
        f.legacy_removal = true;
    });
    let (seed, kinds) = first_failure(&cfg, 0..3_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_dead_marking_of_a_syncing_replica_loses_acknowledged_writes() {
    let cfg = SimConfig { nodes: 5, ..legacy(|f| f.legacy_dead_marking = true) };
    let (seed, kinds) = first_failure(&cfg, 0..2_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}

#[test]
fn legacy_drops_before_the_primary_took_over_lose_acknowledged_writes() {
    let cfg = SimConfig { nodes: 5, ..legacy(|f| f.legacy_removal = true) };
    let (seed, kinds) = first_failure(&cfg, 0..1_000).expect("found");
    assert!(kinds.contains(&ViolationKind::LostAckedWrite), "seed {seed}: {kinds:?}");
}
