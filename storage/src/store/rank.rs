//! Ranking and filtering as pure functions over plain structs (no RocksDB, no index): the
//! per-memory [`Meta`] and its filter, score fusion, importance/recency weighting, and top-k
//! selection.

use std::collections::HashMap;

use crate::model::*;

/// Per-memory facts kept in memory for filtering and ranking (no content, no vector).
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) agent_id: String,
    pub(crate) session_id: Option<String>,
    pub(crate) memory_type: MemoryType,
    pub(crate) importance: f64,
    pub(crate) tags: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) order: u64,
    pub(crate) expires_at: Option<u64>,
    pub(crate) access_count: u64,
    pub(crate) last_accessed_at: u64,
    pub(crate) content_len: usize,
    pub(crate) version: u64,
    /// Kept for the metadata filter of the vector and document routes (shared, not copied,
    /// when a `Meta` is cloned for ranking).
    pub(crate) metadata: Option<std::sync::Arc<serde_json::Value>>,
}

impl Meta {
    pub(crate) fn of(r: &MemoryRecord) -> Self {
        Meta {
            agent_id: r.agent_id.clone(),
            session_id: r.session_id.clone(),
            memory_type: r.memory_type,
            importance: r.importance,
            tags: r.tags.clone(),
            created_at: r.created_at,
            order: r.order,
            expires_at: r.expires_at,
            access_count: r.access_count,
            last_accessed_at: r.last_accessed_at,
            content_len: r.content.len(),
            version: r.version,
            metadata: r.metadata.clone().map(std::sync::Arc::new),
        }
    }

    pub(crate) fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    pub(crate) fn matches(&self, id: &str, f: &MemoryFilter, now: u64) -> bool {
        if !self.live(now) {
            return false;
        }
        if let Some(ids) = &f.ids {
            if !ids.iter().any(|x| x == id) {
                return false;
            }
        }
        if f.agent_id.as_ref().is_some_and(|a| a != &self.agent_id) {
            return false;
        }
        if f.session_id.is_some() && f.session_id != self.session_id {
            return false;
        }
        if f.memory_type.is_some_and(|t| t != self.memory_type) {
            return false;
        }
        if let Some(any) = &f.tags_any {
            if !any.is_empty() && !any.iter().any(|t| self.tags.contains(t)) {
                return false;
            }
        }
        if let Some(all) = &f.tags_all {
            if !all.iter().all(|t| self.tags.contains(t)) {
                return false;
            }
        }
        if f.min_importance.is_some_and(|m| self.importance < m) {
            return false;
        }
        if f.max_importance.is_some_and(|m| self.importance > m) {
            return false;
        }
        if f.created_after.is_some_and(|t| self.created_at < t) {
            return false;
        }
        if f.created_before.is_some_and(|t| self.created_at > t) {
            return false;
        }
        if f.metadata.as_ref().is_some_and(|m| !m.matches(self.metadata.as_deref())) {
            return false;
        }
        true
    }
}

///
/// * `minmax`: each list is min-max normalised to [0, 1] over its candidates (a list whose
///   scores are all equal normalises to 1), then `w·vector + (1−w)·text`, a missing side
///   counting 0; `w` = `vector_weight` (default 0.7). With only one list present its normalised
///   score is the relevance.
/// * `rrf`: `Σ 1/(60 + rank)` over the lists, rescaled so a first place in every list is 1.
pub fn fuse(
    vector: &[(String, f32)],
    text: &[(String, f32)],
    fusion: Fusion,
    vector_weight: Option<f32>,
) -> HashMap<String, (f32, Option<f32>, Option<f32>)> {
    let mut out: HashMap<String, (f32, Option<f32>, Option<f32>)> = HashMap::new();
    for (id, s) in vector {
        out.entry(id.clone()).or_insert((0.0, None, None)).1 = Some(*s);
    }
    for (id, s) in text {
        out.entry(id.clone()).or_insert((0.0, None, None)).2 = Some(*s);
    }
    let w = vector_weight.unwrap_or(0.7).clamp(0.0, 1.0);
    let (w_vec, w_text) = match (vector.is_empty(), text.is_empty()) {
        (false, true) => (1.0, 0.0),
        (true, false) => (0.0, 1.0),
        _ => (w, 1.0 - w),
    };
    match fusion {
        Fusion::Minmax => {
            let norm = |list: &[(String, f32)]| -> HashMap<String, f32> {
                let min = list.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
                let max = list.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
                list.iter().map(|(id, s)| (id.clone(), if max > min { (s - min) / (max - min) } else { 1.0 })).collect()
            };
            let nv = norm(vector);
            let nt = norm(text);
            for (id, e) in out.iter_mut() {
                e.0 = w_vec * nv.get(id).copied().unwrap_or(0.0) + w_text * nt.get(id).copied().unwrap_or(0.0);
            }
        }
        Fusion::Rrf => {
            const K: f32 = 60.0;
            let rank = |list: &[(String, f32)]| -> HashMap<String, f32> {
                list.iter().enumerate().map(|(i, (id, _))| (id.clone(), 1.0 / (K + 1.0 + i as f32))).collect()
            };
            let rv = rank(vector);
            let rt = rank(text);
            let best = (w_vec + w_text) / (K + 1.0);
            for (id, e) in out.iter_mut() {
                let s = w_vec * rv.get(id).copied().unwrap_or(0.0) + w_text * rt.get(id).copied().unwrap_or(0.0);
                e.0 = if best > 0.0 { s / best } else { 0.0 };
            }
        }
    }
    out
}

