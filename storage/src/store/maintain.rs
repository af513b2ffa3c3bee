//! Memory maintenance on the store, without a model: near-duplicate detection and the trash it
//! moves duplicates to (listed, restored, purged after its retention), consolidation of similar
//! memories into one with provenance, feedback on importance, and decay statistics. Each write
//! is one replicated entry, so a replica converges to the primary's decision.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::keyspace::*;
use super::rank::Meta;
use super::{Namespace, NsContext, Store};
use crate::crypto::RecordKind;
use crate::error::{Result, StorageError};
use crate::model::*;

/// Content a consolidated memory may hold at most (the API's limit on one memory's content).
pub const MAX_CONSOLIDATED_BYTES: usize = 100_000;
/// Neighbours each memory is compared with when looking for duplicates.
const DUP_NEIGHBOURS: usize = 8;
/// Tags a consolidated memory keeps at most.
const MAX_MERGED_TAGS: usize = 64;

/// Lower-cased words of a text (letters and digits), as a set.
pub(crate) fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Jaccard overlap of two word sets (1 for two empty texts).
pub(crate) fn overlap(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f32 / union as f32
}

/// Group `pairs` (index, index, similarity) into connected components of at least two members,
/// each with its mean pair similarity; members in index order.
pub(crate) fn components(n: usize, pairs: &[(usize, usize, f32)]) -> Vec<(Vec<usize>, f32)> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        let mut x = x;
        while p[x] != r {
            let next = p[x];
            p[x] = r;
            x = next;
        }
        r
    }
    for &(a, b, _) in pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut groups: BTreeMap<usize, (Vec<usize>, f32, usize)> = BTreeMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().0.push(i);
    }
    for &(a, _, s) in pairs {
        let r = find(&mut parent, a);
        if let Some(g) = groups.get_mut(&r) {
            g.1 += s;
            g.2 += 1;
        }
    }
    groups.into_values().filter(|g| g.0.len() > 1).map(|(m, sum, k)| (m, sum / k.max(1) as f32)).collect()
}

/// The survivor of a group: the most important, then the oldest, then the smallest id.
fn canonical<'a>(members: &[(&'a String, &'a Meta)]) -> &'a String {
    members
        .iter()
        .min_by(|a, b| {
            b.1.importance
                .total_cmp(&a.1.importance)
                .then_with(|| a.1.created_at.cmp(&b.1.created_at))
                .then_with(|| a.0.cmp(b.0))
        })
        .map(|(id, _)| *id)
        .unwrap_or_else(|| members[0].0)
}

impl Store {
    /// Near-duplicate groups among the newest `max_scan` candidates: pairs at least `threshold`
    /// alike (cosine) whose word overlap is at least `min_text_overlap`.
    fn duplicate_groups(
        &self,
        ns: &Namespace,
        candidates: &[(String, Meta)],
        threshold: f32,
        min_text_overlap: f32,
        same_session_only: bool,
    ) -> Result<Vec<(Vec<usize>, f32)>> {
        let index: HashMap<&str, usize> = candidates.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
        let mut pairs = Vec::new();
        {
            let st = ns.state.read();
            for (i, (id, meta)) in candidates.iter().enumerate() {
                let Some(v) = st.vectors.get(id) else { continue };
                let accept = |other: &str| index.get(other).is_some_and(|j| *j > i);
                for (other, score) in st.vectors.search(&v, DUP_NEIGHBOURS, &accept) {
                    if score < threshold {
                        continue;
                    }
                    let j = index[other.as_str()];
                    // Two agents' memories are never duplicates of each other.
                    if meta.agent_id != candidates[j].1.agent_id
                        || (same_session_only && meta.session_id != candidates[j].1.session_id)
                    {
                        continue;
                    }
                    pairs.push((i, j, score));
                }
            }
        }
        if min_text_overlap > 0.0 && !pairs.is_empty() {
            let mut words: HashMap<usize, HashSet<String>> = HashMap::new();
            for &(a, b, _) in &pairs {
                for k in [a, b] {
                    if let std::collections::hash_map::Entry::Vacant(e) = words.entry(k) {
                        let content =
                            self.read_record(&ns.ctx, &candidates[k].0)?.map(|r| r.content).unwrap_or_default();
                        e.insert(word_set(&content));
                    }
                }
            }
            pairs.retain(|(a, b, _)| overlap(&words[a], &words[b]) >= min_text_overlap);
        }
        Ok(components(candidates.len(), &pairs))
    }

