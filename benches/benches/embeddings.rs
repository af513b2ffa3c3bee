//! Embeddings per second of the built-in all-MiniLM-L6-v2 (candle, CPU): one text per call
//! (a single store) and 32 per call (a batch store). The model comes from
//! LOCI_TEST_MODEL_DIR (default /var/tmp/loci-models/all-MiniLM-L6-v2; `make model`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loci_storage::embed::Embedder;

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("LOCI_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/loci-models/all-MiniLM-L6-v2"));
    let model = loci_storage::minilm::MiniLm::load_unshared(&dir).expect("the model (run `make model`)");
    let texts: Vec<String> = (0..32)
        .map(|i| {
            format!("The customer in account {i} asked us to move the quarterly review to next Thursday afternoon")
        })
        .collect();
    let mut g = c.benchmark_group("embeddings/minilm");
    g.sample_size(20).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| b.iter(|| model.embed(&[texts[0].as_str()]).expect("embed")));
    g.throughput(Throughput::Elements(32));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    g.bench_function("batch_of_32", |b| b.iter(|| model.embed(&refs).expect("embed")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
