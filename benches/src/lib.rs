//! Benchmarks live in `benches/`: storage (store/recall/start-up), requests (auth cost), embeddings.
