//! Loci's service layer, below both fronts (REST and gRPC are transport: they parse, call the
//! service, and map its error once).
//!
//! - [`Core`]: namespaces (creation through the catalogue, erasure, policies), encryption
//!   rotation, retention, re-embedding jobs, and the entry point of every data operation.
//! - [`namespaces`]: the namespace calls of both fronts (create, read, erase, policy,
//!   re-embedding) on [`Core::ns`].
//! - [`memories`]: the memory calls of both fronts (store, get, update, forget, recall) on
//!   [`Core::memories`]: scope, screening, namespace budgets, locating a memory.
//! - [`sessions`]: sessions and agents on [`Core::sessions`].
//! - [`keys`]: API-key management (minting, who manages which key, updates, revocation,
//!   rotation), as typed calls on [`Core::keys`].
//! - [`access`]: who a secret is and what it may do; [`audit`] and [`ratelimit`]: the hash-chained
//!   audit log and the GCRA limiter shared through Redis; [`usage`]: per-key counters.
//! - [`cluster`]: the data plane (placement, forwarding to primaries, replication, failover, the
//!   reconciler) and the node-to-node gRPC service, acting on this node's store through
//!   [`cluster::Local`], given at construction: nothing here calls back up.
//! - [`vectors`]: raw vectors and documents (the vector, full-text and hybrid routes), records in
//!   the namespace's store like memories.
//! - [`contexts`]: data keys and embedders, shared by [`Core`] and the data plane.
//! - [`graph`]: the knowledge graph and entities on [`Core::graph`]; [`maintenance`]:
//!   deduplication, its trash, consolidation, feedback, decay and the autopilot on
//!   [`Core::maintenance`].
//!
//! Calls go one way: fronts → [`Core`] → [`cluster::Cluster`] → (storage, catalogue, gossip).

pub mod access;
#[cfg(test)]
mod access_props;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod contexts;
pub mod core;
pub mod embedders;
pub mod error;
pub mod events;
pub mod extractors;
pub mod graph;
pub mod jwt;
pub mod keys;
pub mod maintenance;
pub mod memories;
pub mod namespaces;
pub mod quotas;
pub mod ratelimit;
pub mod reembed;
pub mod request_id;
pub mod screening;
pub mod sessions;
pub mod upstream;
pub mod usage;
pub mod validate;
#[cfg(test)]
mod validate_props;
pub mod vectors;
pub mod webhooks;

pub use crate::core::{AGENT_NAMESPACE_PREFIX, Core, CoreConfig, DeletionReceipt, NamespaceSpec, canonical_namespace};
pub use error::{ServiceError, ServiceResult, StatusCode};
