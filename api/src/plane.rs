//! The seam between the fronts and the cluster: where a namespace's data operations run.
//!
//! The node installs its coordinator (placement lookup, forwarding to the primary, replication to
//! followers) behind this trait; the API layer only ever calls [`crate::Core::exec`].

use futures::future::BoxFuture;
use loci_raft::catalogue::{NamespaceEntry, Placement};
use loci_storage::model::{DataOp, DataResult};

use crate::error::ApiResult;

pub trait DataPlane: Send + Sync + 'static {
    /// Run `op` on the namespace's primary (here or forwarded), replicating writes.
    fn execute(&self, entry: NamespaceEntry, op: DataOp) -> BoxFuture<'static, ApiResult<DataResult>>;

    /// Where a new namespace goes.
    fn initial_placement(&self, ns_id: u64) -> Placement;

    /// Drop the namespace's rows on every replica (its key is already destroyed); returns how
    /// many memories it held.
    fn erase(&self, entry: NamespaceEntry) -> BoxFuture<'static, ApiResult<u64>>;

    /// Wait until every alive node applied catalogue index `index` (key changes are in force
    /// cluster-wide when the call that made them returns).
    fn await_applied_everywhere(&self, index: u64) -> BoxFuture<'static, ()>;
}

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
}

pub trait ClusterAdmin: Send + Sync + 'static {
    fn run(&self, action: ClusterAction) -> BoxFuture<'static, ApiResult<serde_json::Value>>;

    /// Refresh cluster gauges (called when `/metrics` is scraped).
    fn export_metrics(&self) {}
}
