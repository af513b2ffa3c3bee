//! The per-namespace replication state machine: events in, commands out.
//!
//! One [`Replica`] per (node, namespace). The runtime calls [`Replica::handle`] with an
//! [`Event`] and executes the returned [`Command`]s **in order** before handling the next
//! event: an `Append`/`Apply`/`PersistFence` must be durable before a later `Send` of the same
//! batch leaves (a reply is only sent about what is on disk). The engine assumes commands
//! succeed; a storage failure is a crash: the runtime rebuilds the replica with
//! [`Replica::recover`] from what its store holds.
//!
//! The handlers, one per concern:
//! - [`primary`]: the client write and read paths and quorum tracking;
//! - [`follower`]: applying replicated entries, fences, progress and log reads for others,
//!   accepting full copies;
//! - [`links`]: the primary's per-follower links: handshake, ordered batched sends, repair
//!   and initial sync by full copies, anti-entropy, promoting a synced replica;
//! - [`takeover`]: a new primary fencing the other replicas and catching up before it serves;
//! - [`truncate`]: log retention.

mod follower;
mod links;
mod primary;
mod takeover;
#[cfg(test)]
mod tests;
mod truncate;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::log::LogIds;
use crate::placement::Placement;
use crate::{Epoch, LogId, NodeId, ReplError, ReqId, Seq, Time};

pub use links::LinkState;

/// Timings and limits, with the values the node uses today.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub me: NodeId,
    /// The namespace policy's `write_quorum` (None: a majority).
    pub write_quorum: Option<usize>,
    /// Entries a log keeps whatever the followers need (`LOG_KEEP`).
    pub log_keep: u64,
    /// Entries per `Replicate` call.
    pub batch: usize,
    /// Entries per `FetchLog` call.
    pub fetch_batch: usize,
    /// Timeout of one `Replicate`, `Progress` or `FetchLog` call.
    pub rpc_timeout: Time,
    /// How long a new primary waits for `Fence` answers.
    pub fence_timeout: Time,
    /// How long a primary waits for a `PushCopy` it asked for.
    pub push_copy_timeout: Time,
    /// How long a write waits for its quorum (`2 * RPC_TIMEOUT`).
    pub write_timeout: Time,
    /// How long a primary fenced by a newer epoch waits for its catalogue to show it.
    pub fenced_wait: Time,
    /// Period of take-over retries, full copies and anti-entropy (the replication loop).
    pub sync_every: Time,
    /// Period of log truncation.
    pub truncate_every: Time,
    pub faults: Faults,
}

impl Config {
    pub fn new(me: NodeId) -> Self {
        Config {
            me,
            write_quorum: None,
            log_keep: 50_000,
            batch: 256,
            fetch_batch: 256,
            rpc_timeout: 5_000,
            fence_timeout: 2_000,
            push_copy_timeout: 600_000,
            write_timeout: 10_000,
            fenced_wait: 2_000,
            sync_every: 300,
            truncate_every: 3_000,
            faults: Faults::default(),
        }
    }
}

/// Deviations from the protocol. All off is the correct engine. `legacy_*` knobs reproduce
/// what the node code does today where the simulator showed it to be wrong; the others are
/// deliberate breakage that only the simulator's own tests set, to prove the checker fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Faults {
    /// Broken: acknowledge a write as soon as the primary committed it.
    pub ack_before_quorum: bool,
    /// Broken: followers ignore the sender's epoch (no fencing).
    pub skip_fence_check: bool,
    /// Broken: a new primary serves at once, without fencing or catching up.
    pub skip_takeover: bool,
    /// Legacy (`Cluster::quorum`): cap the replica count at `rf`.
    pub legacy_quorum_cap: bool,
    /// Legacy (`replicate_to`): accept a follower whose last entry the primary's log no longer
    /// holds, and send it entries without an anchor.
    pub legacy_unanchored_send: bool,
    /// Legacy (`apply_copy`/`import_begin`): accept a full copy from any sender, wipe the rows
    /// when it begins (a lost or interrupted copy leaves the replica empty) and forget the
    /// fence with them.
    pub legacy_copy: bool,
    /// Legacy (planner rule 3): a `Dead` replica that is alive again becomes `Syncing`, which
    /// drops it from the replica count although it may hold acknowledged writes. Fixed: it
    /// stays `Dead` (counted, fenced and asked by a take-over) while the primary copies it,
    /// and the primary makes it `Active` after the copy. Read by the reconciler (the
    /// simulator's) and by the primary's copy pass.
    pub legacy_resync: bool,
    /// Legacy (`copy_to`): a `Syncing` replica is proposed `Active` once it caught up with
    /// what the primary held when its copy ended, while writes keep being acknowledged
    /// without it. Writes acknowledged between then and the commit are then on fewer than a
    /// quorum of the grown replica set. Fixed: from the proposal on, writes also need that
    /// replica's acknowledgement, so once it counts it holds every acknowledged write.
    pub legacy_promotion: bool,
    /// Legacy (planner rules 4 and 7): a replica leaves the placement whatever the others
    /// hold, so a write acknowledged by the primary and that replica alone survives on the
    /// primary only. Fixed: only once every remaining `Active` replica has caught up with the
    /// primary. Read by the reconciler (the simulator's).
    pub legacy_removal: bool,
    /// Legacy (planner rule 2): a `Syncing` replica that is down too long becomes `Dead`,
    /// which makes a replica that never held an acknowledged write count, and its empty answer
    /// can complete a take-over. Fixed: it leaves the placement (rule 6 adds another).
    pub legacy_dead_marking: bool,
    /// Legacy (`Store::fence`): a replica answers any `Fence` with its progress, even one
    /// older than its own fence; together with a take-over at a stale epoch this lets a
    /// deposed primary whose catalogue lags pull a deposed term's writes back over a full copy.
    /// Fixed: such a `Fence` is refused, and a node does not take over (nor serve reads) at an
    /// epoch below its own fence.
    pub legacy_stale_fence: bool,
}

