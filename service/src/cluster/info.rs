//! What a node reports about itself (`NodeInfo`: Raft state, gossip view, load, readiness).

use std::time::Duration;

use serde::Serialize;

use super::Cluster;

/// What a node reports about itself (`NodeInfo`).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub node_id: u64,
    pub initialized: bool,
    pub raft_state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub gossip_alive: Vec<u64>,
    pub namespaces_primary: usize,
    pub namespaces_replica: usize,
    pub version: String,
    pub uptime_seconds: u64,
    pub rpc_addr: String,
    pub http_addr: String,
    pub gossip_addr: String,
    pub ready: bool,
    /// Average CPU use of the process since it started (% of one core × cores).
    #[serde(default)]
    pub cpu_percent: f64,
    /// Resident memory as a share of the machine's.
    #[serde(default)]
    pub memory_percent: f64,
}

/// (cpu %, memory %) of this process, from /proc (zeros where it is not available).
fn process_usage(uptime: Duration) -> (f64, f64) {
    let ticks_per_sec = 100.0;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            Some((utime + stime) / ticks_per_sec / uptime.as_secs_f64().max(1.0) / cores * 100.0)
        })
        .unwrap_or(0.0);
    let rss_pages: f64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let total_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let mem = if total_kib > 0.0 { rss_pages * 4.0 / total_kib * 100.0 } else { 0.0 };
    (cpu, mem)
}

impl Cluster {
    pub fn local_info(&self) -> NodeInfo {
        let m = self.catalogue.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let (mut primary, mut replica) = (0, 0);
        for ns in self.catalogue.view.read().namespaces.values() {
            if ns.placement.primary() == Some(self.node_id) {
                primary += 1;
            } else if ns.placement.replicas.contains(&self.node_id) {
                replica += 1;
            }
        }
        let me = self.gossip.identity.clone();
        let usage = process_usage(self.started.elapsed());
        NodeInfo {
            node_id: self.node_id,
            initialized: m.membership_config.membership().nodes().count() > 0,
            raft_state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            voters,
            learners,
            gossip_alive: self.gossip.view().alive().map(|m| m.identity.id).collect(),
            namespaces_primary: primary,
            namespaces_replica: replica,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            rpc_addr: me.rpc_addr,
            http_addr: me.http_addr,
            gossip_addr: me.gossip_addr.to_string(),
            ready: self.local.is_ready(),
            cpu_percent: usage.0,
            memory_percent: usage.1,
        }
    }
}
