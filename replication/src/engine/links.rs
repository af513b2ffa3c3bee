//! The primary's link to each follower (`replicate_to`, `schedule_copy`, `copy_to` and the
//! anti-entropy worker in `service/src/cluster/`).
//!
//! One exchange at a time per follower, so entries reach it in order and pending writes are
//! batched: a handshake (`Progress`) on first contact in each primary term, then `Replicate`
//! calls of up to `batch` entries from right after what it acknowledged, until it holds the
//! whole log. A follower whose log disagrees with the primary's, or that needs entries the
//! primary's log no longer holds, is repaired by a full copy; sends to it wait for the copy.

use super::{ApplyOutcome, Command, Message, Replica};
use crate::placement::ReplicaState;
use crate::{Epoch, LogId, NodeId, ReplError, Seq, Time};

/// Where the exchange with one follower stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No handshake yet in this primary term.
    Unknown,
    /// `Progress` sent.
    Handshake { rid: u64, deadline: Time },
    /// Idle; the follower holds everything up to `acked`.
    Ready { acked: Seq },
    /// `Replicate` of entries up to `last` sent.
    Sending { acked: Seq, rid: u64, last: Seq, deadline: Time, retried_fence: bool },
    /// The follower fenced this primary with a newer `epoch` than its catalogue shows: wait
    /// (until `until`) for the catalogue, then send again once if still the primary.
    Stalled { acked: Seq, epoch: Epoch, until: Time, last: Seq },
    /// A full copy to it is running; `acked` is what it held before.
    Copying { acked: Seq },
}

#[derive(Clone, Debug)]
pub(super) struct Link {
    pub(super) state: LinkState,
    /// After a copy to a `Syncing` replica: promote it once it acknowledged this sequence.
    promote_at: Option<Seq>,
    /// The epoch a promotion was proposed at (not proposed again for it).
    proposed: Option<Epoch>,
}

impl Link {
    fn new() -> Self {
        Link { state: LinkState::Unknown, promote_at: None, proposed: None }
    }
}

impl Replica {
    fn link_mut(&mut self, node: NodeId) -> &mut Link {
        self.links.entry(node).or_insert_with(Link::new)
    }

    fn acked_of(&self, node: NodeId) -> Seq {
        match self.links.get(&node).map(|l| &l.state) {
            Some(
                LinkState::Ready { acked }
                | LinkState::Sending { acked, .. }
                | LinkState::Stalled { acked, .. }
                | LinkState::Copying { acked },
            ) => *acked,
            _ => 0,
        }
    }

    /// What a follower acknowledged, for log truncation: 0 while an exchange with it is in
    /// progress (the node reads it with `try_lock`, which fails then).
    pub(super) fn acked_if_idle(&self, node: NodeId) -> Seq {
        match self.links.get(&node).map(|l| &l.state) {
            Some(LinkState::Ready { acked }) => *acked,
            _ => 0,
        }
    }

    /// Bring `follower` up to the end of the log. Not tried (and so failed for the writes
    /// waiting on it) when this node has not taken over or gossip reports it down. Idle links
    /// send the next batch; an unknown one handshakes first; busy ones carry on by themselves.
    pub(super) fn replicate_to(&mut self, follower: NodeId) {
        let Some(p) = &self.placement else { return };
        if follower == self.cfg.me || p.primary() != Some(self.cfg.me) || !self.is_taken_over(p) {
            return;
        }
        let last = self.log.last().seq;
        if !self.alive(follower) {
            let acked = self.acked_of(follower);
            self.fail_follower(follower, acked, last);
            return;
        }
        match self.link_mut(follower).state.clone() {
            LinkState::Unknown => {
                let rid = self.rid();
                let deadline = self.now + self.cfg.rpc_timeout;
                self.link_mut(follower).state = LinkState::Handshake { rid, deadline };
                self.send(follower, Message::Progress { rid });
            }
            LinkState::Ready { acked } if acked < last => self.send_batch(follower, acked),
            _ => {}
        }
    }

