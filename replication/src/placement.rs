//! A namespace's placement as the catalogue holds it, and the arithmetic every replica and the
//! reconciler derive from it: the replica count, the write quorum, how many replicas a new
//! primary must hear from, and the failover choice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Epoch, LogId, NodeId};

/// A replica's state in a placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Holds every acknowledged write; takes and acknowledges new ones; can become primary.
    Active,
    /// Being filled by a full copy: receives writes, acknowledges none, never counts.
    Syncing,
    /// Unreachable for too long: receives nothing; still counts in the replica count.
    Dead,
}

/// Mirrors `loci_raft::catalogue::Placement`: `replicas[0]` is the primary; every change bumps
/// `epoch`; `primary_since` is the epoch in which the current primary became primary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    pub epoch: Epoch,
    pub replicas: Vec<NodeId>,
    pub states: BTreeMap<NodeId, ReplicaState>,
    pub rf: usize,
    pub leaving: BTreeSet<NodeId>,
    pub primary_since: Epoch,
}

/// The replica count `n` and the write quorum `q` (counting the primary) of a placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub n: usize,
    pub q: usize,
}

impl Quorum {
    /// Replicas a new primary must hear from, itself included, before it serves:
    /// `min(n - q + 1, n/2 + 1)`. Any `n - q + 1` of the `n` replicas meet every write quorum
    /// of `q`, so one of them holds every acknowledged write; never more than a majority (a
    /// `write_quorum` below a majority trades that guarantee away).
    pub fn takeover_need(&self) -> usize {
        (self.n - self.q + 1).min(self.n / 2 + 1)
    }
}

impl Placement {
    /// A fresh placement (epoch 1, every replica `Active`), as `planner::initial` makes it.
    pub fn initial(replicas: &[NodeId], rf: usize) -> Self {
        Placement {
            epoch: 1,
            replicas: replicas.to_vec(),
            states: replicas.iter().map(|n| (*n, ReplicaState::Active)).collect(),
            rf: rf.max(1),
            leaving: BTreeSet::new(),
            primary_since: 1,
        }
    }

    pub fn primary(&self) -> Option<NodeId> {
        self.replicas.first().copied()
    }

    pub fn state(&self, node: NodeId) -> Option<ReplicaState> {
        self.states.get(&node).copied()
    }

    /// Replicas that take writes (`Active` or `Syncing`), the primary included.
    pub fn writable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .copied()
            .filter(|n| matches!(self.state(*n), Some(ReplicaState::Active | ReplicaState::Syncing)))
    }

    /// The epoch a primary must have taken over at (or later) to serve this placement.
    pub fn takeover_epoch(&self) -> Epoch {
        if self.primary_since > 0 { self.primary_since } else { self.epoch }
    }

    /// `n` and `q` for a write (`Cluster::quorum`). `n` counts the replicas that are not
    /// `Syncing` (a `Dead` one still counts: its writes are unreachable, not lost), at least 1;
    /// `q` is the policy's `write_quorum`, else a majority of `n`, clamped to `1..=n`.
    ///
    /// `cap_at_rf` reproduces the current node code, which also caps `n` at `rf`. The
    /// simulator shows that cap loses acknowledged writes while a placement holds more than
    /// `rf` non-syncing replicas (a move between its copy and the removal of the replaced
    /// replica): a write quorum of `rf/2 + 1` out of `rf + 1` replicas and a take-over set of
    /// the same size can be disjoint. Without the cap every write quorum meets every take-over
    /// set.
    pub fn quorum(&self, write_quorum: Option<usize>, cap_at_rf: bool) -> Quorum {
        let holders = self.replicas.iter().filter(|n| self.state(**n) != Some(ReplicaState::Syncing)).count();
        let n = if cap_at_rf { self.rf.min(holders) } else { holders }.max(1);
        let q = write_quorum.unwrap_or(n / 2 + 1).clamp(1, n);
        Quorum { n, q }
    }

    /// The placement after a failover or hand-off to `new_primary` (`planner::with_primary`):
    /// the new primary moves to the front, and the old one, when it is down, to the end,
    /// `Dead`. `primary_since` becomes the new epoch (the catalogue maintains it).
    pub fn with_primary(&self, new_primary: NodeId, old_is_down: bool) -> Placement {
        let old = self.primary();
        let mut np = self.bumped();
        np.replicas.retain(|n| *n != new_primary);
        np.replicas.insert(0, new_primary);
        if let (Some(old), true) = (old, old_is_down) {
            np.replicas.retain(|n| *n != old);
            np.replicas.push(old);
            np.states.insert(old, ReplicaState::Dead);
        }
        np
    }

    /// The same placement one epoch later.
    pub fn bumped(&self) -> Placement {
        Placement { epoch: self.epoch + 1, ..self.clone() }
    }
}

