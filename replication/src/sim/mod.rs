//! A deterministic simulator of the replication protocol.
//!
//! `nodes` nodes each run a [`crate::engine::Replica`] of one namespace over a simulated
//! store (synced writes survive a crash, unsynced ones do not), a simulated network (delays,
//! drops, duplicates, reordering, partitions), a simulated catalogue (compare-and-set
//! placements with epochs, applied on each node after a delay, withheld from a partitioned
//! minority) and a reconciler on the majority side (failover to the most caught-up live
//! replica, dead marking, resync, drop, drain hand-offs, moves). Clients write and read.
//!
//! One seed drives everything ([`rng::Rng`]); the same seed gives the same event sequence,
//! whose hash is [`Outcome::trace_hash`]. After a fault phase, everything heals (nodes
//! restart, partitions close, the network stops losing messages) and the run settles; then
//! [`check`] asserts the invariants.

mod check;
pub mod rng;
mod world;

use crate::Time;
use crate::engine::Faults;

pub use check::{Violation, ViolationKind};

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: u64,
    pub rf: usize,
    /// Length of the fault phase (ms of simulated time).
    pub fault_ms: Time,
    /// Length of the settling phase after healing.
    pub heal_ms: Time,
    /// Mean time between client operations.
    pub client_every: Time,
    /// Mean time between fault actions.
    pub chaos_every: Time,
    pub drop_percent: u64,
    pub duplicate_percent: u64,
    pub max_delay: Time,
    pub crashes: bool,
    pub partitions: bool,
    /// Drain hand-offs and replica moves.
    pub moves: bool,
    /// Engine faults (the broken modes, or the legacy behaviours).
    pub faults: Faults,
    /// Entries a log keeps (small, so truncation and copies happen).
    pub log_keep: u64,
    /// Record a readable trace.
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 4,
            rf: 3,
            fault_ms: 12_000,
            heal_ms: 12_000,
            client_every: 150,
            chaos_every: 700,
            drop_percent: 5,
            duplicate_percent: 3,
            max_delay: 120,
            crashes: true,
            partitions: true,
            moves: true,
            faults: Faults::default(),
            log_keep: 4,
            trace: false,
        }
    }
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub writes: u64,
    pub acked: u64,
    pub refused: u64,
    pub unknown: u64,
    pub reads: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub failovers: u64,
    pub placement_changes: u64,
    pub copies: u64,
    pub messages: u64,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub trace_hash: u64,
    pub violations: Vec<Violation>,
    pub stats: Stats,
    /// The readable trace, when [`SimConfig::trace`] is set.
    pub trace: Vec<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Run one seed.
pub fn run(seed: u64, cfg: &SimConfig) -> Outcome {
    let mut out = world::World::new(seed, cfg.clone()).run();
    out.seed = seed;
    out
}