/// `score = relevance × (0.75 + 0.25·importance) × (0.85 + 0.15·2^(−age_days/14))`
///
/// Relevance dominates; importance and recency break ties and lift fresh, important memories.
pub fn weighted_score(relevance: f32, importance: f32, created_at: u64, now: u64) -> f32 {
    let age_days = now.saturating_sub(created_at) as f32 / 86_400.0;
    let recency = 0.5f32.powf(age_days / 14.0);
    relevance * (0.75 + 0.25 * importance.clamp(0.0, 1.0)) * (0.85 + 0.15 * recency)
}

/// One recall candidate after fusion: relevance in [0, 1] and the raw list scores it came with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ranked {
    pub(crate) id: String,
    pub(crate) score: f32,
    pub(crate) relevance: f32,
    pub(crate) vector_score: Option<f32>,
    pub(crate) text_score: Option<f32>,
}

/// How fused candidates become the answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RankOptions {
    pub(crate) importance_weighted: bool,
    /// Importance decay applied to the importance weighting (`None`: the stored importance).
    pub(crate) decay: Option<crate::decay::DecayConfig>,
    pub(crate) min_score: Option<f32>,
    pub(crate) top_k: usize,
    pub(crate) now: u64,
}

impl RankOptions {
    /// The importance the weighting uses: decayed since the memory was last used, when decay is
    /// on (see [`crate::decay::DecayConfig::effective`]).
    pub(crate) fn importance_of(&self, m: &Meta) -> f64 {
        match &self.decay {
            Some(d) => d.effective(m.importance, m.last_accessed_at.max(m.created_at), m.access_count, self.now),
            None => m.importance,
        }
    }
}

/// Keep the `k` first items of `items` under `cmp`, in that order (a partial selection, then a
/// sort of the survivors only).
pub(crate) fn top_k<T>(mut items: Vec<T>, k: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    if k == 0 {
        return Vec::new();
    }
    if items.len() > k {
        items.select_nth_unstable_by(k - 1, &cmp);
        items.truncate(k);
    }
    items.sort_by(cmp);
    items
}

/// Score fused candidates (see [`fuse`]) with their metas, drop candidates without a meta or
/// below `min_score`, and keep the `top_k` best: score descending, ties by id ascending.
/// `meta` looks a candidate's meta up (the caller holds the namespace's read lock: nothing is
/// cloned per candidate).
pub(crate) fn rank<'m>(
    fused: HashMap<String, (f32, Option<f32>, Option<f32>)>,
    meta: &dyn Fn(&str) -> Option<&'m Meta>,
    o: RankOptions,
) -> Vec<Ranked> {
    let scored: Vec<Ranked> = fused
        .into_iter()
        .filter_map(|(id, (relevance, vector_score, text_score))| {
            let m = meta(&id)?;
            let score = if o.importance_weighted {
                weighted_score(relevance, o.importance_of(m) as f32, m.created_at, o.now)
            } else {
                relevance
            };
            Some(Ranked { id, score, relevance, vector_score, text_score })
        })
        .filter(|r| o.min_score.is_none_or(|min| r.score >= min))
        .collect();
    top_k(scored, o.top_k, |a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)))
}

/// A recall query of exactly `*` (surrounding whitespace aside) matches every memory.
pub(crate) fn is_match_all(query: &str) -> bool {
    query.trim() == "*"
}