impl Faults {
    /// The node's current behaviour.
    pub fn legacy() -> Self {
        Faults {
            legacy_quorum_cap: true,
            legacy_unanchored_send: true,
            legacy_copy: true,
            legacy_resync: true,
            legacy_promotion: true,
            legacy_removal: true,
            legacy_dead_marking: true,
            legacy_stale_fence: true,
            ..Faults::default()
        }
    }
}

/// What a follower did with a `Replicate` call (`loci_storage::model::ApplyOutcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Applied up to `seq`.
    Applied { seq: Seq },
    /// Already held (a retry or an empty call); applied up to `applied`.
    Duplicate { applied: Seq },
    /// Earlier entries missing: send from `applied + 1`.
    Gap { applied: Seq },
    /// The sender's epoch is older than this replica's fence.
    Fenced { epoch: Epoch },
    /// This replica's log disagrees with the sender's: it needs a full copy.
    Diverged { applied: Seq },
}

/// Node-to-node messages of the protocol. Requests carry an `rid` the reply echoes, so a
/// late, duplicated or reordered reply is recognised and ignored. Entries travel as ids: the
/// runtime attaches the payloads it reads from its log, and applies the ones an `Apply`
/// command names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Primary → follower: entries in order, under the epoch the sender is primary in now,
    /// anchored by `prev` (the entry just before the first), with the log floor.
    Replicate {
        rid: u64,
        sender_epoch: Epoch,
        prev: Option<LogId>,
        entries: Vec<LogId>,
        floor: Seq,
    },
    ReplicateReply {
        rid: u64,
        result: Result<ApplyOutcome, ReplError>,
    },
    /// Where are you? (the primary's handshake, the reconciler's failover choice)
    Progress {
        rid: u64,
    },
    ProgressReply {
        rid: u64,
        progress: LogId,
    },
    /// A new primary fences the receiver at `epoch` and learns its progress.
    Fence {
        rid: u64,
        epoch: Epoch,
    },
    FenceReply {
        rid: u64,
        result: Result<LogId, ReplError>,
    },
    /// A new primary reads the receiver's log from `from`.
    FetchLog {
        rid: u64,
        from: Seq,
        limit: usize,
    },
    FetchLogReply {
        rid: u64,
        entries: Vec<LogId>,
    },
    /// A new primary asks the receiver to push it a full copy.
    PushCopy {
        rid: u64,
    },
    PushCopyReply {
        rid: u64,
        result: Result<LogId, ReplError>,
    },
}

