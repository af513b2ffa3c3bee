//! The query engine: filtering (`select`), listing, recall (vector and BM25 candidates fused and
//! ranked by [`super::rank`]), and the agent and namespace statistics.

use std::collections::{BTreeMap, HashSet};

use super::rank::{Meta, RankOptions, Ranked, fuse, is_match_all, list_order, rank, rank_match_all};
use super::{Namespace, NsState, Store, check_vector};
use crate::error::Result;
use crate::model::*;

impl Store {
    pub(super) fn select(&self, ns: &Namespace, filter: &MemoryFilter, now: u64) -> Vec<String> {
        let st = ns.state.read();
        match &filter.ids {
            Some(ids) => ids
                .iter()
                .filter(|id| st.metas.get(*id).is_some_and(|m| m.matches(id, filter, now)))
                .cloned()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect(),
            None => st.metas.iter().filter(|(id, m)| m.matches(id, filter, now)).map(|(id, _)| id.clone()).collect(),
        }
    }
    pub(super) fn list(
        &self,
        ns: &Namespace,
        filter: &MemoryFilter,
        sort: SortBy,
        limit: usize,
        offset: usize,
        now: u64,
    ) -> Result<(Vec<MemoryRecord>, u64)> {
        let mut rows: Vec<(String, Meta)> = {
            let st = ns.state.read();
            st.metas
                .iter()
                .filter(|(id, m)| m.matches(id, filter, now))
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect()
        };
        rows.sort_by(|a, b| list_order(sort, a, b));
        let total = rows.len() as u64;
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for (id, _) in rows.into_iter().skip(offset).take(limit) {
            if bytes >= self.config.max_answer_bytes {
                break;
            }
            if let Some(r) = self.full_record(ns, &id)? {
                bytes += r.content.len();
                page.push(r);
            }
        }
        Ok((page, total))
    }

    pub(super) fn recall(&self, ns: &Namespace, p: RecallParams, now: u64) -> Result<Vec<ScoredMemory>> {
        let ctx = &ns.ctx;
        if p.top_k == 0 {
            return Ok(Vec::new());
        }
        let options = RankOptions {
            importance_weighted: p.importance_weighted,
            decay: p.decay,
            min_score: p.min_score,
            top_k: p.top_k,
            now,
        };
        if is_match_all(&p.query) {
            // `*`: every memory that passes the filters, newest first; nothing is embedded or
            // looked up in the text index.
            let candidates: Vec<(String, Meta)> = {
                let st = ns.state.read();
                st.metas
                    .iter()
                    .filter(|(id, m)| m.matches(id, &p.filter, now))
                    .map(|(id, m)| (id.clone(), m.clone()))
                    .collect()
            };
            return self.answer(ns, rank_match_all(candidates, options), p.record_access, now);
        }
        let use_vector = !matches!(p.routing, Routing::Bm25);
        let use_text = !matches!(p.routing, Routing::Vector) && !p.query.trim().is_empty();
        let pool = (p.top_k * 4).max(50);
        let accept = |id: &str, st: &NsState| st.metas.get(id).is_some_and(|m| m.matches(id, &p.filter, now));

        let vector_hits: Vec<(String, f32)> = if use_vector {
            let q = match &p.query_embedding {
                Some(v) => {
                    check_vector(v, ctx.dimension)?;
                    Some(v.clone())
                }
                None if !p.query.trim().is_empty() => self.embed(ctx, &[p.query.as_str()])?.pop().flatten(),
                None => None,
            };
            match q {
                Some(q) => {
                    let st = ns.state.read();
                    st.vectors.search(&q, pool, &|id| accept(id, &st))
                }
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let text_hits: Vec<(String, f32)> = if use_text {
            let raw = self.text.search(&ctx.key, &p.query, pool * 4)?;
            let st = ns.state.read();
            raw.into_iter().filter(|(id, _)| accept(id, &st)).take(pool).collect()
        } else {
            Vec::new()
        };

        let fused = fuse(&vector_hits, &text_hits, p.fusion, p.vector_weight);
        let ranked = {
            let st = ns.state.read();
            rank(fused, &|id| st.metas.get(id), options)
        };
        self.answer(ns, ranked, p.record_access, now)
    }

    /// The ranked hits as memories (recording an access on each, for recall).
    fn answer(&self, ns: &Namespace, scored: Vec<Ranked>, record_access: bool, now: u64) -> Result<Vec<ScoredMemory>> {
        let mut out = Vec::with_capacity(scored.len());
        let mut bytes = 0usize;
        for Ranked { id, score, relevance, vector_score, text_score } in scored {
            if bytes >= self.config.max_answer_bytes {
                break;
            }
            if let Some(memory) = self.full_record(ns, &id)? {
                bytes += memory.content.len();
                out.push(ScoredMemory { memory, score, relevance, vector_score, text_score });
            }
        }
        if record_access {
            // Only what the answer carries counts as accessed.
            let ids: Vec<String> = out.iter().map(|s| s.memory.id.clone()).collect();
            self.touch(ns, &ids, now);
        }
        Ok(out)
    }

    /// Statistics of one agent's memories, or of the whole namespace (`None`).
    pub(super) fn agent_stats(&self, ns: &Namespace, agent_id: Option<&str>, now: u64) -> AgentStats {
        let st = ns.state.read();
        let mine: Vec<&Meta> =
            st.metas.values().filter(|m| m.live(now) && agent_id.is_none_or(|a| m.agent_id == a)).collect();
        let mut by_type = BTreeMap::new();
        for t in MemoryType::ALL {
            by_type.insert(t.as_str().to_string(), 0u64);
        }
        for m in &mine {
            *by_type.entry(m.memory_type.as_str().to_string()).or_insert(0) += 1;
        }
        let sessions: Vec<&Session> =
            st.sessions.values().filter(|s| agent_id.is_none_or(|a| s.agent_id == a)).collect();
        AgentStats {
            agent_id: agent_id.unwrap_or(&ns.ctx.name).to_string(),
            total_memories: mine.len() as u64,
            memories_by_type: by_type,
            total_sessions: sessions.len() as u64,
            active_sessions: sessions.iter().filter(|s| s.ended_at.is_none()).count() as u64,
            avg_importance: if mine.is_empty() {
                None
            } else {
                Some(mine.iter().map(|m| m.importance).sum::<f64>() / mine.len() as f64)
            },
            oldest_memory_at: mine.iter().map(|m| m.created_at).min(),
            newest_memory_at: mine.iter().map(|m| m.created_at).max(),
        }
    }

    pub(super) fn agents(&self, ns: &Namespace, now: u64) -> Vec<AgentSummary> {
        let st = ns.state.read();
        let mut by_agent: BTreeMap<String, AgentSummary> = BTreeMap::new();
        for m in st.metas.values().filter(|m| m.live(now)) {
            let e = by_agent
                .entry(m.agent_id.clone())
                .or_insert_with(|| AgentSummary { agent_id: m.agent_id.clone(), ..Default::default() });
            e.memory_count += 1;
            e.vector_count += 1;
        }
        for s in st.sessions.values() {
            let e = by_agent
                .entry(s.agent_id.clone())
                .or_insert_with(|| AgentSummary { agent_id: s.agent_id.clone(), ..Default::default() });
            e.session_count += 1;
            if s.ended_at.is_none() {
                e.active_sessions += 1;
            }
        }
        by_agent.into_values().collect()
    }
}
