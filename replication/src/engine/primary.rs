//! The primary's client paths and quorum tracking (`run_as_primary`, `check_in_sync`,
//! `replicate` in `node/src/cluster/plane.rs`).

use std::collections::BTreeSet;

use super::{Command, Pending, Replica};
use crate::placement::ReplicaState;
use crate::{LogId, NodeId, ReplError, ReqId, Seq};

impl Replica {
    /// A client write. Rules, in order:
    /// 1. no placement: `Unavailable`; another node is primary: `NotOwner {epoch, primary}`;
    /// 2. not taken over in this primary term: queue it behind the take-over (started now if
    ///    none runs); it is answered when the take-over ends;
    /// 3. fewer `Active` replicas (this one included) than the write quorum `q`:
    ///    `NotInSync`, nothing applied;
    /// 4. this replica was fenced by a newer epoch than its catalogue shows (a new primary
    ///    took over): `NotOwner {epoch: fence, primary: None}`, nothing applied;
    /// 5. otherwise the write becomes entry `(epoch, applied + 1)` (`Append`), is sent to every
    ///    writable follower, and is acknowledged once `q - 1` followers that were `Active` at
    ///    write time acknowledged it (at once when `q` is 1); it is answered
    ///    `QuorumNotReached` when every such follower failed or `write_timeout` passed.
    pub(super) fn on_client_write(&mut self, req: ReqId) {
        if let Err(error) = self.check_owner() {
            self.out.push(Command::RefuseWrite { req, error });
            return;
        }
        if !self.placement.as_ref().is_some_and(|p| self.is_taken_over(p)) {
            self.waiting.push((req, true));
            self.start_takeover();
            return;
        }
        self.write(req);
    }

    /// A client read: served by a primary that has taken over (reads included: a new primary
    /// serves nothing before it knows it holds every acknowledged write).
    pub(super) fn on_client_read(&mut self, req: ReqId) {
        if let Err(error) = self.check_owner() {
            self.out.push(Command::RefuseRead { req, error });
            return;
        }
        if !self.placement.as_ref().is_some_and(|p| self.is_taken_over(p)) {
            self.waiting.push((req, false));
            self.start_takeover();
            return;
        }
        if self.placement.as_ref().is_some_and(|p| p.epoch < self.fence) && !self.cfg.faults.legacy_stale_fence {
            let error = ReplError::NotOwner { epoch: self.fence, primary: None };
            self.out.push(Command::RefuseRead { req, error });
            return;
        }
        self.out.push(Command::ServeRead { req });
    }

    fn check_owner(&self) -> Result<(), ReplError> {
        let Some(p) = &self.placement else {
            return Err(ReplError::Unavailable { reason: "no placement yet".into() });
        };
        if p.primary() != Some(self.cfg.me) {
            return Err(ReplError::NotOwner { epoch: p.epoch, primary: p.primary() });
        }
        Ok(())
    }

    /// Rules 3–5 of [`Replica::on_client_write`], on a taken-over primary.
    pub(super) fn write(&mut self, req: ReqId) {
        let Some(p) = self.placement.clone() else { return };
        let me = self.cfg.me;
        let quorum = p.quorum(self.cfg.write_quorum, self.cfg.faults.legacy_quorum_cap);
        let voters: BTreeSet<NodeId> =
            p.replicas.iter().copied().filter(|n| *n != me && p.state(*n) == Some(ReplicaState::Active)).collect();
        if voters.len() + 1 < quorum.q {
            self.out.push(Command::RefuseWrite {
                req,
                error: ReplError::NotInSync { in_sync: voters.len() + 1, needed: quorum.q },
            });
            return;
        }
        if p.epoch < self.fence {
            self.out
                .push(Command::RefuseWrite { req, error: ReplError::NotOwner { epoch: self.fence, primary: None } });
            return;
        }
        let id = LogId::new(p.epoch, self.log.last().seq + 1);
        self.log.append(id);
        self.out.push(Command::Append { req, id });
        let need = if self.cfg.faults.ack_before_quorum { 0 } else { quorum.q - 1 };
        let required = self.promoting.filter(|(_, e)| *e == p.epoch).map(|(n, _)| n);
        if need == 0 && required.is_none() {
            self.out.push(Command::AckWrite { req, id });
        } else {
            self.pending.insert(
                id.seq,
                Pending {
                    req,
                    q: quorum.q,
                    need,
                    voters,
                    acks: BTreeSet::new(),
                    failed: BTreeSet::new(),
                    required,
                    deadline: self.now + self.cfg.write_timeout,
                },
            );
        }
        let followers: Vec<NodeId> = p.writable().filter(|n| *n != me).collect();
        for f in followers {
            self.replicate_to(f);
        }
    }

