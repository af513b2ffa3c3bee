//! Per-namespace vector index.
//!
//! Vectors live in memory only (rebuilt from the encrypted `vec` column family when a namespace
//! is loaded: an HNSW dump would put plaintext embeddings on disk). Small namespaces are searched
//! exactly by brute force; above `ann_threshold` live vectors an HNSW graph (hnsw_rs) is built in
//! the background and used. hnsw_rs cannot delete, so removed vectors are tombstones filtered at
//! search time, and the graph is rebuilt once tombstones pass 20 % of it.

use std::collections::HashMap;
use std::sync::Arc;

use anndists::dist::DistCosine;
use hnsw_rs::hnsw::Hnsw;
use parking_lot::RwLock;

const HNSW_MAX_CONNECTIONS: usize = 16;
const HNSW_MAX_LAYER: usize = 16;
const HNSW_EF_CONSTRUCTION: usize = 100;
const TOMBSTONE_REBUILD_RATIO: f64 = 0.2;

type Graph = Hnsw<'static, f32, DistCosine>;

/// How similarity is measured. Scores are "higher is closer" for every metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Metric {
    /// Cosine similarity (vectors are normalised); searched with HNSW above the threshold.
    #[default]
    Cosine,
    /// Raw dot product (exact scan).
    Dot,
    /// `1 / (1 + euclidean distance)` (exact scan).
    Euclidean,
}

impl Metric {
    fn score(&self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => dot(a, b),
            Metric::Euclidean => 1.0 / (1.0 + squared_distance(a, b).sqrt()),
        }
    }
}

struct GraphState {
    graph: Arc<Graph>,
    /// Slots below this were handed to the graph (inserted or snapshotted for a build).
    covers: usize,
    /// Slots inside `covers` that have since been removed.
    dead: usize,
}

struct Inner {
    dimension: usize,
    /// Unit vectors by slot; `None` = removed. Slots are never reused.
    slots: Vec<Option<Arc<[f32]>>>,
    ids: Vec<Option<String>>,
    slot_of: HashMap<String, usize>,
    graph: Option<GraphState>,
    building: bool,
}

/// Thread-safe; cheap to clone.
#[derive(Clone)]
pub struct VectorIndex {
    inner: Arc<RwLock<Inner>>,
    ann_threshold: usize,
    metric: Metric,
}

impl VectorIndex {
    pub fn new(dimension: usize, ann_threshold: usize) -> Self {
        Self::with_metric(dimension, ann_threshold, Metric::Cosine)
    }

    pub fn with_metric(dimension: usize, ann_threshold: usize, metric: Metric) -> Self {
        VectorIndex {
            inner: Arc::new(RwLock::new(Inner {
                dimension,
                slots: Vec::new(),
                ids: Vec::new(),
                slot_of: HashMap::new(),
                graph: None,
                building: false,
            })),
            ann_threshold: ann_threshold.max(1),
            metric,
        }
    }

    pub fn dimension(&self) -> usize {
        self.inner.read().dimension
    }

