//! The node-to-node protocol's messages (`proto/internal.proto`) and their conversions to and
//! from the cluster's domain types. Storage records inside them (a replication entry's
//! mutations, a data operation and its result) are CBOR: compact binary, vectors as 32-bit
//! floats, and self-describing, so free-form metadata round-trips unchanged.

use crate::ServiceError;
use crate::cluster::ClusterAction;
use loci_storage::model::{ApplyOutcome, NsProgress, ReplEntry};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ClusterError, ClusterResult};

/// Generated code of `proto/internal.proto`.
pub mod pb {
    tonic::include_proto!("loci.internal.v1");
}

use pb::cluster_error::Kind;

pub fn to_cbor<T: Serialize>(v: &T) -> ClusterResult<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| ClusterError::Internal(format!("encoding: {e}")))?;
    Ok(out)
}

pub fn from_cbor<T: DeserializeOwned>(b: &[u8]) -> ClusterResult<T> {
    ciborium::from_reader(b).map_err(|e| ClusterError::Internal(format!("decoding: {e}")))
}

// ------------------------------------------------------------------------------ errors

impl From<&ServiceError> for pb::ApiError {
    fn from(e: &ServiceError) -> Self {
        pb::ApiError {
            status: u32::from(e.status.as_u16()),
            code: e.code.to_string(),
            message: e.message.clone(),
            details: e.details.clone(),
            retry_after: e.retry_after,
            resource: e.resource.clone(),
        }
    }
}

impl From<pb::ApiError> for ServiceError {
    fn from(e: pb::ApiError) -> Self {
        let status = u16::try_from(e.status).unwrap_or(500);
        let mut api = ServiceError::from_wire(status, e.code, e.message);
        api.details = e.details;
        api.retry_after = e.retry_after;
        api.resource = e.resource;
        api
    }
}

fn quorum(got: usize, needed: usize) -> pb::QuorumNotReached {
    pb::QuorumNotReached {
        got: u32::try_from(got).unwrap_or(u32::MAX),
        needed: u32::try_from(needed).unwrap_or(u32::MAX),
    }
}

impl From<&ClusterError> for pb::ClusterError {
    fn from(e: &ClusterError) -> Self {
        let (kind, namespace) = match e {
            ClusterError::NotOwner { namespace, epoch, primary, catalogue_index } => (
                Kind::NotOwner(pb::NotOwner { epoch: *epoch, primary: *primary, catalogue_index: *catalogue_index }),
                namespace.clone(),
            ),
            ClusterError::QuorumNotReached { namespace, got, needed } => {
                (Kind::QuorumNotReached(quorum(*got, *needed)), namespace.clone())
            }
            ClusterError::InSyncBelowQuorum { namespace, got, needed } => {
                (Kind::InSyncBelowQuorum(quorum(*got, *needed)), namespace.clone())
            }
            ClusterError::TakeOverPending { namespace, got, needed } => {
                (Kind::TakeOverPending(quorum(*got, *needed)), namespace.clone())
            }
            ClusterError::PlacementChanging { namespace } => (Kind::PlacementChanging(pb::Empty {}), namespace.clone()),
            ClusterError::Unavailable(m) => (Kind::Unavailable(m.clone()), String::new()),
            ClusterError::Unreachable { node, reason } => {
                (Kind::Unreachable(pb::Unreachable { node: *node, reason: reason.clone() }), String::new())
            }
            // A refusal between two other nodes reaches this caller as an internal failure.
            ClusterError::Refused { .. } => (Kind::Internal(e.to_string()), String::new()),
            ClusterError::UnknownNamespace(ns) => (Kind::UnknownNamespace(ns.clone()), ns.clone()),
            ClusterError::NotAReplica(ns) => (Kind::NotAReplica(ns.clone()), ns.clone()),
            ClusterError::Api(api) => (Kind::Api(api.into()), String::new()),
            ClusterError::Internal(m) => (Kind::Internal(m.clone()), String::new()),
        };
        pb::ClusterError { kind: Some(kind), namespace }
    }
}

