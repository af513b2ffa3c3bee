//! The simulated cluster: nodes (engine + store), network, catalogue, reconciler, clients,
//! and the seeded scheduler that drives them.

use std::collections::{BTreeMap, BTreeSet};

mod faults;
mod reconciler;

use super::check::{Violation, ViolationKind};
use super::rng::{Rng, TraceHash};
use super::{Outcome, SimConfig, Stats};
use crate::engine::{Command, Config, Event, Message, Replica};
use crate::log::LogIds;
use crate::placement::{Placement, compare_and_set};
use crate::{Epoch, LogId, NodeId, ReqId, Seq, Time};

/// The catalogue and the reconciler (on the majority side of any partition).
pub(super) const CATALOGUE: NodeId = 0;
const TICK: Time = 100;
const RECONCILE: Time = 500;
const FAILOVER_AFTER: Time = 2_000;
const DEAD_GRACE: Time = 8_000;
const COPY_TIMEOUT: Time = 3_000;

/// Entries and rows: seq → (epoch, the client write it carries).
pub(super) type Rows = BTreeMap<Seq, (Epoch, ReqId)>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Disk {
    pub(super) data: Rows,
    pub(super) log: Rows,
    pub(super) fence: Epoch,
}

/// A store with fsync semantics: `cur` is what the process sees, `durable` what survives a
/// crash. A synced write makes everything before it durable too (one write-ahead log).
#[derive(Clone, Debug, Default)]
pub(super) struct Store {
    pub(super) cur: Disk,
    durable: Disk,
}

impl Store {
    fn sync(&mut self) {
        self.durable = self.cur.clone();
    }
    fn crash(&mut self) {
        self.cur = self.durable.clone();
    }
    fn log_ids(&self) -> LogIds {
        let ids: Vec<LogId> = self.cur.log.iter().map(|(s, (e, _))| LogId::new(*e, *s)).collect();
        LogIds::from_ids(&ids)
    }
}

pub(super) struct SimNode {
    pub(super) id: NodeId,
    pub(super) up: bool,
    pub(super) replica: Replica,
    pub(super) store: Store,
    incarnation: u64,
    /// Copies this node pushes: target → (job, snapshot).
    copies_out: BTreeMap<NodeId, (u64, Disk)>,
    /// The copy this node accepted: (sender, job).
    copy_in: Option<(NodeId, u64)>,
}

#[derive(Clone, Debug)]
enum Wire {
    Engine(Message, Vec<ReqId>),
    CopyBegin { job: u64, sender_epoch: Epoch },
    CopyBeginReply { job: u64, ok: bool },
    CopyData { job: u64, snapshot: Disk },
    CopyDone { job: u64, ok: bool },
    Propose { expected_epoch: Epoch, placement: Placement },
}

#[derive(Clone, Debug)]
enum Ev {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        wire: Wire,
    },
    Placement {
        to: NodeId,
        placement: Placement,
    },
    /// `observer` (CATALOGUE: the reconciler) learns that `node` is alive or down.
    Liveness {
        observer: NodeId,
        node: NodeId,
        alive: bool,
    },
    Reconcile,
    Chaos,
    Client,
    CopyTimeout {
        from: NodeId,
        to: NodeId,
        job: u64,
    },
    Heal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum WriteState {
    Issued,
    Acked(LogId),
    Refused { may_have_applied: bool },
}

pub(super) struct World {
    pub(super) cfg: SimConfig,
    rng: Rng,
    now: Time,
    seq: u64,
    queue: BTreeMap<(Time, u64), Ev>,
    pub(super) nodes: Vec<SimNode>,
    pub(super) catalogue: Placement,
    /// Nodes whose placement delivery waits (down or partitioned away).
    cat_deferred: BTreeSet<NodeId>,
    cat_last_delivery: BTreeMap<NodeId, Time>,
    /// The reconciler's view: node → down since.
    rec_down: BTreeMap<NodeId, Time>,
    draining: Option<NodeId>,
    /// The minority side of the current partition.
    isolated: BTreeSet<NodeId>,
    healed: bool,
    next_req: ReqId,
    next_job: u64,
    pub(super) writes: BTreeMap<ReqId, WriteState>,
    appended: BTreeSet<ReqId>,
    /// Reads in flight: the writes acknowledged before each was issued.
    reads: BTreeMap<ReqId, Vec<ReqId>>,
    epoch_writers: BTreeMap<Epoch, NodeId>,
    pub(super) violations: Vec<Violation>,
    pub(super) stats: Stats,
    hash: TraceHash,
    trace: Vec<String>,
}