    /// `follower` holds everything up to `acked`: count it for the writes it now holds.
    pub(super) fn count_acks(&mut self, follower: NodeId, acked: Seq) {
        let mut done = Vec::new();
        for (seq, w) in self.pending.range_mut(..=acked) {
            if w.required == Some(follower) {
                w.required = None;
            } else if w.voters.contains(&follower) && !w.failed.contains(&follower) {
                w.acks.insert(follower);
            } else {
                continue;
            }
            if w.acks.len() >= w.need && w.required.is_none() {
                done.push(*seq);
            }
        }
        for seq in done {
            if let Some(w) = self.pending.remove(&seq) {
                let epoch = self.log.epoch_at(seq).unwrap_or_default();
                self.out.push(Command::AckWrite { req: w.req, id: LogId::new(epoch, seq) });
            }
        }
    }

    /// The send to `follower` of every write above `acked` up to `upto` ended without its
    /// acknowledgement: those writes stop waiting for it, and one that can no longer reach
    /// its quorum is answered `QuorumNotReached`.
    pub(super) fn fail_follower(&mut self, follower: NodeId, acked: Seq, upto: Seq) {
        if acked >= upto {
            return;
        }
        let mut hopeless = Vec::new();
        for (seq, w) in self.pending.range_mut(acked + 1..=upto) {
            if w.required == Some(follower) {
                hopeless.push(*seq);
            } else if w.voters.contains(&follower) && !w.acks.contains(&follower) {
                w.failed.insert(follower);
                if w.voters.len() - w.failed.len() < w.need {
                    hopeless.push(*seq);
                }
            }
        }
        for seq in hopeless {
            if let Some(w) = self.pending.remove(&seq) {
                self.out.push(Command::RefuseWrite {
                    req: w.req,
                    error: ReplError::QuorumNotReached { got: w.acks.len() + 1, needed: w.q },
                });
            }
        }
    }

    /// Writes past their deadline are answered `QuorumNotReached` (they stay applied).
    pub(super) fn expire_pending(&mut self) {
        let now = self.now;
        let late: Vec<Seq> = self.pending.iter().filter(|(_, w)| w.deadline <= now).map(|(s, _)| *s).collect();
        for seq in late {
            if let Some(w) = self.pending.remove(&seq) {
                self.out.push(Command::RefuseWrite {
                    req: w.req,
                    error: ReplError::QuorumNotReached { got: w.acks.len() + 1, needed: w.q },
                });
            }
        }
    }

    /// Answer the requests queued behind a take-over: run them (it succeeded) or refuse them.
    pub(super) fn release_waiting(&mut self, error: Option<ReplError>) {
        for (req, is_write) in std::mem::take(&mut self.waiting) {
            match (&error, is_write) {
                (None, true) => self.write(req),
                (None, false) => self.out.push(Command::ServeRead { req }),
                (Some(e), true) => self.out.push(Command::RefuseWrite { req, error: e.clone() }),
                (Some(e), false) => self.out.push(Command::RefuseRead { req, error: e.clone() }),
            }
        }
    }

    /// This node is no longer the primary: a take-over in progress stops, queued requests get
    /// `NotOwner`, and writes still waiting for their quorum are not acknowledged.
    pub(super) fn step_down(&mut self) {
        let (epoch, primary) = self.placement.as_ref().map_or((0, None), |p| (p.epoch, p.primary()));
        self.takeover = None;
        self.release_waiting(Some(ReplError::NotOwner { epoch, primary }));
        for (_, w) in std::mem::take(&mut self.pending) {
            self.out.push(Command::RefuseWrite {
                req: w.req,
                error: ReplError::QuorumNotReached { got: w.acks.len() + 1, needed: w.q },
            });
        }
        self.links.clear();
    }
}
