//! The invariants checked after every run (and, for some, as the run goes).

use std::collections::BTreeSet;

use super::world::{World, WriteState};
use crate::placement::ReplicaState;
use crate::{NodeId, ReqId};

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An acknowledged write is missing from the primary or an in-sync replica after healing.
    LostAckedWrite,
    /// A replica holds a write no client issued.
    PhantomWrite,
    /// A write refused as "nothing applied" was applied.
    RefusedWriteApplied,
    /// Two nodes wrote entries in one epoch.
    TwoPrimariesInEpoch,
    /// An entry was applied out of sequence order (or the engine named entries its store lacks).
    OutOfOrderApply,
    /// The current primary served a read without a write acknowledged before it was issued.
    StaleRead,
    /// After healing, the in-sync replicas hold different rows.
    NotConverged,
    /// After healing, the primary the catalogue names does not serve.
    NoPrimary,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

impl World {
    pub(super) fn final_checks(&mut self) {
        let p = self.catalogue.clone();
        let Some(primary) = p.primary() else {
            self.violation(ViolationKind::NoPrimary, "the placement names no primary".into());
            return;
        };
        let issued: BTreeSet<ReqId> = self.writes.keys().copied().collect();
        // No phantom anywhere, rows or log.
        let mut phantoms = Vec::new();
        for n in &self.nodes {
            for (_, (_, w)) in n.store.cur.data.iter().chain(n.store.cur.log.iter()) {
                if !issued.contains(w) {
                    phantoms.push((n.id, *w));
                }
            }
        }
        for (n, w) in phantoms {
            self.violation(ViolationKind::PhantomWrite, format!("n{n} holds w{w}, which no client issued"));
        }
        let serving = self.nodes.iter().any(|n| n.id == primary && n.up && n.replica.is_serving());
        if !serving {
            self.violation(ViolationKind::NoPrimary, format!("n{primary} does not serve after healing ({p:?})"));
            return;
        }
        let in_sync: Vec<NodeId> =
            p.replicas.iter().copied().filter(|n| p.state(*n) == Some(ReplicaState::Active)).collect();
        let acked: Vec<ReqId> =
            self.writes.iter().filter(|(_, s)| matches!(s, WriteState::Acked(_))).map(|(w, _)| *w).collect();
        let reference = self.nodes.iter().find(|n| n.id == primary).map(|n| n.store.cur.data.clone());
        let Some(reference) = reference else { return };
        let mut found = Vec::new();
        for id in &in_sync {
            let Some(n) = self.nodes.iter().find(|n| n.id == *id) else { continue };
            let held: BTreeSet<ReqId> = n.store.cur.data.values().map(|(_, w)| *w).collect();
            let lost: Vec<ReqId> = acked.iter().copied().filter(|w| !held.contains(w)).collect();
            if !lost.is_empty() {
                found.push((ViolationKind::LostAckedWrite, format!("n{id} lacks acknowledged {lost:?}")));
            }
            if n.store.cur.data != reference {
                found.push((
                    ViolationKind::NotConverged,
                    format!("n{id} holds {:?}, primary n{primary} holds {:?}", n.store.cur.data, reference),
                ));
            }
        }
        // Nothing refused as "not applied" survives.
        for (_, (_, w)) in reference.iter() {
            if self.writes.get(w) == Some(&WriteState::Refused { may_have_applied: false }) {
                found.push((ViolationKind::RefusedWriteApplied, format!("primary holds refused w{w}")));
            }
        }
        for (kind, detail) in found {
            self.violation(kind, detail);
        }
    }
}
