//! Loci storage: the node-local data plane below the network.
//!
//! * [`crypto`] — the key hierarchy and AES-256-GCM sealing of every record.
//! * [`store`] — RocksDB (fixed column families keyed by namespace id), per-namespace state,
//!   and the executor of [`model::DataOp`]s.
//! * [`vector`] / [`text`] — HNSW (hnsw_rs) and blind-indexed BM25 (tantivy) indexes.
//! * [`filter`] — the metadata filter DSL of the vector and document routes.
//! * [`embed`] — the `Embedder` trait and the built-in hashed n-gram embedder.
//! * [`graph`], [`entities`], [`decay`] — the knowledge graph, the rule-based entity
//!   extractor and importance decay, IO-free; [`extract`] — the `EntityExtractor` trait.

pub mod crypto;
pub mod decay;
pub mod embed;
pub mod entities;
pub mod error;
pub mod extract;
pub mod filter;
pub mod graph;
pub mod minilm;
pub mod model;
pub mod store;
pub mod text;
pub mod vector;

pub use error::{Result, StorageError};
pub use store::{NsContext, Store, StoreConfig};