    /// The handshake: a follower ahead of this primary, or whose last entry has another epoch
    /// than this primary's entry at that sequence, has diverged and gets a full copy.
    /// Otherwise sending starts after its last entry. A follower whose last entry this log no
    /// longer holds cannot be checked: it gets a full copy too (the node today accepts it
    /// unchecked, [`super::Faults::legacy_unanchored_send`]).
    pub(super) fn on_progress_reply(&mut self, from: NodeId, rid: u64, theirs: LogId) {
        if !matches!(self.links.get(&from).map(|l| &l.state), Some(LinkState::Handshake { rid: r, .. }) if *r == rid) {
            return;
        }
        if theirs.seq > 0 {
            let mine = self.log.epoch_at(theirs.seq);
            let unverifiable = mine.is_none() && !self.cfg.faults.legacy_unanchored_send;
            if theirs.seq > self.log.last().seq || mine.is_some_and(|e| e != theirs.epoch) || unverifiable {
                self.schedule_copy(from, 0);
                return;
            }
        }
        self.link_mut(from).state = LinkState::Ready { acked: theirs.seq };
        self.after_progress(from, theirs.seq);
    }

    /// Send entries from `acked + 1`, anchored by the entry at `acked`. When the log no longer
    /// holds `acked + 1`, the follower needs a full copy.
    fn send_batch(&mut self, follower: NodeId, acked: Seq) {
        let Some(p) = &self.placement else { return };
        let sender_epoch = p.epoch;
        let from = acked + 1;
        if self.log.epoch_at(from).is_none() {
            self.schedule_copy(follower, acked);
            return;
        }
        let prev = self.log.id_at(acked);
        if prev.is_none() && acked > 0 && !self.cfg.faults.legacy_unanchored_send {
            // Nothing to check the follower's last entry against.
            self.schedule_copy(follower, acked);
            return;
        }
        let entries = self.log.ids_from(from, self.cfg.batch);
        let last = entries.last().map_or(acked, |e| e.seq);
        let rid = self.rid();
        let deadline = self.now + self.cfg.rpc_timeout;
        let floor = self.floor;
        self.link_mut(follower).state = LinkState::Sending { acked, rid, last, deadline, retried_fence: false };
        self.floors_sent.insert(follower, floor.max(self.floors_sent.get(&follower).copied().unwrap_or(0)));
        self.send(follower, Message::Replicate { rid, sender_epoch, prev, entries, floor });
    }

    /// A follower's answer to `Replicate`. `Applied`/`Duplicate`/`Gap` move what it
    /// acknowledged (and sending goes on while it is behind); `Fenced` by an epoch this node's
    /// catalogue has not reached stalls the link until the catalogue shows it (one retry),
    /// otherwise the send fails; `Diverged` schedules a full copy; an error fails the send.
    pub(super) fn on_replicate_reply(&mut self, from: NodeId, rid: u64, result: Result<ApplyOutcome, ReplError>) {
        let Some(LinkState::Sending { acked, rid: r, last, retried_fence, .. }) =
            self.links.get(&from).map(|l| l.state.clone())
        else {
            return;
        };
        if r != rid {
            return;
        }
        match result {
            Ok(ApplyOutcome::Applied { seq }) => self.progressed(from, seq),
            Ok(ApplyOutcome::Duplicate { applied } | ApplyOutcome::Gap { applied }) => self.progressed(from, applied),
            Ok(ApplyOutcome::Fenced { epoch }) => {
                let behind = self.placement.as_ref().is_some_and(|p| p.epoch < epoch);
                if behind && !retried_fence {
                    let until = self.now + self.cfg.fenced_wait;
                    self.link_mut(from).state = LinkState::Stalled { acked, epoch, until, last };
                } else {
                    self.link_mut(from).state = LinkState::Ready { acked };
                    self.fail_follower(from, acked, last);
                }
            }
            Ok(ApplyOutcome::Diverged { .. }) => self.schedule_copy(from, acked),
            Err(_) => {
                self.link_mut(from).state = LinkState::Ready { acked };
                self.fail_follower(from, acked, last);
            }
        }
    }

    fn progressed(&mut self, follower: NodeId, acked: Seq) {
        self.link_mut(follower).state = LinkState::Ready { acked };
        self.after_progress(follower, acked);
    }