/// The reconciler's failover choice (`reconcile_placements`): among the candidates that
/// answered their progress, the one with the highest applied sequence (the first on a tie);
/// for a graceful hand-off (`primary_seq` known) only candidates that applied at least the
/// primary's sequence qualify.
pub fn pick_failover(answers: &[(NodeId, LogId)], primary_seq: Option<u64>) -> Option<NodeId> {
    let mut best: Option<(NodeId, u64)> = None;
    for (node, p) in answers {
        if primary_seq.is_some_and(|s| p.seq < s) {
            continue;
        }
        if best.is_none_or(|(_, s)| p.seq > s) {
            best = Some((*node, p.seq));
        }
    }
    best.map(|(n, _)| n)
}

/// What the catalogue does with a `SetPlacement`: compare-and-set on the epoch, keeping
/// `primary_since` when the primary stays and setting it to the new epoch otherwise.
pub fn compare_and_set(current: &Placement, expected_epoch: Epoch, proposed: Placement) -> Option<Placement> {
    if current.epoch != expected_epoch || proposed.epoch <= expected_epoch {
        return None;
    }
    let mut p = proposed;
    p.primary_since = if p.primary() == current.primary() { current.primary_since } else { p.epoch };
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(states: &[(NodeId, ReplicaState)], rf: usize) -> Placement {
        Placement {
            epoch: 3,
            replicas: states.iter().map(|(n, _)| *n).collect(),
            states: states.iter().copied().collect(),
            rf,
            leaving: BTreeSet::new(),
            primary_since: 1,
        }
    }

    use ReplicaState::*;

    #[test]
    fn quorum_table_of_the_architecture_doc() {
        for (n, q, need) in [(1, 1, 1), (2, 2, 1), (3, 2, 2), (5, 3, 3)] {
            let nodes: Vec<_> = (1..=n as u64).map(|i| (i, Active)).collect();
            let qu = p(&nodes, n).quorum(None, false);
            assert_eq!((qu.n, qu.q, qu.takeover_need()), (n, q, need));
        }
        // write_quorum 1 on 3 replicas: a majority must still answer a take-over.
        let qu = p(&[(1, Active), (2, Active), (3, Active)], 3).quorum(Some(1), false);
        assert_eq!((qu.q, qu.takeover_need()), (1, 2));
    }

    #[test]
    fn syncing_replicas_do_not_count_and_dead_ones_do() {
        let qu = p(&[(1, Active), (2, Syncing), (3, Dead)], 3).quorum(None, false);
        assert_eq!((qu.n, qu.q), (2, 2));
    }

    #[test]
    fn more_holders_than_rf_raise_the_quorum_unless_capped() {
        let four = p(&[(1, Active), (2, Active), (3, Active), (4, Active)], 3);
        let fixed = four.quorum(None, false);
        assert_eq!((fixed.n, fixed.q, fixed.takeover_need()), (4, 3, 2));
        // Every write quorum meets every take-over set: 3 + 2 > 4.
        assert!(fixed.q + fixed.takeover_need() > fixed.n);
        let legacy = four.quorum(None, true);
        assert_eq!((legacy.n, legacy.q, legacy.takeover_need()), (3, 2, 2));
        // 2 + 2 = 4 of 4 replicas: disjoint sets exist.
        assert!(legacy.q + legacy.takeover_need() <= 4);
    }

    #[test]
    fn failover_picks_the_highest_applied_sequence_first_on_ties() {
        let a = [(2, LogId::new(1, 5)), (3, LogId::new(1, 7)), (4, LogId::new(2, 7))];
        assert_eq!(pick_failover(&a, None), Some(3));
        assert_eq!(pick_failover(&a, Some(8)), None);
        assert_eq!(pick_failover(&[], None), None);
    }

    #[test]
    fn with_primary_moves_the_old_one_to_the_end_dead() {
        let base = p(&[(1, Active), (2, Active), (3, Active)], 3);
        let np = base.with_primary(3, true);
        assert_eq!(np.replicas, vec![3, 2, 1]);
        assert_eq!(np.state(1), Some(Dead));
        assert_eq!(np.epoch, 4);
        let handoff = base.with_primary(2, false);
        assert_eq!(handoff.replicas, vec![2, 1, 3]);
        assert_eq!(handoff.state(1), Some(Active));
    }

    #[test]
    fn compare_and_set_rejects_stale_epochs_and_keeps_primary_since() {
        let base = p(&[(1, Active), (2, Active)], 2);
        assert!(compare_and_set(&base, 2, base.bumped()).is_none());
        let kept = compare_and_set(&base, 3, base.bumped()).expect("applies");
        assert_eq!(kept.primary_since, 1);
        let moved = compare_and_set(&base, 3, base.with_primary(2, true)).expect("applies");
        assert_eq!(moved.primary_since, 4);
    }
}
