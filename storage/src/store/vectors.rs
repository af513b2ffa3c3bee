//! The operations of the vector and document routes: nearest-neighbour queries with raw
//! similarity scores, export pages, counts, and bounded deletes and metadata updates by filter.
//! A vector or a document is a memory record like any other (a raw vector has empty content), so
//! it is sealed, replicated, indexed and erased with the namespace like every memory.

use std::collections::HashSet;

use super::{Namespace, NsContext, Store, check_vector};
use crate::error::{Result, StorageError};
use crate::model::*;

impl Store {
    /// The query vector of `q` (given, or its text embedded); None: nothing to search with.
    fn query_vector(&self, ctx: &NsContext, q: &VectorQuery) -> Result<Option<Vec<f32>>> {
        match (&q.vector, &q.text) {
            (Some(v), _) => {
                check_vector(v, ctx.dimension)?;
                Ok(Some(v.clone()))
            }
            (None, Some(t)) if !t.trim().is_empty() => Ok(self.embed(ctx, &[t.as_str()])?.pop().flatten()),
            _ => Ok(None),
        }
    }

    /// The best `q.top_k` (id, score) pairs that pass the filter, best first: what a query
    /// answers before any record is read.
    pub(super) fn vector_scores(&self, ns: &Namespace, q: &VectorQuery, now: u64) -> Result<Vec<(String, f32)>> {
        if q.top_k == 0 {
            return Ok(Vec::new());
        }
        let Some(query) = self.query_vector(&ns.ctx, q)? else {
            return Ok(Vec::new());
        };
        let st = ns.state.read();
        let mut hits =
            st.vectors.search(&query, q.top_k, &|id| st.metas.get(id).is_some_and(|m| m.matches(id, &q.filter, now)));
        hits.truncate(q.top_k);
        Ok(hits)
    }

    pub(super) fn vector_query(&self, ns: &Namespace, q: VectorQuery, now: u64) -> Result<Vec<VectorHit>> {
        let ctx = &ns.ctx;
        let hits = self.vector_scores(ns, &q, now)?;
        let mut out = Vec::with_capacity(hits.len());
        let mut bytes = 0usize;
        for (id, score) in hits {
            if bytes >= self.config.max_answer_bytes {
                break;
            }
            if let Some(record) = self.full_record(ns, &id)? {
                let vector = if q.include_vectors { self.read_vector(ctx, &id)? } else { None };
                bytes += record.content.len() + vector.as_ref().map_or(0, |v| 4 * v.len());
                out.push(VectorHit { record, score, vector });
            }
        }
        Ok(out)
    }

    /// Live records that pass the filter, in id order after `after`: at most `limit`, and at
    /// most the answer bound. `total` counts every record that passes the filter.
    pub(super) fn export_page(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: usize,
        include_vectors: bool,
        filter: &MemoryFilter,
        now: u64,
    ) -> Result<(Vec<VectorHit>, u64, bool)> {
        let (mut ids, total) = {
            let st = ns.state.read();
            let live: Vec<&String> =
                st.metas.iter().filter(|(id, m)| m.matches(id, filter, now)).map(|(id, _)| id).collect();
            let total = live.len() as u64;
            (live.into_iter().filter(|id| after.is_none_or(|a| id.as_str() > a)).cloned().collect::<Vec<_>>(), total)
        };
        ids.sort();
        let limit = limit.max(1);
        let mut items = Vec::with_capacity(limit.min(ids.len()));
        let mut bytes = 0usize;
        let mut taken = 0usize;
        for id in &ids {
            if items.len() >= limit || bytes >= self.config.max_answer_bytes {
                break;
            }
            taken += 1;
            if let Some(record) = self.full_record(ns, id)? {
                let vector = if include_vectors { self.read_vector(&ns.ctx, id)? } else { None };
                bytes += record.content.len() + vector.as_ref().map_or(0, |v| 4 * v.len());
                items.push(VectorHit { record, score: 0.0, vector });
            }
        }
        Ok((items, total, taken < ids.len()))
    }