    fn candidates(
        &self,
        ns: &Namespace,
        agent: Option<&str>,
        memory_type: Option<MemoryType>,
        max_scan: usize,
        now: u64,
    ) -> Vec<(String, Meta)> {
        let st = ns.state.read();
        let mut c: Vec<(String, Meta)> = st
            .metas
            .iter()
            .filter(|(_, m)| m.live(now) && agent.is_none_or(|a| a == m.agent_id))
            .filter(|(_, m)| memory_type.is_none_or(|t| t == m.memory_type))
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        c.sort_by(|a, b| b.1.order.cmp(&a.1.order).then_with(|| a.0.cmp(&b.0)));
        c.truncate(max_scan);
        c
    }

    fn trash_entry(
        &self,
        ns: &Namespace,
        id: &str,
        kind: TrashKind,
        survivor: &str,
        now: u64,
        retention: u64,
    ) -> Result<Option<TrashEntry>> {
        let Some(record) = self.full_record(ns, id)? else { return Ok(None) };
        let vector = self.read_vector(&ns.ctx, id)?;
        Ok(Some(TrashEntry {
            record,
            vector,
            kind,
            survivor_id: survivor.to_string(),
            deleted_at: now,
            restorable_until: now.saturating_add(retention),
        }))
    }
}

/// What a deduplication's scan found: the candidates, and groups of their indexes with the
/// group's mean similarity.
pub(super) struct DedupScan {
    candidates: Vec<(String, Meta)>,
    groups: Vec<(Vec<usize>, f32)>,
}

impl Store {
    /// `DataOp::Deduplicate`. The scan (vector neighbours, word overlap) runs without the
    /// namespace's write lock, so writers are not held up by it; the moves are then made under
    /// the lock, of the groups whose members are all still at the version scanned.
    pub(super) fn deduplicate(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        p: DedupParams,
        now: u64,
    ) -> Result<(DedupReport, Option<ReplEntry>)> {
        let scan = self.dedup_scan(ns, &p, now)?;
        self.dedup_apply(ns, ctx, &p, scan, now)
    }

    /// The candidates of a deduplication and their near-duplicate groups (no lock held).
    pub(super) fn dedup_scan(&self, ns: &Namespace, p: &DedupParams, now: u64) -> Result<DedupScan> {
        let candidates = self.candidates(ns, p.agent.as_deref(), p.memory_type, p.max_scan, now);
        let groups = self.duplicate_groups(ns, &candidates, p.threshold, p.min_text_overlap, p.same_session_only)?;
        Ok(DedupScan { candidates, groups })
    }

    /// Move the scanned groups' duplicates to the trash (none on a dry run), skipping a group a
    /// writer changed since the scan.
    pub(super) fn dedup_apply(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        p: &DedupParams,
        DedupScan { candidates, groups }: DedupScan,
        now: u64,
    ) -> Result<(DedupReport, Option<ReplEntry>)> {
        let mut report = DedupReport { scanned: candidates.len() as u64, ..Default::default() };
        let _w = if p.dry_run { None } else { Some(ns.write_lock()?) };
        let unchanged = |members: &[usize]| {
            let st = ns.state.read();
            members.iter().all(|i| {
                let (id, scanned) = &candidates[*i];
                st.metas.get(id).is_some_and(|m| m.version == scanned.version && m.live(now))
            })
        };
        let mut mutations = Vec::new();
        let mut trash = Vec::new();
        for (members, avg) in groups {
            if !p.dry_run && !unchanged(&members) {
                report.skipped_changed += 1;
                continue;
            }
            let refs: Vec<(&String, &Meta)> = members.iter().map(|i| (&candidates[*i].0, &candidates[*i].1)).collect();
            let survivor = canonical(&refs).clone();
            let duplicate_ids: Vec<String> =
                refs.iter().map(|(id, _)| (*id).clone()).filter(|id| *id != survivor).collect();
            if !p.dry_run {
                // The survivor keeps the group's highest importance.
                let top = refs.iter().map(|(_, m)| m.importance).fold(0.0f64, f64::max);
                if let Some(mut rec) = self.full_record(ns, &survivor)?.filter(|r| r.importance < top) {
                    rec.importance = top;
                    rec.updated_at = now;
                    rec.version += 1;
                    let vector = self.read_vector(ctx, &survivor)?;
                    mutations.push(Mutation::PutMemory { record: rec, vector });
                }
                for id in &duplicate_ids {
                    if let Some(e) =
                        self.trash_entry(ns, id, TrashKind::Deduplication, &survivor, now, p.retention_secs)?
                    {
                        trash.push(e);
                    }
                }
            }
            report.groups.push(DupGroup { canonical_id: survivor, duplicate_ids, avg_similarity: avg });
        }
        report.moved = trash.len() as u64;
        if trash.is_empty() {
            return Ok((report, None));
        }
        mutations.push(Mutation::PutTrash { entries: trash });
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((report, Some(entry)))
    }

