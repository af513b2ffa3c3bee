//! Loci membership: SWIM gossip (foca 2) over authenticated datagrams.
//!
//! One task owns the `Foca` instance, the transport, an ordered timer heap and a command channel
//! (`select!` loop), so timers are always handled in order and no locks are needed. Every datagram
//! is sealed with AES-256-GCM under a key derived from the cluster secret; packets that fail to
//! authenticate (forged, corrupted, or from another cluster) are dropped and counted. The current
//! membership is published on a `watch` channel and changes on a `broadcast` channel.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, PostcardCodec, Timer};
use parking_lot_free::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

mod parking_lot_free {
    //! std's RwLock behind a tiny wrapper (this crate depends on no lock crate).
    pub struct RwLock<T>(std::sync::RwLock<T>);
    impl<T> RwLock<T> {
        pub fn new(v: T) -> Self {
            RwLock(std::sync::RwLock::new(v))
        }
        pub fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(|e| e.into_inner())
        }
        pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(|e| e.into_inner())
        }
    }
}

pub mod transport;

pub use transport::{MemNetwork, Transport, UdpTransport};

const NONCE_LEN: usize = 12;
const AAD: &[u8] = b"loci-gossip-v1";
/// foca's packet limit minus the sealing overhead (nonce + tag).
const MAX_PLAINTEXT: usize = 1400 - NONCE_LEN - 16;

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("gossip: {0}")]
    Foca(String),
    #[error("the gossip task has stopped")]
    Stopped,
}

/// What a node says about itself in every packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub id: u64,
    pub gossip_addr: SocketAddr,
    /// gRPC address other nodes dial (Raft, forwarding, replication).
    pub rpc_addr: String,
    pub http_addr: String,
    /// Start time in ms, bumped on rejoin: the newer incarnation of an address wins.
    pub bump: u64,
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Down,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub identity: NodeIdentity,
    pub state: MemberState,
    /// When the member entered its current state.
    pub since: Instant,
}

/// The membership as this node sees it (itself included, always alive).
#[derive(Clone, Debug, Default)]
pub struct MembershipView {
    pub members: BTreeMap<u64, Member>,
}

impl MembershipView {
    pub fn alive(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| m.state == MemberState::Alive)
    }
    pub fn alive_count(&self) -> usize {
        self.alive().count()
    }
    pub fn is_alive(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(|m| m.state == MemberState::Alive)
    }
    /// How long `id` has been down (None when alive or unknown).
    pub fn down_for(&self, id: u64) -> Option<Duration> {
        self.members.get(&id).filter(|m| m.state == MemberState::Down).map(|m| m.since.elapsed())
    }
}

#[derive(Clone, Debug)]
pub enum MembershipEvent {
    Up(NodeIdentity),
    Down(NodeIdentity),
}

#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub identity: NodeIdentity,
    pub seeds: Vec<SocketAddr>,
    /// Shared by every node of the cluster; packets under another secret are dropped.
    pub secret: String,
    pub probe_period: Duration,
    pub suspect_to_down: Duration,
}

impl GossipConfig {
    pub fn new(identity: NodeIdentity, seeds: Vec<SocketAddr>, secret: String) -> Self {
        GossipConfig {
            identity,
            seeds,
            secret,
            probe_period: Duration::from_millis(500),
            suspect_to_down: Duration::from_millis(2500),
        }
    }
}

/// Counters exported as metrics by the node.
#[derive(Default, Debug)]
pub struct GossipStats {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    /// Packets that failed authentication (forged, corrupted, foreign cluster).
    pub rejected: AtomicU64,
}

enum Cmd {
    Announce(SocketAddr),
    Leave(tokio::sync::oneshot::Sender<()>),
    /// Stop without telling anyone (a crash, as far as peers can tell).
    Stop,
}

