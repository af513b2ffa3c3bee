//! The replication log and fencing: committing an entry (data, log row and progress in one
//! batch), applying a primary's entries in order with fencing and divergence checks, and the
//! log's reads and truncation.

use std::collections::HashMap;

use rocksdb::{PrefixRange, ReadOptions, WriteBatch};

use super::keyspace::*;
use super::rank::Meta;
use super::{Namespace, NsContext, Store};
use crate::crypto::RecordKind;
use crate::error::{Result, StorageError};
use crate::model::*;

/// Drop a deleted (or trashed) memory from the in-memory state: meta, vector, access stats,
/// the links touching it and the entities it mentioned.
pub(super) fn forget_memory(st: &mut super::NsState, id: &str) {
    st.metas.remove(id);
    st.vectors.remove(id);
    st.access_dirty.remove(id);
    for key in st.graph.keys_of(id) {
        st.graph.remove(&key);
    }
    st.entities.remove(id);
}

/// How many bytes of replication-log entries (decrypted) one batch carries at most: the
/// entry that crosses it ends the batch.
pub const MAX_REPL_BATCH_BYTES: usize = 8 * 1024 * 1024;
impl Store {
    /// Apply `mutations` as the namespace's next sequence number (caller holds the write lock).
    pub(super) fn commit_local(&self, ns: &Namespace, ctx: &NsContext, mutations: Vec<Mutation>) -> Result<ReplEntry> {
        let (seq, fence) = {
            let st = ns.state.read();
            (st.applied_seq + 1, st.epoch)
        };
        if ctx.epoch < fence {
            // A newer primary took over (its catalogue change has not reached us yet).
            return Err(StorageError::Fenced(fence));
        }
        let entry = ReplEntry { seq, epoch: ctx.epoch, mutations, generation: ctx.generation };
        self.commit(ns, &entry)?;
        Ok(entry)
    }