    /// Count the acknowledgement, promote a synced replica, and keep sending while behind.
    fn after_progress(&mut self, follower: NodeId, acked: Seq) {
        self.count_acks(follower, acked);
        self.maybe_promote(follower, acked);
        if acked < self.log.last().seq {
            self.replicate_to(follower);
        }
    }

    /// A link stalled by a fence resumes once the catalogue reached the fencing epoch and this
    /// node is still the taken-over primary.
    pub(super) fn resume_stalled_links(&mut self) {
        let epoch = self.placement.as_ref().map_or(0, |p| p.epoch);
        let stalled: Vec<(NodeId, Seq)> = self
            .links
            .iter()
            .filter_map(|(n, l)| match l.state {
                LinkState::Stalled { acked, epoch: e, .. } if e <= epoch => Some((*n, acked)),
                _ => None,
            })
            .collect();
        for (n, acked) in stalled {
            self.link_mut(n).state = LinkState::Ready { acked };
            self.send_batch(n, acked);
            if let LinkState::Sending { retried_fence, .. } = &mut self.link_mut(n).state {
                *retried_fence = true;
            }
        }
    }

    /// Timeouts: a handshake or send without an answer fails (the writes waiting on it stop
    /// waiting for this follower); a stalled link gives up.
    pub(super) fn expire_links(&mut self) {
        let now = self.now;
        let expired: Vec<(NodeId, LinkState)> = self
            .links
            .iter()
            .filter(|(_, l)| match l.state {
                LinkState::Handshake { deadline, .. } | LinkState::Sending { deadline, .. } => deadline <= now,
                LinkState::Stalled { until, .. } => until <= now,
                _ => false,
            })
            .map(|(n, l)| (*n, l.state.clone()))
            .collect();
        let last = self.log.last().seq;
        for (n, state) in expired {
            match state {
                LinkState::Handshake { .. } => {
                    self.link_mut(n).state = LinkState::Unknown;
                    self.fail_follower(n, 0, last);
                }
                LinkState::Sending { acked, last, .. } | LinkState::Stalled { acked, last, .. } => {
                    self.link_mut(n).state = LinkState::Ready { acked };
                    self.fail_follower(n, acked, last);
                }
                _ => {}
            }
        }
    }

    /// Repair or fill `follower` with a full copy (at most one at a time per follower); the
    /// writes waiting on it stop waiting.
    pub(super) fn schedule_copy(&mut self, follower: NodeId, acked: Seq) {
        let Some(sender_epoch) = self.placement.as_ref().map(|p| p.epoch) else { return };
        let last = self.log.last().seq;
        self.fail_follower(follower, acked, last);
        let link = self.link_mut(follower);
        if matches!(link.state, LinkState::Copying { .. }) {
            return;
        }
        link.state = LinkState::Copying { acked };
        link.promote_at = None;
        self.out.push(Command::StartCopy { to: follower, sender_epoch });
    }

    /// A copy this node pushed ended. To a follower of its own: it now holds the snapshot;
    /// catch it up from the log, and promote it once it holds what this node held when the
    /// copy ended. A failed copy is retried: a `Syncing` replica by the next pass, a repair by
    /// the next send that meets the same problem. To a new primary that asked (`PushCopy`):
    /// answer it.
    pub(super) fn on_copy_finished(&mut self, to: NodeId, result: Result<LogId, String>) {
        if let Some(rid) = self.push_requests.remove(&to) {
            let reply = result.clone().map_err(|reason| ReplError::Unavailable { reason });
            self.send(to, Message::PushCopyReply { rid, result: reply });
        }
        let Some(LinkState::Copying { acked }) = self.links.get(&to).map(|l| l.state.clone()) else { return };
        match result {
            Ok(snapshot) => {
                let target = self.log.last().seq;
                let link = self.link_mut(to);
                link.state = LinkState::Ready { acked: snapshot.seq };
                link.promote_at = Some(target);
                self.after_progress(to, snapshot.seq);
            }
            Err(_) => {
                self.link_mut(to).state = if acked > 0 { LinkState::Ready { acked } } else { LinkState::Unknown };
            }
        }
    }