/// What the runtime tells a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The clock moved (timeouts, the replication loop, truncation).
    Tick {
        now: Time,
    },
    /// The local catalogue applied a placement of this namespace.
    Placement(Placement),
    /// Gossip reports `node` alive or down.
    Liveness {
        node: NodeId,
        alive: bool,
    },
    /// A client write (already executed into mutations by the runtime, not yet applied).
    ClientWrite {
        req: ReqId,
    },
    ClientRead {
        req: ReqId,
    },
    /// A message from another node.
    Received {
        from: NodeId,
        msg: Message,
    },
    /// A full copy this node pushed (`Command::StartCopy`) ended; `Ok` carries the progress of
    /// the snapshot it shipped.
    CopyFinished {
        to: NodeId,
        result: Result<LogId, String>,
    },
    /// `from` wants to replace this replica with a full copy, sent under `sender_epoch`.
    CopyBegin {
        from: NodeId,
        sender_epoch: Epoch,
    },
    /// A full copy replaced this replica's rows and log.
    CopyInstalled {
        log: LogIds,
    },
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Primary: commit the client's write as entry `id` (data, log entry and progress in one
    /// synced batch).
    Append {
        req: ReqId,
        id: LogId,
    },
    /// Apply the entries `first..=last` of the message being handled (a `Replicate` or a
    /// `FetchLogReply`), each as one synced batch.
    Apply {
        first: Seq,
        last: Seq,
    },
    /// Store the fence durably before anything that follows is sent.
    PersistFence {
        epoch: Epoch,
    },
    /// Delete log entries below `below` (need not be synced).
    TruncateLog {
        below: Seq,
    },
    /// Send a message (attaching payloads for the entry ids it names).
    Send {
        to: NodeId,
        msg: Message,
    },
    /// Push a full copy (rows and log of one snapshot) to `to` under `sender_epoch`; report
    /// `Event::CopyFinished`.
    StartCopy {
        to: NodeId,
        sender_epoch: Epoch,
    },
    /// Accept `from`'s full copy: wipe this replica's rows and log, then let the copy proceed.
    AcceptCopy {
        from: NodeId,
    },
    /// Refuse `from`'s full copy.
    RefuseCopy {
        from: NodeId,
        error: ReplError,
    },
    AckWrite {
        req: ReqId,
        id: LogId,
    },
    RefuseWrite {
        req: ReqId,
        error: ReplError,
    },
    /// Serve the read from the local store.
    ServeRead {
        req: ReqId,
    },
    RefuseRead {
        req: ReqId,
        error: ReplError,
    },
    /// Commit this placement in the catalogue if its epoch is still `expected_epoch`.
    Propose {
        expected_epoch: Epoch,
        placement: Placement,
    },
}

/// A write waiting for its quorum.
#[derive(Clone, Debug)]
struct Pending {
    req: ReqId,
    /// The write quorum, the primary included (for the error).
    q: usize,
    /// Follower acknowledgements needed (`q - 1`).
    need: usize,
    /// `Active` followers when the write was made: only they count.
    voters: BTreeSet<NodeId>,
    acks: BTreeSet<NodeId>,
    failed: BTreeSet<NodeId>,
    /// A replica proposed `Active` when the write was made: its acknowledgement is needed too.
    required: Option<NodeId>,
    deadline: Time,
}

/// One node's replica of one namespace.
#[derive(Debug)]
pub struct Replica {
    cfg: Config,
    /// The local catalogue's placement.
    placement: Option<Placement>,
    /// Nodes gossip reports down.
    down: BTreeSet<NodeId>,
    /// Mirror of the local log (the last entry is the applied progress).
    log: LogIds,
    /// The highest epoch this replica refuses older senders below (stored fence, entries,
    /// senders, fences); the catalogue's epoch is added when checking.
    fence: Epoch,
    now: Time,
    next_rid: u64,
    /// The epoch this node last took over as primary in.
    taken_over: Option<Epoch>,
    takeover: Option<takeover::Takeover>,
    /// Requests that arrived before the take-over finished: (request, is_write).
    waiting: Vec<(ReqId, bool)>,
    links: BTreeMap<NodeId, links::Link>,
    pending: BTreeMap<Seq, Pending>,
    /// The log floor a primary passes on, and what each follower was last sent.
    floor: Seq,
    floors_sent: BTreeMap<NodeId, Seq>,
    /// `PushCopy` requests being served: requester → rid.
    push_requests: BTreeMap<NodeId, u64>,
    /// A replica proposed `Active` in this epoch: (node, epoch).
    promoting: Option<(NodeId, Epoch)>,
    /// A full copy this replica accepted and waits for: (sender, its epoch).
    staged_copy: Option<(NodeId, Epoch)>,
    next_sync: Time,
    next_truncate: Time,
    out: Vec<Command>,
}

impl Replica {
    /// A replica with an empty log (a new namespace).
    pub fn new(cfg: Config) -> Self {
        Self::recover(cfg, LogIds::new(), 0)
    }

    /// A replica rebuilt from its store after a start or crash: its log and its stored fence.
    /// Everything else (links, take-over, pending writes) is gone: a restarted primary takes
    /// over again.
    pub fn recover(cfg: Config, log: LogIds, stored_fence: Epoch) -> Self {
        let fence = stored_fence.max(log.last().epoch);
        let now = 0;
        Replica {
            next_sync: now,
            next_truncate: now + cfg.truncate_every,
            cfg,
            placement: None,
            down: BTreeSet::new(),
            log,
            fence,
            now,
            next_rid: 1,
            taken_over: None,
            takeover: None,
            waiting: Vec::new(),
            links: BTreeMap::new(),
            pending: BTreeMap::new(),
            floor: 0,
            floors_sent: BTreeMap::new(),
            push_requests: BTreeMap::new(),
            promoting: None,
            staged_copy: None,
            out: Vec::new(),
        }
    }