    /// Write data, the replication-log entry and the progress marker in one batch, then update
    /// the in-memory state and the text index.
    pub(super) fn commit(&self, ns: &Namespace, entry: &ReplEntry) -> Result<()> {
        let ctx = &ns.ctx;
        // A vector of another dimension was made by the embedder this namespace had before a
        // re-embedding switched it (an entry from before the switch, applied after it here):
        // embed that content again with the current embedder.
        let mut refreshed: HashMap<&str, Option<Vec<f32>>> = HashMap::new();
        let older_generation = entry.generation < ns.state.read().generation;
        for m in &entry.mutations {
            if let Mutation::PutMemory { record, vector: Some(v) } = m {
                if older_generation || v.len() != ctx.dimension {
                    let fresh = self.embed(ctx, &[record.content.as_str()]).ok().and_then(|mut x| x.pop().flatten());
                    refreshed.insert(record.id.as_str(), fresh);
                }
            }
        }
        let vector_of = |record: &MemoryRecord, vector: &Option<Vec<f32>>| -> Option<Vec<f32>> {
            match refreshed.get(record.id.as_str()) {
                Some(v) => v.clone(),
                None => vector.clone(),
            }
        };
        let mut batch = WriteBatch::default();
        {
            let st = ns.state.read();
            for m in &entry.mutations {
                match m {
                    Mutation::PutMemory { record, vector } => {
                        let old_expiry = st.metas.get(&record.id).and_then(|m| m.expires_at);
                        self.put_record(&mut batch, ctx, record, old_expiry)?;
                        match &vector_of(record, vector) {
                            Some(v) => self.put_vector(&mut batch, ctx, &record.id, v),
                            None => batch.delete_cf(self.cf(CF_VEC), vec_key(ctx.id, &record.id)),
                        }
                    }
                    Mutation::StageVectors { generation, items } => {
                        for (id, version, v) in items {
                            batch.put_cf(
                                self.cf(CF_IDX),
                                row_key(ctx.id, IDX_STAGED, id),
                                ctx.key.seal(
                                    RecordKind::Vector,
                                    &staged_aad(id),
                                    &encode_staged(*generation, *version, v),
                                ),
                            );
                        }
                    }
                    Mutation::DeleteMemories { ids } => {
                        for id in ids {
                            self.delete_memory(&mut batch, ctx.id, &st, id);
                        }
                    }
                    Mutation::PutSession { session } => self.put_session(&mut batch, ctx, session)?,
                    Mutation::PutLinks { links } => {
                        for link in links {
                            self.put_link(&mut batch, ctx, link)?;
                        }
                    }
                    Mutation::DeleteLinks { keys } => {
                        for key in keys {
                            batch.delete_cf(self.cf(CF_MEM), row_key(ctx.id, KIND_LINK, &link_id(key)));
                        }
                    }
                    Mutation::PutTrash { entries } => {
                        for e in entries {
                            self.delete_memory(&mut batch, ctx.id, &st, &e.record.id);
                            self.put_sealed(&mut batch, ctx, (KIND_TRASH, RecordKind::Trash), &e.record.id, e)?;
                        }
                    }
                    Mutation::DeleteTrash { ids } => {
                        for id in ids {
                            batch.delete_cf(self.cf(CF_MEM), row_key(ctx.id, KIND_TRASH, id));
                        }
                    }
                    Mutation::PutFeedback { id, history } => {
                        self.put_sealed(&mut batch, ctx, (KIND_FEEDBACK, RecordKind::Feedback), id, history)?;
                    }
                }
            }
        }
        let sealed = ctx.key.seal(RecordKind::Replication, &entry.seq.to_be_bytes(), &encode_entry(entry)?);
        batch.put_cf(self.cf(CF_REPL), repl_key(ctx.id, entry.seq), sealed);
        let meta = NsProgress { applied_seq: entry.seq, epoch: entry.epoch };
        batch.put_cf(self.cf(CF_NSMETA), prefix(ctx.id), serde_json::to_vec(&meta)?);
        self.write(batch)?;
        let mut text_updates = Vec::new();
        let mut text_deletes = Vec::new();
        {
            let mut st = ns.state.write();
            for m in &entry.mutations {
                match m {
                    Mutation::PutMemory { record, vector } => {
                        st.last_order = st.last_order.max(record.order);
                        st.metas.insert(record.id.clone(), Meta::of(record));
                        match &vector_of(record, vector) {
                            Some(v) => st.vectors.upsert(&record.id, v),
                            None => st.vectors.remove(&record.id),
                        }
                        text_updates.push((record.id.clone(), record.version, record.content.clone()));
                    }
                    Mutation::DeleteMemories { ids } => {
                        for id in ids {
                            forget_memory(&mut st, id);
                            text_deletes.push(id.clone());
                        }
                    }
                    Mutation::PutTrash { entries } => {
                        for e in entries {
                            forget_memory(&mut st, &e.record.id);
                            text_deletes.push(e.record.id.clone());
                        }
                    }
                    Mutation::PutSession { session } => {
                        st.sessions.insert(session.id.clone(), session.clone());
                    }
                    Mutation::PutLinks { links } => {
                        for link in links {
                            st.graph.insert(link.clone());
                        }
                    }
                    Mutation::DeleteLinks { keys } => {
                        for key in keys {
                            st.graph.remove(key);
                        }
                    }
                    Mutation::StageVectors { .. } | Mutation::DeleteTrash { .. } | Mutation::PutFeedback { .. } => {}
                }
            }
            st.applied_seq = entry.seq;
            st.last_epoch = entry.epoch;
            st.epoch = st.epoch.max(entry.epoch);
        }
        // Entities are extracted off the write path (the memory mentions nothing until then).
        for (id, version, content) in &text_updates {
            self.extraction.enqueue(ctx.id, id, *version, content);
        }
        for (id, version, content) in text_updates {
            self.text.upsert(&ctx.key, &id, version, &content)?;
        }
        for id in &text_deletes {
            self.text.delete(&ctx.key, id);
        }
        if !text_deletes.is_empty() {
            // Deletions become invisible to keyword search at once.
            self.text.commit()?;
        }
        Ok(())
    }