    /// A `Syncing` replica (or, fixed, a `Dead` one being resynced) becomes `Active` (proposed
    /// as `epoch + 1`, once per epoch) once it holds what the primary held when its copy ended
    /// and, fixed, everything the primary holds at the proposal; from then on writes also need
    /// its acknowledgement ([`super::Faults::legacy_promotion`] promotes at the first point).
    fn maybe_promote(&mut self, follower: NodeId, acked: Seq) {
        let Some(p) = self.placement.clone() else { return };
        let resync = !self.cfg.faults.legacy_resync && p.state(follower) == Some(ReplicaState::Dead);
        let link = self.link_mut(follower);
        let Some(target) = link.promote_at else { return };
        if acked < target {
            return;
        }
        let last = self.log.last().seq;
        if !self.cfg.faults.legacy_promotion && acked < last {
            // Writes were made since: it must hold them too before it counts.
            if let Some(l) = self.links.get_mut(&follower) {
                l.promote_at = Some(last);
            }
            return;
        }
        let link = self.link_mut(follower);
        link.promote_at = None;
        if !(p.state(follower) == Some(ReplicaState::Syncing) || resync) || link.proposed == Some(p.epoch) {
            return;
        }
        link.proposed = Some(p.epoch);
        if !self.cfg.faults.legacy_promotion {
            self.promoting = Some((follower, p.epoch));
        }
        let mut np = p.bumped();
        np.states.insert(follower, ReplicaState::Active);
        self.out.push(Command::Propose { expected_epoch: p.epoch, placement: np });
    }

    /// The replication loop's pass (every `sync_every`): take over if this node is primary and
    /// has not; on a taken-over primary, copy every alive `Syncing` replica, and every alive
    /// `Dead` one (unless [`super::Faults::legacy_resync`]: the reconciler makes those
    /// `Syncing`), unless a copy or an exchange with it is running or its promotion is
    /// proposed; and catch up every alive `Active` follower that is behind and idle
    /// (anti-entropy).
    pub(super) fn sync_pass(&mut self) {
        let Some(p) = self.placement.clone() else { return };
        if p.primary() != Some(self.cfg.me) {
            return;
        }
        if !self.is_taken_over(&p) {
            self.start_takeover();
            return;
        }
        let last = self.log.last().seq;
        let others: Vec<NodeId> = p.replicas.iter().copied().filter(|n| *n != self.cfg.me && self.alive(*n)).collect();
        for n in others {
            let resync = !self.cfg.faults.legacy_resync;
            match p.state(n) {
                Some(ReplicaState::Syncing) | Some(ReplicaState::Dead)
                    if p.state(n) == Some(ReplicaState::Syncing) || resync =>
                {
                    let link = self.link_mut(n);
                    let idle = matches!(link.state, LinkState::Unknown | LinkState::Ready { .. });
                    if idle && link.promote_at.is_none() && link.proposed != Some(p.epoch) {
                        let acked = self.acked_of(n);
                        self.schedule_copy(n, acked);
                    }
                }
                Some(ReplicaState::Active) => {
                    let idle_behind = match self.links.get(&n).map(|l| &l.state) {
                        None | Some(LinkState::Unknown) => last > 0,
                        Some(LinkState::Ready { acked }) => *acked < last,
                        _ => false,
                    };
                    if idle_behind {
                        self.replicate_to(n);
                    }
                }
                _ => {}
            }
        }
    }

    /// A new primary asks this node to push it a full copy.
    pub(super) fn on_push_copy(&mut self, from: NodeId, rid: u64) {
        let listed = self.placement.as_ref().is_some_and(|p| p.replicas.contains(&from));
        if !listed {
            self.send(from, Message::PushCopyReply { rid, result: Err(ReplError::NamespaceNotFound) });
            return;
        }
        // The requester fenced this replica at its epoch: the copy carries that epoch.
        let sender_epoch = self.effective_fence();
        self.push_requests.insert(from, rid);
        self.out.push(Command::StartCopy { to: from, sender_epoch });
    }
}
