//! The fault scheduler and the clients.

use std::collections::BTreeSet;

use super::{Ev, TICK, World, WriteState, engine_config};
use crate::engine::{Event, Replica};
use crate::placement::ReplicaState;
use crate::{NodeId, ReqId};

impl World {
    // --- faults and clients ---

    pub(super) fn chaos(&mut self) {
        let roll = self.rng.range(0, 99);
        let up: Vec<NodeId> = (1..=self.cfg.nodes).filter(|n| self.is_up(*n)).collect();
        let down: Vec<NodeId> = (1..=self.cfg.nodes).filter(|n| !self.is_up(*n)).collect();
        match roll {
            0..=24 if self.cfg.crashes => {
                // At most one node down at a time beyond a partition.
                if down.is_empty() {
                    if let Some(n) = self.rng.pick(&up) {
                        self.crash(n);
                    }
                } else if let Some(n) = self.rng.pick(&down) {
                    self.restart(n);
                }
            }
            25..=44 if self.cfg.crashes => {
                if let Some(n) = self.rng.pick(&down) {
                    self.restart(n);
                }
            }
            45..=64 if self.cfg.partitions => {
                if self.isolated.is_empty() {
                    let max = (self.cfg.nodes - 1) / 2;
                    let size = self.rng.range(1, max.max(1));
                    let mut ids: Vec<NodeId> = (1..=self.cfg.nodes).collect();
                    let mut side = BTreeSet::new();
                    for _ in 0..size {
                        if let Some(n) = self.rng.pick(&ids) {
                            side.insert(n);
                            ids.retain(|x| *x != n);
                        }
                    }
                    self.partition(side);
                } else {
                    self.partition(BTreeSet::new());
                }
            }
            65..=79 if self.cfg.moves => {
                let p = self.catalogue.clone();
                let syncing = p.states.values().any(|s| *s == ReplicaState::Syncing);
                let spares: Vec<NodeId> =
                    (1..=self.cfg.nodes).filter(|n| !p.replicas.contains(n) && self.reachable(*n)).collect();
                let movable: Vec<NodeId> =
                    p.replicas.iter().copied().skip(1).filter(|n| p.state(*n) == Some(ReplicaState::Active)).collect();
                if let (false, Some(to), Some(from)) = (syncing, self.rng.pick(&spares), self.rng.pick(&movable)) {
                    let mut np = p.bumped();
                    np.replicas.push(to);
                    np.states.insert(to, ReplicaState::Syncing);
                    np.leaving.insert(from);
                    self.note(&[32, from, to], || format!("operator moves n{from} to n{to}"));
                    self.commit_rule(&p, np);
                }
            }
            80..=89 if self.cfg.moves => {
                self.draining = self.catalogue.primary();
                let d = self.draining.unwrap_or(0);
                self.note(&[33, d], || format!("operator drains n{d}"));
            }
            _ => {}
        }
    }

    pub(super) fn crash(&mut self, id: NodeId) {
        self.stats.crashes += 1;
        self.note(&[40, id], || format!("CRASH n{id}"));
        if let Some(n) = self.node(id) {
            n.up = false;
            n.incarnation += 1;
            n.store.crash();
            n.copies_out.clear();
            n.copy_in = None;
        }
        self.announce(id);
    }

    pub(super) fn restart(&mut self, id: NodeId) {
        self.note(&[41, id], || format!("RESTART n{id}"));
        let cfg = engine_config(&self.cfg, id);
        let jitter = self.rng.range(0, TICK);
        let Some(n) = self.node(id) else { return };
        n.up = true;
        let log = n.store.log_ids();
        n.replica = Replica::recover(cfg, log, n.store.cur.fence);
        let incarnation = n.incarnation;
        self.at(jitter, Ev::Tick { node: id, incarnation });
        self.cat_deferred.insert(id);
        self.deliver_deferred();
        self.announce(id);
        // Its fresh gossip view learns who is unreachable.
        for other in 1..=self.cfg.nodes {
            if other != id && (!self.is_up(other) || self.cut(id, other)) {
                let delay = self.rng.range(300, 1_200);
                self.at(delay, Ev::Liveness { observer: id, node: other, alive: false });
            }
        }
    }

    pub(super) fn partition(&mut self, side: BTreeSet<NodeId>) {
        if !side.is_empty() {
            self.stats.partitions += 1;
        }
        let words: Vec<u64> = std::iter::once(42).chain(side.iter().copied()).collect();
        self.note(&words, || format!("PARTITION {side:?}"));
        let before = std::mem::replace(&mut self.isolated, side);
        let touched: BTreeSet<NodeId> = before.union(&self.isolated).copied().collect();
        let all: Vec<NodeId> = (1..=self.cfg.nodes).collect();
        for n in all {
            // Everyone's view of the nodes whose side changed, and theirs of everyone.
            if touched.contains(&n) {
                self.announce(n);
            } else {
                for t in touched.clone() {
                    let alive = self.is_up(t) && !self.cut(n, t);
                    let delay = if alive { self.rng.range(50, 400) } else { self.rng.range(300, 1_200) };
                    self.at(delay, Ev::Liveness { observer: t, node: n, alive });
                }
            }
        }
        self.deliver_deferred();
    }

    pub(super) fn client_op(&mut self) {
        let req = self.next_req;
        self.next_req += 1;
        let all: Vec<NodeId> = (1..=self.cfg.nodes).collect();
        let target = if self.rng.chance(85) { self.catalogue.primary() } else { self.rng.pick(&all) };
        let Some(target) = target else { return };
        let write = self.rng.chance(70);
        if !self.is_up(target) {
            return;
        }
        let cmds = {
            if write {
                self.stats.writes += 1;
                self.writes.insert(req, WriteState::Issued);
            } else {
                let acked: Vec<ReqId> =
                    self.writes.iter().filter(|(_, s)| matches!(s, WriteState::Acked(_))).map(|(r, _)| *r).collect();
                self.reads.insert(req, acked);
            }
            let Some(n) = self.node(target) else { return };
            if write {
                n.replica.handle(Event::ClientWrite { req })
            } else {
                n.replica.handle(Event::ClientRead { req })
            }
        };
        self.note(&[50, target, req, write as u64], || {
            format!("client {} r{req} at n{target}", if write { "writes" } else { "reads" })
        });
        self.exec(target, cmds, &[]);
    }

    /// The fault phase ends: every node restarts, partitions close, messages stop being lost.
    pub(super) fn heal(&mut self) {
        self.note(&[60], || "HEAL".to_string());
        self.healed = true;
        self.draining = None;
        self.partition(BTreeSet::new());
        for id in 1..=self.cfg.nodes {
            if !self.is_up(id) {
                self.restart(id);
            }
        }
    }
}