/// Handle to the running gossip task.
#[derive(Clone)]
pub struct Gossip {
    cmd: mpsc::Sender<Cmd>,
    view: watch::Receiver<Arc<MembershipView>>,
    events: broadcast::Sender<MembershipEvent>,
    pub stats: Arc<GossipStats>,
    pub identity: NodeIdentity,
    /// Test hook: datagrams to or from these addresses are dropped (a network partition).
    blocked: Arc<RwLock<HashSet<SocketAddr>>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn cipher(secret: &str) -> Aes256Gcm {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"loci-cluster"), secret.as_bytes());
    let mut key = [0u8; 32];
    hk.expand(b"loci/gossip/v1", &mut key).expect("32 bytes is a valid HKDF length");
    Aes256Gcm::new_from_slice(&key).expect("32-byte key")
}

fn seal(c: &Aes256Gcm, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("operating system randomness");
    let ct = c.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: AAD }).expect("in-memory encryption");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open(c: &Aes256Gcm, packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = packet.split_at(NONCE_LEN);
    c.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD }).ok()
}

/// Entry points for the fuzz targets in `fuzz/` (not a stable API): datagram sealing and opening
/// under a fixed cluster secret, and a received datagram handled as the gossip task does.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    pub const SECRET: &str = "loci-fuzzing-cluster-secret";

    pub fn seal(plaintext: &[u8]) -> Vec<u8> {
        super::seal(&cipher(SECRET), plaintext)
    }

    pub fn open(packet: &[u8]) -> Option<Vec<u8>> {
        super::open(&cipher(SECRET), packet)
    }

    /// Open `packet` and, when it authenticates, hand the plaintext to a fresh node's foca
    /// instance (as the receive loop does). Returns whether it authenticated.
    pub fn receive(packet: &[u8]) -> bool {
        let Some(pt) = open(packet) else { return false };
        let identity = NodeIdentity {
            id: 1,
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            rpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:3300".into(),
            bump: 1,
        };
        let cfg = GossipConfig::new(identity.clone(), Vec::new(), SECRET.into());
        let rng = <rand_foca::rngs::StdRng as rand_foca::SeedableRng>::seed_from_u64(7);
        let mut foca = Foca::new(identity, foca_config(&cfg, 3), rng, PostcardCodec);
        let mut rt: AccumulatingRuntime<NodeIdentity> = AccumulatingRuntime::new();
        // A malformed payload is an error foca reports; it must never panic.
        let _ = foca.handle_data(&pt, &mut rt);
        true
    }
}

fn foca_config(cfg: &GossipConfig, cluster_size: usize) -> Config {
    let mut c = Config::new_lan(NonZeroU32::new(cluster_size.max(1) as u32).unwrap_or(NonZeroU32::MIN));
    c.probe_period = cfg.probe_period;
    c.probe_rtt = cfg.probe_period / 2;
    c.suspect_to_down_after = cfg.suspect_to_down;
    c.max_packet_size = std::num::NonZeroUsize::new(MAX_PLAINTEXT).unwrap_or(c.max_packet_size);
    c.remove_down_after = Some(Duration::from_secs(120));
    if let Some(p) = c.periodic_announce.as_mut() {
        p.frequency = Duration::from_secs(5);
    }
    // Members we believe down are asked again soon: a healed partition rejoins in seconds.
    if let Some(p) = c.periodic_announce_to_down_members.as_mut() {
        p.frequency = Duration::from_secs(3);
    }
    c
}

