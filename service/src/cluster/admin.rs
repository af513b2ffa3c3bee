//! Cluster status and operator actions (REST `/v1/admin/cluster/*`, `loci cluster …`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ServiceError, ServiceResult};
use loci_raft::catalogue::{Command, ReplicaState};
use loci_storage::model::{DataOp, DataResult};
use serde_json::{Value, json};

use super::error::ClusterError;
use super::{Cluster, ClusterAction, NodeInfo, planner};

impl Cluster {
    /// Refresh the cluster gauges (called when `/metrics` is scraped).
    pub fn export_metrics(&self) {
        let c = self;
        let node = c.node_id.to_string();
        let view = c.gossip.view();
        let alive = view.alive_count();
        metrics::gauge!("loci_gossip_members", "state" => "alive", "node" => node.clone()).set(alive as f64);
        metrics::gauge!("loci_gossip_members", "state" => "down", "node" => node.clone())
            .set((view.members.len() - alive) as f64);
        let stats = &c.gossip.stats;
        metrics::gauge!("loci_gossip_rejected_packets", "node" => node.clone())
            .set(stats.rejected.load(std::sync::atomic::Ordering::Relaxed) as f64);
        let m = c.catalogue.raft.metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        metrics::gauge!("loci_raft_apply_lag", "node" => node.clone())
            .set(m.last_log_index.unwrap_or(0).saturating_sub(applied) as f64);
        for state in ["Leader", "Follower", "Candidate", "Learner"] {
            let on = format!("{:?}", m.state) == state;
            metrics::gauge!("loci_raft_state", "state" => state, "node" => node.clone()).set(if on {
                1.0
            } else {
                0.0
            });
        }
        // Replication lag of followers of the namespaces this node leads: a histogram and the
        // maximum (bounded cardinality, no per-namespace labels).
        let local = &c.local;
        let mut max_lag = 0u64;
        let mut primaries = 0;
        for ns in c.catalogue.view.read().namespaces.values() {
            if ns.placement.primary() != Some(c.node_id) {
                continue;
            }
            primaries += 1;
            if !local.store.is_loaded(ns.id) {
                continue;
            }
            let Ok(ctx) = local.context(ns) else { continue };
            let Ok(p) = local.store.progress(&ctx) else { continue };
            for f in ns.placement.replicas.iter().filter(|f| **f != c.node_id) {
                // A link busy sending counts with what it last acknowledged (the follower most
                // behind is the one being sent to); one not yet established (no handshake since
                // this node became primary) is skipped.
                let Some(acked) = c.repl.links.lock().get(&(ns.id, *f)).map(|l| l.last_acked()) else {
                    continue;
                };
                let lag = p.applied_seq.saturating_sub(acked);
                metrics::histogram!("loci_replication_lag_entries").record(lag as f64);
                max_lag = max_lag.max(lag);
            }
        }
        metrics::gauge!("loci_replication_lag_entries_max", "node" => node.clone()).set(max_lag as f64);
        metrics::gauge!("loci_namespaces_primary", "node" => node).set(primaries as f64);
    }
}

