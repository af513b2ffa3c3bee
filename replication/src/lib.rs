//! Loci's namespace replication protocol, without IO.
//!
//! [`engine::Replica`] is the state machine one node runs for one namespace: the runtime feeds
//! it [`engine::Event`]s (a client write, a message from another node, a timer tick, a new
//! placement from the catalogue, a finished copy) and executes the [`engine::Command`]s it
//! emits (append to the local log, apply received entries, send a message, start a full copy,
//! answer a client, propose a placement). It never blocks, reads a clock or touches a disk, so
//! every decision of the protocol is unit-tested by asserting on the emitted commands.
//!
//! [`sim`] runs several replicas over a simulated network, store and catalogue under a seeded
//! scheduler (delays, drops, duplicates, reordering, crashes, partitions, placement changes)
//! and checks after every run that no acknowledged write was lost, no phantom write appeared,
//! no two nodes wrote in one epoch, and the replicas converged.

pub mod engine;
pub mod error;
pub mod log;
pub mod placement;
pub mod sim;

pub use error::ReplError;

/// A node id, as in the catalogue's membership.
pub type NodeId = u64;
/// A per-namespace sequence number (1 is the first write; 0 means "nothing applied").
pub type Seq = u64;
/// A placement epoch.
pub type Epoch = u64;
/// Milliseconds on the runtime's clock (monotonic; the engine only compares them).
pub type Time = u64;
/// A client request, named by the runtime (the engine echoes it in its answer).
pub type ReqId = u64;

/// The identity of a log entry: the sequence number and the placement epoch it was written in.
/// Ordered by `(epoch, seq)`, the order in which a new primary compares replicas' progress
/// ("most advanced" first by the epoch of the last entry, then by its sequence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct LogId {
    pub epoch: Epoch,
    pub seq: Seq,
}

impl LogId {
    pub const fn new(epoch: Epoch, seq: Seq) -> Self {
        LogId { epoch, seq }
    }
}
