//! Pure placement decisions, re-derived every reconciler tick from (catalogue, membership).
//!
//! One change per namespace per tick, each a new placement with `epoch + 1` committed by
//! compare-and-set, so decisions made on a stale view are simply rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use loci_raft::catalogue::{NamespaceEntry, Placement, ReplicaState, rendezvous};

/// What the planner knows about the cluster.
pub struct View<'a> {
    /// Catalogue members that gossip reports alive.
    pub alive: &'a BTreeSet<u64>,
    /// Catalogue members (alive or not).
    pub members: &'a BTreeSet<u64>,
    pub draining: &'a BTreeSet<u64>,
    /// How long a member has been down (None = alive).
    pub down_for: &'a (dyn Fn(u64) -> Option<Duration> + Sync),
    pub failover_after: Duration,
    pub dead_grace: Duration,
    /// Replicas per node across all namespaces (for balancing).
    pub load: &'a BTreeMap<u64, usize>,
    /// Nodes already receiving a copy (one move per node at a time).
    pub busy: &'a BTreeSet<u64>,
    /// Plan as if no replica may leave now (a `Remove` the reconciler found unsafe: the
    /// rules after it still apply, e.g. adding a replica).
    pub hold_removals: bool,
}

#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nothing to do.
    Keep,
    /// Commit this placement.
    Set(Placement),
    /// The primary is gone: choose among these (caught-up first) by their applied sequence.
    Failover { candidates: Vec<u64> },
    /// Commit this placement, which drops `victim`, once the primary serves and every other
    /// remaining `Active` replica caught up with it: a write acknowledged by the primary and
    /// the victim alone would otherwise survive on the primary only (the engine's fix of
    /// `Faults::legacy_removal`; the reconciler checks it).
    Remove { placement: Placement, victim: u64 },
}

fn bumped(p: &Placement) -> Placement {
    Placement { epoch: p.epoch + 1, ..p.clone() }
}

/// Where `ns_id` would go on a fresh cluster of `nodes`.
pub fn initial(ns_id: u64, nodes: &[u64], rf: usize) -> Placement {
    let replicas = rendezvous(ns_id, nodes, rf.max(1));
    Placement {
        epoch: 1,
        states: replicas.iter().map(|n| (*n, ReplicaState::Active)).collect(),
        replicas,
        rf: rf.max(1),
        leaving: BTreeSet::new(),
        primary_since: 0,
    }
}

/// Initial placement that keeps nodes even: the `rf` least-loaded nodes (rendezvous order breaks
/// ties), with the replica holding the fewest primaries as primary.
pub fn initial_balanced(
    ns_id: u64,
    nodes: &[u64],
    rf: usize,
    replicas: &BTreeMap<u64, usize>,
    primaries: &BTreeMap<u64, usize>,
) -> Placement {
    let order = rendezvous(ns_id, nodes, nodes.len());
    let rank = |n: &u64| order.iter().position(|x| x == n).unwrap_or(usize::MAX);
    let mut chosen: Vec<u64> = nodes.to_vec();
    chosen.sort_by_key(|n| (replicas.get(n).copied().unwrap_or(0), rank(n)));
    chosen.truncate(rf.max(1));
    chosen.sort_by_key(|n| (primaries.get(n).copied().unwrap_or(0), rank(n)));
    Placement {
        epoch: 1,
        states: chosen.iter().map(|n| (*n, ReplicaState::Active)).collect(),
        replicas: chosen,
        rf: rf.max(1),
        leaving: BTreeSet::new(),
        primary_since: 0,
    }
}

