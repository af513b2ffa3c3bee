//! The follower side (`apply_replicated`, `fence`, `serve_fence`, `apply_copy` in
//! `storage/src/store.rs` and `node/src/cluster/plane.rs`).

use super::{ApplyOutcome, Command, Message, Replica};
use crate::log::LogIds;
use crate::{Epoch, LogId, NodeId, ReplError, Seq};

impl Replica {
    fn holds_replica(&self) -> bool {
        self.placement.as_ref().is_some_and(|p| p.replicas.contains(&self.cfg.me))
    }

    /// Entries from a primary. Rules, in order:
    /// - this node holds no replica (per its catalogue): an error, nothing applied;
    /// - `sender_epoch` older than the fence (the highest epoch seen, the catalogue's
    ///   included): `Fenced`, nothing applied; otherwise the sender's epoch raises the fence;
    /// - `prev` within the applied range, where this log holds another epoch: `Diverged`;
    /// - then entry by entry: one already applied whose epoch differs from this log's entry
    ///   there: `Diverged` (what came before it stays applied); one already applied with the
    ///   same epoch, or truncated here so it cannot be compared: skipped (`Duplicate`); one
    ///   beyond `applied + 1`: `Gap`; otherwise applied in order (`Applied`);
    /// - after `Applied` or `Duplicate`, entries below the sender's `floor` are dropped.
    pub(super) fn on_replicate(
        &mut self,
        from: NodeId,
        rid: u64,
        sender_epoch: Epoch,
        prev: Option<LogId>,
        entries: &[LogId],
        floor: Seq,
    ) {
        if !self.holds_replica() {
            self.send(from, Message::ReplicateReply { rid, result: Err(ReplError::NamespaceNotFound) });
            return;
        }
        let fence = self.effective_fence();
        if sender_epoch < fence && !self.cfg.faults.skip_fence_check {
            let result = Ok(ApplyOutcome::Fenced { epoch: fence });
            self.send(from, Message::ReplicateReply { rid, result });
            return;
        }
        self.fence = self.fence.max(sender_epoch);
        let before = self.log.last();
        let outcome = self.apply_in_order(prev, entries);
        self.abort_stale_copy(self.log.last() != before);
        if floor > 0 && matches!(outcome, ApplyOutcome::Applied { .. } | ApplyOutcome::Duplicate { .. }) {
            let below = floor.min(self.log.last().seq);
            if below > self.log.floor() {
                self.log.truncate_below(below);
                self.out.push(Command::TruncateLog { below });
            }
        }
        self.send(from, Message::ReplicateReply { rid, result: Ok(outcome) });
    }

    fn apply_in_order(&mut self, prev: Option<LogId>, entries: &[LogId]) -> ApplyOutcome {
        let applied = self.log.last().seq;
        if let Some(prev) = prev.filter(|p| p.seq > 0 && p.seq <= applied)
            && self.log.epoch_at(prev.seq).is_some_and(|mine| mine != prev.epoch)
        {
            return ApplyOutcome::Diverged { applied };
        }
        let mut outcome = ApplyOutcome::Duplicate { applied };
        let mut first: Option<Seq> = None;
        for id in entries {
            let applied = self.log.last().seq;
            if id.seq <= applied {
                if self.log.epoch_at(id.seq).is_some_and(|mine| mine != id.epoch) {
                    outcome = ApplyOutcome::Diverged { applied };
                    break;
                }
                outcome = ApplyOutcome::Duplicate { applied };
                continue;
            }
            if id.seq > applied + 1 {
                outcome = ApplyOutcome::Gap { applied };
                break;
            }
            self.log.append(*id);
            self.fence = self.fence.max(id.epoch);
            first.get_or_insert(id.seq);
            outcome = ApplyOutcome::Applied { seq: id.seq };
        }
        if let Some(first) = first {
            self.out.push(Command::Apply { first, last: self.log.last().seq });
        }
        match outcome {
            ApplyOutcome::Duplicate { .. } => ApplyOutcome::Duplicate { applied: self.log.last().seq },
            other => other,
        }
    }

