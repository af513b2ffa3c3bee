//! The cluster layer's one error type. It crosses node boundaries as the `ClusterError` proto
//! message (`proto/internal.proto`), so a caller decides on variants, never on strings, and it
//! becomes an [`ServiceError`] once, where the data plane answers the front.

use crate::ServiceError;
use loci_storage::StorageError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// The node asked is not the namespace's primary, or a replica fenced it with a newer
    /// epoch. Nothing was applied. `catalogue_index` is the answering node's applied catalogue
    /// index: once the caller's catalogue has it, the caller routes again (to `primary`).
    #[error("node is not the primary of '{namespace}' (epoch {epoch}, primary {primary:?})")]
    NotOwner { namespace: String, epoch: u64, primary: Option<u64>, catalogue_index: u64 },

    /// The write was applied by fewer replicas than its write quorum within the bound, so it
    /// is not acknowledged.
    #[error(
        "the write to '{namespace}' reached {got} of the {needed} replicas its write quorum needs; it is not acknowledged"
    )]
    QuorumNotReached { namespace: String, got: usize, needed: usize },

    /// Fewer replicas are in sync than the write quorum needs: refused before it was applied.
    #[error("only {got} of the {needed} replicas the write quorum of '{namespace}' needs are in sync")]
    InSyncBelowQuorum { namespace: String, got: usize, needed: usize },

    /// A new primary could not yet hear from enough replicas to know every acknowledged write.
    #[error(
        "the primary of '{namespace}' cannot confirm it holds every acknowledged write yet ({got} of the {needed} other replicas needed answered)"
    )]
    TakeOverPending { namespace: String, got: usize, needed: usize },

    /// A placement change outlasted the re-routing budget of one request.
    #[error("the placement of '{namespace}' is changing; retry")]
    PlacementChanging { namespace: String },

    /// The node cannot serve now (shutting down, catching up, a peer's failure); retry.
    #[error("{0}")]
    Unavailable(String),

    /// A peer could not be reached (transport failure, timeout, partition).
    #[error("node {node} is unreachable: {reason}")]
    Unreachable { node: u64, reason: String },

    /// A peer answered the call with a transport-level refusal (bad token, undecodable request).
    #[error("node {node} refused the call: {reason}")]
    Refused { node: u64, reason: String },

    #[error("namespace '{0}' not found")]
    UnknownNamespace(String),

    #[error("this node holds no replica of '{0}'")]
    NotAReplica(String),

    /// The operation's own error (validation, not found, quota…): the client gets it unchanged.
    #[error("{0}")]
    Api(ServiceError),

    #[error("internal: {0}")]
    Internal(String),
}

pub type ClusterResult<T> = Result<T, ClusterError>;

impl ClusterError {
    /// Whether the same request may succeed if sent again (after the catalogue moved on, a
    /// peer came back, a quorum formed).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClusterError::NotOwner { .. }
            | ClusterError::QuorumNotReached { .. }
            | ClusterError::InSyncBelowQuorum { .. }
            | ClusterError::TakeOverPending { .. }
            | ClusterError::PlacementChanging { .. }
            | ClusterError::Unavailable(_)
            | ClusterError::Unreachable { .. } => true,
            ClusterError::Api(e) => e.is_retryable(),
            ClusterError::Refused { .. }
            | ClusterError::UnknownNamespace(_)
            | ClusterError::NotAReplica(_)
            | ClusterError::Internal(_) => false,
        }
    }

    /// A replica refused a fenced sender, or storage found this primary fenced.
    pub fn not_owner(namespace: &str, epoch: u64, primary: Option<u64>, catalogue_index: u64) -> Self {
        ClusterError::NotOwner { namespace: namespace.to_string(), epoch, primary, catalogue_index }
    }
}

impl From<StorageError> for ClusterError {
    fn from(e: StorageError) -> Self {
        match e {
            // The caller fills in the namespace and placement it knows (`Cluster::fenced`).
            StorageError::Fenced(epoch) => {
                ClusterError::NotOwner { namespace: String::new(), epoch, primary: None, catalogue_index: 0 }
            }
            // Mapped as the front maps it (validation 4xx, quota 413, storage failures 500).
            other => ClusterError::Api(ServiceError::from(other)),
        }
    }
}

impl From<ServiceError> for ClusterError {
    fn from(e: ServiceError) -> Self {
        ClusterError::Api(e)
    }
}

impl From<tokio::task::JoinError> for ClusterError {
    fn from(e: tokio::task::JoinError) -> Self {
        ClusterError::Internal(format!("worker failed: {e}"))
    }
}

/// The one mapping to what clients see. `NotOwner` never reaches them: the data plane
/// re-routes it, and what is left is a retryable 503 like every other placement change.
impl From<ClusterError> for ServiceError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Api(e) => e,
            ClusterError::UnknownNamespace(ns) => ServiceError::namespace_not_found(&ns),
            e @ (ClusterError::Refused { .. } | ClusterError::NotAReplica(_) | ClusterError::Internal(_)) => {
                ServiceError::internal(e.to_string())
            }
            e => ServiceError::unavailable(e.to_string()).with_retry_after(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds_become_503_with_retry_after_and_others_keep_their_status() {
        let e = ClusterError::not_owner("a", 3, Some(2), 10);
        assert!(e.is_retryable());
        let api = ServiceError::from(e);
        assert_eq!(api.status.as_u16(), 503);
        assert_eq!(api.retry_after, Some(1));

        let q = ClusterError::QuorumNotReached { namespace: "a".into(), got: 1, needed: 2 };
        assert!(q.is_retryable());
        assert!(ServiceError::from(q).details.unwrap_or_default().contains("reached 1 of the 2"));

        let invalid = ClusterError::Api(ServiceError::bad_request("bad tag"));
        assert!(!invalid.is_retryable());
        let api = ServiceError::from(invalid);
        assert_eq!((api.status.as_u16(), api.code.as_ref()), (400, "INVALID_REQUEST"));

        let missing = ServiceError::from(ClusterError::UnknownNamespace("gone".into()));
        assert_eq!((missing.status.as_u16(), missing.code.as_ref()), (404, "NAMESPACE_NOT_FOUND"));
        assert!(!ClusterError::Internal("undecodable".into()).is_retryable());
    }

    #[test]
    fn a_fenced_store_is_not_owner() {
        assert!(matches!(ClusterError::from(StorageError::Fenced(7)), ClusterError::NotOwner { epoch: 7, .. }));
    }
}
