//! Taking over as primary (`ensure_taken_over` and `pull_log` in `node/src/cluster/plane.rs`).
//!
//! A node takes over once per primary term (`primary_since`) before it serves anything,
//! reads included:
//! 0. not while its own fence is newer than its placement (a newer epoch exists);
//! 1. it sends `Fence {epoch}` to every other replica that is not `Syncing` and that gossip
//!    reports alive, and waits for all answers or `fence_timeout`;
//! 2. it needs `takeover_need() - 1` answers (itself counting as one): fewer, and the
//!    take-over fails with `TakeoverIncomplete` (retried by the next pass or request);
//! 3. if an answer is ahead of it by `(epoch of last entry, seq)`, it catches up from the most
//!    advanced one: `FetchLog` from its own last entry, which the source's log must hold with
//!    the same epoch, applying batches until it holds the source's last entry; when the logs
//!    disagree or the source's log no longer holds them, it asks the source for a full copy
//!    (`PushCopy`); if that fails: `CatchUpFailed`;
//! 4. it forgets its links (every follower handshakes again) and records the epoch.

use std::collections::BTreeMap;

use super::{Command, Message, Replica};
use crate::placement::ReplicaState;
use crate::{Epoch, LogId, NodeId, ReplError, Seq, Time};

#[derive(Clone, Debug)]
pub(super) struct Takeover {
    epoch: Epoch,
    /// Fence requests without an answer yet: rid → node.
    asked: BTreeMap<u64, NodeId>,
    /// Answers, in the placement's order of asking.
    answers: Vec<(NodeId, LogId)>,
    need: usize,
    deadline: Time,
    phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Fencing,
    Fetching { source: NodeId, rid: u64, target: Seq },
    Copying { source: NodeId, rid: u64 },
}

impl Replica {
    /// Whether a take-over waits for a copy it asked for (`PushCopy`).
    pub(super) fn awaiting_copy(&self) -> bool {
        self.takeover.as_ref().is_some_and(|t| matches!(t.phase, Phase::Copying { .. }))
    }