pub fn plan(entry: &NamespaceEntry, v: &View) -> Decision {
    let p = &entry.placement;
    let Some(primary) = p.primary() else { return Decision::Keep };
    let down_long = |n: u64, d: Duration| (v.down_for)(n).is_some_and(|t| t >= d) || !v.members.contains(&n);

    // 1. Failover: the primary has been down too long.
    if down_long(primary, v.failover_after) {
        let candidates: Vec<u64> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| *n != primary && v.alive.contains(n) && p.state(*n) == Some(ReplicaState::Active))
            .collect();
        return if candidates.is_empty() { Decision::Keep } else { Decision::Failover { candidates } };
    }

    // 2. Replicas down too long become Dead (the primary stops sending to them; they still
    //    count, as they may hold acknowledged writes). A Syncing one never held an
    //    acknowledged write: it leaves the placement instead (made Dead, it would count, and its
    //    empty answer could complete a take-over; the engine's `Faults::legacy_dead_marking`).
    //    Rule 6 adds another.
    for n in &p.replicas {
        if *n != primary && p.state(*n) != Some(ReplicaState::Dead) && down_long(*n, v.failover_after) {
            let mut np = bumped(p);
            if p.state(*n) == Some(ReplicaState::Syncing) {
                np.replicas.retain(|x| x != n);
                np.states.remove(n);
                np.leaving.clear();
            } else {
                np.states.insert(*n, ReplicaState::Dead);
            }
            return Decision::Set(np);
        }
    }

    // 3. A Dead replica that is alive again stays Dead (it still counts, is fenced and asked
    //    by a take-over: it may hold acknowledged writes) while the primary repairs it by a
    //    full copy and then makes it Active (`repair_pass`, `copy_to`). Making it Syncing, as
    //    the node once did, dropped it from the count (the engine's `Faults::legacy_resync`).

    // 4. Drop replicas that are dead past the grace period or on removed nodes.
    for n in &p.replicas {
        if *n != primary && p.state(*n) == Some(ReplicaState::Dead) && down_long(*n, v.dead_grace) && !v.hold_removals {
            let mut np = bumped(p);
            np.replicas.retain(|x| x != n);
            np.states.remove(n);
            return Decision::Remove { placement: np, victim: *n };
        }
    }

    // 5. Hand the primary role away from a draining node to a caught-up Active replica.
    if v.draining.contains(&primary) {
        let candidates: Vec<u64> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| {
                *n != primary
                    && v.alive.contains(n)
                    && !v.draining.contains(n)
                    && p.state(*n) == Some(ReplicaState::Active)
            })
            .collect();
        if !candidates.is_empty() {
            return Decision::Failover { candidates };
        }
    }

    let eligible: Vec<u64> = v.alive.iter().copied().filter(|n| !v.draining.contains(n)).collect();
    let healthy: Vec<u64> = p
        .replicas
        .iter()
        .copied()
        .filter(|n| {
            // A Dead replica that is alive again is being repaired by the primary (rule 3).
            let back = p.state(*n) == Some(ReplicaState::Dead) && v.alive.contains(n);
            (matches!(p.state(*n), Some(ReplicaState::Active | ReplicaState::Syncing)) || back)
                && !v.draining.contains(n)
        })
        .collect();
    let target_rf = p.rf.min(eligible.len().max(1));

    // 6. Under-replicated (lost replicas, new nodes, draining): add a Syncing replica.
    let syncing = p.replicas.iter().filter(|n| p.state(**n) == Some(ReplicaState::Syncing)).count();
    if healthy.len() < target_rf && syncing == 0 {
        let spares: Vec<u64> =
            eligible.iter().copied().filter(|n| !p.replicas.contains(n) && !v.busy.contains(n)).collect();
        if let Some(target) = rendezvous(entry.id, &spares, 1).first().copied() {
            let mut np = bumped(p);
            np.replicas.push(target);
            np.states.insert(target, ReplicaState::Syncing);
            return Decision::Set(np);
        }
    }

    // 7. Over-replicated (a move or a repair completed): remove the replica that should go —
    //    the one a move is replacing, else on a draining node, else on the most loaded node;
    //    never the primary.
    let active: Vec<u64> = p.replicas.iter().copied().filter(|n| p.state(*n) == Some(ReplicaState::Active)).collect();
    let active_ok = active.iter().filter(|n| !v.draining.contains(n)).count();
    if !v.hold_removals && syncing == 0 && (active.len() > p.rf || (active_ok >= target_rf && active.len() > active_ok))
    {
        let victim =
            active.iter().copied().filter(|n| *n != primary).max_by_key(|n| {
                (p.leaving.contains(n), v.draining.contains(n), v.load.get(n).copied().unwrap_or(0), *n)
            });
        if let Some(victim) = victim {
            let mut np = bumped(p);
            np.replicas.retain(|x| *x != victim);
            np.states.remove(&victim);
            np.leaving.remove(&victim);
            return Decision::Remove { placement: np, victim };
        }
    }
    if syncing == 0 && !p.leaving.is_empty() && active.len() <= p.rf {
        // A move whose target vanished: forget it.
        let mut np = bumped(p);
        np.leaving.clear();
        return Decision::Set(np);
    }

    // 8. Balance: move a replica from a node holding clearly more than average to the least
    //    loaded node that holds none of this namespace (one move per node at a time).
    if syncing == 0 && active.len() == p.rf && eligible.len() > p.rf {
        let total: usize = eligible.iter().map(|n| v.load.get(n).copied().unwrap_or(0)).sum();
        let avg = total as f64 / eligible.len() as f64;
        let from = active
            .iter()
            .copied()
            .filter(|n| *n != primary && !v.busy.contains(n))
            .max_by_key(|n| v.load.get(n).copied().unwrap_or(0));
        let to = eligible
            .iter()
            .copied()
            .filter(|n| !p.replicas.contains(n) && !v.busy.contains(n))
            .min_by_key(|n| (v.load.get(n).copied().unwrap_or(0), *n));
        if let (Some(from), Some(to)) = (from, to) {
            let lf = v.load.get(&from).copied().unwrap_or(0) as f64;
            let lt = v.load.get(&to).copied().unwrap_or(0) as f64;
            if lf >= avg + 1.0 && lt + 1.0 <= avg {
                let mut np = bumped(p);
                np.replicas.push(to);
                np.states.insert(to, ReplicaState::Syncing);
                np.leaving.insert(from);
                return Decision::Set(np);
            }
        }
    }
    Decision::Keep
}