    pub fn len(&self) -> usize {
        self.inner.read().slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn uses_graph(&self) -> bool {
        self.inner.read().graph.is_some()
    }

    /// Insert or replace the vector of `id`. The caller has validated length and finiteness.
    pub fn upsert(&self, id: &str, vector: &[f32]) {
        let mut unit = vector.to_vec();
        if self.metric == Metric::Cosine {
            crate::embed::normalize(&mut unit);
        }
        let unit: Arc<[f32]> = unit.into();
        let mut g = self.inner.write();
        Self::remove_locked(&mut g, id);
        let slot = g.slots.len();
        g.slots.push(Some(unit.clone()));
        g.ids.push(Some(id.to_string()));
        g.slot_of.insert(id.to_string(), slot);
        if let Some(gs) = g.graph.as_mut() {
            if gs.covers == slot {
                gs.graph.insert_slice((&unit, slot));
                gs.covers = slot + 1;
            }
        }
        // Only cosine has a graph; other metrics are always searched exactly.
        let need_build = !g.building
            && self.metric == Metric::Cosine
            && match &g.graph {
                None => g.slot_of.len() > self.ann_threshold,
                Some(gs) => gs.dead as f64 > TOMBSTONE_REBUILD_RATIO * gs.covers as f64,
            };
        if need_build {
            g.building = true;
            drop(g);
            self.spawn_build();
        }
    }

    /// The stored (for cosine: normalised) vector of `id`.
    pub fn get(&self, id: &str) -> Option<Arc<[f32]>> {
        let g = self.inner.read();
        g.slot_of.get(id).and_then(|s| g.slots.get(*s).cloned().flatten())
    }

    pub fn remove(&self, id: &str) {
        let mut g = self.inner.write();
        Self::remove_locked(&mut g, id);
    }

    fn remove_locked(g: &mut Inner, id: &str) {
        if let Some(slot) = g.slot_of.remove(id) {
            g.slots[slot] = None;
            g.ids[slot] = None;
            if let Some(gs) = g.graph.as_mut() {
                if slot < gs.covers {
                    gs.dead += 1;
                }
            }
        }
    }

    /// Build a graph over the current live vectors on a background thread, then swap it in and
    /// add whatever arrived meanwhile.
    fn spawn_build(&self) {
        let this = self.clone();
        std::thread::spawn(move || this.build_now());
    }

    /// Build synchronously (used by the background thread and by tests).
    pub fn build_now(&self) {
        let (snapshot, covers) = {
            let g = self.inner.read();
            let snap: Vec<(usize, Arc<[f32]>)> =
                g.slots.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (i, v.clone()))).collect();
            (snap, g.slots.len())
        };
        let graph = Graph::new(
            HNSW_MAX_CONNECTIONS,
            snapshot.len().max(1024),
            HNSW_MAX_LAYER,
            HNSW_EF_CONSTRUCTION,
            DistCosine {},
        );
        let refs: Vec<(&[f32], usize)> = snapshot.iter().map(|(i, v)| (&v[..], *i)).collect();
        graph.parallel_insert_slice(&refs);
        let mut g = self.inner.write();
        // Catch up with inserts that happened during the build.
        let mut dead = 0;
        for slot in 0..g.slots.len() {
            if slot >= covers {
                if let Some(v) = g.slots[slot].clone() {
                    graph.insert_slice((&v, slot));
                }
            } else if g.slots[slot].is_none() && snapshot.binary_search_by_key(&slot, |(i, _)| *i).is_ok() {
                dead += 1;
            }
        }
        let covers_now = g.slots.len();
        g.graph = Some(GraphState { graph: Arc::new(graph), covers: covers_now, dead });
        g.building = false;
    }

    /// The `k` nearest live vectors accepted by `accept(id)`, as (id, cosine similarity).
    pub fn search(&self, query: &[f32], k: usize, accept: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            crate::embed::normalize(&mut q);
        }
        let metric = self.metric;
        let g = self.inner.read();
        let exact = || exact_top_k(&g, &q, metric, k, accept);
        let mut out: Vec<(String, f32)> = match &g.graph {
            Some(gs) if g.slot_of.len() > self.ann_threshold => {
                let filter =
                    |slot: &usize| -> bool { g.ids.get(*slot).and_then(|x| x.as_deref()).is_some_and(|id| accept(id)) };
                let ef = (k * 4).max(64);
                let mut res: Vec<(String, f32)> = gs
                    .graph
                    .search_filter(&q, k, ef, Some(&filter))
                    .into_iter()
                    .filter_map(|n| g.ids[n.d_id].clone().map(|id| (id, 1.0 - n.distance)))
                    .collect();
                // Slots not yet in the graph (only during a rebuild) are scanned exactly.
                for slot in gs.covers..g.slots.len() {
                    if let (Some(v), Some(id)) = (&g.slots[slot], &g.ids[slot]) {
                        if accept(id) {
                            res.push((id.clone(), dot(&q, v)));
                        }
                    }
                }
                // A selective filter can starve the graph walk; fall back to an exact scan.
                if res.len() < k {
                    return exact();
                }
                res
            }
            _ => return exact(),
        };
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }
}

