//! When the catalogue is snapshotted: the decision, without IO.
//!
//! A snapshot is the whole catalogue (every namespace, key and policy), so its cost grows with
//! the catalogue. Taken every fixed number of log entries (openraft's `LogsSinceLast`), a node
//! holding 50,000 namespaces would serialise the whole catalogue every 500 creations: quadratic
//! work, and stalls of the state machine. Instead a snapshot is due once the log behind the
//! last one holds at least half as many entries as the catalogue holds records (and at least
//! the configured minimum). A catalogue that grows by one record per entry (namespaces being
//! created) is then snapshotted at about 2×, 4×, 8×… the minimum: all its snapshots together
//! serialise about twice its final size, and the log a restart replays stays within half the
//! catalogue's size. (Half, not the whole size: with a catalogue growing as fast as its log, the
//! log since the last snapshot would never catch up with it.)

/// Whether a snapshot is due: `applied` is the last applied log index, `snapshot` the index of
/// the last snapshot (None: never), `records` the catalogue's size in records, `min_logs` the
/// configured minimum interval.
pub fn snapshot_due(applied: u64, snapshot: Option<u64>, records: usize, min_logs: u64) -> bool {
    let since = applied.saturating_sub(snapshot.unwrap_or(0));
    since >= min_logs.max(1).max(records as u64 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_catalogue_snapshots_every_min_logs_entries() {
        assert!(!snapshot_due(499, None, 10, 500));
        assert!(snapshot_due(500, None, 10, 500));
        assert!(!snapshot_due(999, Some(500), 10, 500));
        assert!(snapshot_due(1000, Some(500), 10, 500));
    }

    #[test]
    fn a_large_catalogue_waits_half_as_many_entries_as_it_holds_records() {
        // 50,000 namespaces: not after 500 entries, but after 25,000.
        assert!(!snapshot_due(10_500, Some(10_000), 50_000, 500));
        assert!(!snapshot_due(34_999, Some(10_000), 50_000, 500));
        assert!(snapshot_due(35_000, Some(10_000), 50_000, 500));
    }

    #[test]
    fn the_work_per_entry_stays_constant_as_the_catalogue_grows() {
        // Create n namespaces one entry each, snapshotting when due: the records serialised
        // over all snapshots stay within a small multiple of n (not n² / 500).
        let n = 50_000u64;
        let (mut snap, mut serialised, mut taken) = (None, 0u64, 0);
        for applied in 1..=n {
            // Every entry adds a record (two entries of the group's own come first).
            let records = applied.saturating_sub(2) as usize;
            if snapshot_due(applied, snap, records, 500) {
                serialised += records as u64;
                snap = Some(applied);
                taken += 1;
            }
            // The log behind the last snapshot never outgrows half the catalogue (or the minimum).
            let behind = applied - snap.unwrap_or(0);
            assert!(behind <= (records as u64 / 2).max(500), "{behind} entries behind at {applied}");
        }
        assert!(taken >= 6, "{taken} snapshots");
        assert!(serialised <= 3 * n, "{serialised} records serialised for {n} entries");
        let fixed: u64 = (1..=n).filter(|a| a % 500 == 0).sum();
        assert!(fixed > 30 * serialised, "the fixed policy would serialise {fixed}");
    }

    #[test]
    fn a_zero_minimum_is_one() {
        assert!(!snapshot_due(0, None, 0, 0));
        assert!(snapshot_due(1, None, 0, 0));
    }
}
