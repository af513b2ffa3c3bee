//! The replication engine's rules (`loci-replication`), applied to the catalogue's types.
//!
//! The runtime in this module tree still runs the protocol with RPCs; where it decides
//! something the engine decides too (the replica count and write quorum, how many replicas a
//! take-over must hear, whether a follower's log can be checked, who may leave a placement),
//! it asks the engine's pure functions here rather than re-deriving them, so the rule the
//! simulator checks is the rule the node runs.

use loci_raft::catalogue::{NamespaceEntry, Placement, ReplicaState};
use loci_replication::placement as engine;

/// The catalogue's placement in the engine's terms.
pub(crate) fn to_engine(p: &Placement) -> engine::Placement {
    engine::Placement {
        epoch: p.epoch,
        replicas: p.replicas.clone(),
        states: p.states.iter().map(|(n, s)| (*n, state(*s))).collect(),
        rf: p.rf,
        leaving: p.leaving.clone(),
        primary_since: p.primary_since,
    }
}

fn state(s: ReplicaState) -> engine::ReplicaState {
    match s {
        ReplicaState::Active => engine::ReplicaState::Active,
        ReplicaState::Syncing => engine::ReplicaState::Syncing,
        ReplicaState::Dead => engine::ReplicaState::Dead,
    }
}

/// The replica count `n` and the write quorum `q` of a namespace (`Placement::quorum` of the
/// engine, without the cap at `rf` the simulator showed to lose writes during a move).
pub(crate) fn quorum(entry: &NamespaceEntry) -> engine::Quorum {
    to_engine(&entry.placement).quorum(entry.policy.write_quorum, false)
}

/// Whether the primary can check a follower that reports `theirs_seq` as its last entry: it
/// must hold an entry at that sequence (`mine_epoch`), else the follower gets a full copy
/// (the engine's handshake; sending without an anchor is `Faults::legacy_unanchored_send`).
/// Returns `Some(reason)` when a full copy is needed.
pub(crate) fn handshake_needs_copy(
    theirs_seq: u64,
    theirs_epoch: u64,
    mine_applied: u64,
    mine_epoch: Option<u64>,
) -> Option<&'static str> {
    if theirs_seq == 0 {
        return None;
    }
    if theirs_seq > mine_applied {
        return Some("it is ahead of the primary");
    }
    match mine_epoch {
        None => Some("the primary's log no longer holds its last entry, so its log cannot be checked"),
        Some(e) if e != theirs_epoch => Some("its log diverges from the primary's"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn placement(states: &[(u64, ReplicaState)], rf: usize) -> Placement {
        Placement {
            epoch: 4,
            replicas: states.iter().map(|(n, _)| *n).collect(),
            states: states.iter().copied().collect::<BTreeMap<_, _>>(),
            rf,
            leaving: BTreeSet::new(),
            primary_since: 2,
        }
    }

    #[test]
    fn conversion_keeps_every_field() {
        let p = placement(&[(3, ReplicaState::Active), (1, ReplicaState::Syncing), (2, ReplicaState::Dead)], 3);
        let e = to_engine(&p);
        assert_eq!((e.epoch, e.replicas.clone(), e.rf, e.primary_since), (4, vec![3, 1, 2], 3, 2));
        assert_eq!(e.state(1), Some(engine::ReplicaState::Syncing));
        assert_eq!(e.state(2), Some(engine::ReplicaState::Dead));
        assert_eq!(e.primary(), Some(3));
    }

    #[test]
    fn a_placement_holding_more_than_rf_replicas_raises_the_quorum() {
        // A move between its copy and the removal of the replica it replaces: 4 Active, rf 3.
        let four = placement(&[1, 2, 3, 4].map(|n| (n, ReplicaState::Active)), 3);
        let q = to_engine(&four).quorum(None, false);
        assert_eq!((q.n, q.q, q.takeover_need()), (4, 3, 2));
        // Every write quorum meets every take-over set.
        assert!(q.q + q.takeover_need() > q.n);
        // Syncing replicas never count; Dead ones do.
        let p = placement(&[(1, ReplicaState::Active), (2, ReplicaState::Syncing), (3, ReplicaState::Dead)], 3);
        let q = to_engine(&p).quorum(None, false);
        assert_eq!((q.n, q.q), (2, 2));
    }

    #[test]
    fn a_follower_whose_last_entry_the_primary_no_longer_holds_gets_a_copy() {
        assert_eq!(handshake_needs_copy(0, 0, 10, None), None, "an empty follower is sent everything");
        assert_eq!(handshake_needs_copy(7, 2, 10, Some(2)), None);
        assert!(handshake_needs_copy(7, 2, 10, Some(3)).is_some(), "another epoch at that sequence: diverged");
        assert!(handshake_needs_copy(11, 2, 10, Some(2)).is_some(), "ahead of the primary");
        assert!(handshake_needs_copy(7, 2, 10, None).is_some(), "truncated: cannot be checked");
    }
}