/// Whether a replica may leave: the primary serves (took over, so it holds every acknowledged
/// write) and every other remaining `Active` replica applied at least what the primary holds.
/// `progress` answers for each replica asked (None: no answer, which refuses).
pub fn removal_is_safe(
    p: &Placement,
    victim: u64,
    primary: Option<(u64, bool)>,
    progress: &dyn Fn(u64) -> Option<u64>,
) -> bool {
    let Some((primary_seq, true)) = primary else { return false };
    p.replicas
        .iter()
        .copied()
        .filter(|n| *n != victim && Some(*n) != p.primary() && p.state(*n) == Some(ReplicaState::Active))
        .all(|n| progress(n).is_some_and(|seq| seq >= primary_seq))
}

/// The placement after choosing `new_primary` (the old one stays, Dead if it is down).
pub fn with_primary(p: &Placement, new_primary: u64, old_is_down: bool) -> Placement {
    let old = p.primary();
    let mut np = bumped(p);
    np.replicas.retain(|n| *n != new_primary);
    np.replicas.insert(0, new_primary);
    if let (Some(old), true) = (old, old_is_down) {
        np.replicas.retain(|n| *n != old);
        np.replicas.push(old);
        np.states.insert(old, ReplicaState::Dead);
    }
    np
}

#[cfg(test)]
mod tests {
    use super::*;
    use loci_raft::catalogue::{Distance, EmbedderSpec, MemoryPolicy, NamespaceKind};
    use loci_storage::crypto::WrappedKey;

    fn entry(p: Placement) -> NamespaceEntry {
        NamespaceEntry {
            id: 42,
            name: "ns".into(),
            kind: NamespaceKind::Agent,
            dimension: 8,
            distance: Distance::Cosine,
            embedder: EmbedderSpec { provider: "hash".into(), dimension: 8, generation: 0 },
            policy: MemoryPolicy::default(),
            data_key: WrappedKey { kek_version: 1, dek_version: 1, sealed: vec![] },
            metadata: None,
            description: None,
            created_at: 0,
            placement: p,
            reembed: None,
            ceiling: Default::default(),
        }
    }

    struct Env {
        alive: BTreeSet<u64>,
        members: BTreeSet<u64>,
        draining: BTreeSet<u64>,
        down: BTreeMap<u64, Duration>,
        load: BTreeMap<u64, usize>,
        busy: BTreeSet<u64>,
        hold: bool,
    }

