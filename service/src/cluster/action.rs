//! The operator actions on a cluster, as the fronts and `loci cluster …` ask for them.

/// Operator actions on the cluster (REST `/v1/admin/cluster/*`, gRPC, `loci cluster …`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ClusterAction {
    Status,
    Nodes,
    Shards,
    Replication,
    Rebalance {
        dry_run: bool,
    },
    Drain {
        node: u64,
    },
    Undrain {
        node: u64,
    },
    /// Remove a member that is down (a live member is refused: it would rejoin at once).
    Remove {
        node: u64,
    },
    /// Sent by a leaving node to the leader: remove it although it is still alive.
    Retire {
        node: u64,
    },
    Placement {
        namespace: String,
    },
    /// Initialise the catalogue with the members this node currently sees (a new cluster).
    Init,
    /// Announce this node to a gossip seed.
    Join {
        seed: String,
    },
    /// Leave the cluster gracefully: removed from the catalogue, then gossip leave.
    Leave,
    /// Once this node has applied catalogue index `index`, snapshot its catalogue, purge the
    /// Raft log below it and compact (an erasure: no earlier entry, and so no wrapped key of
    /// the erased namespace, stays in this node's Raft files).
    PurgeHistory {
        index: u64,
    },
}