/// The answer to a `*` recall: every candidate (already filtered) newest first — creation time
/// descending, ties by importance descending, then insertion order descending, then id. Relevance
/// is 1 for every memory; the score is 1, or [`weighted_score`]`(1, importance, created_at)`
/// when `importance_weighted`; `min_score` applies to that score. No vector or text score.
pub(crate) fn rank_match_all(candidates: Vec<(String, Meta)>, o: RankOptions) -> Vec<Ranked> {
    let kept: Vec<(Ranked, Meta)> = candidates
        .into_iter()
        .map(|(id, m)| {
            let score = if o.importance_weighted {
                weighted_score(1.0, o.importance_of(&m) as f32, m.created_at, o.now)
            } else {
                1.0
            };
            (Ranked { id, score, relevance: 1.0, vector_score: None, text_score: None }, m)
        })
        .filter(|(r, _)| o.min_score.is_none_or(|min| r.score >= min))
        .collect();
    top_k(kept, o.top_k, |(ra, a), (rb, b)| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.importance.total_cmp(&a.importance))
            .then_with(|| b.order.cmp(&a.order))
            .then_with(|| ra.id.cmp(&rb.id))
    })
    .into_iter()
    .map(|(r, _)| r)
    .collect()
}

/// The order of a listing: by `sort`, ties by id (ascending for `CreatedAtAsc`, else descending).
pub(crate) fn list_order(sort: SortBy, (ia, a): &(String, Meta), (ib, b): &(String, Meta)) -> std::cmp::Ordering {
    let ord = match sort {
        SortBy::CreatedAtDesc => b.order.cmp(&a.order),
        SortBy::CreatedAtAsc => a.order.cmp(&b.order),
        SortBy::LastAccessedAt => b.last_accessed_at.cmp(&a.last_accessed_at),
        SortBy::Importance => b.importance.total_cmp(&a.importance),
        SortBy::AccessCount => b.access_count.cmp(&a.access_count),
    };
    ord.then_with(|| match sort {
        SortBy::CreatedAtAsc => ia.cmp(ib),
        _ => ib.cmp(ia),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_000 * DAY;

    fn meta(agent: &str) -> Meta {
        Meta {
            agent_id: agent.into(),
            session_id: None,
            memory_type: MemoryType::default(),
            importance: 0.5,
            tags: vec![],
            created_at: NOW,
            order: 1,
            expires_at: None,
            access_count: 0,
            last_accessed_at: NOW,
            content_len: 10,
            version: 1,
            metadata: None,
        }
    }

    fn list(xs: &[(&str, f32)]) -> Vec<(String, f32)> {
        xs.iter().map(|(id, s)| (id.to_string(), *s)).collect()
    }

    fn opts(top_k: usize) -> RankOptions {
        RankOptions { importance_weighted: false, decay: None, min_score: None, top_k, now: NOW }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn minmax_fusion_weights_both_lists() {
        let v = list(&[("a", 0.9), ("b", 0.5), ("c", 0.1)]);
        let t = list(&[("b", 8.0), ("d", 2.0)]);
        let f = fuse(&v, &t, Fusion::Minmax, None);
        // a: top vector, absent from text → 0.7·1 + 0.3·0.
        assert!(close(f["a"].0, 0.7), "{:?}", f["a"]);
        // b: vector (0.5−0.1)/0.8 = 0.5, text top → 0.7·0.5 + 0.3·1.
        assert!(close(f["b"].0, 0.65), "{:?}", f["b"]);
        assert!(close(f["c"].0, 0.0));
        assert!(close(f["d"].0, 0.0));
        assert_eq!((f["b"].1, f["b"].2), (Some(0.5), Some(8.0)));
        assert_eq!((f["d"].1, f["d"].2), (None, Some(2.0)));
        // vector_weight 0.2 turns the balance.
        let g = fuse(&v, &t, Fusion::Minmax, Some(0.2));
        assert!(close(g["a"].0, 0.2));
        assert!(close(g["b"].0, 0.2 * 0.5 + 0.8));
        // Out-of-range weights are clamped.
        assert!(close(fuse(&v, &t, Fusion::Minmax, Some(7.0))["a"].0, 1.0));
    }

    #[test]
    fn a_single_list_is_the_relevance_and_equal_scores_normalise_to_one() {
        let t = list(&[("x", 3.0), ("y", 1.0)]);
        let f = fuse(&[], &t, Fusion::Minmax, Some(0.9));
        assert!(close(f["x"].0, 1.0) && close(f["y"].0, 0.0));
        let same = list(&[("p", 0.4), ("q", 0.4)]);
        let g = fuse(&same, &[], Fusion::Minmax, None);
        assert!(close(g["p"].0, 1.0) && close(g["q"].0, 1.0));
        assert!(fuse(&[], &[], Fusion::Minmax, None).is_empty());
    }

    #[test]
    fn rrf_rescales_a_first_place_in_both_lists_to_one() {
        let v = list(&[("a", 0.9), ("b", 0.8)]);
        let t = list(&[("a", 5.0), ("c", 4.0)]);
        let f = fuse(&v, &t, Fusion::Rrf, Some(0.5));
        assert!(close(f["a"].0, 1.0), "{:?}", f["a"]);
        // b: second in the vector list only: 0.5/(62) over 1/61.
        assert!(close(f["b"].0, 0.5 * 61.0 / 62.0));
        assert!(close(f["c"].0, f["b"].0));
    }

    #[test]
    fn importance_and_recency_decay() {
        // Fresh and fully important: the relevance itself.
        assert!(close(weighted_score(0.8, 1.0, NOW, NOW), 0.8));
        // Importance 0 costs a quarter.
        assert!(close(weighted_score(1.0, 0.0, NOW, NOW), 0.75));
        // Importance is clamped to [0, 1].
        assert!(close(weighted_score(1.0, 5.0, NOW, NOW), 1.0));
        assert!(close(weighted_score(1.0, -1.0, NOW, NOW), 0.75));
        // Recency halves every 14 days, towards a floor of 0.85.
        assert!(close(weighted_score(1.0, 1.0, NOW - 14 * DAY, NOW), 0.85 + 0.15 * 0.5));
        assert!(close(weighted_score(1.0, 1.0, NOW - 28 * DAY, NOW), 0.85 + 0.15 * 0.25));
        // 1000 days old: the floor.
        assert!(close(weighted_score(1.0, 1.0, 0, NOW), 0.85));
        // A creation time in the future counts as now.
        assert!(close(weighted_score(1.0, 1.0, NOW + DAY, NOW), 1.0));
    }

    #[test]
    fn filters_on_agent_type_tags_importance_and_time() {
        let mut m = meta("alice");
        m.tags = vec!["work".into(), "urgent".into()];
        m.memory_type = MemoryType::Semantic;
        m.importance = 0.6;
        m.session_id = Some("s1".into());
        let all = MemoryFilter::default();
        assert!(m.matches("m1", &all, NOW));
        let f = |g: fn(&mut MemoryFilter)| {
            let mut x = MemoryFilter::default();
            g(&mut x);
            x
        };
        assert!(!m.matches("m1", &f(|x| x.agent_id = Some("bob".into())), NOW));
        assert!(m.matches("m1", &f(|x| x.agent_id = Some("alice".into())), NOW));
        assert!(!m.matches("m1", &f(|x| x.session_id = Some("s2".into())), NOW));
        assert!(!m.matches("m1", &f(|x| x.memory_type = Some(MemoryType::Episodic)), NOW));
        assert!(m.matches("m1", &f(|x| x.memory_type = Some(MemoryType::Semantic)), NOW));
        assert!(m.matches("m1", &f(|x| x.tags_any = Some(vec!["urgent".into(), "x".into()])), NOW));
        assert!(!m.matches("m1", &f(|x| x.tags_any = Some(vec!["x".into()])), NOW));
        // An empty tags_any is no filter; tags_all needs every tag.
        assert!(m.matches("m1", &f(|x| x.tags_any = Some(vec![])), NOW));
        assert!(m.matches("m1", &f(|x| x.tags_all = Some(vec!["work".into(), "urgent".into()])), NOW));
        assert!(!m.matches("m1", &f(|x| x.tags_all = Some(vec!["work".into(), "x".into()])), NOW));
        // Importance and time bounds are inclusive.
        assert!(m.matches("m1", &f(|x| x.min_importance = Some(0.6)), NOW));
        assert!(!m.matches("m1", &f(|x| x.min_importance = Some(0.61)), NOW));
        assert!(!m.matches("m1", &f(|x| x.max_importance = Some(0.59)), NOW));
        assert!(m.matches("m1", &f(|x| x.created_after = Some(NOW)), NOW));
        assert!(!m.matches("m1", &f(|x| x.created_after = Some(NOW + 1)), NOW));
        assert!(m.matches("m1", &f(|x| x.created_before = Some(NOW)), NOW));
        assert!(!m.matches("m1", &f(|x| x.created_before = Some(NOW - 1)), NOW));
        assert!(!m.matches("m1", &f(|x| x.ids = Some(vec!["m2".into()])), NOW));
        assert!(m.matches("m1", &f(|x| x.ids = Some(vec!["m2".into(), "m1".into()])), NOW));
        // An expired memory matches nothing.
        m.expires_at = Some(NOW);
        assert!(!m.matches("m1", &all, NOW));
        assert!(m.matches("m1", &all, NOW - 1));
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let xs: Vec<u32> = vec![5, 1, 9, 3, 7, 9, 2];
        assert_eq!(top_k(xs.clone(), 3, |a, b| b.cmp(a)), vec![9, 9, 7]);
        assert_eq!(top_k(xs.clone(), 100, |a, b| a.cmp(b)), vec![1, 2, 3, 5, 7, 9, 9]);
        assert!(top_k(xs, 0, |a, b| a.cmp(b)).is_empty());
    }

    #[test]
    fn rank_breaks_score_ties_by_id_and_applies_min_score_and_top_k() {
        let mut fused = HashMap::new();
        for (id, rel) in [("c", 0.5), ("a", 0.5), ("b", 0.9), ("d", 0.1), ("ghost", 1.0)] {
            fused.insert(id.to_string(), (rel, Some(rel), None));
        }
        let metas: HashMap<String, Meta> = ["a", "b", "c", "d"].iter().map(|id| (id.to_string(), meta("x"))).collect();
        let ids = |r: &[Ranked]| r.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        // "ghost" has no meta (deleted meanwhile): never returned.
        assert_eq!(ids(&rank(fused.clone(), &|id| metas.get(id), opts(10))), vec!["b", "a", "c", "d"]);
        assert_eq!(ids(&rank(fused.clone(), &|id| metas.get(id), opts(2))), vec!["b", "a"]);
        let o = RankOptions { min_score: Some(0.5), ..opts(10) };
        assert_eq!(ids(&rank(fused.clone(), &|id| metas.get(id), o)), vec!["b", "a", "c"]);
        // Importance weighting lifts an important memory above an equally relevant one.
        let mut metas = metas;
        if let Some(m) = metas.get_mut("c") {
            m.importance = 1.0;
        }
        let o = RankOptions { importance_weighted: true, ..opts(10) };
        let r = rank(fused, &|id| metas.get(id), o);
        assert_eq!(ids(&r), vec!["b", "c", "a", "d"]);
        let c = r.iter().find(|x| x.id == "c").map(|x| (x.score, x.relevance));
        assert_eq!(c, Some((weighted_score(0.5, 1.0, NOW, NOW), 0.5)));
    }

    #[test]
    fn match_all_is_newest_first_with_ties_by_importance() {
        assert!(is_match_all("*") && is_match_all("  * \n") && !is_match_all("**") && !is_match_all("a*"));
        let mk = |id: &str, created_at: u64, importance: f64, order: u64| {
            let mut m = meta("x");
            m.created_at = created_at;
            m.importance = importance;
            m.order = order;
            (id.to_string(), m)
        };
        let rows = vec![
            mk("old", NOW - 10 * DAY, 1.0, 1),
            mk("new-low", NOW, 0.2, 2),
            mk("new-high", NOW, 0.9, 3),
            mk("mid", NOW - DAY, 0.5, 4),
        ];
        let r = rank_match_all(rows.clone(), opts(10));
        let ids: Vec<&str> = r.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, vec!["new-high", "new-low", "mid", "old"]);
        assert!(r.iter().all(|x| x.score == 1.0 && x.relevance == 1.0 && x.vector_score.is_none()));
        assert_eq!(rank_match_all(rows.clone(), opts(2)).len(), 2);
        // Weighted scores, and min_score on them; the order stays newest first.
        let o = RankOptions { importance_weighted: true, min_score: Some(0.9), ..opts(10) };
        let r = rank_match_all(rows, o);
        let ids: Vec<&str> = r.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, vec!["new-high", "old"]);
        assert_eq!(r[0].score, weighted_score(1.0, 0.9, NOW, NOW));
    }

    #[test]
    fn list_order_sorts_and_breaks_ties_by_id() {
        let mut a = meta("x");
        a.order = 1;
        a.importance = 0.5;
        let mut b = meta("x");
        b.order = 2;
        b.importance = 0.5;
        let mut rows = vec![("a".to_string(), a), ("b".to_string(), b)];
        rows.sort_by(|x, y| list_order(SortBy::CreatedAtDesc, x, y));
        assert_eq!(rows[0].0, "b");
        rows.sort_by(|x, y| list_order(SortBy::CreatedAtAsc, x, y));
        assert_eq!(rows[0].0, "a");
        // Equal importance: ids descending.
        rows.sort_by(|x, y| list_order(SortBy::Importance, x, y));
        assert_eq!(rows[0].0, "b");
    }
}