    /// Apply entries a primary sent (`sender_epoch`: the placement epoch it is primary in) or
    /// that a new primary pulled while taking over (`None`: no fencing). Entries apply strictly
    /// in sequence order. A sender from an older epoch than this replica has seen is refused
    /// (fencing); `prev` (the sender's `(seq, epoch)` just before the first entry) and every
    /// entry this replica already holds are checked against its own log, so a replica holding
    /// a deposed primary's unacknowledged writes reports `Diverged` instead of silently
    /// skipping the new primary's writes under the same sequence numbers.
    pub fn apply_replicated(
        &self,
        ctx: &NsContext,
        sender_epoch: Option<u64>,
        prev: Option<(u64, u64)>,
        entries: &[ReplEntry],
    ) -> Result<ApplyOutcome> {
        let ns = self.namespace(ctx)?;
        let _w = ns.write_lock()?;
        let (applied, fence) = {
            let st = ns.state.read();
            (st.applied_seq, st.epoch.max(ctx.epoch))
        };
        if let Some(sender) = sender_epoch {
            if sender < fence {
                return Ok(ApplyOutcome::Fenced { epoch: fence });
            }
            let mut st = ns.state.write();
            st.epoch = st.epoch.max(sender);
        }
        if let Some((seq, epoch)) = prev.filter(|(s, _)| *s > 0 && *s <= applied) {
            if self.log_epoch_at(ctx, seq)?.is_some_and(|mine| mine != epoch) {
                return Ok(ApplyOutcome::Diverged { applied });
            }
        }
        let mut outcome = ApplyOutcome::Duplicate { applied };
        for entry in entries {
            let applied = ns.state.read().applied_seq;
            if entry.seq <= applied {
                if self.log_epoch_at(ctx, entry.seq)?.is_some_and(|mine| mine != entry.epoch) {
                    return Ok(ApplyOutcome::Diverged { applied });
                }
                outcome = ApplyOutcome::Duplicate { applied };
                continue;
            }
            if entry.seq > applied + 1 {
                return Ok(ApplyOutcome::Gap { applied });
            }
            self.commit(&ns, entry)?;
            outcome = ApplyOutcome::Applied { seq: entry.seq };
        }
        if let ApplyOutcome::Duplicate { .. } = outcome {
            outcome = ApplyOutcome::Duplicate { applied: ns.state.read().applied_seq };
        }
        Ok(outcome)
    }

    /// The epoch of the log entry with sequence `seq` (`None` once truncated away).
    pub fn log_epoch_at(&self, ctx: &NsContext, seq: u64) -> Result<Option<u64>> {
        Ok(self.repl_entries(ctx, seq, 1)?.into_iter().find(|e| e.seq == seq).map(|e| e.epoch))
    }

    /// A new primary fences this replica at `epoch`: from now on only senders of that epoch or
    /// newer are accepted, and this node's own writes as an older primary are refused.
    ///
    /// A `Fence` older than this replica's fence is refused (`Fenced` with the newer epoch):
    /// answering it would let a take-over at a stale epoch (a deposed primary whose catalogue
    /// lags) count this replica and pull a deposed term's writes back (the engine's rule;
    /// answering any fence is `Faults::legacy_stale_fence`).
    pub fn fence(&self, ctx: &NsContext, epoch: u64) -> Result<NsProgress> {
        let ns = self.namespace(ctx)?;
        let _w = ns.write_lock()?;
        let current = ns.state.read().epoch;
        if epoch < current {
            return Err(StorageError::Fenced(current));
        }
        let fence = current.max(epoch);
        // Durable before it is reported: a restart must not forget whom this replica refuses.
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_NSMETA), fence_key(ctx.id), fence.to_be_bytes());
        self.write(b)?;
        let mut st = ns.state.write();
        st.epoch = fence;
        Ok(NsProgress { applied_seq: st.applied_seq, epoch: st.last_epoch })
    }

    /// The epoch this replica is fenced at (0: never fenced).
    pub fn fence_epoch(&self, ctx: &NsContext) -> Result<u64> {
        Ok(self.namespace(ctx)?.state.read().epoch)
    }

    /// The replication progress of a namespace on this node: the last applied sequence number
    /// and the epoch that entry was written in.
    pub fn progress(&self, ctx: &NsContext) -> Result<NsProgress> {
        let ns = self.namespace(ctx)?;
        let st = ns.state.read();
        Ok(NsProgress { applied_seq: st.applied_seq, epoch: st.last_epoch })
    }

    /// Log entries with `seq >= from`, at most `limit` (empty if they were truncated away).
    /// Log entries from `from` on: at most `limit`, and no more once [`MAX_REPL_BATCH_BYTES`]
    /// of them are read (at least one): a batch for a lagging follower or a new primary stays
    /// bounded in memory and on the wire, however large single entries are.
    pub fn repl_entries(&self, ctx: &NsContext, from: u64, limit: usize) -> Result<Vec<ReplEntry>> {
        self.repl_entries_within(ctx, from, limit, MAX_REPL_BATCH_BYTES)
    }

    pub fn repl_entries_within(
        &self,
        ctx: &NsContext,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<ReplEntry>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(repl_key(ctx.id, from)..repl_key(ctx.id, u64::MAX));
        // A catch-up reads each entry once: keep it out of the block cache, which serves
        // queries (a follower far behind would otherwise fill the cache with the log).
        ro.fill_cache(false);
        for item in self.db.iterator_cf_opt(self.cf(CF_REPL), ro, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k[8..16].try_into().map_err(|_| StorageError::Encoding("repl key".into()))?);
            let pt = ctx.key.open(RecordKind::Replication, &seq.to_be_bytes(), &v)?;
            out.push(decode_entry(&pt)?);
            bytes += pt.len();
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Oldest sequence number still in the log (entries before it need a full copy).
    pub fn repl_floor(&self, ns_id: u64) -> Result<Option<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(PrefixRange(prefix(ns_id).to_vec()));
        let mut it = self.db.iterator_cf_opt(self.cf(CF_REPL), ro, rocksdb::IteratorMode::Start);
        match it.next() {
            Some(r) => {
                let (k, _) = r?;
                Ok(Some(u64::from_be_bytes(
                    k[8..16].try_into().map_err(|_| StorageError::Encoding("repl key".into()))?,
                )))
            }
            None => Ok(None),
        }
    }

    /// Drop log entries with a sequence number below `below` (never the last applied one:
    /// it anchors the divergence check of the next entry).
    pub fn truncate_repl(&self, ctx: &NsContext, below: u64) -> Result<()> {
        let applied = self.progress(ctx)?.applied_seq;
        let below = below.min(applied);
        if below > 0 && self.repl_floor(ctx.id)?.is_some_and(|f| f < below) {
            let mut b = WriteBatch::default();
            b.delete_range_cf(self.cf(CF_REPL), repl_key(ctx.id, 0), repl_key(ctx.id, below));
            self.write(b)?;
        }
        Ok(())
    }
}