    /// Start the take-over if this node is the primary, has not taken over, and none runs.
    pub(super) fn start_takeover(&mut self) {
        let Some(p) = self.placement.clone() else { return };
        if p.primary() != Some(self.cfg.me) || self.is_taken_over(&p) || self.takeover.is_some() {
            return;
        }
        if p.epoch < self.fence {
            // A newer epoch exists (this replica was fenced, or copied, past its catalogue):
            // this placement is stale; wait for the catalogue.
            let error = ReplError::NotOwner { epoch: self.fence, primary: None };
            return self.release_waiting(Some(error));
        }
        if self.cfg.faults.skip_takeover {
            self.takeover = Some(Takeover {
                epoch: p.epoch,
                asked: BTreeMap::new(),
                answers: Vec::new(),
                need: 0,
                deadline: self.now,
                phase: Phase::Fencing,
            });
            return self.finish_takeover();
        }
        let quorum = p.quorum(self.cfg.write_quorum, self.cfg.faults.legacy_quorum_cap);
        let need = quorum.takeover_need().saturating_sub(1);
        let others: Vec<NodeId> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| *n != self.cfg.me && p.state(*n) != Some(ReplicaState::Syncing) && self.alive(*n))
            .collect();
        let mut asked = BTreeMap::new();
        for n in others {
            let rid = self.rid();
            asked.insert(rid, n);
            self.send(n, Message::Fence { rid, epoch: p.epoch });
        }
        let done = asked.is_empty();
        self.takeover = Some(Takeover {
            epoch: p.epoch,
            asked,
            answers: Vec::new(),
            need,
            deadline: self.now + self.cfg.fence_timeout,
            phase: Phase::Fencing,
        });
        if done {
            self.evaluate_fences();
        }
    }

    pub(super) fn on_fence_reply(&mut self, from: NodeId, rid: u64, result: Result<LogId, ReplError>) {
        let Some(t) = &mut self.takeover else { return };
        if t.phase != Phase::Fencing || t.asked.remove(&rid) != Some(from) {
            return;
        }
        if let Ok(progress) = result {
            t.answers.push((from, progress));
        }
        if t.asked.is_empty() {
            self.evaluate_fences();
        }
    }

    /// Rules 2 and 3: enough answers? Anyone ahead?
    fn evaluate_fences(&mut self) {
        let Some(t) = &mut self.takeover else { return };
        if t.answers.len() < t.need {
            let error = ReplError::TakeoverIncomplete { answered: t.answers.len(), needed: t.need };
            self.fail_takeover(error);
            return;
        }
        let mine = self.log.last();
        // The most advanced answer; the last of equals, as `Iterator::max_by_key` picks.
        let best = t.answers.iter().copied().filter(|(_, p)| *p > mine).max_by_key(|(_, p)| *p);
        match best {
            None => self.finish_takeover(),
            Some((source, theirs)) => {
                let rid = self.next_rid;
                self.next_rid += 1;
                t.phase = Phase::Fetching { source, rid, target: theirs.seq };
                t.deadline = self.now + self.cfg.rpc_timeout;
                let limit = self.cfg.fetch_batch;
                self.send(source, Message::FetchLog { rid, from: mine.seq.max(1), limit });
            }
        }
    }

    /// A batch of the source's log: it must start with this node's last entry (same epoch),
    /// then continue it without a gap. Applied, and fetched on until the target; any mismatch
    /// falls back to a full copy from the source.
    pub(super) fn on_fetch_log_reply(&mut self, from: NodeId, rid: u64, entries: &[LogId]) {
        let Some(t) = &self.takeover else { return };
        let Phase::Fetching { source, rid: r, target } = t.phase else { return };
        if source != from || r != rid {
            return;
        }
        let mine = self.log.last();
        let mut rest = entries;
        if mine.seq > 0 {
            match rest.split_first() {
                Some((first, tail)) if *first == mine => rest = tail,
                _ => return self.ask_copy(source),
            }
        }
        let contiguous = rest.iter().enumerate().all(|(i, e)| e.seq == mine.seq + 1 + i as u64);
        let Some(last) = rest.last().copied() else { return self.ask_copy(source) };
        if !contiguous {
            return self.ask_copy(source);
        }
        for id in rest {
            self.log.append(*id);
        }
        self.fence = self.fence.max(last.epoch);
        self.out.push(Command::Apply { first: mine.seq + 1, last: last.seq });
        if last.seq >= target {
            self.finish_takeover();
        } else {
            let rid = self.rid();
            let limit = self.cfg.fetch_batch;
            if let Some(t) = &mut self.takeover {
                t.phase = Phase::Fetching { source, rid, target };
                t.deadline = self.now + self.cfg.rpc_timeout;
            }
            self.send(source, Message::FetchLog { rid, from: last.seq, limit });
        }
    }

    fn ask_copy(&mut self, source: NodeId) {
        let rid = self.rid();
        let deadline = self.now + self.cfg.push_copy_timeout;
        if let Some(t) = &mut self.takeover {
            t.phase = Phase::Copying { source, rid };
            t.deadline = deadline;
        }
        self.send(source, Message::PushCopy { rid });
    }

    /// The source pushed its copy (installed through `Event::CopyInstalled` before this
    /// answer), or could not.
    pub(super) fn on_push_copy_reply(&mut self, from: NodeId, rid: u64, result: Result<LogId, ReplError>) {
        let Some(t) = &self.takeover else { return };
        let Phase::Copying { source, rid: r } = t.phase else { return };
        if source != from || r != rid {
            return;
        }
        match result {
            // The copy must have arrived: this node must now hold at least what it shipped.
            Ok(shipped) if self.log.last() >= shipped => self.finish_takeover(),
            _ => self.fail_takeover(ReplError::CatchUpFailed { source_node: source }),
        }
    }

    /// Timeouts: fencing evaluates what answered; a fetch or copy without an answer fails.
    pub(super) fn expire_takeover(&mut self) {
        let Some(t) = &self.takeover else { return };
        if t.deadline > self.now {
            return;
        }
        match t.phase {
            Phase::Fencing => self.evaluate_fences(),
            Phase::Fetching { source, .. } | Phase::Copying { source, .. } => {
                self.fail_takeover(ReplError::CatchUpFailed { source_node: source })
            }
        }
    }

    fn finish_takeover(&mut self) {
        let Some(t) = self.takeover.take() else { return };
        self.links.clear();
        self.taken_over = Some(t.epoch);
        if !self.placement.as_ref().is_some_and(|p| self.is_taken_over(p)) {
            // A newer primary term began meanwhile (this node was deposed and named again).
            self.start_takeover();
            return;
        }
        self.release_waiting(None);
        // Followers are brought up to date without waiting for the next write.
        self.sync_pass_followers();
    }

    fn fail_takeover(&mut self, error: ReplError) {
        self.takeover = None;
        self.release_waiting(Some(error));
    }

    fn sync_pass_followers(&mut self) {
        // The next pass of the replication loop does this; doing it now saves its period.
        self.next_sync = self.now;
    }
}