/// The exact scan: the `k` best live vectors accepted by `accept`, best first, ties by id.
///
/// Every live vector is scored first (no lookups, no allocation per vector); then the best are
/// put in order a window at a time, and `accept` (the caller's filter: a map lookup per call) is
/// asked only about those, until `k` are accepted. With a filter that accepts most memories that
/// is about `k` calls, not one per vector; a selective filter widens the window (×4 each round)
/// up to the whole namespace.
fn exact_top_k(g: &Inner, q: &[f32], metric: Metric, k: usize, accept: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
    let mut scored: Vec<(usize, f32)> =
        g.slots.iter().enumerate().filter_map(|(slot, v)| v.as_ref().map(|v| (slot, metric.score(q, v)))).collect();
    let id = |slot: usize| g.ids.get(slot).and_then(|x| x.as_deref()).unwrap_or("");
    let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then_with(|| id(a.0).cmp(id(b.0)));
    let scored_len = scored.len();
    let mut out = Vec::with_capacity(k.min(scored_len));
    let (mut start, mut window) = (0, (2 * k).max(16));
    while out.len() < k && start < scored_len {
        let end = start.saturating_add(window).min(scored_len);
        let rest = &mut scored[start..];
        if end < scored_len {
            // The window's entries now rank before everything after it, in no order yet.
            rest.select_nth_unstable_by(end - start - 1, order);
        }
        rest[..end - start].sort_unstable_by(order);
        for &(slot, score) in &scored[start..end] {
            let id = id(slot);
            if !id.is_empty() && accept(id) {
                out.push((id.to_string(), score));
                if out.len() == k {
                    break;
                }
            }
        }
        start = end;
        window = window.saturating_mul(4);
    }
    out
}

/// `Σ term(a[i], b[i])` over eight independent sums, so the compiler can keep them in SIMD lanes
/// (a single running `f32` sum must be added in order and is not vectorised).
#[inline(always)]
fn sum_lanes(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| term(*x, *y)).sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += term(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Whether this CPU runs the AVX2 builds of the two sums (checked once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

// The one use of `unsafe` in storage: calling the AVX2 builds once the CPU is known to have it.
#[allow(unsafe_code)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::dot(a, b) };
    }
    sum_lanes(a, b, |x, y| x * y)
}

#[allow(unsafe_code)]
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::squared_distance(a, b) };
    }
    sum_lanes(a, b, |x, y| (x - y) * (x - y))
}