/// A log entry as the log stores it (sealed afterwards): CBOR, the encoding the entries already
/// travel in between nodes (a vector's `f32`s at most 5 bytes each, was a decimal number in JSON).
pub(crate) fn encode_entry(entry: &ReplEntry) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(entry, &mut out).map_err(|e| StorageError::Encoding(format!("log entry: {e}")))?;
    Ok(out)
}

/// A stored log entry: CBOR, or JSON as entries were written before (a JSON object starts with
/// `{`; a CBOR map never does).
pub(crate) fn decode_entry(pt: &[u8]) -> Result<ReplEntry> {
    if pt.first() == Some(&b'{') {
        return Ok(serde_json::from_slice(pt)?);
    }
    ciborium::from_reader(pt).map_err(|e| StorageError::Encoding(format!("log entry: {e}")))
}

#[cfg(test)]
mod encoding_tests {
    use super::{decode_entry, encode_entry};
    use crate::model::{MemoryRecord, Mutation, ReplEntry};

    fn entry(vector: Option<Vec<f32>>) -> ReplEntry {
        let record: MemoryRecord = serde_json::from_value(serde_json::json!({
            "id": "m1", "namespace": "ns", "agent_id": "a", "content": "hello", "memory_type": "episodic",
            "importance": 0.5, "tags": [], "metadata": {"k": [1, 2.5]}, "session_id": null, "created_at": 1,
            "updated_at": 1, "last_accessed_at": 1, "access_count": 0, "expires_at": null, "version": 1
        }))
        .expect("record");
        ReplEntry {
            seq: 7,
            epoch: 2,
            generation: 1,
            mutations: vec![
                Mutation::PutMemory { record, vector },
                Mutation::StageVectors {
                    generation: 2,
                    items: vec![("m1".into(), 1, vec![0.25, -1.5, f32::MIN_POSITIVE])],
                },
            ],
        }
    }

    #[test]
    fn entries_round_trip_bit_for_bit_and_json_entries_written_before_still_read() {
        for vector in [None, Some(vec![]), Some(vec![0.1, -0.0, 3.5e-20, f32::MAX, 1.0 / 3.0])] {
            let e = entry(vector);
            assert_eq!(decode_entry(&encode_entry(&e).expect("encode")).expect("decode"), e);
            assert_eq!(decode_entry(&serde_json::to_vec(&e).expect("json")).expect("old form"), e);
        }
    }

    #[test]
    fn a_vector_costs_at_most_five_bytes_a_dimension() {
        let small = encode_entry(&entry(Some(vec![0.0; 1]))).expect("encode");
        let big = encode_entry(&entry(Some(vec![0.123_456_79; 1025]))).expect("encode");
        let per_dimension = (big.len() - small.len()) as f64 / 1024.0;
        // 5 bytes a float, plus a longer array header.
        assert!(per_dimension <= 5.01, "{per_dimension} bytes a dimension");
        let json = serde_json::to_vec(&entry(Some(vec![0.123_456_79; 1025]))).expect("json");
        assert!(json.len() > big.len() * 2, "JSON {} bytes, CBOR {}", json.len(), big.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"{", b"\xa4", &[0xff; 64]] {
            assert!(decode_entry(bad).is_err());
        }
    }
}
