//! Store throughput and recall latency of the storage engine at 10k and 100k memories, and the
//! time to open a store and load a 100k-memory namespace (node start-up). In-process, on RocksDB
//! with fsync on every write batch (the production setting), the hashed n-gram embedder (so the
//! figures measure the database, not a model: see `embeddings` for that) at 384 dimensions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use loci_storage::crypto::{DataKey, SecretKey};
use loci_storage::embed::HashEmbedder;
use loci_storage::model::{DataOp, Fusion, MemoryFilter, NewMemory, RecallParams, Routing};
use loci_storage::{NsContext, Store, StoreConfig};

const DIM: usize = 384;

fn ctx() -> NsContext {
    NsContext {
        id: 42,
        name: "bench".into(),
        key: DataKey::new(42, 1, SecretKey::from_bytes([7; 32])),
        dimension: DIM,
        embedder: Arc::new(HashEmbedder::new(DIM)),
        max_memories: None,
        max_agents: None,
        max_sessions_per_agent: None,
        metric: loci_storage::vector::Metric::Cosine,
        epoch: 1,
        generation: 0,
        auto_link_threshold: None,
        max_auto_links: 0,
    }
}

const WORDS: &[&str] = &[
    "deploy",
    "database",
    "invoice",
    "customer",
    "latency",
    "kubernetes",
    "holiday",
    "budget",
    "meeting",
    "python",
    "migration",
    "password",
    "backup",
    "frankfurt",
    "coffee",
    "release",
    "incident",
    "contract",
    "roadmap",
    "vector",
];

fn sentence(i: usize) -> String {
    let w = |k: usize| WORDS[(i / 7 + k * 13 + i * k) % WORDS.len()];
    format!("memory {i}: the {} {} needs a {} before the {} on day {}", w(1), w(2), w(3), w(4), i % 365)
}

fn item(i: usize) -> NewMemory {
    NewMemory::text("agent", sentence(i))
}

fn fill(store: &Store, ctx: &NsContext, n: usize) {
    for start in (0..n).step_by(500) {
        let items = (start..(start + 500).min(n)).map(item).collect();
        store.execute(ctx, DataOp::Store { items }).expect("store");
    }
    store.commit_text().expect("commit");
}

fn recall(query: &str) -> DataOp {
    DataOp::Recall(RecallParams {
        query: query.into(),
        query_embedding: None,
        top_k: 10,
        filter: MemoryFilter::default(),
        routing: Routing::Hybrid,
        fusion: Fusion::Minmax,
        vector_weight: None,
        min_score: None,
        importance_weighted: true,
        record_access: false,
        decay: None,
    })
}

fn bench(c: &mut Criterion) {
    let ctx = ctx();
    for n in [10_000usize, 100_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        let t = Instant::now();
        fill(&store, &ctx, n);
        eprintln!("filled {n} memories in {:.1} s", t.elapsed().as_secs_f64());

        let mut g = c.benchmark_group(format!("store/{}k", n / 1000));
        g.sample_size(20).measurement_time(Duration::from_secs(10));
        let mut next = n;
        g.throughput(Throughput::Elements(1));
        g.bench_function("single", |b| {
            b.iter(|| {
                next += 1;
                store.execute(&ctx, DataOp::Store { items: vec![item(next)] }).expect("store")
            })
        });
        g.throughput(Throughput::Elements(100));
        g.bench_function("batch_of_100", |b| {
            b.iter(|| {
                let items = (next..next + 100).map(item).collect();
                next += 100;
                store.execute(&ctx, DataOp::Store { items }).expect("store")
            })
        });
        g.finish();
        store.commit_text().expect("commit");

        let mut g = c.benchmark_group(format!("recall/{}k", n / 1000));
        g.sample_size(30).measurement_time(Duration::from_secs(8));
        let mut q = 0usize;
        g.bench_function("hybrid_top10", |b| {
            b.iter(|| {
                q += 1;
                store
                    .execute(
                        &ctx,
                        recall(&format!("{} {} {}", WORDS[q % 20], WORDS[(q * 3) % 20], WORDS[(q * 7) % 20])),
                    )
                    .expect("recall")
            })
        });
        g.finish();

        if n == 100_000 {
            store.shutdown().expect("shutdown");
            drop(store);
            let mut g = c.benchmark_group("startup/100k");
            g.sample_size(10).measurement_time(Duration::from_secs(30));
            g.bench_function("open_and_load_namespace", |b| {
                b.iter_batched(
                    || (),
                    |_| {
                        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
                        store.execute(&ctx, DataOp::Stats).expect("load");
                        store.shutdown().expect("shutdown");
                    },
                    BatchSize::PerIteration,
                )
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
