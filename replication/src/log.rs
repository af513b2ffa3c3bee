//! The engine's index of the local replication log: which sequence numbers it still holds and
//! the epoch of each, kept as runs of equal epochs (epochs change rarely, so a log of 50,000
//! entries is a handful of runs). The payloads stay in the runtime's store.

use serde::{Deserialize, Serialize};

use crate::{Epoch, LogId, Seq};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogIds {
    /// The last applied entry (`seq` 0: nothing applied). Never truncated away while the log
    /// holds anything: it anchors the divergence check of the next entry.
    last: LogId,
    /// The lowest sequence still held (`last.seq + 1` when the log holds nothing).
    floor: Seq,
    /// `(first seq, epoch)` of each run of equal epochs in `floor..=last.seq`, ascending.
    runs: Vec<(Seq, Epoch)>,
}

impl LogIds {
    /// An empty log (nothing applied).
    pub fn new() -> Self {
        LogIds { last: LogId::default(), floor: 1, runs: Vec::new() }
    }

    /// A log known only by its last entry (a restart or a copy whose earlier entries were
    /// truncated): it holds exactly that entry.
    pub fn from_last(last: LogId) -> Self {
        if last.seq == 0 {
            return Self::new();
        }
        LogIds { last, floor: last.seq, runs: vec![(last.seq, last.epoch)] }
    }

    /// A log from consecutive entry ids (as stored; ascending, without gaps).
    pub fn from_ids(ids: &[LogId]) -> Self {
        let mut log = match ids.first() {
            Some(first) => LogIds { last: LogId::new(0, first.seq - 1), floor: first.seq, runs: Vec::new() },
            None => return Self::new(),
        };
        for id in ids {
            log.append(*id);
        }
        log
    }

    pub fn last(&self) -> LogId {
        self.last
    }

    /// The lowest sequence held (entries below it were truncated).
    pub fn floor(&self) -> Seq {
        self.floor
    }

    /// The epoch of the entry at `seq`, if the log still holds it.
    pub fn epoch_at(&self, seq: Seq) -> Option<Epoch> {
        if seq == 0 || seq < self.floor || seq > self.last.seq {
            return None;
        }
        let i = self.runs.partition_point(|(start, _)| *start <= seq);
        self.runs.get(i.checked_sub(1)?).map(|(_, e)| *e)
    }

    /// The id of the entry at `seq`, if held.
    pub fn id_at(&self, seq: Seq) -> Option<LogId> {
        self.epoch_at(seq).map(|epoch| LogId { epoch, seq })
    }

    /// Up to `limit` ids from `from` on (fewer, or none, where the log ends or was truncated).
    pub fn ids_from(&self, from: Seq, limit: usize) -> Vec<LogId> {
        let from = from.max(self.floor).max(1);
        (from..=self.last.seq).take(limit).filter_map(|s| self.id_at(s)).collect()
    }

    /// Append the next entry. `id.seq` must be `last.seq + 1` (the caller checks).
    pub fn append(&mut self, id: LogId) {
        debug_assert_eq!(id.seq, self.last.seq + 1, "log entries are appended in order");
        if self.runs.last().is_none_or(|(_, e)| *e != id.epoch) {
            self.runs.push((id.seq, id.epoch));
        }
        self.last = id;
    }

    /// Drop entries below `below`, never the last one.
    pub fn truncate_below(&mut self, below: Seq) {
        let below = below.min(self.last.seq);
        if below <= self.floor {
            return;
        }
        self.floor = below;
        // Keep the run containing `below`, starting it there.
        let i = self.runs.partition_point(|(start, _)| *start <= below);
        if i > 0 {
            let epoch = self.runs[i - 1].1;
            self.runs.drain(..i);
            self.runs.insert(0, (below, epoch));
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> u64 {
        (self.last.seq + 1).saturating_sub(self.floor)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_looked_up_by_runs() {
        let mut log = LogIds::new();
        for (e, s) in [(1, 1), (1, 2), (2, 3), (2, 4), (4, 5)] {
            log.append(LogId::new(e, s));
        }
        assert_eq!(log.epoch_at(0), None);
        assert_eq!(log.epoch_at(2), Some(1));
        assert_eq!(log.epoch_at(4), Some(2));
        assert_eq!(log.epoch_at(5), Some(4));
        assert_eq!(log.epoch_at(6), None);
        assert_eq!(log.ids_from(4, 10), vec![LogId::new(2, 4), LogId::new(4, 5)]);
    }

    #[test]
    fn truncation_keeps_the_last_entry() {
        let ids: Vec<LogId> = (1..=6).map(|s| LogId::new(if s < 4 { 1 } else { 3 }, s)).collect();
        let mut log = LogIds::from_ids(&ids);
        log.truncate_below(3);
        assert_eq!((log.floor(), log.epoch_at(2), log.epoch_at(3), log.epoch_at(4)), (3, None, Some(1), Some(3)));
        log.truncate_below(100);
        assert_eq!((log.floor(), log.len(), log.epoch_at(6)), (6, 1, Some(3)));
        assert_eq!(log.last(), LogId::new(3, 6));
        log.append(LogId::new(3, 7));
        assert_eq!(log.ids_from(1, 5), vec![LogId::new(3, 6), LogId::new(3, 7)]);
    }

    #[test]
    fn a_log_from_its_last_entry_holds_that_entry() {
        let log = LogIds::from_last(LogId::new(2, 9));
        assert_eq!((log.floor(), log.epoch_at(9), log.epoch_at(8)), (9, Some(2), None));
        assert!(LogIds::from_last(LogId::default()).is_empty());
    }
}