    impl Env {
        fn new(alive: &[u64], members: &[u64]) -> Self {
            Env {
                alive: alive.iter().copied().collect(),
                members: members.iter().copied().collect(),
                draining: BTreeSet::new(),
                down: members.iter().filter(|m| !alive.contains(m)).map(|m| (*m, Duration::from_secs(60))).collect(),
                load: BTreeMap::new(),
                busy: BTreeSet::new(),
                hold: false,
            }
        }
        fn plan(&self, p: Placement) -> Decision {
            let down = |n: u64| self.down.get(&n).copied();
            plan(
                &entry(p),
                &View {
                    alive: &self.alive,
                    members: &self.members,
                    draining: &self.draining,
                    down_for: &down,
                    failover_after: Duration::from_secs(10),
                    dead_grace: Duration::from_secs(300),
                    load: &self.load,
                    busy: &self.busy,
                    hold_removals: self.hold,
                },
            )
        }
    }

    fn active(nodes: &[u64]) -> Placement {
        Placement {
            epoch: 1,
            replicas: nodes.to_vec(),
            states: nodes.iter().map(|n| (*n, ReplicaState::Active)).collect(),
            rf: nodes.len(),
            leaving: BTreeSet::new(),
            primary_since: 0,
        }
    }

    #[test]
    fn healthy_placement_is_kept() {
        assert_eq!(Env::new(&[1, 2, 3], &[1, 2, 3]).plan(active(&[1, 2, 3])), Decision::Keep);
    }

    #[test]
    fn dead_primary_fails_over_to_alive_active_replicas() {
        let d = Env::new(&[2, 3], &[1, 2, 3]).plan(active(&[1, 2, 3]));
        assert_eq!(d, Decision::Failover { candidates: vec![2, 3] });
        let np = with_primary(&active(&[1, 2, 3]), 3, true);
        assert_eq!(np.replicas, vec![3, 2, 1]);
        assert_eq!(np.state(1), Some(ReplicaState::Dead));
        assert_eq!(np.epoch, 2);
    }

    #[test]
    fn dead_follower_is_marked_then_replaced_after_grace() {
        let mut env = Env::new(&[1, 2, 4], &[1, 2, 3, 4]);
        let Decision::Set(p) = env.plan(active(&[1, 2, 3])) else { panic!() };
        assert_eq!(p.state(3), Some(ReplicaState::Dead));
        // Still in grace: a spare (4) is added as Syncing to restore the replica count.
        let Decision::Set(p2) = env.plan(p.clone()) else { panic!() };
        assert_eq!(p2.state(4), Some(ReplicaState::Syncing));
        // Past the grace period the dead replica is dropped.
        env.down.insert(3, Duration::from_secs(301));
        let mut synced = p2.clone();
        synced.states.insert(4, ReplicaState::Active);
        let Decision::Remove { placement: p3, victim: 3 } = env.plan(synced) else { panic!() };
        assert!(!p3.replicas.contains(&3));
        assert_eq!(p3.replicas.len(), 3);
    }

    #[test]
    fn a_syncing_replica_down_too_long_leaves_the_placement_instead_of_counting_dead() {
        let env = Env::new(&[1, 2, 3], &[1, 2, 3, 4]);
        let mut p = active(&[1, 2, 3]);
        p.replicas.push(4);
        p.states.insert(4, ReplicaState::Syncing);
        p.rf = 3;
        let Decision::Set(np) = env.plan(p) else { panic!("a change") };
        assert!(!np.replicas.contains(&4) && np.state(4).is_none(), "{np:?}");
        assert_eq!(np.replicas, vec![1, 2, 3]);
        assert_eq!(np.epoch, 2);
    }