    /// A new primary fences this replica: the fence rises to `epoch`, durably, before the
    /// answer (this replica's progress) leaves. A `Fence` older than this replica's fence is
    /// refused (`Fenced`): it comes from a node whose catalogue is behind
    /// ([`super::Faults::legacy_stale_fence`]: the node answers it). A deposed primary fenced this way refuses its
    /// own next write (`NotOwner`).
    pub(super) fn on_fence(&mut self, from: NodeId, rid: u64, epoch: Epoch) {
        if !self.holds_replica() {
            self.send(from, Message::FenceReply { rid, result: Err(ReplError::NamespaceNotFound) });
            return;
        }
        let fence = self.effective_fence();
        if epoch < fence && !self.cfg.faults.legacy_stale_fence {
            // A stale primary (its catalogue is behind): it must not learn where to catch up
            // from, nor take over.
            self.send(from, Message::FenceReply { rid, result: Err(ReplError::Fenced { epoch: fence }) });
            return;
        }
        self.fence = self.fence.max(epoch);
        self.out.push(Command::PersistFence { epoch: self.fence });
        self.abort_stale_copy(false);
        let progress = self.log.last();
        self.send(from, Message::FenceReply { rid, result: Ok(progress) });
    }

    /// `from` wants to replace this replica with a full copy. Refused when it sends under an
    /// epoch older than this replica's fence (a deposed primary must not overwrite a replica a
    /// newer primary fenced); otherwise the fence rises to the sender's epoch and is kept
    /// across the wipe. ([`super::Faults::legacy_copy`]: accept any sender, as the
    /// node does today.)
    pub(super) fn on_copy_begin(&mut self, from: NodeId, sender_epoch: Epoch) {
        let legacy = self.cfg.faults.legacy_copy;
        let fence = self.effective_fence();
        if !self.holds_replica() && !legacy {
            self.out.push(Command::RefuseCopy { from, error: ReplError::NamespaceNotFound });
            return;
        }
        if sender_epoch < fence && !legacy {
            self.out.push(Command::RefuseCopy { from, error: ReplError::Fenced { epoch: fence } });
            return;
        }
        self.out.push(Command::AcceptCopy { from });
        if !legacy {
            self.staged_copy = Some((from, sender_epoch));
        }
        if legacy {
            // `import_begin` wiped the rows and unloaded the namespace: it reloads empty.
            self.log = LogIds::new();
            self.fence = 0;
        } else {
            self.fence = self.fence.max(sender_epoch);
            self.out.push(Command::PersistFence { epoch: self.fence });
        }
    }

    /// An accepted copy still in flight is aborted once this replica moves past it: a fence
    /// above the copy's epoch, or entries applied meanwhile (installing the copy then would
    /// roll back writes this replica has acknowledged).
    fn abort_stale_copy(&mut self, applied: bool) {
        if let Some((from, epoch)) = self.staged_copy
            && (applied || self.fence > epoch)
        {
            self.staged_copy = None;
            let error = ReplError::Fenced { epoch: self.fence };
            self.out.push(Command::RefuseCopy { from, error });
        }
    }

    /// A full copy replaced this replica's rows and log (installed atomically when it is
    /// complete; the legacy node wipes them when the copy begins).
    pub(super) fn on_copy_installed(&mut self, log: LogIds) {
        self.staged_copy = None;
        self.fence = if self.cfg.faults.legacy_copy {
            // `import_begin` deleted the stored fence; a reload takes the last entry's epoch.
            log.last().epoch
        } else {
            self.fence.max(log.last().epoch)
        };
        self.log = log;
        if self.awaiting_copy() {
            // The copy this node's take-over asked for: the take-over goes on.
            return;
        }
        // Whatever this node knew as a primary no longer holds: its own writes still waiting
        // for a quorum were overwritten (never acknowledge them), and it must take over again
        // before it serves.
        self.links.clear();
        self.taken_over = None;
        self.takeover = None;
        for (_, w) in std::mem::take(&mut self.pending) {
            self.out.push(Command::RefuseWrite {
                req: w.req,
                error: ReplError::QuorumNotReached { got: w.acks.len() + 1, needed: w.q },
            });
        }
        let (epoch, primary) = self.placement.as_ref().map_or((0, None), |p| (p.epoch, p.primary()));
        self.release_waiting(Some(ReplError::NotOwner { epoch, primary }));
    }
}
