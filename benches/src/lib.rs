//! Benchmarks live in `benches/`: storage (store/recall/start-up), requests (auth cost), embeddings.
//! The load generator is `src/bin/loadgen.rs`.