    /// Feed one event; returns the commands to execute, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Tick { now } => self.on_tick(now),
            Event::Placement(p) => self.on_placement(p),
            Event::Liveness { node, alive } => {
                if alive {
                    self.down.remove(&node);
                } else {
                    self.down.insert(node);
                }
            }
            Event::ClientWrite { req } => self.on_client_write(req),
            Event::ClientRead { req } => self.on_client_read(req),
            Event::Received { from, msg } => self.on_message(from, msg),
            Event::CopyFinished { to, result } => self.on_copy_finished(to, result),
            Event::CopyBegin { from, sender_epoch } => self.on_copy_begin(from, sender_epoch),
            Event::CopyInstalled { log } => self.on_copy_installed(log),
        }
        std::mem::take(&mut self.out)
    }

    // --- read-only accessors (status, tests, the simulator's checks) ---

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }
    /// The last applied entry.
    pub fn progress(&self) -> LogId {
        self.log.last()
    }
    pub fn log(&self) -> &LogIds {
        &self.log
    }
    pub fn fence(&self) -> Epoch {
        self.fence
    }
    /// Whether this node is the primary of its placement and has taken over, so it serves.
    pub fn is_serving(&self) -> bool {
        self.placement.as_ref().is_some_and(|p| p.primary() == Some(self.cfg.me) && self.is_taken_over(p))
    }
    /// The link state to a follower, as a primary sees it.
    pub fn link(&self, node: NodeId) -> Option<&LinkState> {
        self.links.get(&node).map(|l| &l.state)
    }
    /// Writes waiting for their quorum.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    // --- shared helpers ---

    fn rid(&mut self) -> u64 {
        let r = self.next_rid;
        self.next_rid += 1;
        r
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.out.push(Command::Send { to, msg });
    }

    fn is_taken_over(&self, p: &Placement) -> bool {
        self.taken_over.is_some_and(|e| e >= p.takeover_epoch())
    }

    /// The fence checked against senders: the stored/seen fence and the catalogue's epoch.
    fn effective_fence(&self) -> Epoch {
        self.fence.max(self.placement.as_ref().map_or(0, |p| p.epoch))
    }

    fn alive(&self, node: NodeId) -> bool {
        !self.down.contains(&node)
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Replicate { rid, sender_epoch, prev, entries, floor } => {
                self.on_replicate(from, rid, sender_epoch, prev, &entries, floor)
            }
            Message::ReplicateReply { rid, result } => self.on_replicate_reply(from, rid, result),
            Message::Progress { rid } => {
                let progress = self.log.last();
                self.send(from, Message::ProgressReply { rid, progress });
            }
            Message::ProgressReply { rid, progress } => self.on_progress_reply(from, rid, progress),
            Message::Fence { rid, epoch } => self.on_fence(from, rid, epoch),
            Message::FenceReply { rid, result } => self.on_fence_reply(from, rid, result),
            Message::FetchLog { rid, from: start, limit } => {
                let entries = self.log.ids_from(start, limit.clamp(1, 1024));
                self.send(from, Message::FetchLogReply { rid, entries });
            }
            Message::FetchLogReply { rid, entries } => self.on_fetch_log_reply(from, rid, &entries),
            Message::PushCopy { rid } => self.on_push_copy(from, rid),
            Message::PushCopyReply { rid, result } => self.on_push_copy_reply(from, rid, result),
        }
    }

    fn on_tick(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.expire_pending();
        self.expire_links();
        self.expire_takeover();
        if self.now >= self.next_sync {
            self.next_sync = self.now + self.cfg.sync_every;
            self.sync_pass();
        }
        if self.now >= self.next_truncate {
            self.next_truncate = self.now + self.cfg.truncate_every;
            self.truncate_pass();
        }
    }

    /// A new placement from the local catalogue (older ones are ignored).
    fn on_placement(&mut self, p: Placement) {
        if self.placement.as_ref().is_some_and(|old| old.epoch >= p.epoch) {
            return;
        }
        let me = self.cfg.me;
        let primary = p.primary() == Some(me);
        self.placement = Some(p);
        if !primary {
            self.step_down();
            return;
        }
        // Links to nodes that left the placement are dropped.
        let replicas: BTreeSet<NodeId> = self.placement.iter().flat_map(|p| p.replicas.iter().copied()).collect();
        self.links.retain(|n, _| replicas.contains(n));
        if self.placement.as_ref().is_some_and(|p| self.is_taken_over(p)) {
            self.resume_stalled_links();
        } else {
            self.start_takeover();
        }
    }
}