impl From<pb::ClusterError> for ClusterError {
    fn from(e: pb::ClusterError) -> Self {
        let ns = e.namespace;
        let n = |x: u32| x as usize;
        match e.kind {
            Some(Kind::NotOwner(o)) => ClusterError::NotOwner {
                namespace: ns,
                epoch: o.epoch,
                primary: o.primary,
                catalogue_index: o.catalogue_index,
            },
            Some(Kind::QuorumNotReached(q)) => {
                ClusterError::QuorumNotReached { namespace: ns, got: n(q.got), needed: n(q.needed) }
            }
            Some(Kind::InSyncBelowQuorum(q)) => {
                ClusterError::InSyncBelowQuorum { namespace: ns, got: n(q.got), needed: n(q.needed) }
            }
            Some(Kind::TakeOverPending(q)) => {
                ClusterError::TakeOverPending { namespace: ns, got: n(q.got), needed: n(q.needed) }
            }
            Some(Kind::PlacementChanging(_)) => ClusterError::PlacementChanging { namespace: ns },
            Some(Kind::Unavailable(m)) => ClusterError::Unavailable(m),
            Some(Kind::Unreachable(u)) => ClusterError::Unreachable { node: u.node, reason: u.reason },
            Some(Kind::UnknownNamespace(m)) => ClusterError::UnknownNamespace(m),
            Some(Kind::NotAReplica(m)) => ClusterError::NotAReplica(m),
            Some(Kind::Api(a)) => ClusterError::Api(a.into()),
            Some(Kind::Internal(m)) => ClusterError::Internal(m),
            None => ClusterError::Internal("a peer answered an error without a kind".into()),
        }
    }
}

/// A reply's `oneof outcome` that holds neither variant.
pub fn empty_reply() -> ClusterError {
    ClusterError::Internal("a peer answered an empty reply".into())
}

/// `Done` for a call with no value.
pub fn done(r: ClusterResult<()>) -> pb::Done {
    pb::Done { error: r.err().as_ref().map(Into::into) }
}

