//! What the clients of a rig run saw, recorded as plain data: every request with its node, its
//! start and end (milliseconds since the run began), its answer, and what it returned. The
//! checker ([`crate::checker`]) reads only this; nothing here does IO.

use std::collections::BTreeMap;

use serde::Serialize;

/// Milliseconds since the start of the run.
pub type Ms = u64;

/// One memory as a read returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub id: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub enum Op {
    /// A store of `id` = `content` into the tenant's own namespace, with its own key.
    Write { id: String, content: String },
    /// A read of the tenant's own namespace (recall, listing or get) with its own key.
    Read { what: &'static str, seen: Vec<Seen> },
    /// The tenant's key used on another tenant's namespace: must be refused.
    CrossRead { victim: usize, seen: Vec<Seen> },
    /// A request made with a key after its revocation was requested (see [`Revocation`]).
    RevokedUse { key_id: String },
}

/// One request. `status` is `None` when no answer came (connection refused or reset, timeout).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub tenant: usize,
    pub node: usize,
    pub start: Ms,
    pub end: Ms,
    pub status: Option<u16>,
    pub op: Op,
    /// The error message of a 5xx answer, for the report.
    pub error: Option<String>,
}

impl Event {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A key deactivated through the API; `acked_at` is when the 200 arrived.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    pub key_id: String,
    pub tenant: usize,
    pub acked_at: Ms,
}

/// Every row of one tenant's namespace read through one node after the faults were healed.
/// `rows` is `None` when that node did not answer the read within the deadline.
#[derive(Debug, Clone, Serialize)]
pub struct FinalRead {
    pub tenant: usize,
    pub node: usize,
    pub rows: Option<BTreeMap<String, String>>,
}

/// A burst of requests with one key, spread over every node, while `backend` served rate limits
/// (`"redis"`, or `"local"` while Redis was stopped). Counted by the requests' start times.
#[derive(Debug, Clone, Serialize)]
pub struct RateWindow {
    pub backend: &'static str,
    pub start: Ms,
    pub end: Ms,
    /// The per-key rate (requests per second) and burst the nodes were started with.
    pub rate_rps: f64,
    pub burst: u32,
    pub nodes: usize,
    pub allowed: u64,
    pub limited: u64,
    pub other: u64,
}

impl RateWindow {
    /// The most requests the limits allow over the window. The budget is shared (through Redis,
    /// or split between the alive nodes when Redis is down), so it is the burst plus the rate
    /// over the window; plus one request per node for the local limiters' rounding (each holds
    /// a burst of at least 1) and one second of rate for the distance between when a client
    /// sent a request and when a node decided it.
    pub fn bound(&self) -> u64 {
        let secs = (self.end.saturating_sub(self.start)) as f64 / 1000.0 + 1.0;
        (f64::from(self.burst) + self.nodes as f64 + self.rate_rps * secs).ceil() as u64
    }
}

/// Faults injected, by kind, for the results table.
pub type FaultCounts = BTreeMap<&'static str, u64>;

/// Everything the checker looks at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub tenants: usize,
    pub nodes: usize,
    pub events: Vec<Event>,
    pub revocations: Vec<Revocation>,
    pub final_reads: Vec<FinalRead>,
    pub rate_windows: Vec<RateWindow>,
    /// Set when the cluster did not report itself healthy, with no unhealthy replica, after
    /// healing: what it reported instead.
    pub unsettled: Option<String>,
    pub faults: FaultCounts,
}

/// The id and content a tenant writes as its `k`th memory; the tenant is part of both, so a
/// memory read anywhere names its writer.
pub fn write_of(tenant: usize, k: u64, token: u64) -> (String, String) {
    (format!("t{tenant}-{k}"), format!("tenant {tenant} memory {k} token {token:016x}"))
}

/// The tenant a memory id belongs to (`t3-17` → 3).
pub fn tenant_of(id: &str) -> Option<usize> {
    id.strip_prefix('t')?.split_once('-')?.0.parse().ok()
}

/// The tenant named in a memory's content (`tenant 3 memory …` → 3).
pub fn writer_of(content: &str) -> Option<usize> {
    content.strip_prefix("tenant ")?.split_once(' ')?.0.parse().ok()
}
