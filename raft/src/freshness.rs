//! Whether this node's catalogue is known to be current: the decision, free of IO.
//!
//! A node authorises minted keys from its own catalogue replica, so it must know that replica
//! holds every change acknowledged before now minus a bound (a key revocation above all). It
//! learns it by a *read index*: every second it asks the leader for the leader's read log id
//! (openraft's `get_read_log_id`, which confirms leadership with a quorum first, and which is
//! at least every entry committed before the call was answered). A confirmation is the pair
//! (when the question was *sent*, the index answered). The node is fresh at `now` while some
//! confirmation sent after `now - bound` has an index the node has applied.
//!
//! What that buys: a change committed at `T` is in force on a node at any `t > T + bound`
//! whenever that node is fresh at `t`, since its confirmation was sent after `T` and so
//! answered with an index at or past the change. A writer that must know a change is in force
//! everywhere (a revocation) therefore waits for each member to report it applied, or for
//! `bound` to pass, whichever comes first; a member that is cut off, paused or slow stops
//! taking keys by itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Confirmations kept: older ones than the newest applied one are never needed, and newer
/// ones wait for the local state machine to catch up (milliseconds), so a few suffice.
const KEPT: usize = 16;

#[derive(Debug, Default)]
pub struct Freshness {
    /// Oldest first; `sent` strictly increasing.
    confirmations: VecDeque<Confirmation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// When the question left this node.
    pub sent: Instant,
    /// The leader's read log index (0 when the log is empty).
    pub index: u64,
}

impl Freshness {
    /// Record the answer to a question sent at `sent`. An answer older than one already held
    /// (answers can arrive out of order) adds nothing.
    pub fn record(&mut self, c: Confirmation) {
        if self.confirmations.back().is_some_and(|last| last.sent >= c.sent) {
            return;
        }
        self.confirmations.push_back(c);
        while self.confirmations.len() > KEPT {
            self.confirmations.pop_front();
        }
    }

    /// Fresh at `now` with `applied` applied: some confirmation sent within `bound` has an
    /// index at or below `applied`. Drops what can no longer matter.
    pub fn is_fresh(&mut self, now: Instant, bound: Duration, applied: u64) -> bool {
        // Sent too long ago: never fresh again.
        while self.confirmations.front().is_some_and(|c| now.saturating_duration_since(c.sent) >= bound) {
            self.confirmations.pop_front();
        }
        // The newest applied confirmation makes every older one redundant.
        let Some(pos) = self.confirmations.iter().rposition(|c| c.index <= applied) else {
            return false;
        };
        self.confirmations.drain(..pos);
        true
    }

    /// The newest confirmation, for read-outs.
    pub fn last(&self) -> Option<Confirmation> {
        self.confirmations.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn no_confirmation_is_not_fresh() {
        let mut f = Freshness::default();
        assert!(!f.is_fresh(Instant::now(), BOUND, u64::MAX));
    }

    #[test]
    fn a_confirmation_counts_only_once_applied_and_only_within_the_bound() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        f.record(Confirmation { sent: t0, index: 7 });
        assert!(!f.is_fresh(at(t0, 10), BOUND, 6), "index 7 not applied yet");
        assert!(f.is_fresh(at(t0, 10), BOUND, 7));
        assert!(f.is_fresh(at(t0, 9_999), BOUND, 7));
        assert!(!f.is_fresh(at(t0, 10_000), BOUND, 7), "sent a whole bound ago");
        assert!(!f.is_fresh(at(t0, 5), BOUND, 7), "expired confirmations are gone for good");
    }

    #[test]
    fn an_older_applied_confirmation_keeps_the_node_fresh_while_a_newer_one_is_applied() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        f.record(Confirmation { sent: t0, index: 5 });
        f.record(Confirmation { sent: at(t0, 1_000), index: 9 });
        assert!(f.is_fresh(at(t0, 1_500), BOUND, 5), "the first one still vouches");
        assert!(!f.is_fresh(at(t0, 10_500), BOUND, 5), "the first expired, the second is not applied");
        assert!(f.is_fresh(at(t0, 10_500), BOUND, 9));
    }

    #[test]
    fn a_change_committed_before_a_question_was_sent_is_applied_whenever_the_node_is_fresh() {
        // The property a revocation relies on, over many interleavings: a change committed
        // at `commit` (so every answer to a question sent after it carries an index >= `change`)
        // is applied whenever the node is fresh later than `commit + BOUND`.
        let t0 = Instant::now();
        let change = 50;
        for commit_ms in (0..20_000).step_by(700) {
            let mut f = Freshness::default();
            let mut applied = 0;
            for step in 0..40u64 {
                let sent = at(t0, step * 1_000);
                let sent_ms = step * 1_000;
                // A node lagging behind: it applies the change only at 25 s.
                let index = if sent_ms > commit_ms { change + step } else { step };
                f.record(Confirmation { sent, index });
                applied = if sent_ms >= 25_000 { index } else { index.min(change - 1) };
                let now = at(t0, sent_ms + 400);
                if sent_ms + 400 > commit_ms + BOUND.as_millis() as u64 && f.is_fresh(now, BOUND, applied) {
                    assert!(applied >= change, "fresh at {sent_ms} ms without the change committed at {commit_ms}");
                }
            }
            assert!(applied >= change);
        }
    }

    #[test]
    fn answers_arriving_out_of_order_never_extend_freshness() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        f.record(Confirmation { sent: at(t0, 2_000), index: 3 });
        f.record(Confirmation { sent: t0, index: 1 });
        assert_eq!(f.last(), Some(Confirmation { sent: at(t0, 2_000), index: 3 }));
        assert!(!f.is_fresh(at(t0, 12_000), BOUND, 3));
    }

    #[test]
    fn memory_stays_bounded() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        for i in 0..1_000 {
            f.record(Confirmation { sent: at(t0, i), index: i });
        }
        assert!(f.confirmations.len() <= KEPT);
    }
}