impl World {
    pub(super) fn new(seed: u64, cfg: SimConfig) -> Self {
        let mut rng = Rng::new(seed);
        let ids: Vec<NodeId> = (1..=cfg.nodes).collect();
        let rf = cfg.rf.min(ids.len());
        // The replicas: `rf` nodes in a seeded order, the first primary.
        let mut order = ids.clone();
        for i in (1..order.len()).rev() {
            let j = rng.range(0, i as u64) as usize;
            order.swap(i, j);
        }
        order.truncate(rf);
        let catalogue = Placement::initial(&order, rf);
        let nodes = ids
            .iter()
            .map(|id| SimNode {
                id: *id,
                up: true,
                replica: Replica::new(engine_config(&cfg, *id)),
                store: Store::default(),
                incarnation: 0,
                copies_out: BTreeMap::new(),
                copy_in: None,
            })
            .collect();
        let mut w = World {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            catalogue,
            cat_deferred: BTreeSet::new(),
            cat_last_delivery: BTreeMap::new(),
            rec_down: BTreeMap::new(),
            draining: None,
            isolated: BTreeSet::new(),
            healed: false,
            next_req: 1,
            next_job: 1,
            writes: BTreeMap::new(),
            appended: BTreeSet::new(),
            reads: BTreeMap::new(),
            epoch_writers: BTreeMap::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            hash: TraceHash::default(),
            trace: Vec::new(),
        };
        for id in ids {
            let p = w.catalogue.clone();
            w.deliver_placement(id, p);
            let jitter = w.rng.range(0, TICK);
            w.at(jitter, Ev::Tick { node: id, incarnation: 0 });
        }
        w.at(RECONCILE, Ev::Reconcile);
        let c = w.cfg.chaos_every;
        let first = w.rng.range(c / 2, c * 3 / 2);
        w.at(first, Ev::Chaos);
        w.at(50, Ev::Client);
        let fault_ms = w.cfg.fault_ms;
        w.at(fault_ms, Ev::Heal);
        w
    }

    fn at(&mut self, delay: Time, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    fn note(&mut self, words: &[u64], text: impl FnOnce() -> String) {
        self.hash.mix(words);
        if self.cfg.trace {
            let line = format!("{:>6} {}", self.now, text());
            self.trace.push(line);
        }
    }

    pub(super) fn violation(&mut self, kind: ViolationKind, detail: String) {
        self.note(&[99, kind as u64], || format!("VIOLATION {kind:?}: {detail}"));
        self.violations.push(Violation { kind, detail });
    }

    pub(super) fn run(mut self) -> Outcome {
        let end = self.cfg.fault_ms + self.cfg.heal_ms;
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > end {
                break;
            }
            self.now = t;
            self.stats.steps += 1;
            self.step(ev);
        }
        self.now = end;
        self.final_checks();
        Outcome {
            seed: 0,
            trace_hash: self.hash.value(),
            violations: self.violations,
            stats: self.stats,
            trace: self.trace,
        }
    }

    fn node(&mut self, id: NodeId) -> Option<&mut SimNode> {
        id.checked_sub(1).and_then(|i| self.nodes.get_mut(i as usize))
    }

    fn is_up(&self, id: NodeId) -> bool {
        id == CATALOGUE || id.checked_sub(1).and_then(|i| self.nodes.get(i as usize)).is_some_and(|n| n.up)
    }

    fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.isolated.contains(&a) != self.isolated.contains(&b)
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { node, incarnation } => {
                let now = self.now;
                let Some(n) = self.node(node) else { return };
                if !n.up || n.incarnation != incarnation {
                    return;
                }
                let cmds = n.replica.handle(Event::Tick { now });
                self.note(&[1, node], || format!("tick n{node}"));
                self.exec(node, cmds, &[]);
                self.at(TICK, Ev::Tick { node, incarnation });
            }
            Ev::Deliver { from, to, wire } => self.deliver(from, to, wire),
            Ev::Placement { to, placement } => {
                let Some(n) = self.node(to) else { return };
                if !n.up {
                    return;
                }
                let epoch = placement.epoch;
                let cmds = n.replica.handle(Event::Placement(placement));
                self.note(&[2, to, epoch], || format!("n{to} applies placement epoch {epoch}"));
                self.exec(to, cmds, &[]);
            }
            Ev::Liveness { observer, node, alive } => {
                // Stale news (the node changed again since) is dropped.
                let truly_alive = self.is_up(node) && !self.cut(observer, node);
                if truly_alive != alive {
                    return;
                }
                self.note(&[3, observer, node, alive as u64], || format!("n{observer} sees n{node} alive={alive}"));
                if observer == CATALOGUE {
                    if alive {
                        self.rec_down.remove(&node);
                    } else {
                        let now = self.now;
                        self.rec_down.entry(node).or_insert(now);
                    }
                    return;
                }
                let Some(n) = self.node(observer) else { return };
                if !n.up {
                    return;
                }
                let cmds = n.replica.handle(Event::Liveness { node, alive });
                self.exec(observer, cmds, &[]);
            }
            Ev::Reconcile => {
                self.reconcile();
                self.at(RECONCILE, Ev::Reconcile);
            }
            Ev::Chaos => {
                if !self.healed {
                    self.chaos();
                    let c = self.cfg.chaos_every;
                    let next = self.rng.range(c / 2, c * 3 / 2);
                    self.at(next, Ev::Chaos);
                }
            }
            Ev::Client => {
                if !self.healed {
                    self.client_op();
                    let c = self.cfg.client_every;
                    let next = self.rng.range(c / 2, c * 3 / 2);
                    self.at(next, Ev::Client);
                }
            }
            Ev::CopyTimeout { from, to, job } => {
                let Some(n) = self.node(from) else { return };
                if n.up && n.copies_out.get(&to).is_some_and(|(j, _)| *j == job) {
                    n.copies_out.remove(&to);
                    let cmds = n.replica.handle(Event::CopyFinished { to, result: Err("timed out".into()) });
                    self.note(&[4, from, to, job], || format!("copy n{from}->n{to} #{job} timed out"));
                    self.exec(from, cmds, &[]);
                }
            }
            Ev::Heal => self.heal(),
        }
    }

    // --- the network ---

    fn send(&mut self, from: NodeId, to: NodeId, wire: Wire) {
        self.stats.messages += 1;
        let lossy = !self.healed;
        if lossy && self.rng.chance(self.cfg.drop_percent) {
            self.note(&[5, from, to], || format!("drop n{from}->n{to} {wire:?}"));
            return;
        }
        // A full copy's calls are RPCs: delayed or lost, never delivered twice (a replayed
        // `Begin` would start the finished copy again and roll the replica back).
        let rpc = matches!(
            wire,
            Wire::CopyBegin { .. } | Wire::CopyBeginReply { .. } | Wire::CopyData { .. } | Wire::CopyDone { .. }
        );
        let copies = if lossy && !rpc && self.rng.chance(self.cfg.duplicate_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.range(1, self.cfg.max_delay);
            self.at(delay, Ev::Deliver { from, to, wire: wire.clone() });
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, wire: Wire) {
        if !self.is_up(to) || self.cut(from, to) {
            return;
        }
        if to == CATALOGUE {
            if let Wire::Propose { expected_epoch, placement } = wire {
                self.note(&[6, from, expected_epoch], || format!("n{from} proposes {placement:?}"));
                if let Some(p) = compare_and_set(&self.catalogue, expected_epoch, placement) {
                    self.commit(p);
                }
            }
            return;
        }
        let words = wire_words(&wire);
        self.note(&[7, from, to, words.0, words.1], || format!("n{from}->n{to} {wire:?}"));
        match wire {
            Wire::Engine(msg, payloads) => {
                let ctx: Vec<(LogId, ReqId)> = match &msg {
                    Message::Replicate { entries, .. } | Message::FetchLogReply { entries, .. } => {
                        entries.iter().copied().zip(payloads.iter().copied()).collect()
                    }
                    _ => Vec::new(),
                };
                let Some(n) = self.node(to) else { return };
                let cmds = n.replica.handle(Event::Received { from, msg });
                self.exec(to, cmds, &ctx);
            }
            Wire::CopyBegin { job, sender_epoch } => {
                let Some(n) = self.node(to) else { return };
                n.copy_in = None;
                let cmds = n.replica.handle(Event::CopyBegin { from, sender_epoch });
                let accepted = cmds.iter().any(|c| matches!(c, Command::AcceptCopy { .. }));
                if accepted {
                    n.copy_in = Some((from, job));
                }
                self.exec(to, cmds, &[]);
                self.send(to, from, Wire::CopyBeginReply { job, ok: accepted });
            }
            Wire::CopyBeginReply { job, ok } => {
                let Some(n) = self.node(to) else { return };
                let Some((j, snapshot)) = n.copies_out.get(&from).cloned() else { return };
                if j != job {
                    return;
                }
                if ok {
                    self.send(to, from, Wire::CopyData { job, snapshot });
                } else {
                    self.finish_copy(to, from, false);
                }
            }
            Wire::CopyData { job, snapshot } => {
                let Some(n) = self.node(to) else { return };
                let ok = n.copy_in == Some((from, job));
                if ok {
                    n.copy_in = None;
                    n.store.cur.data = snapshot.data;
                    n.store.cur.log = snapshot.log;
                    n.store.sync();
                    let log = n.store.log_ids();
                    let cmds = n.replica.handle(Event::CopyInstalled { log });
                    self.exec(to, cmds, &[]);
                }
                self.send(to, from, Wire::CopyDone { job, ok });
            }
            Wire::CopyDone { job, ok } => {
                let Some(n) = self.node(to) else { return };
                if n.copies_out.get(&from).is_some_and(|(j, _)| *j == job) {
                    self.finish_copy(to, from, ok);
                }
            }
            Wire::Propose { .. } => {}
        }
    }

    fn finish_copy(&mut self, from: NodeId, to: NodeId, ok: bool) {
        let Some(n) = self.node(from) else { return };
        let Some((_, snapshot)) = n.copies_out.remove(&to) else { return };
        let shipped = snapshot.log.iter().next_back().map(|(s, (e, _))| LogId::new(*e, *s)).unwrap_or_default();
        let result = if ok { Ok(shipped) } else { Err("refused".to_string()) };
        let cmds = n.replica.handle(Event::CopyFinished { to, result });
        self.exec(from, cmds, &[]);
    }

    // --- executing a node's commands ---

    fn exec(&mut self, node: NodeId, cmds: Vec<Command>, ctx: &[(LogId, ReqId)]) {
        for cmd in cmds {
            self.exec_one(node, cmd, ctx);
        }
    }

    fn append(&mut self, node: NodeId, id: LogId, req: ReqId) {
        let Some(n) = self.node(node) else { return };
        let applied = n.store.cur.log.keys().next_back().copied().unwrap_or(0);
        let data_last = n.store.cur.data.keys().next_back().copied().unwrap_or(0);
        let in_order = id.seq == applied + 1 && id.seq == data_last + 1;
        n.store.cur.data.insert(id.seq, (id.epoch, req));
        n.store.cur.log.insert(id.seq, (id.epoch, req));
        n.store.sync();
        if !in_order {
            self.violation(
                ViolationKind::OutOfOrderApply,
                format!("n{node} applied seq {} after {applied} (data at {data_last})", id.seq),
            );
        }
    }

    fn exec_one(&mut self, node: NodeId, cmd: Command, ctx: &[(LogId, ReqId)]) {
        match cmd {
            Command::Append { req, id } => {
                self.append(node, id, req);
                self.appended.insert(req);
                self.note(&[10, node, req, id.epoch, id.seq], || format!("n{node} appends w{req} as {id:?}"));
                match self.epoch_writers.get(&id.epoch) {
                    Some(w) if *w != node => {
                        let w = *w;
                        self.violation(
                            ViolationKind::TwoPrimariesInEpoch,
                            format!("n{w} and n{node} both wrote in epoch {}", id.epoch),
                        );
                    }
                    _ => {
                        self.epoch_writers.insert(id.epoch, node);
                    }
                }
            }
            Command::Apply { first, last } => {
                for seq in first..=last {
                    match ctx.iter().find(|(id, _)| id.seq == seq).copied() {
                        Some((id, req)) => self.append(node, id, req),
                        None => self.violation(
                            ViolationKind::OutOfOrderApply,
                            format!("n{node} told to apply seq {seq} it was not sent"),
                        ),
                    }
                }
                self.note(&[11, node, first, last], || format!("n{node} applies {first}..={last}"));
            }
            Command::PersistFence { epoch } => {
                if let Some(n) = self.node(node) {
                    n.store.cur.fence = epoch;
                    n.store.sync();
                }
            }
            Command::TruncateLog { below } => {
                if let Some(n) = self.node(node) {
                    n.store.cur.log.retain(|s, _| *s >= below);
                }
            }
            Command::Send { to, msg } => {
                let ids: &[LogId] = match &msg {
                    Message::Replicate { entries, .. } | Message::FetchLogReply { entries, .. } => entries,
                    _ => &[],
                };
                let Some(n) = self.node(node) else { return };
                let payloads: Option<Vec<ReqId>> = ids
                    .iter()
                    .map(|id| n.store.cur.log.get(&id.seq).filter(|(e, _)| *e == id.epoch).map(|(_, r)| *r))
                    .collect();
                match payloads {
                    Some(p) => self.send(node, to, Wire::Engine(msg, p)),
                    None => self.violation(
                        ViolationKind::OutOfOrderApply,
                        format!("n{node}'s engine named log entries its store lacks: {ids:?}"),
                    ),
                }
            }
            Command::StartCopy { to, sender_epoch } => {
                let job = self.next_job;
                self.next_job += 1;
                self.stats.copies += 1;
                let Some(n) = self.node(node) else { return };
                let snapshot = n.store.cur.clone();
                n.copies_out.insert(to, (job, snapshot));
                self.note(&[12, node, to, job], || format!("n{node} starts copy #{job} to n{to}"));
                self.send(node, to, Wire::CopyBegin { job, sender_epoch });
                self.at(COPY_TIMEOUT, Ev::CopyTimeout { from: node, to, job });
            }
            Command::AcceptCopy { .. } => {
                // The node's `import_begin` wipes the rows (and the fence) now; fixed, the
                // copy is installed atomically when its data arrives.
                if self.cfg.faults.legacy_copy
                    && let Some(n) = self.node(node)
                {
                    n.store.cur.data.clear();
                    n.store.cur.log.clear();
                    n.store.cur.fence = 0;
                    n.store.sync();
                }
            }
            Command::RefuseCopy { from, .. } => {
                // Aborts the accepted copy from `from`, if one is in flight.
                if let Some(n) = self.node(node)
                    && n.copy_in.is_some_and(|(f, _)| f == from)
                {
                    n.copy_in = None;
                }
            }
            Command::AckWrite { req, id } => {
                self.stats.acked += 1;
                self.note(&[13, node, req], || format!("n{node} acks w{req} {id:?}"));
                self.writes.insert(req, WriteState::Acked(id));
            }
            Command::RefuseWrite { req, error } => {
                let may = error.may_have_applied();
                self.note(&[14, node, req, may as u64], || format!("n{node} refuses w{req}: {error}"));
                if !may && self.appended.contains(&req) {
                    self.violation(
                        ViolationKind::RefusedWriteApplied,
                        format!("w{req} was applied, then refused with {error}"),
                    );
                }
                if may {
                    self.stats.unknown += 1;
                } else {
                    self.stats.refused += 1;
                }
                self.writes.insert(req, WriteState::Refused { may_have_applied: may });
            }
            Command::ServeRead { req } => self.serve_read(node, req),
            Command::RefuseRead { req, .. } => {
                self.reads.remove(&req);
            }
            Command::Propose { expected_epoch, placement } => {
                self.send(node, CATALOGUE, Wire::Propose { expected_epoch, placement });
            }
        }
    }

    /// A read served by the primary the catalogue names, in the term it took over in, holds
    /// every write acknowledged before the read was issued.
    fn serve_read(&mut self, node: NodeId, req: ReqId) {
        let Some(acked_before) = self.reads.remove(&req) else { return };
        self.stats.reads += 1;
        let current = self.catalogue.primary() == Some(node);
        let since = self.catalogue.primary_since;
        let Some(n) = self.node(node) else { return };
        let same_term = n.replica.placement().is_some_and(|p| p.primary_since == since);
        if !(current && same_term) {
            return;
        }
        let held: BTreeSet<ReqId> = n.store.cur.data.values().map(|(_, r)| *r).collect();
        let missing: Vec<ReqId> = acked_before.into_iter().filter(|w| !held.contains(w)).collect();
        self.note(&[15, node, req], || format!("n{node} serves read r{req}"));
        if !missing.is_empty() {
            self.violation(ViolationKind::StaleRead, format!("n{node} served r{req} without acked {missing:?}"));
        }
    }

    // --- the catalogue ---

    fn commit(&mut self, p: Placement) {
        self.stats.placement_changes += 1;
        if p.primary() != self.catalogue.primary() {
            self.stats.failovers += 1;
        }
        self.note(&[20, p.epoch], || format!("catalogue commits {p:?}"));
        self.catalogue = p.clone();
        for id in 1..=self.cfg.nodes {
            self.deliver_placement(id, p.clone());
        }
    }

    fn deliver_placement(&mut self, to: NodeId, p: Placement) {
        if !self.is_up(to) || self.cut(CATALOGUE, to) {
            self.cat_deferred.insert(to);
            return;
        }
        // Usually prompt; sometimes a node's catalogue replica lags by seconds (a slow learner).
        let delay = if self.rng.chance(10) { self.rng.range(500, 3_000) } else { self.rng.range(1, 60) };
        let t = (self.now + delay).max(self.cat_last_delivery.get(&to).copied().unwrap_or(0));
        self.cat_last_delivery.insert(to, t);
        self.seq += 1;
        self.queue.insert((t, self.seq), Ev::Placement { to, placement: p });
    }

    pub(super) fn deliver_deferred(&mut self) {
        let deferred: Vec<NodeId> = self.cat_deferred.iter().copied().collect();
        for to in deferred {
            if self.is_up(to) && !self.cut(CATALOGUE, to) {
                self.cat_deferred.remove(&to);
                let p = self.catalogue.clone();
                self.deliver_placement(to, p);
            }
        }
    }

    /// Gossip: every observer (and the reconciler) learns `node`'s state after a delay.
    fn announce(&mut self, node: NodeId) {
        for observer in 0..=self.cfg.nodes {
            if observer == node {
                continue;
            }
            let alive = self.is_up(node) && !self.cut(observer, node);
            let delay = if alive { self.rng.range(50, 400) } else { self.rng.range(300, 1_200) };
            self.at(delay, Ev::Liveness { observer, node, alive });
        }
    }
}

