//! The reconciler: on the Raft leader only, re-derive membership and placements from
//! (catalogue, gossip) every tick and make at most one change of each kind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loci_raft::NodeAddr;
use loci_raft::catalogue::{Command, CommandResult, NamespaceEntry};
use tokio_util::sync::CancellationToken;

use super::{Cluster, PlanInputs, planner};

impl Cluster {
    /// The reconciler loop: on the Raft leader only, re-derive membership and placements from
    /// (catalogue, gossip) every tick and make at most one change of each kind.
    pub async fn reconcile_loop(self: Arc<Self>, token: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.track_alive();
            if !self.catalogue.is_leader_now() || !self.local.is_ready() {
                continue;
            }
            if let Err(e) = self.reconcile_membership().await {
                tracing::debug!(error = %e, "membership reconcile");
            }
            if let Err(e) = self.reconcile_placements().await {
                tracing::debug!(error = %e, "placement reconcile");
            }
        }
    }

    /// How long a member has been down. One gossip has never seen counts as down since this
    /// process started, so a freshly started leader waits `failover_after` like everyone else.
    pub(crate) fn down_for(&self, view: &loci_gossip::MembershipView, n: u64) -> Option<Duration> {
        view.down_for(n).or_else(|| (!view.members.contains_key(&n)).then(|| self.started.elapsed()))
    }

    pub(crate) fn track_alive(&self) {
        let view = self.gossip.view();
        let mut since = self.membership.alive_since.lock();
        since.retain(|id, _| view.is_alive(*id));
        self.membership.retired.lock().retain(|id| view.is_alive(*id));
        for m in view.alive() {
            since.entry(m.identity.id).or_insert_with(Instant::now);
        }
    }

    pub(crate) async fn reconcile_membership(&self) -> Result<(), String> {
        use openraft_compat::ChangeMembers;
        let m = self.catalogue.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let view = self.gossip.view();
        let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        // 1. Alive members not in the catalogue become learners.
        for member in view.alive() {
            let id = member.identity.id;
            if !nodes.contains(&id) && !self.membership.retired.lock().contains(&id) {
                let addr = NodeAddr {
                    rpc_addr: member.identity.rpc_addr.clone(),
                    http_addr: member.identity.http_addr.clone(),
                    gossip_addr: member.identity.gossip_addr.to_string(),
                };
                tracing::info!(node = id, "adding node as a learner");
                self.catalogue.raft.add_learner(id, addr, false).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
        // 1b. A member that restarted on another address: update its entry.
        for member in view.alive() {
            let id = member.identity.id;
            if let Some(node) = membership.get_node(&id) {
                if node.rpc_addr != member.identity.rpc_addr || node.http_addr != member.identity.http_addr {
                    let addr = NodeAddr {
                        rpc_addr: member.identity.rpc_addr.clone(),
                        http_addr: member.identity.http_addr.clone(),
                        gossip_addr: member.identity.gossip_addr.to_string(),
                    };
                    tracing::info!(node = id, addr = %addr.rpc_addr, "updating a member's address");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::SetNodes([(id, addr)].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        // 2. Promote stable, caught-up learners until the voter target (counting only voters
        //    that are alive, so a dead one is replaced before it is removed).
        let alive_voters = voters.iter().filter(|v| **v == self.node_id || view.is_alive(**v)).count();
        if alive_voters < self.settings.voters {
            let last = m.last_log_index.unwrap_or(0);
            let since = self.membership.alive_since.lock().clone();
            let replication = m.replication.clone().unwrap_or_default();
            for id in nodes.difference(&voters) {
                let stable = since.get(id).is_some_and(|t| t.elapsed() >= Duration::from_secs(2));
                let caught_up = replication.get(id).and_then(|l| *l).is_some_and(|l| l.index + 10 >= last);
                if stable && caught_up && view.is_alive(*id) {
                    tracing::info!(node = id, "promoting learner to voter");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        // 3. Remove members down longer than the grace period; never below 3 voters automatically.
        for id in &nodes {
            if *id == self.node_id {
                continue;
            }
            if self.down_for(&view, *id).is_some_and(|d| d >= self.settings.dead_node_grace) {
                if voters.contains(id) {
                    if voters.len() <= 3 {
                        continue;
                    }
                    tracing::warn!(node = id, "removing a dead voter");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::RemoveVoters([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    tracing::warn!(node = id, "removing a dead learner");
                    self.catalogue
                        .raft
                        .change_membership(ChangeMembers::RemoveNodes([*id].into()), false)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// One snapshot of what the placement planner looks at.
    pub(crate) fn plan_inputs(&self) -> PlanInputs {
        let (namespaces, draining, load) = {
            let c = self.catalogue.view.read();
            // Replicas per node: kept current by the catalogue.
            let load = c.placement_load.iter().map(|(n, (r, _))| (*n, *r)).collect();
            (c.namespaces.values().cloned().collect::<Vec<_>>(), c.draining.clone(), load)
        };
        // Nodes receiving a copy right now (Syncing anywhere) take no further move.
        let mut busy: BTreeSet<u64> = BTreeSet::new();
        for ns in &namespaces {
            for (n, s) in &ns.placement.states {
                if *s == loci_raft::catalogue::ReplicaState::Syncing {
                    busy.insert(*n);
                }
            }
            // A move's source is busy too (one move per node at a time).
            busy.extend(ns.placement.leaving.iter().copied());
        }
        PlanInputs {
            namespaces,
            draining,
            members: self.members(),
            alive: self.alive_members(),
            view: self.gossip.view(),
            load,
            busy,
        }
    }

    /// The planner's decision for one namespace (the reconciler and the rebalance dry run).
    pub(crate) fn plan(&self, inputs: &PlanInputs, ns: &NamespaceEntry) -> planner::Decision {
        self.plan_holding(inputs, ns, false)
    }

    fn plan_holding(&self, inputs: &PlanInputs, ns: &NamespaceEntry, hold_removals: bool) -> planner::Decision {
        let down = |n: u64| if n == self.node_id { None } else { self.down_for(&inputs.view, n) };
        let view = planner::View {
            alive: &inputs.alive,
            members: &inputs.members,
            draining: &inputs.draining,
            down_for: &down,
            failover_after: self.settings.failover_after,
            dead_grace: self.settings.dead_node_grace,
            load: &inputs.load,
            busy: &inputs.busy,
            hold_removals,
        };
        planner::plan(ns, &view)
    }

    pub(crate) async fn reconcile_placements(&self) -> Result<(), String> {
        let mut inputs = self.plan_inputs();
        for ns in std::mem::take(&mut inputs.namespaces) {
            let mut decision = self.plan(&inputs, &ns);
            if let planner::Decision::Remove { victim, .. } = &decision
                && !self.removal_is_safe(&ns, *victim).await
            {
                tracing::debug!(namespace = %ns.name, victim, "a replica waits to leave until the others caught up");
                decision = self.plan_holding(&inputs, &ns, true);
            }
            let new = match decision {
                planner::Decision::Keep => continue,
                planner::Decision::Set(p) | planner::Decision::Remove { placement: p, .. } => p,
                planner::Decision::Failover { candidates } => {
                    let old = ns.placement.primary().unwrap_or(0);
                    let old_down = !inputs.alive.contains(&old);
                    let mut best: Option<(u64, u64)> = None;
                    // A graceful hand-off (draining) needs the candidate caught up with the primary.
                    let primary_seq = if old_down {
                        None
                    } else {
                        match self.progress_of(old, &ns.name).await {
                            Some(p) => Some(p.applied_seq),
                            // An alive primary that does not answer: no hand-off to a replica
                            // that may lag it (the engine's fix of rule 5).
                            None => continue,
                        }
                    };
                    for c in candidates {
                        if let Some(p) = self.progress_of(c, &ns.name).await {
                            if primary_seq.is_some_and(|s| p.applied_seq < s) {
                                continue;
                            }
                            if best.is_none_or(|(_, s)| p.applied_seq > s) {
                                best = Some((c, p.applied_seq));
                            }
                        }
                    }
                    let Some((new_primary, seq)) = best else { continue };
                    tracing::warn!(namespace = %ns.name, from = old, to = new_primary, applied_seq = seq, "namespace primary failover");
                    planner::with_primary(&ns.placement, new_primary, old_down)
                }
            };
            // Later decisions in this tick see this one (one move per node at a time; loads).
            for (n, s) in &new.states {
                if *s == loci_raft::catalogue::ReplicaState::Syncing {
                    inputs.busy.insert(*n);
                }
            }
            inputs.busy.extend(new.leaving.iter().copied());
            for r in &ns.placement.replicas {
                if let Some(l) = inputs.load.get_mut(r) {
                    *l = l.saturating_sub(1);
                }
            }
            for r in &new.replicas {
                *inputs.load.entry(*r).or_insert(0) += 1;
            }
            let res = self
                .catalogue
                .write(Command::SetPlacement {
                    name: ns.name.clone(),
                    expected_epoch: ns.placement.epoch,
                    placement: new.clone(),
                })
                .await
                .map_err(|e| e.to_string())?;
            match res {
                CommandResult::Namespace { .. } => {
                    tracing::info!(namespace = %ns.name, epoch = new.epoch, replicas = ?new.replicas, states = ?new.states, "placement changed");
                    if new.primary() != ns.placement.primary() {
                        metrics::counter!("loci_failovers_total").increment(1);
                    }
                    if new.states.values().any(|s| *s == loci_raft::catalogue::ReplicaState::Syncing) {
                        metrics::counter!("loci_moves_total").increment(1);
                    }
                }
                other => tracing::debug!(?other, "placement change not applied"),
            }
        }
        Ok(())
    }

    /// `planner::removal_is_safe` with the answers of the primary and the remaining replicas.
    async fn removal_is_safe(&self, ns: &NamespaceEntry, victim: u64) -> bool {
        let p = &ns.placement;
        let Some(primary) = p.primary() else { return false };
        let serving = if primary == self.node_id {
            let serving = self.is_serving(&ns.name);
            self.progress_of(primary, &ns.name).await.map(|pr| (pr.applied_seq, serving))
        } else {
            self.serving_progress_on(primary, &ns.name, Duration::from_secs(2))
                .await
                .ok()
                .map(|(pr, serving)| (pr.applied_seq, serving))
        };
        let mut seqs = std::collections::BTreeMap::new();
        for n in p.replicas.iter().copied() {
            if n != victim
                && n != primary
                && p.state(n) == Some(loci_raft::catalogue::ReplicaState::Active)
                && let Some(pr) = self.progress_of(n, &ns.name).await
            {
                seqs.insert(n, pr.applied_seq);
            }
        }
        planner::removal_is_safe(p, victim, serving, &|n| seqs.get(&n).copied())
    }

    pub(crate) async fn progress_of(&self, node: u64, ns: &str) -> Option<loci_storage::model::NsProgress> {
        if node == self.node_id {
            let entry = self.entry(ns)?;
            let ctx = self.local.context(&entry).ok()?;
            let store = self.local.store.clone();
            return tokio::task::spawn_blocking(move || store.progress(&ctx)).await.ok()?.ok();
        }
        self.progress_on(node, ns, Duration::from_secs(2)).await.ok()
    }
}

/// openraft's membership change type, re-exported through loci-raft's dependency.
mod openraft_compat {
    pub use openraft::ChangeMembers;
}