    /// `DataOp::Consolidate`.
    pub(super) fn consolidate(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        p: ConsolidateParams,
        now: u64,
    ) -> Result<(Consolidated, Option<ReplEntry>)> {
        let _w = ns.write_lock()?;
        if ns.state.read().metas.contains_key(&p.new_id) {
            // A retry of a consolidation that was done.
            let memory = self.full_record(ns, &p.new_id)?;
            let source_ids = memory
                .as_ref()
                .and_then(|m| m.metadata.as_ref())
                .and_then(|m| m.get("_loci_consolidated_from"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            return Ok((Consolidated { memory, source_ids }, None));
        }
        let ids: Vec<String> = match p.ids {
            Some(ids) => {
                let st = ns.state.read();
                for id in &ids {
                    if !st.metas.get(id).is_some_and(|m| m.live(now) && m.agent_id == p.agent) {
                        return Err(StorageError::NotFound(format!("memory {id}")));
                    }
                }
                let mut ids = ids;
                ids.sort();
                ids.dedup();
                if ids.len() < 2 {
                    return Err(StorageError::Invalid("consolidation needs at least 2 distinct memories".into()));
                }
                ids
            }
            None => {
                let candidates = self.candidates(ns, Some(&p.agent), None, p.max_scan, now);
                let groups = self.duplicate_groups(ns, &candidates, p.threshold, 0.0, p.same_session_only)?;
                let best =
                    groups.into_iter().max_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.1.total_cmp(&b.1)));
                match best {
                    Some((members, _)) => members.into_iter().map(|i| candidates[i].0.clone()).collect(),
                    None => return Ok((Consolidated { memory: None, source_ids: Vec::new() }, None)),
                }
            }
        };
        let mut sources = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(r) = self.full_record(ns, id)? {
                sources.push(r);
            }
        }
        sources.sort_by(|a, b| {
            a.created_at.cmp(&b.created_at).then_with(|| a.order.cmp(&b.order)).then_with(|| a.id.cmp(&b.id))
        });
        let mut seen = HashSet::new();
        let parts: Vec<&str> =
            sources.iter().map(|r| r.content.trim()).filter(|c| seen.insert(c.to_lowercase())).collect();
        let content = parts.join("\n");
        if content.len() > MAX_CONSOLIDATED_BYTES {
            return Err(StorageError::Invalid(format!(
                "the merged content would be {} bytes, above the {MAX_CONSOLIDATED_BYTES}-byte limit of one memory",
                content.len()
            )));
        }
        let mut tags: Vec<String> = Vec::new();
        for t in sources.iter().flat_map(|r| r.tags.iter()) {
            if !tags.contains(t) && tags.len() < MAX_MERGED_TAGS {
                tags.push(t.clone());
            }
        }
        let memory_type = p.target_type.unwrap_or_else(|| {
            let mut counts: BTreeMap<MemoryType, usize> = BTreeMap::new();
            for r in &sources {
                *counts.entry(r.memory_type).or_default() += 1;
            }
            counts
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map_or(MemoryType::Semantic, |(t, _)| t)
        });
        let source_ids: Vec<String> = sources.iter().map(|r| r.id.clone()).collect();
        let vector = match p.embedding {
            Some(v) => {
                super::check_vector(&v, ctx.dimension)?;
                Some(v)
            }
            None => self.embed(ctx, &[content.as_str()])?.pop().flatten(),
        };
        let order = {
            let st = ns.state.read();
            (st.last_order + 1).max(now_micros())
        };
        let record = MemoryRecord {
            id: p.new_id.clone(),
            namespace: ctx.name.clone(),
            agent_id: p.agent.clone(),
            content,
            memory_type,
            importance: sources.iter().map(|r| r.importance).fold(0.0, f64::max),
            tags,
            metadata: Some(serde_json::json!({
                "_loci_consolidated_from": source_ids,
                "_loci_consolidated_at": now,
            })),
            session_id: None,
            created_at: now,
            updated_at: now,
            last_accessed_at: now,
            access_count: 0,
            expires_at: None,
            version: 1,
            order,
        };
        let mut entries = Vec::with_capacity(source_ids.len());
        for id in &source_ids {
            if let Some(e) = self.trash_entry(ns, id, TrashKind::Consolidation, &p.new_id, now, p.retention_secs)? {
                entries.push(e);
            }
        }
        let mutations = vec![Mutation::PutMemory { record: record.clone(), vector }, Mutation::PutTrash { entries }];
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((Consolidated { memory: Some(record), source_ids }, Some(entry)))
    }

    fn trash_rows(&self, ctx: &NsContext) -> Result<Vec<TrashEntry>> {
        let mut p = prefix(ctx.id).to_vec();
        p.push(KIND_TRASH);
        let mut out = Vec::new();
        for item in self.scan_prefix(CF_MEM, &p) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            out.push(serde_json::from_slice(&ctx.key.open(RecordKind::Trash, id.as_bytes(), &v)?)?);
        }
        Ok(out)
    }

    /// `DataOp::ListTrash`: newest first.
    pub(super) fn list_trash(&self, ctx: &NsContext, agent: Option<&str>, limit: usize) -> Result<Vec<TrashEntry>> {
        let mut rows: Vec<TrashEntry> =
            self.trash_rows(ctx)?.into_iter().filter(|e| agent.is_none_or(|a| a == e.record.agent_id)).collect();
        rows.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then_with(|| a.record.id.cmp(&b.record.id)));
        rows.truncate(limit);
        Ok(rows)
    }

    /// `DataOp::RestoreTrash`: the memory, live again (with its vector; its links are not
    /// restored).
    pub(super) fn restore_trash(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        id: &str,
        agent: Option<&str>,
        now: u64,
    ) -> Result<(MemoryRecord, ReplEntry)> {
        let _w = ns.write_lock()?;
        let entry: TrashEntry = self
            .read_sealed(ctx, (KIND_TRASH, RecordKind::Trash), id)?
            .filter(|e: &TrashEntry| agent.is_none_or(|a| a == e.record.agent_id))
            .ok_or_else(|| StorageError::NotFound(format!("deduplicated memory {id}")))?;
        if entry.restorable_until < now {
            return Err(StorageError::NotFound(format!("deduplicated memory {id} (its restore window has ended)")));
        }
        if ns.state.read().metas.contains_key(id) {
            return Err(StorageError::Conflict(format!("a live memory {id} exists")));
        }
        let mut record = entry.record;
        record.version += 1;
        record.updated_at = now;
        record.order = (ns.state.read().last_order + 1).max(record.order);
        let mutations = vec![
            Mutation::PutMemory { record: record.clone(), vector: entry.vector },
            Mutation::DeleteTrash { ids: vec![id.to_string()] },
        ];
        let e = self.commit_local(ns, ctx, mutations)?;
        Ok((record, e))
    }

    /// Trashed memories that pass `filter` (a forget by filter forgets them too: a deleted
    /// memory leaves no restorable copy).
    pub(super) fn trash_matching(&self, ctx: &NsContext, filter: &MemoryFilter, now: u64) -> Result<Vec<String>> {
        Ok(self
            .trash_rows(ctx)?
            .into_iter()
            .filter(|e| Meta::of(&e.record).matches(&e.record.id, filter, now))
            .map(|e| e.record.id)
            .collect())
    }

    /// `DataOp::PurgeTrash`.
    pub(super) fn purge_trash(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        now: u64,
        limit: usize,
    ) -> Result<(u64, Option<ReplEntry>)> {
        let _w = ns.write_lock()?;
        let ids: Vec<String> = self
            .trash_rows(ctx)?
            .into_iter()
            // Past its retention, or past the memory's own expiry.
            .filter(|e| e.restorable_until < now || e.record.is_expired(now))
            .take(limit)
            .map(|e| e.record.id)
            .collect();
        if ids.is_empty() {
            return Ok((0, None));
        }
        let n = ids.len() as u64;
        Ok((n, Some(self.commit_local(ns, ctx, vec![Mutation::DeleteTrash { ids }])?)))
    }

    /// `DataOp::Feedback`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn feedback(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        id: &str,
        agent: Option<&str>,
        signal: String,
        delta: f64,
        now: u64,
    ) -> Result<(MemoryRecord, f64, ReplEntry)> {
        let _w = ns.write_lock()?;
        let mut rec = self.get_live(ns, id, now)?;
        if agent.is_some_and(|a| a != rec.agent_id) {
            return Err(StorageError::NotFound(format!("memory {id}")));
        }
        let old = rec.importance;
        rec.importance = (old + delta).clamp(0.0, 1.0);
        rec.updated_at = now;
        rec.version += 1;
        let mut history: Vec<FeedbackEntry> =
            self.read_sealed(ctx, (KIND_FEEDBACK, RecordKind::Feedback), id)?.unwrap_or_default();
        history.push(FeedbackEntry { signal, timestamp: now, old_importance: old, new_importance: rec.importance });
        if history.len() > MAX_FEEDBACK_HISTORY {
            history.drain(..history.len() - MAX_FEEDBACK_HISTORY);
        }
        let vector = self.read_vector(ctx, id)?;
        let mutations = vec![
            Mutation::PutMemory { record: rec.clone(), vector },
            Mutation::PutFeedback { id: id.to_string(), history },
        ];
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((rec, old, entry))
    }

    /// `DataOp::FeedbackHistory`.
    pub(super) fn feedback_history(
        &self,
        ns: &Namespace,
        id: &str,
        agent: Option<&str>,
        now: u64,
    ) -> Result<Vec<FeedbackEntry>> {
        let rec = self.get_live(ns, id, now)?;
        if agent.is_some_and(|a| a != rec.agent_id) {
            return Err(StorageError::NotFound(format!("memory {id}")));
        }
        Ok(self.read_sealed(&ns.ctx, (KIND_FEEDBACK, RecordKind::Feedback), id)?.unwrap_or_default())
    }

    /// `DataOp::FeedbackSummary`.
    pub(super) fn feedback_summary(&self, ns: &Namespace, agent: &str, now: u64) -> Result<FeedbackSummary> {
        let mut s = FeedbackSummary::default();
        let owned: HashSet<String> = {
            let st = ns.state.read();
            let mine: Vec<(&String, &Meta)> =
                st.metas.iter().filter(|(_, m)| m.live(now) && m.agent_id == agent).collect();
            s.memory_count = mine.len() as u64;
            if !mine.is_empty() {
                s.avg_importance = mine.iter().map(|(_, m)| m.importance).sum::<f64>() / mine.len() as f64;
            }
            mine.into_iter().map(|(id, _)| id.clone()).collect()
        };
        let mut p = prefix(ns.ctx.id).to_vec();
        p.push(KIND_FEEDBACK);
        for item in self.scan_prefix(CF_MEM, &p) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[9..]).into_owned();
            if !owned.contains(&id) {
                continue;
            }
            let history: Vec<FeedbackEntry> =
                serde_json::from_slice(&ns.ctx.key.open(RecordKind::Feedback, id.as_bytes(), &v)?)?;
            for e in history {
                match e.signal.as_str() {
                    "upvote" => s.upvotes += 1,
                    "downvote" => s.downvotes += 1,
                    _ => s.flags += 1,
                }
            }
        }
        Ok(s)
    }

    /// `DataOp::DecayStats`.
    pub(super) fn decay_stats(&self, ns: &Namespace, decay: &DecayConfig, agent: Option<&str>, now: u64) -> DecayStats {
        let st = ns.state.read();
        let mut s = DecayStats::default();
        let (mut sum, mut sum_eff) = (0.0, 0.0);
        for m in st.metas.values().filter(|m| m.live(now) && agent.is_none_or(|a| a == m.agent_id)) {
            let eff = decay.effective(m.importance, m.last_accessed_at.max(m.created_at), m.access_count, now);
            s.memories += 1;
            if eff + 1e-9 < m.importance {
                s.decayed += 1;
            }
            sum += m.importance;
            sum_eff += eff;
        }
        if s.memories > 0 {
            s.avg_importance = sum / s.memories as f64;
            s.avg_effective_importance = sum_eff / s.memories as f64;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_join_transitively_and_drop_singletons() {
        let groups = components(6, &[(0, 1, 0.9), (1, 2, 0.95), (4, 5, 1.0)]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, vec![0, 1, 2]);
        assert!((groups[0].1 - 0.925).abs() < 1e-6);
        assert_eq!(groups[1].0, vec![4, 5]);
    }

    #[test]
    fn overlap_is_jaccard_over_lower_cased_words() {
        let a = word_set("The cat sat.");
        let b = word_set("the CAT stood");
        assert!((overlap(&a, &b) - 0.5).abs() < 1e-6);
        assert_eq!(overlap(&word_set(""), &word_set("")), 1.0);
    }
}