fn engine_config(cfg: &SimConfig, me: NodeId) -> Config {
    let mut c = Config::new(me);
    c.log_keep = cfg.log_keep;
    c.batch = 3;
    c.fetch_batch = 3;
    c.rpc_timeout = 600;
    c.fence_timeout = 500;
    c.push_copy_timeout = COPY_TIMEOUT + 500;
    c.write_timeout = 1_500;
    c.fenced_wait = 400;
    c.sync_every = 300;
    c.truncate_every = 900;
    c.faults = cfg.faults;
    c
}

/// Two words summarising a wire message for the trace hash.
fn wire_words(w: &Wire) -> (u64, u64) {
    match w {
        Wire::Engine(m, p) => {
            let kind = match m {
                Message::Replicate { rid, .. } => 100 + rid,
                Message::ReplicateReply { rid, .. } => 200 + rid,
                Message::Progress { rid } | Message::ProgressReply { rid, .. } => 300 + rid,
                Message::Fence { rid, .. } | Message::FenceReply { rid, .. } => 400 + rid,
                Message::FetchLog { rid, .. } | Message::FetchLogReply { rid, .. } => 500 + rid,
                Message::PushCopy { rid } | Message::PushCopyReply { rid, .. } => 600 + rid,
            };
            (kind, p.len() as u64)
        }
        Wire::CopyBegin { job, .. } => (1, *job),
        Wire::CopyBeginReply { job, .. } => (2, *job),
        Wire::CopyData { job, .. } => (3, *job),
        Wire::CopyDone { job, .. } => (4, *job),
        Wire::Propose { expected_epoch, .. } => (5, *expected_epoch),
    }
}