    #[test]
    fn a_replica_leaves_only_once_the_others_hold_what_the_serving_primary_holds() {
        let p = active(&[1, 2, 3, 4]);
        let at = |seqs: [(u64, u64); 3]| move |n: u64| seqs.iter().find(|(m, _)| *m == n).map(|(_, s)| *s);
        // The primary (1) serves at 10; 2 and 3 remain after 4 leaves.
        assert!(removal_is_safe(&p, 4, Some((10, true)), &at([(2, 10), (3, 12), (4, 0)])));
        assert!(!removal_is_safe(&p, 4, Some((10, true)), &at([(2, 9), (3, 10), (4, 10)])), "2 lags");
        assert!(!removal_is_safe(&p, 4, Some((10, false)), &at([(2, 10), (3, 10), (4, 10)])), "not serving");
        assert!(!removal_is_safe(&p, 4, None, &at([(2, 10), (3, 10), (4, 10)])), "primary unheard");
        assert!(!removal_is_safe(&p, 4, Some((10, true)), &at([(2, 10), (4, 10), (4, 10)])), "3 unheard");
        // Dead and Syncing replicas are not asked.
        let mut q = p.clone();
        q.states.insert(3, ReplicaState::Dead);
        assert!(removal_is_safe(&q, 4, Some((10, true)), &at([(2, 10), (4, 1), (4, 1)])));
    }

    #[test]
    fn a_held_removal_lets_the_later_rules_apply() {
        // Node 3 is dead past the grace period; 4 is a spare.
        let mut env = Env::new(&[1, 2, 4], &[1, 2, 3, 4]);
        env.down.insert(3, Duration::from_secs(301));
        let mut p = active(&[1, 2, 3]);
        p.states.insert(3, ReplicaState::Dead);
        assert!(matches!(env.plan(p.clone()), Decision::Remove { victim: 3, .. }));
        env.hold = true;
        let Decision::Set(np) = env.plan(p) else { panic!("the spare is added instead") };
        assert_eq!(np.state(4), Some(ReplicaState::Syncing));
        assert!(np.replicas.contains(&3), "the dead replica stays until it may leave");
    }

    #[test]
    fn a_returning_dead_replica_stays_counted_until_the_primary_repaired_it() {
        let env = Env::new(&[1, 2, 3], &[1, 2, 3]);
        let mut p = active(&[1, 2, 3]);
        p.states.insert(3, ReplicaState::Dead);
        // No placement change: the primary copies it and then makes it Active itself.
        assert_eq!(env.plan(p), Decision::Keep);
    }

    #[test]
    fn draining_moves_primary_then_replica_away() {
        let mut env = Env::new(&[1, 2, 3, 4], &[1, 2, 3, 4]);
        env.draining.insert(1);
        assert_eq!(env.plan(active(&[1, 2, 3])), Decision::Failover { candidates: vec![2, 3] });
        let p = with_primary(&active(&[1, 2, 3]), 2, false);
        let Decision::Set(p) = env.plan(p) else { panic!() };
        assert_eq!(p.state(4), Some(ReplicaState::Syncing));
        let mut p = p;
        p.states.insert(4, ReplicaState::Active);
        let Decision::Remove { placement: p, victim: 1 } = env.plan(p) else { panic!() };
        assert!(!p.replicas.contains(&1), "the draining node's replica goes once the new one is active");
    }

    #[test]
    fn balancing_moves_one_replica_to_an_empty_node() {
        let mut env = Env::new(&[1, 2, 3, 4], &[1, 2, 3, 4]);
        env.load = [(1, 10), (2, 10), (3, 10), (4, 0)].into();
        let Decision::Set(p) = env.plan(active(&[1, 2, 3])) else { panic!() };
        assert_eq!(p.state(4), Some(ReplicaState::Syncing));
        let from = *p.leaving.iter().next().expect("the move names the replica it replaces");
        // Once the copy is active, exactly the replaced replica is removed (no oscillation).
        let mut done = p.clone();
        done.states.insert(4, ReplicaState::Active);
        let Decision::Remove { placement: after, victim } = env.plan(done) else { panic!() };
        assert_eq!(victim, from);
        assert!(!after.replicas.contains(&from) && after.replicas.contains(&4));
        assert!(after.leaving.is_empty());
        env.busy.insert(4);
        assert_eq!(env.plan(active(&[1, 2, 3])), Decision::Keep, "one move per node at a time");
    }
}