pub fn from_done(d: pb::Done) -> ClusterResult<()> {
    match d.error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

// ------------------------------------------------------------------------------ replication

impl From<NsProgress> for pb::Progress {
    fn from(p: NsProgress) -> Self {
        pb::Progress { applied_seq: p.applied_seq, epoch: p.epoch, serving: false }
    }
}

impl From<pb::Progress> for NsProgress {
    fn from(p: pb::Progress) -> Self {
        NsProgress { applied_seq: p.applied_seq, epoch: p.epoch }
    }
}

pub fn entry_to_pb(e: &ReplEntry) -> ClusterResult<pb::ReplEntry> {
    Ok(pb::ReplEntry { seq: e.seq, epoch: e.epoch, generation: e.generation, mutations: to_cbor(&e.mutations)? })
}

pub fn entry_from_pb(e: pb::ReplEntry) -> ClusterResult<ReplEntry> {
    Ok(ReplEntry { seq: e.seq, epoch: e.epoch, generation: e.generation, mutations: from_cbor(&e.mutations)? })
}

pub fn entries_to_pb(entries: &[ReplEntry]) -> ClusterResult<Vec<pb::ReplEntry>> {
    entries.iter().map(entry_to_pb).collect()
}

pub fn entries_from_pb(entries: Vec<pb::ReplEntry>) -> ClusterResult<Vec<ReplEntry>> {
    entries.into_iter().map(entry_from_pb).collect()
}

impl From<ApplyOutcome> for pb::ApplyOutcome {
    fn from(o: ApplyOutcome) -> Self {
        use pb::apply_outcome::Kind as K;
        let kind = match o {
            ApplyOutcome::Applied { seq } => K::Applied(seq),
            ApplyOutcome::Duplicate { applied } => K::Duplicate(applied),
            ApplyOutcome::Gap { applied } => K::Gap(applied),
            ApplyOutcome::Fenced { epoch } => K::Fenced(epoch),
            ApplyOutcome::Diverged { applied } => K::Diverged(applied),
        };
        pb::ApplyOutcome { kind: Some(kind) }
    }
}

impl TryFrom<pb::ApplyOutcome> for ApplyOutcome {
    type Error = ClusterError;
    fn try_from(o: pb::ApplyOutcome) -> ClusterResult<Self> {
        use pb::apply_outcome::Kind as K;
        Ok(match o.kind.ok_or_else(empty_reply)? {
            K::Applied(seq) => ApplyOutcome::Applied { seq },
            K::Duplicate(applied) => ApplyOutcome::Duplicate { applied },
            K::Gap(applied) => ApplyOutcome::Gap { applied },
            K::Fenced(epoch) => ApplyOutcome::Fenced { epoch },
            K::Diverged(applied) => ApplyOutcome::Diverged { applied },
        })
    }
}

// ------------------------------------------------------------------------------ admin

impl From<&ClusterAction> for pb::AdminRequest {
    fn from(a: &ClusterAction) -> Self {
        use pb::admin_request::Action as A;
        let e = pb::Empty {};
        let action = match a {
            ClusterAction::Status => A::Status(e),
            ClusterAction::Nodes => A::Nodes(e),
            ClusterAction::Shards => A::Shards(e),
            ClusterAction::Replication => A::Replication(e),
            ClusterAction::Rebalance { dry_run } => A::RebalanceDryRun(*dry_run),
            ClusterAction::Drain { node } => A::Drain(*node),
            ClusterAction::Undrain { node } => A::Undrain(*node),
            ClusterAction::Remove { node } => A::Remove(*node),
            ClusterAction::Retire { node } => A::Retire(*node),
            ClusterAction::Placement { namespace } => A::Placement(namespace.clone()),
            ClusterAction::Init => A::Init(e),
            ClusterAction::Join { seed } => A::Join(seed.clone()),
            ClusterAction::Leave => A::Leave(e),
            ClusterAction::PurgeHistory { index } => A::PurgeHistory(*index),
        };
        pb::AdminRequest { action: Some(action) }
    }
}

impl TryFrom<pb::AdminRequest> for ClusterAction {
    type Error = ClusterError;
    fn try_from(r: pb::AdminRequest) -> ClusterResult<Self> {
        use pb::admin_request::Action as A;
        Ok(match r.action.ok_or_else(|| ClusterError::Internal("an admin request without an action".into()))? {
            A::Status(_) => ClusterAction::Status,
            A::Nodes(_) => ClusterAction::Nodes,
            A::Shards(_) => ClusterAction::Shards,
            A::Replication(_) => ClusterAction::Replication,
            A::RebalanceDryRun(dry_run) => ClusterAction::Rebalance { dry_run },
            A::Drain(node) => ClusterAction::Drain { node },
            A::Undrain(node) => ClusterAction::Undrain { node },
            A::Remove(node) => ClusterAction::Remove { node },
            A::Retire(node) => ClusterAction::Retire { node },
            A::Placement(namespace) => ClusterAction::Placement { namespace },
            A::Init(_) => ClusterAction::Init,
            A::Join(seed) => ClusterAction::Join { seed },
            A::Leave(_) => ClusterAction::Leave,
            A::PurgeHistory(index) => ClusterAction::PurgeHistory { index },
        })
    }
}

// ------------------------------------------------------------------------------ node info

impl From<super::NodeInfo> for pb::NodeInfo {
    fn from(i: super::NodeInfo) -> Self {
        pb::NodeInfo {
            node_id: i.node_id,
            initialized: i.initialized,
            raft_state: i.raft_state,
            leader: i.leader,
            term: i.term,
            applied_index: i.applied_index,
            voters: i.voters,
            learners: i.learners,
            gossip_alive: i.gossip_alive,
            namespaces_primary: i.namespaces_primary as u64,
            namespaces_replica: i.namespaces_replica as u64,
            version: i.version,
            uptime_seconds: i.uptime_seconds,
            rpc_addr: i.rpc_addr,
            http_addr: i.http_addr,
            gossip_addr: i.gossip_addr,
            ready: i.ready,
            cpu_percent: i.cpu_percent,
            memory_percent: i.memory_percent,
        }
    }
}

impl From<pb::NodeInfo> for super::NodeInfo {
    fn from(i: pb::NodeInfo) -> Self {
        super::NodeInfo {
            node_id: i.node_id,
            initialized: i.initialized,
            raft_state: i.raft_state,
            leader: i.leader,
            term: i.term,
            applied_index: i.applied_index,
            voters: i.voters,
            learners: i.learners,
            gossip_alive: i.gossip_alive,
            namespaces_primary: usize::try_from(i.namespaces_primary).unwrap_or(usize::MAX),
            namespaces_replica: usize::try_from(i.namespaces_replica).unwrap_or(usize::MAX),
            version: i.version,
            uptime_seconds: i.uptime_seconds,
            rpc_addr: i.rpc_addr,
            http_addr: i.http_addr,
            gossip_addr: i.gossip_addr,
            ready: i.ready,
            cpu_percent: i.cpu_percent,
            memory_percent: i.memory_percent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loci_storage::model::Mutation;

    #[test]
    fn every_cluster_error_round_trips_through_its_message() {
        let cases = vec![
            ClusterError::not_owner("ns", 4, Some(2), 17),
            ClusterError::not_owner("ns", 4, None, 0),
            ClusterError::QuorumNotReached { namespace: "ns".into(), got: 1, needed: 2 },
            ClusterError::InSyncBelowQuorum { namespace: "ns".into(), got: 1, needed: 3 },
            ClusterError::TakeOverPending { namespace: "ns".into(), got: 0, needed: 1 },
            ClusterError::PlacementChanging { namespace: "ns".into() },
            ClusterError::Unavailable("shutting down".into()),
            ClusterError::Unreachable { node: 3, reason: "timeout".into() },
            ClusterError::UnknownNamespace("ns".into()),
            ClusterError::NotAReplica("ns".into()),
            ClusterError::Internal("x".into()),
        ];
        for e in cases {
            let back = ClusterError::from(pb::ClusterError::from(&e));
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
            assert_eq!(back.is_retryable(), e.is_retryable());
        }
        let api = ClusterError::Api(ServiceError::bad_request("bad tag").with_details("tag 3").with_resource("memory"));
        match ClusterError::from(pb::ClusterError::from(&api)) {
            ClusterError::Api(a) => {
                assert_eq!(
                    (a.status.as_u16(), a.code.as_ref(), a.message.as_str()),
                    (400, "INVALID_REQUEST", "bad tag")
                );
                assert_eq!((a.details.as_deref(), a.resource.as_deref()), (Some("tag 3"), Some("memory")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replication_entries_keep_vectors_and_metadata_exactly() {
        let entry = ReplEntry {
            seq: 9,
            epoch: 2,
            generation: 1,
            mutations: vec![
                Mutation::DeleteMemories { ids: vec!["a".into(), "b".into()] },
                Mutation::StageVectors {
                    generation: 1,
                    items: vec![("m".into(), 3, vec![0.1, -2.5, f32::MIN_POSITIVE])],
                },
            ],
        };
        let back = entry_from_pb(entry_to_pb(&entry).unwrap()).unwrap();
        assert_eq!(back, entry);
        // Vectors are 32-bit floats on the wire, not JSON text.
        let v: Vec<f32> = (0..384).map(|i| i as f32 / 7.0).collect();
        let bytes = to_cbor(&v).unwrap();
        assert!(bytes.len() <= 384 * 5 + 8, "{} bytes", bytes.len());
        assert!(serde_json::to_vec(&v).unwrap().len() > bytes.len());
    }

    #[test]
    fn admin_actions_and_outcomes_round_trip() {
        for a in [
            ClusterAction::Status,
            ClusterAction::Rebalance { dry_run: true },
            ClusterAction::Drain { node: 4 },
            ClusterAction::Placement { namespace: "x".into() },
            ClusterAction::Join { seed: "127.0.0.1:7946".into() },
            ClusterAction::Leave,
            ClusterAction::PurgeHistory { index: 42 },
        ] {
            let back = ClusterAction::try_from(pb::AdminRequest::from(&a)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{a:?}"));
        }
        for o in [
            ApplyOutcome::Applied { seq: 1 },
            ApplyOutcome::Duplicate { applied: 2 },
            ApplyOutcome::Gap { applied: 3 },
            ApplyOutcome::Fenced { epoch: 4 },
            ApplyOutcome::Diverged { applied: 5 },
        ] {
            assert_eq!(ApplyOutcome::try_from(pb::ApplyOutcome::from(o)).unwrap(), o);
        }
        assert!(ApplyOutcome::try_from(pb::ApplyOutcome { kind: None }).is_err());
    }
}