/// The same sums compiled for AVX2: the eight lanes become one 256-bit register instead of two
/// SSE ones (the binary targets baseline x86-64, so this is chosen at run time). Same lanes,
/// same order of additions, no fused multiply-add: the results are bit-identical.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::sum_lanes(a, b, |x, y| x * y)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
        super::sum_lanes(a, b, |x, y| (x - y) * (x - y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..dim)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn exact_search_finds_self_and_respects_removal_and_filter() {
        let idx = VectorIndex::new(8, 1000);
        for i in 0..50 {
            idx.upsert(&format!("m{i}"), &v(i, 8));
        }
        let hit = idx.search(&v(7, 8), 1, &|_| true);
        assert_eq!(hit[0].0, "m7");
        assert!(hit[0].1 > 0.999);
        idx.remove("m7");
        assert_ne!(idx.search(&v(7, 8), 1, &|_| true)[0].0, "m7");
        let only_even = idx.search(&v(9, 8), 5, &|id| id.trim_start_matches('m').parse::<u32>().unwrap() % 2 == 0);
        assert!(only_even.iter().all(|(id, _)| id.trim_start_matches('m').parse::<u32>().unwrap() % 2 == 0));
        assert_eq!(idx.len(), 49);
    }

    /// The windowed exact scan gives what filtering everything, sorting by (score desc, id asc)
    /// and truncating gives: for every metric, `k`, filter selectivity (all, half, one in
    /// seventeen, none), with removed vectors and exact ties (duplicated vectors).
    #[test]
    fn exact_scan_equals_filter_sort_truncate() {
        let dim = 13; // not a multiple of 8: the remainder path of `dot` counts
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let idx = VectorIndex::with_metric(dim, usize::MAX, metric);
            for i in 0..300u64 {
                // every tenth vector is a copy of another: equal scores, ordered by id
                let seed = if i % 10 == 0 { i / 10 } else { i };
                idx.upsert(&format!("m{i:03}"), &v(seed, dim));
            }
            for i in (0..300).step_by(7) {
                idx.remove(&format!("m{i:03}"));
            }
            let num = |id: &str| id.trim_start_matches('m').parse::<u64>().unwrap_or(0);
            let filters: [&dyn Fn(&str) -> bool; 4] =
                [&|_| true, &|id| num(id) % 2 == 0, &|id| num(id) % 17 == 3, &|_| false];
            for (qi, k) in [(1u64, 1usize), (2, 5), (3, 10), (4, 50), (5, 299), (6, 1000)] {
                // `search` normalises a cosine query; the reference scores with the same vector.
                let raw = v(1000 + qi, dim);
                let mut q = raw.clone();
                if metric == Metric::Cosine {
                    crate::embed::normalize(&mut q);
                }
                for accept in filters {
                    let got = idx.search(&raw, k, accept);
                    let g = idx.inner.read();
                    let mut want: Vec<(String, f32)> = g
                        .slots
                        .iter()
                        .zip(&g.ids)
                        .filter_map(|(v, id)| match (v, id) {
                            (Some(v), Some(id)) if accept(id) => Some((id.clone(), metric.score(&q, v))),
                            _ => None,
                        })
                        .collect();
                    want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    want.truncate(k);
                    assert_eq!(got, want, "{metric:?} k={k}");
                }
            }
        }
    }

    #[test]
    fn dot_and_distance_match_the_plain_sums() {
        for n in [0usize, 1, 7, 8, 9, 16, 384, 385] {
            let (a, b) = (v(n as u64, n), v(n as u64 + 1, n));
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() <= 1e-4 * (1.0 + plain.abs()), "dot n={n}");
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((squared_distance(&a, &b) - plain).abs() <= 1e-4 * (1.0 + plain), "distance n={n}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[test]
    fn the_avx2_sums_are_bit_identical_to_the_portable_ones() {
        if !has_avx2() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        for n in [0usize, 1, 7, 8, 9, 16, 383, 384, 385, 1536] {
            let (a, b) = (v(n as u64 + 7, n), v(n as u64 + 8, n));
            // SAFETY: AVX2 is present (checked above).
            let (d, e) = unsafe { (avx2::dot(&a, &b), avx2::squared_distance(&a, &b)) };
            assert_eq!(d.to_bits(), sum_lanes(&a, &b, |x, y| x * y).to_bits(), "dot n={n}");
            assert_eq!(e.to_bits(), sum_lanes(&a, &b, |x, y| (x - y) * (x - y)).to_bits(), "distance n={n}");
        }
    }

    #[test]
    fn graph_search_agrees_with_exact_and_skips_tombstones() {
        let idx = VectorIndex::new(16, 100);
        for i in 0..400 {
            idx.upsert(&format!("m{i}"), &v(i, 16));
        }
        idx.build_now();
        assert!(idx.uses_graph());
        let hit = idx.search(&v(123, 16), 3, &|_| true);
        assert_eq!(hit[0].0, "m123");
        idx.remove("m123");
        let hit = idx.search(&v(123, 16), 3, &|_| true);
        assert!(hit.iter().all(|(id, _)| id != "m123"));
        // replacing a vector moves the id to its new position
        idx.upsert("m5", &v(9999, 16));
        assert_eq!(idx.search(&v(9999, 16), 1, &|_| true)[0].0, "m5");
    }
}
