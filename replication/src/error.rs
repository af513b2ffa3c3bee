//! The one error type of the replication layer: why a client operation was refused or not
//! acknowledged. It crosses node-to-node hops (serde) and is meant to become the cluster
//! layer's `ClusterError`.

use serde::{Deserialize, Serialize};

use crate::{Epoch, NodeId};

#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
pub enum ReplError {
    /// This node is not the primary of the namespace (per its catalogue, or it has been fenced
    /// by a newer primary: then `primary` is unknown). Nothing was applied.
    #[error("not the owner of the namespace (epoch={epoch} primary={primary:?})")]
    NotOwner { epoch: Epoch, primary: Option<NodeId> },
    /// A replica refused a sender whose epoch is older than its fence.
    #[error("fenced by epoch {epoch}")]
    Fenced { epoch: Epoch },
    /// Fewer replicas are in sync than the write quorum needs; nothing was applied.
    #[error("only {in_sync} of the {needed} replicas the write quorum needs are in sync")]
    NotInSync { in_sync: usize, needed: usize },
    /// The write was applied on the primary and is in its log, but fewer replicas than the
    /// write quorum acknowledged it in time: its outcome is unknown.
    #[error("the write reached {got} of the {needed} replicas its write quorum needs; it is not acknowledged")]
    QuorumNotReached { got: usize, needed: usize },
    /// A new primary could not yet hear from enough replicas to know it holds every
    /// acknowledged write; nothing was applied.
    #[error(
        "the primary cannot confirm it holds every acknowledged write yet ({answered} of the {needed} other replicas needed answered)"
    )]
    TakeoverIncomplete { answered: usize, needed: usize },
    /// A new primary could not catch up from the more advanced replica it found.
    #[error("the primary could not catch up from node {source_node}")]
    CatchUpFailed { source_node: NodeId },
    /// The namespace has no placement here yet, or a node is unreachable.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// The namespace is not known (or this node holds no replica of it): retrying the same
    /// request here cannot succeed.
    #[error("namespace not found")]
    NamespaceNotFound,
}

impl ReplError {
    /// Whether the client may retry (the same request, ideally with a client-chosen id).
    /// Every refusal of this layer is transient: placements settle, replicas come back.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplError::NotOwner { .. }
            | ReplError::Fenced { .. }
            | ReplError::NotInSync { .. }
            | ReplError::QuorumNotReached { .. }
            | ReplError::TakeoverIncomplete { .. }
            | ReplError::CatchUpFailed { .. } => true,
            ReplError::Unavailable { .. } => true,
            ReplError::NamespaceNotFound => false,
        }
    }

    /// Whether the write may have been applied despite the refusal (its outcome is unknown).
    /// Only [`ReplError::QuorumNotReached`]: every other refusal happens before the local
    /// commit.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, ReplError::QuorumNotReached { .. })
    }
}
