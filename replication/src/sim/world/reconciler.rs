//! The simulated reconciler (`planner::plan` and `reconcile_placements`), on the majority
//! side of any partition: the first placement rule that applies, each tick.

use std::collections::BTreeSet;

use super::{CATALOGUE, DEAD_GRACE, FAILOVER_AFTER, World};
use crate::placement::{Placement, ReplicaState, compare_and_set, pick_failover};
use crate::{LogId, NodeId, Time};

impl World {
    pub(super) fn down_for(&self, n: NodeId) -> Option<Time> {
        self.rec_down.get(&n).map(|since| self.now - since)
    }

    pub(super) fn reachable(&self, n: NodeId) -> bool {
        self.is_up(n) && !self.cut(CATALOGUE, n) && !self.rec_down.contains_key(&n)
    }

    pub(super) fn progress_of(&self, n: NodeId) -> Option<LogId> {
        if !self.is_up(n) || self.cut(CATALOGUE, n) {
            return None;
        }
        self.nodes.get(n.checked_sub(1)? as usize).map(|x| x.replica.progress())
    }

    /// The reconciler's tick: the first placement rule that applies (`planner::plan`).
    pub(super) fn reconcile(&mut self) {
        let p = self.catalogue.clone();
        let Some(primary) = p.primary() else { return };
        let long = |w: &World, n: NodeId, d: Time| w.down_for(n).is_some_and(|t| t >= d);
        // 1. Failover.
        if long(self, primary, FAILOVER_AFTER) {
            let answers: Vec<(NodeId, LogId)> = p
                .replicas
                .iter()
                .copied()
                .filter(|n| *n != primary && p.state(*n) == Some(ReplicaState::Active) && self.reachable(*n))
                .filter_map(|n| self.progress_of(n).map(|pr| (n, pr)))
                .collect();
            if let Some(new) = pick_failover(&answers, None) {
                self.note(&[30, primary, new], || format!("reconciler fails n{primary} over to n{new}"));
                self.commit_rule(&p, p.with_primary(new, true));
            }
            return;
        }
        // 2. Dead marking.
        for n in p.replicas.iter().copied() {
            if n != primary && p.state(n) != Some(ReplicaState::Dead) && long(self, n, FAILOVER_AFTER) {
                let mut np = p.bumped();
                if p.state(n) == Some(ReplicaState::Syncing) && !self.cfg.faults.legacy_dead_marking {
                    // Fixed: a replica still being filled never held an acknowledged write.
                    np.replicas.retain(|x| *x != n);
                    np.states.remove(&n);
                } else {
                    np.states.insert(n, ReplicaState::Dead);
                }
                return self.commit_rule(&p, np);
            }
        }
        let busy: BTreeSet<NodeId> = p
            .states
            .iter()
            .filter(|(_, s)| **s == ReplicaState::Syncing)
            .map(|(n, _)| *n)
            .chain(p.leaving.iter().copied())
            .collect();
        // 3. Resync (legacy: the primary copies alive dead replicas itself otherwise).
        for n in p.replicas.iter().copied() {
            if self.cfg.faults.legacy_resync
                && p.state(n) == Some(ReplicaState::Dead)
                && self.reachable(n)
                && !busy.contains(&n)
            {
                let mut np = p.bumped();
                np.states.insert(n, ReplicaState::Syncing);
                return self.commit_rule(&p, np);
            }
        }
        // Fixed rules 4 and 7: a replica leaves only once the remaining ones caught up.
        // (The primary must also have taken over: only then does it hold every acknowledged
        // write. The node would report that with its progress.)
        let caught_up = |w: &World, victim: NodeId| {
            w.cfg.faults.legacy_removal || {
                let serving = primary
                    .checked_sub(1)
                    .and_then(|i| w.nodes.get(i as usize))
                    .is_some_and(|n| n.up && n.replica.is_serving());
                let target = w.progress_of(primary).filter(|_| serving).map(|x| x.seq);
                target.is_some_and(|t| {
                    p.replicas.iter().copied().filter(|n| *n != victim && *n != primary).all(|n| {
                        p.state(n) != Some(ReplicaState::Active) || w.progress_of(n).is_some_and(|x| x.seq >= t)
                    })
                })
            }
        };
        // 4. Drop.
        for n in p.replicas.iter().copied() {
            if n != primary && p.state(n) == Some(ReplicaState::Dead) && long(self, n, DEAD_GRACE) && caught_up(self, n)
            {
                let mut np = p.bumped();
                np.replicas.retain(|x| *x != n);
                np.states.remove(&n);
                return self.commit_rule(&p, np);
            }
        }
        // 5. Drain hand-off.
        if self.draining == Some(primary) {
            let answers: Vec<(NodeId, LogId)> = p
                .replicas
                .iter()
                .copied()
                .filter(|n| *n != primary && p.state(*n) == Some(ReplicaState::Active) && self.reachable(*n))
                .filter_map(|n| self.progress_of(n).map(|pr| (n, pr)))
                .collect();
            if !answers.is_empty() {
                let primary_seq = self.progress_of(primary).map(|x| x.seq);
                if let Some(new) = pick_failover(&answers, primary_seq) {
                    self.draining = None;
                    self.note(&[31, primary, new], || format!("reconciler hands n{primary} off to n{new}"));
                    return self.commit_rule(&p, p.with_primary(new, false));
                }
                return;
            }
        }
        let eligible: Vec<NodeId> = (1..=self.cfg.nodes).filter(|n| self.reachable(*n)).collect();
        let healthy = p
            .replicas
            .iter()
            .filter(|n| matches!(p.state(**n), Some(ReplicaState::Active | ReplicaState::Syncing)))
            .count();
        let syncing = p.states.values().filter(|s| **s == ReplicaState::Syncing).count();
        let target = p.rf.min(eligible.len().max(1));
        // 6. Under-replication.
        if healthy < target && syncing == 0 {
            let spares: Vec<NodeId> =
                eligible.iter().copied().filter(|n| !p.replicas.contains(n) && !busy.contains(n)).collect();
            if let Some(t) = spares.first().copied() {
                let mut np = p.bumped();
                np.replicas.push(t);
                np.states.insert(t, ReplicaState::Syncing);
                return self.commit_rule(&p, np);
            }
        }
        // 7. Over-replication.
        let active: Vec<NodeId> =
            p.replicas.iter().copied().filter(|n| p.state(*n) == Some(ReplicaState::Active)).collect();
        if syncing == 0 && active.len() > p.rf {
            let victim = active.iter().copied().filter(|n| *n != primary).max_by_key(|n| (p.leaving.contains(n), *n));
            if let Some(v) = victim.filter(|v| caught_up(self, *v)) {
                let mut np = p.bumped();
                np.replicas.retain(|x| *x != v);
                np.states.remove(&v);
                np.leaving.remove(&v);
                return self.commit_rule(&p, np);
            }
        }
        if syncing == 0 && !p.leaving.is_empty() && active.len() <= p.rf {
            let mut np = p.bumped();
            np.leaving.clear();
            self.commit_rule(&p, np);
        }
    }

    pub(super) fn commit_rule(&mut self, old: &Placement, new: Placement) {
        if let Some(p) = compare_and_set(&self.catalogue, old.epoch, new) {
            self.commit(p);
        }
    }
}