impl Gossip {
    /// Start the gossip task on `transport`.
    pub fn start<T: Transport>(cfg: GossipConfig, transport: T) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let mut initial = MembershipView::default();
        initial.members.insert(
            cfg.identity.id,
            Member { identity: cfg.identity.clone(), state: MemberState::Alive, since: Instant::now() },
        );
        let (view_tx, view_rx) = watch::channel(Arc::new(initial));
        let (events, _) = broadcast::channel(256);
        let stats = Arc::new(GossipStats::default());
        let blocked = Arc::new(RwLock::new(HashSet::new()));
        let handle = Gossip {
            cmd: cmd_tx,
            view: view_rx,
            events: events.clone(),
            stats: stats.clone(),
            identity: cfg.identity.clone(),
            blocked: blocked.clone(),
        };
        tokio::spawn(run(cfg, transport, cmd_rx, view_tx, events, stats, blocked));
        handle
    }

    pub fn view(&self) -> Arc<MembershipView> {
        self.view.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<MembershipView>> {
        self.view.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    pub async fn announce(&self, addr: SocketAddr) -> Result<(), GossipError> {
        self.cmd.send(Cmd::Announce(addr)).await.map_err(|_| GossipError::Stopped)
    }

    /// Tell the cluster this node leaves (peers see it as down at once) and stop the task.
    pub async fn leave(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.cmd.send(Cmd::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    /// Stop silently (peers detect it as a failure).
    pub async fn stop(&self) {
        let _ = self.cmd.send(Cmd::Stop).await;
    }

    /// Test hook: drop all datagrams exchanged with `addr` (or stop dropping them).
    pub fn set_blocked(&self, addr: SocketAddr, blocked: bool) {
        let mut b = self.blocked.write();
        if blocked {
            b.insert(addr);
        } else {
            b.remove(&addr);
        }
    }

    /// Wait until at least `n` members (this node included) are alive.
    pub async fn wait_for_members(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.view.clone();
        tokio::time::timeout(timeout, rx.wait_for(|v| v.alive_count() >= n)).await.is_ok_and(|r| r.is_ok())
    }
}

type Heap = BinaryHeap<Reverse<(Instant, u64)>>;

async fn run<T: Transport>(
    cfg: GossipConfig,
    transport: T,
    mut cmds: mpsc::Receiver<Cmd>,
    view_tx: watch::Sender<Arc<MembershipView>>,
    events: broadcast::Sender<MembershipEvent>,
    stats: Arc<GossipStats>,
    blocked: Arc<RwLock<HashSet<SocketAddr>>>,
) {
    let cipher = cipher(&cfg.secret);
    let rng: rand_foca::rngs::StdRng = rand_foca::make_rng();
    let mut foca = Foca::new(cfg.identity.clone(), foca_config(&cfg, 1), rng, PostcardCodec);
    let mut rt: AccumulatingRuntime<NodeIdentity> = AccumulatingRuntime::new();
    let mut heap: Heap = BinaryHeap::new();
    let mut timers: HashMap<u64, Timer<NodeIdentity>> = HashMap::new();
    let mut seq: u64 = 0;
    let mut view = (**view_tx.borrow()).clone();
    let mut last_size = 1usize;
    let mut reannounce = tokio::time::interval(Duration::from_secs(2));
    let mut buf = vec![0u8; 65_536];
    let mut leaving: Option<tokio::sync::oneshot::Sender<()>> = None;

    for seed in &cfg.seeds {
        if *seed != cfg.identity.gossip_addr {
            let probe =
                NodeIdentity { id: 0, gossip_addr: *seed, rpc_addr: String::new(), http_addr: String::new(), bump: 0 };
            if let Err(e) = foca.announce(probe, &mut rt) {
                tracing::debug!(error = %e, "announce failed");
            }
        }
    }

    loop {
        // Deliver the runtime's output: packets, timers, notifications.
        while let Some((to, data)) = rt.to_send() {
            if blocked.read().contains(&to.gossip_addr) {
                continue;
            }
            let packet = seal(&cipher, &data);
            stats.packets_out.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = transport.send_to(&packet, to.gossip_addr).await {
                tracing::debug!(error = %e, to = %to.gossip_addr, "gossip send failed");
            }
        }
        while let Some((after, timer)) = rt.to_schedule() {
            seq += 1;
            heap.push(Reverse((Instant::now() + after, seq)));
            timers.insert(seq, timer);
        }
        let mut changed = false;
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) if id.id != 0 => {
                    let prev = view.members.get(&id.id).map(|m| (m.state, m.identity.bump));
                    if prev.is_none_or(|(s, b)| s != MemberState::Alive || b <= id.bump) {
                        view.members.insert(
                            id.id,
                            Member { identity: id.clone(), state: MemberState::Alive, since: Instant::now() },
                        );
                        tracing::info!(node = id.id, addr = %id.gossip_addr, "member up");
                        let _ = events.send(MembershipEvent::Up(id));
                        changed = true;
                    }
                }
                OwnedNotification::MemberDown(id) => {
                    // Only the incarnation we know about going down counts (a rejoin may race).
                    if view
                        .members
                        .get(&id.id)
                        .is_some_and(|m| m.identity.bump <= id.bump && m.state == MemberState::Alive)
                    {
                        view.members.insert(
                            id.id,
                            Member { identity: id.clone(), state: MemberState::Down, since: Instant::now() },
                        );
                        tracing::warn!(node = id.id, addr = %id.gossip_addr, "member down");
                        let _ = events.send(MembershipEvent::Down(id));
                        changed = true;
                    }
                }
                OwnedNotification::Rename(old, new) => {
                    if old.id != new.id {
                        view.members.remove(&old.id);
                    }
                    view.members
                        .insert(new.id, Member { identity: new, state: MemberState::Alive, since: Instant::now() });
                    changed = true;
                }
                OwnedNotification::Defunct => {
                    // Declared down by the others: come back with a renewed identity.
                    tracing::warn!("this node was declared down; rejoining");
                    if let Some(renewed) = foca::Identity::renew(foca.identity()) {
                        if let Err(e) = foca.change_identity(renewed, &mut rt) {
                            tracing::warn!(error = %e, "rejoin failed");
                        }
                    }
                }
                _ => {}
            }
        }
        if changed {
            let size = view.alive_count();
            if size != last_size {
                last_size = size;
                let _ = foca.set_config(foca_config(&cfg, size));
            }
            view_tx.send_replace(Arc::new(view.clone()));
        }
        if let Some(tx) = leaving.take() {
            let _ = tx.send(());
            return;
        }
        let next = heap.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            r = transport.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => {
                        if blocked.read().contains(&from) {
                            continue;
                        }
                        stats.packets_in.fetch_add(1, Ordering::Relaxed);
                        match open(&cipher, &buf[..n]) {
                            Some(pt) => {
                                if let Err(e) = foca.handle_data(&pt, &mut rt) {
                                    tracing::debug!(error = %e, "bad gossip payload");
                                }
                            }
                            None => {
                                let total = stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                                if total.is_power_of_two() {
                                    tracing::warn!(from = %from, rejected = total,
                                        "dropped gossip packets that failed authentication (wrong LOCI_CLUSTER_SECRET or forged)");
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "gossip receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                // Every due timer, in order.
                let now = Instant::now();
                while let Some(Reverse((at, id))) = heap.peek().copied() {
                    if at > now {
                        break;
                    }
                    heap.pop();
                    if let Some(t) = timers.remove(&id) {
                        if let Err(e) = foca.handle_timer(t, &mut rt) {
                            tracing::debug!(error = %e, "timer failed");
                        }
                    }
                }
            }
            _ = reannounce.tick() => {
                // Until someone answers, keep knocking on the seeds (they may start later).
                if view.alive_count() <= 1 {
                    for seed in &cfg.seeds {
                        if *seed != cfg.identity.gossip_addr {
                            let probe = NodeIdentity { id: 0, gossip_addr: *seed, rpc_addr: String::new(), http_addr: String::new(), bump: 0 };
                            let _ = foca.announce(probe, &mut rt);
                        }
                    }
                }
            }
            cmd = cmds.recv() => {
                match cmd {
                    Some(Cmd::Announce(addr)) => {
                        let probe = NodeIdentity { id: 0, gossip_addr: addr, rpc_addr: String::new(), http_addr: String::new(), bump: 0 };
                        let _ = foca.announce(probe, &mut rt);
                    }
                    Some(Cmd::Leave(tx)) => {
                        let _ = foca.leave_cluster(&mut rt);
                        leaving = Some(tx);
                    }
                    Some(Cmd::Stop) => return,
                    None => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