impl Cluster {
    /// Every member's own report (unreachable ones are reported as such).
    /// Vector counts per namespace (asked of each namespace's primary, 16 at a time; a
    /// namespace that does not answer within 2 s counts 0).
    async fn vector_counts(self: &Arc<Self>) -> BTreeMap<String, (u64, u64)> {
        use futures::StreamExt;
        let namespaces: Vec<_> = self.catalogue.view.read().namespaces.values().cloned().collect();
        futures::stream::iter(namespaces)
            .map(|ns| {
                let c = self.clone();
                async move {
                    let stats =
                        tokio::time::timeout(Duration::from_secs(2), c.execute(ns.clone(), DataOp::Stats)).await;
                    match stats {
                        Ok(Ok(DataResult::Stats(s))) => (ns.name, (s.vector_count, s.estimated_storage_bytes)),
                        _ => (ns.name, (0, 0)),
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    async fn infos(&self) -> BTreeMap<u64, Option<NodeInfo>> {
        let mut out = BTreeMap::new();
        for n in self.members() {
            let info = if n == self.node_id {
                Some(self.local_info())
            } else if self.is_alive(n) {
                self.node_info_of(n, Duration::from_secs(2)).await.ok()
            } else {
                None
            };
            out.insert(n, info);
        }
        out
    }

    async fn on_leader(self: Arc<Self>, action: ClusterAction) -> ServiceResult<Value> {
        match self.catalogue.current_leader().await {
            Some(l) if l == self.node_id => Box::pin(self.run_admin(action)).await,
            Some(l) => match self.admin_on(l, &action, Duration::from_secs(60)).await {
                Ok(v) => Ok(v),
                Err(e @ (ClusterError::Unreachable { .. } | ClusterError::Refused { .. })) => {
                    Err(ServiceError::unavailable(format!("cannot reach the catalogue leader: {e}")))
                }
                Err(e) => Err(e.into()),
            },
            None => Err(ServiceError::unavailable("the catalogue has no leader")),
        }
    }

    pub async fn run_admin(self: Arc<Self>, action: ClusterAction) -> ServiceResult<Value> {
        let now = loci_storage::model::now_secs();
        let action_kind =
            if matches!(action, ClusterAction::Retire { .. }) { ActionKind::Retire } else { ActionKind::Other };
        match action {
            ClusterAction::Status => {
                let infos = self.infos().await;
                let (cluster_id, namespaces, draining) = {
                    let c = self.catalogue.view.read();
                    (
                        c.cluster_id.clone().unwrap_or_default(),
                        c.namespaces.values().cloned().collect::<Vec<_>>(),
                        c.draining.clone(),
                    )
                };
                let m = self.catalogue.raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                let voters: Vec<u64> = membership.voter_ids().collect();
                let view = self.gossip.view();
                let mut unhealthy = Vec::new();
                let mut per_node: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
                for ns in &namespaces {
                    for (i, r) in ns.placement.replicas.iter().enumerate() {
                        let e = per_node.entry(*r).or_default();
                        if i == 0 {
                            e.0 += 1
                        } else {
                            e.1 += 1
                        }
                        let st = ns.placement.state(*r);
                        if st != Some(ReplicaState::Active) || !self.is_alive(*r) {
                            unhealthy.push(json!({"namespace": ns.name, "node": r.to_string(), "state": format!("{:?}", st.unwrap_or(ReplicaState::Dead)).to_lowercase(), "alive": self.is_alive(*r)}));
                        }
                    }
                }
                let members: Vec<Value> = infos
                    .iter()
                    .map(|(id, info)| {
                        let addr = self.node_addr(*id).unwrap_or_default();
                        let gossip_state = if self.is_alive(*id) { "alive" } else { "down" };
                        let (p, r) = per_node.get(id).copied().unwrap_or_default();
                        json!({
                            "node_id": id.to_string(),
                            "address": addr.rpc_addr,
                            "rpc_addr": addr.rpc_addr,
                            "http_addr": addr.http_addr,
                            "gossip_addr": addr.gossip_addr,
                            "state": gossip_state,
                            "gossip_state": gossip_state,
                            "raft_role": if voters.contains(id) { "voter" } else { "learner" },
                            "raft_state": info.as_ref().map(|i| i.raft_state.clone()),
                            "leader": info.as_ref().and_then(|i| i.leader).map(|l| l.to_string()),
                            "applied_index": info.as_ref().map(|i| i.applied_index),
                            "namespaces_primary": p,
                            "namespaces_replica": r,
                            "draining": draining.contains(id),
                            "down_for_secs": view.down_for(*id).map(|d| d.as_secs()),
                        })
                    })
                    .collect();
                let all_alive = infos.keys().all(|n| self.is_alive(*n));
                let state = if m.current_leader.is_none() {
                    "forming"
                } else if all_alive && unhealthy.is_empty() {
                    "healthy"
                } else {
                    "degraded"
                };
                Ok(json!({
                    "cluster_id": cluster_id,
                    "state": state,
                    "node_count": infos.len(),
                    "total_vectors": self.vector_counts().await.values().map(|(v, _)| v).sum::<u64>(),
                    "namespace_count": namespaces.len(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "timestamp": now,
                    "node_id": self.node_id.to_string(),
                    "leader": m.current_leader.map(|l| l.to_string()),
                    "term": m.current_term,
                    "applied_index": m.last_applied.map_or(0, |l| l.index),
                    "voters": voters.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "learners": membership.learner_ids().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "members": members,
                    "unhealthy_replicas": unhealthy,
                    "unavailable": [],
                }))
            }
            ClusterAction::Nodes => {
                let infos = self.infos().await;
                let counts = self.vector_counts().await;
                let mut per_node: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
                for ns in self.catalogue.view.read().namespaces.values() {
                    let (v, b) = counts.get(&ns.name).copied().unwrap_or_default();
                    for r in &ns.placement.replicas {
                        let e = per_node.entry(*r).or_default();
                        e.0 += v;
                        e.1 += b;
                    }
                }
                let voters: Vec<u64> =
                    self.catalogue.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
                let leader = self.catalogue.current_leader().await;
                let nodes: Vec<Value> = infos
                    .iter()
                    .map(|(id, info)| {
                        let addr = self.node_addr(*id).unwrap_or_default();
                        json!({
                            "node_id": id.to_string(),
                            "address": addr.http_addr,
                            "rpc_addr": addr.rpc_addr,
                            "gossip_addr": addr.gossip_addr,
                            "role": if leader == Some(*id) { "leader" } else if voters.contains(id) { "voter" } else { "learner" },
                            "status": if self.is_alive(*id) { "healthy" } else { "down" },
                            "version": info.as_ref().map(|i| i.version.clone()).unwrap_or_default(),
                            "uptime_seconds": info.as_ref().map_or(0, |i| i.uptime_seconds),
                            "vector_count": per_node.get(id).map_or(0, |c| c.0),
                            "memory_bytes": per_node.get(id).map_or(0, |c| c.1),
                            "cpu_percent": info.as_ref().map_or(0.0, |i| i.cpu_percent),
                            "memory_percent": info.as_ref().map_or(0.0, |i| i.memory_percent),
                            "last_heartbeat": if self.is_alive(*id) { now } else { 0 },
                        })
                    })
                    .collect();
                Ok(json!({"nodes": nodes, "total": infos.len()}))
            }
            ClusterAction::Shards => {
                let namespaces: Vec<_> = self.catalogue.view.read().namespaces.values().cloned().collect();
                let counts = self.vector_counts().await;
                let shards: Vec<Value> = namespaces
                    .iter()
                    .map(|ns| {
                        let p = &ns.placement;
                        json!({
                            "shard_id": ns.name,
                            "namespace": ns.name,
                            "primary_node": p.primary().map(|n| n.to_string()).unwrap_or_default(),
                            "replica_nodes": p.replicas.iter().skip(1).map(|n| n.to_string()).collect::<Vec<_>>(),
                            "state": if p.active_count() >= p.rf.min(p.replicas.len()) { "active" } else { "degraded" },
                            "epoch": p.epoch,
                            "states": p.states.iter().map(|(n, s)| (n.to_string(), format!("{s:?}").to_lowercase())).collect::<BTreeMap<_, _>>(),
                            "vector_count": counts.get(&ns.name).map_or(0, |c| c.0),
                            "size_bytes": counts.get(&ns.name).map_or(0, |c| c.1),
                        })
                    })
                    .collect();
                Ok(json!({"total": shards.len(), "shards": shards}))
            }
            ClusterAction::Replication => {
                let namespaces: Vec<_> = self.catalogue.view.read().namespaces.values().cloned().collect();
                let (mut healthy, mut degraded, mut unhealthy) = (0, 0, 0);
                let cluster_size = self.members().len().max(1);
                for ns in &namespaces {
                    // A namespace cannot have more replicas than the cluster has nodes.
                    let target = ns.placement.rf.min(cluster_size).max(1);
                    let live_active = ns
                        .placement
                        .replicas
                        .iter()
                        .filter(|n| ns.placement.state(**n) == Some(ReplicaState::Active) && self.is_alive(**n))
                        .count();
                    if live_active >= target {
                        healthy += 1;
                    } else if live_active > target / 2 {
                        degraded += 1;
                    } else {
                        unhealthy += 1;
                    }
                }
                Ok(json!({
                    "enabled": true,
                    "replication_factor": self.settings.replication_factor,
                    "healthy_replicas": healthy,
                    "degraded_replicas": degraded,
                    "unhealthy_replicas": unhealthy,
                    "total_nodes": self.members().len(),
                    "replication_lag": [],
                    "health": if unhealthy > 0 { "unhealthy" } else if degraded > 0 { "degraded" } else { "healthy" },
                }))
            }
            ClusterAction::Rebalance { dry_run } => {
                let inputs = self.plan_inputs();
                let load = &inputs.load;
                let mut moves = Vec::new();
                for ns in &inputs.namespaces {
                    if let planner::Decision::Set(p) | planner::Decision::Remove { placement: p, .. } =
                        self.plan(&inputs, ns)
                    {
                        for (n, s) in &p.states {
                            if *s == ReplicaState::Syncing && ns.placement.state(*n) != Some(ReplicaState::Syncing) {
                                moves.push(json!({"shard_id": ns.name, "namespace": ns.name, "to_node": n.to_string(),
                                    "from_node": ns.placement.replicas.iter().max_by_key(|r| load.get(r).copied().unwrap_or(0)).map(|r| r.to_string())}));
                            }
                        }
                    }
                }
                Ok(json!({
                    "initiated": !dry_run,
                    "dry_run": dry_run,
                    "operation_id": format!("rebalance-{now}"),
                    "shards_affected": moves.len(),
                    "planned_moves": moves,
                    "note": "the reconciler applies moves continuously, one per node at a time",
                }))
            }
            ClusterAction::Drain { node } | ClusterAction::Undrain { node } => {
                let draining = matches!(action, ClusterAction::Drain { .. });
                if !self.members().contains(&node) {
                    return Err(ServiceError::not_found("node", format!("node {node} is not a member")));
                }
                self.catalogue.write(Command::SetDraining { node, draining }).await?;
                let remaining = self
                    .catalogue
                    .view
                    .read()
                    .namespaces
                    .values()
                    .filter(|n| n.placement.replicas.contains(&node))
                    .count();
                Ok(json!({"node_id": node.to_string(), "draining": draining, "replicas_on_node": remaining}))
            }
            ClusterAction::Remove { node } | ClusterAction::Retire { node } => {
                let retiring = matches!(action_kind, ActionKind::Retire);
                if !self.catalogue.is_leader_now() {
                    let fwd = if retiring { ClusterAction::Retire { node } } else { ClusterAction::Remove { node } };
                    return self.clone().on_leader(fwd).await;
                }
                let membership = self.catalogue.raft.metrics().borrow().membership_config.membership().clone();
                if !membership.nodes().any(|(id, _)| *id == node) {
                    return Err(ServiceError::not_found("node", format!("node {node} is not a member")));
                }
                if !retiring && self.is_alive(node) {
                    return Err(ServiceError::conflict(format!(
                        "node {node} is alive and would rejoin at once: run `loci cluster leave` on it, or stop it first"
                    )));
                }
                if retiring {
                    // Gossip still sees it for a moment: do not re-add it meanwhile.
                    self.membership.retired.lock().insert(node);
                }
                if membership.voter_ids().any(|v| v == node) {
                    self.catalogue
                        .raft
                        .change_membership(openraft::ChangeMembers::RemoveVoters([node].into()), false)
                        .await
                        .map_err(|e| ServiceError::conflict(e.to_string()))?;
                }
                self.catalogue
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes([node].into()), false)
                    .await
                    .map_err(|e| ServiceError::conflict(e.to_string()))?;
                Ok(json!({"removed": node.to_string()}))
            }
            ClusterAction::Placement { namespace } => {
                let e = self.entry(&namespace).ok_or_else(|| ServiceError::namespace_not_found(&namespace))?;
                let p = &e.placement;
                Ok(json!({
                    "namespace": e.name,
                    "epoch": p.epoch,
                    "rf": p.rf,
                    "primary": p.primary().map(|n| n.to_string()),
                    "replicas": p.replicas.iter().map(|n| json!({"node_id": n.to_string(), "state": format!("{:?}", p.state(*n).unwrap_or(ReplicaState::Dead)).to_lowercase(), "alive": self.is_alive(*n)})).collect::<Vec<_>>(),
                }))
            }
            ClusterAction::Init => match self.init_with_view().await {
                Ok(ids) => {
                    Ok(json!({"initialized": true, "members": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()}))
                }
                Err(e) => Err(ServiceError::conflict(e)),
            },
            ClusterAction::Join { seed } => {
                let addr: std::net::SocketAddr =
                    tokio::net::lookup_host(&seed)
                        .await
                        .ok()
                        .and_then(|mut a| a.next())
                        .ok_or_else(|| ServiceError::bad_request(format!("cannot resolve seed '{seed}'")))?;
                self.gossip.announce(addr).await.map_err(|e| ServiceError::internal(e.to_string()))?;
                Ok(json!({"announced_to": addr.to_string()}))
            }
            ClusterAction::PurgeHistory { index } => {
                if !self.catalogue.view.wait_applied(index, Duration::from_secs(10)).await {
                    return Err(ServiceError::unavailable(format!(
                        "this node has not applied catalogue index {index} yet"
                    )));
                }
                self.catalogue.purge_history().await?;
                self.local.contexts.retain(&self.catalogue.view.read().namespaces.values().map(|n| n.id).collect());
                Ok(json!({"node": self.node_id, "purged_through": index}))
            }
            ClusterAction::Leave => {
                // Move data off first, then leave the catalogue and gossip.
                self.catalogue.write(Command::SetDraining { node: self.node_id, draining: true }).await?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                while tokio::time::Instant::now() < deadline {
                    let held = self
                        .catalogue
                        .view
                        .read()
                        .namespaces
                        .values()
                        .filter(|n| n.placement.replicas.contains(&self.node_id))
                        .count();
                    if held == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let res = self.clone().on_leader(ClusterAction::Retire { node: self.node_id }).await;
                self.gossip.leave().await;
                res.map(|_| json!({"left": self.node_id.to_string()}))
            }
        }
    }
}

enum ActionKind {
    Retire,
    Other,
}