    pub(super) fn count(&self, ns: &Namespace, filter: &MemoryFilter, now: u64) -> u64 {
        let st = ns.state.read();
        st.metas.iter().filter(|(id, m)| m.matches(id, filter, now)).count() as u64
    }

    /// The first `limit` ids (in id order) of the records that pass the filter.
    fn matching(&self, ns: &Namespace, filter: &MemoryFilter, limit: usize, now: u64) -> Vec<String> {
        let mut ids = self.select(ns, filter, now);
        ids.sort();
        ids.truncate(limit);
        ids
    }

    /// Under the caller's write lock.
    pub(super) fn delete_matching(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        filter: &MemoryFilter,
        limit: usize,
        now: u64,
    ) -> Result<(u64, Option<ReplEntry>)> {
        let _w = ns.write_lock()?;
        let ids = self.matching(ns, filter, limit, now);
        let trashed = self.trash_matching(ctx, filter, now)?;
        if ids.is_empty() && trashed.is_empty() {
            return Ok((0, None));
        }
        let n = ids.len() as u64;
        let mut mutations = Vec::new();
        if !ids.is_empty() {
            mutations.push(Mutation::DeleteMemories { ids });
        }
        if !trashed.is_empty() {
            mutations.push(Mutation::DeleteTrash { ids: trashed });
        }
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((n, Some(entry)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch_metadata(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        filter: &MemoryFilter,
        set: &serde_json::Map<String, serde_json::Value>,
        limit: usize,
        max_metadata_bytes: usize,
        now: u64,
    ) -> Result<(u64, Vec<String>, Option<ReplEntry>)> {
        let _w = ns.write_lock()?;
        let ids = self.matching(ns, filter, limit, now);
        let mut mutations = Vec::with_capacity(ids.len());
        let mut errors = Vec::new();
        for id in &ids {
            let mut rec = self.get_live(ns, id, now)?;
            let mut meta = match rec.metadata.take() {
                Some(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            for (k, v) in set {
                if v.is_null() {
                    meta.remove(k);
                } else {
                    meta.insert(k.clone(), v.clone());
                }
            }
            let meta = serde_json::Value::Object(meta);
            let size = serde_json::to_vec(&meta).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > max_metadata_bytes {
                errors.push(format!("{id}: metadata would be {size} bytes, more than {max_metadata_bytes}"));
                continue;
            }
            rec.metadata = if meta.as_object().is_some_and(|m| m.is_empty()) { None } else { Some(meta) };
            rec.updated_at = now;
            rec.version += 1;
            let vector = self.read_vector(ctx, id)?;
            mutations.push(Mutation::PutMemory { record: rec, vector });
        }
        if mutations.is_empty() {
            return Ok((0, errors, None));
        }
        let n = mutations.len() as u64;
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((n, errors, Some(entry)))
    }

    /// Documents (live records with text), and the terms of at most `sample` of them.
    pub(super) fn text_stats(&self, ns: &Namespace, sample: usize, now: u64) -> Result<TextStats> {
        let mut ids: Vec<String> = {
            let st = ns.state.read();
            st.metas.iter().filter(|(_, m)| m.live(now) && m.content_len > 0).map(|(id, _)| id.clone()).collect()
        };
        let documents = ids.len() as u64;
        ids.sort();
        ids.truncate(sample);
        let mut unique: HashSet<String> = HashSet::new();
        let mut tokens = 0u64;
        let mut examined = 0u64;
        for id in &ids {
            let Some(rec) = self.read_record(&ns.ctx, id)? else { continue };
            let terms = self.text.terms(&rec.content);
            tokens += terms.len() as u64;
            unique.extend(terms);
            examined += 1;
        }
        Ok(TextStats {
            documents,
            unique_terms: unique.len() as u64,
            avg_doc_length: if examined == 0 { 0.0 } else { tokens as f64 / examined as f64 },
            examined,
        })
    }
}

/// Refuse a `limit` of zero (a caller bug, not "everything").
pub(super) fn check_limit(limit: usize) -> Result<usize> {
    if limit == 0 {
        return Err(StorageError::Invalid("limit must be at least 1".into()));
    }
    Ok(limit)
}
