//! `rig-chaos`: faults on the docker-compose rig (`make rig-up`), under many tenants.
//!
//! Each tenant has its own namespace and its own scoped key, and stores, recalls and lists
//! through every node (REST, on the published loopback ports only), and now and then tries its
//! key on another tenant's namespace. Keys are minted and revoked along the way, and revoked keys
//! are tried on every node. Meanwhile a seeded schedule injects one fault at a time through the
//! `docker` CLI: SIGKILL (disk kept) and start, pause, disconnection from the network, group and
//! one-way partitions (iptables, when the host allows it), Redis stopped (with a burst of
//! requests against one key's rate limit), the whole cluster stopped and started, a node
//! replaced with an empty disk. Then everything is healed and every tenant's namespace is read
//! through every node. The checker (`loci_chaos::checker`) judges the recorded history; exit 1
//! on any violation.
//!
//! `cargo run -p loci-chaos --bin rig-chaos -- --seconds 300 --seed 1` (see `--help`).

mod client;
mod docker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use loci_chaos::checker::{check, tally};
use loci_chaos::history::{FaultCounts, FinalRead, History, Op, RateWindow, Revocation, write_of};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use client::{Rig, seen_in};
use docker::{Docker, container};

#[derive(Parser, Debug)]
#[command(about = "Faults on the docker-compose rig under many tenants, with a history checker")]
struct Args {
    /// How long faults are injected.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Seed of the fault schedule and of the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tenants (one namespace, one scoped key and one client each).
    #[arg(long, default_value_t = 8)]
    tenants: usize,
    /// Nodes of the rig (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// REST port of loci-1 on 127.0.0.1; loci-N is at this + N - 1.
    #[arg(long, default_value_t = 3301)]
    base_port: u16,
    /// The rig's secrets (LOCI_ROOT_API_KEY is read from it).
    #[arg(long, default_value = "deploy/.env")]
    env_file: PathBuf,
    /// The rig script, used to re-create a replaced node.
    #[arg(long, default_value = "deploy/rig.sh")]
    rig_script: PathBuf,
    /// docker-compose project name of the rig.
    #[arg(long, default_value = "loci-rig")]
    project: String,
    /// The nodes' per-key rate limit (LOCI_RIG_RATE_LIMIT_RPS / _BURST of the rig).
    #[arg(long, default_value_t = 20.0)]
    rate_rps: f64,
    #[arg(long, default_value_t = 10)]
    rate_burst: u32,
    /// No iptables partitions (only network disconnection).
    #[arg(long)]
    no_iptables: bool,
    /// Fault kinds left out of the schedule, comma-separated: kill, pause, disconnect,
    /// partition, one-way, redis, restart, replace.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Longest a fault is held (each is held between 3 s and this, seeded); lower it for a denser
    /// schedule.
    #[arg(long, default_value_t = 15)]
    max_hold_secs: u64,
    /// Write the recorded history here as JSON.
    #[arg(long, default_value = "/var/tmp/rig-chaos-history.json")]
    history_out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Pause,
    Disconnect,
    Partition,
    OneWay,
    RedisDown,
    ClusterRestart,
    Replace,
}

impl Fault {
    fn key(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Disconnect => "disconnect",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way",
            Fault::RedisDown => "redis",
            Fault::ClusterRestart => "restart",
            Fault::Replace => "replace",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9",
            Fault::Pause => "pause",
            Fault::Disconnect => "network disconnect",
            Fault::Partition => "partition (groups)",
            Fault::OneWay => "partition (one-way)",
            Fault::RedisDown => "redis stopped",
            Fault::ClusterRestart => "whole-cluster restart",
            Fault::Replace => "node replaced (empty disk)",
        }
    }
}

/// A tag of this run, so each run's tenants start with empty namespaces on a rig that keeps its
/// volumes between runs.
static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn ns(tenant: usize) -> String {
    format!("rig-{}-tenant-{tenant}", RUN.get().map(String::as_str).unwrap_or("0"))
}

fn root_key(env_file: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(env_file)
        .with_context(|| format!("cannot read {} (start the rig with `make rig-up`)", env_file.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("LOCI_ROOT_API_KEY=").map(|v| v.trim().to_string()))
        .with_context(|| format!("{} has no LOCI_ROOT_API_KEY", env_file.display()))
}

/// Mint a key through any node that answers; returns (key id, secret).
async fn mint(rig: &Rig, name: &str, scope: &str, namespaces: serde_json::Value) -> anyhow::Result<(String, String)> {
    let body = json!({"name": name, "scope": scope, "namespaces": namespaces});
    for attempt in 0..30 {
        let a = rig.call(attempt % rig.nodes(), "POST", "/admin/keys", &rig.root, Some(&body)).await;
        if let (true, Some(id), Some(key)) = (a.ok(), a.body["key_id"].as_str(), a.body["key"].as_str()) {
            return Ok((id.to_string(), key.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("could not mint key {name}")
}

/// One tenant's client: stores, recalls, lists through random nodes; sometimes tries another
/// tenant's namespace with its own key.
async fn tenant_loop(rig: Arc<Rig>, tenant: usize, tenants: usize, key: String, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (tenant as u64).wrapping_mul(0x9e37_79b9));
    let own = ns(tenant);
    let mut k = 0u64;
    while !stop.load(Ordering::Acquire) {
        let node = rng.random_range(0..rig.nodes());
        let roll = rng.random_range(0..100);
        if roll < 55 {
            let (id, content) = write_of(tenant, k, rng.random());
            k += 1;
            let body = json!({"agent_id": own, "id": id, "content": content});
            let a = rig.call(node, "POST", "/v1/memory/store", &key, Some(&body)).await;
            rig.record(tenant, node, &a, Op::Write { id, content });
        } else if roll < 72 {
            let body = json!({"agent_id": own, "query": format!("tenant {tenant} memory"), "top_k": 5});
            let a = rig.call(node, "POST", "/v1/memory/recall", &key, Some(&body)).await;
            let seen = if a.ok() { seen_in(&a.body) } else { Vec::new() };
            rig.record(tenant, node, &a, Op::Read { what: "recall", seen });
        } else if roll < 92 {
            let a = rig.call(node, "GET", &format!("/v1/agents/{own}/memories?limit=20"), &key, None).await;
            let seen = if a.ok() { seen_in(&a.body) } else { Vec::new() };
            rig.record(tenant, node, &a, Op::Read { what: "list", seen });
        } else if tenants > 1 {
            let victim = (tenant + rng.random_range(1..tenants)) % tenants;
            let a = rig.call(node, "GET", &format!("/v1/agents/{}/memories?limit=5", ns(victim)), &key, None).await;
            let seen = if a.ok() { seen_in(&a.body) } else { Vec::new() };
            rig.record(tenant, node, &a, Op::CrossRead { victim, seen });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
    }
}

/// Mints a key for a tenant every few seconds, uses it, revokes it with the root key, and keeps
/// trying revoked keys on random nodes.
async fn revoker(rig: Arc<Rig>, tenants: usize, seed: u64, stop: Arc<AtomicBool>, revs: Arc<Mutex<Vec<Revocation>>>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_4e70);
    let mut revoked: Vec<(String, String, usize)> = Vec::new();
    let mut next_mint = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        if Instant::now() >= next_mint {
            next_mint = Instant::now() + Duration::from_secs(rng.random_range(6..14));
            let tenant = rng.random_range(0..tenants);
            n += 1;
            if let Ok((id, secret)) = mint(&rig, &format!("revoke-me-{n}"), "read", json!([ns(tenant)])).await {
                let _ = rig.call(rng.random_range(0..rig.nodes()), "GET", "/v1/auth/whoami", &secret, None).await;
                for _ in 0..10 {
                    let node = rng.random_range(0..rig.nodes());
                    // In force on every member, or after the 11 s freshness wait when one is down.
                    let path = format!("/admin/keys/{id}/deactivate");
                    let a = rig.call_within(node, "POST", &path, &rig.root, None, Some(Duration::from_secs(25))).await;
                    if a.ok() {
                        revs.lock().push(Revocation { key_id: id.clone(), tenant, acked_at: a.end });
                        revoked.push((id.clone(), secret.clone(), tenant));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if let Some((id, secret, tenant)) =
            (!revoked.is_empty()).then(|| revoked[rng.random_range(0..revoked.len())].clone())
        {
            let node = rng.random_range(0..rig.nodes());
            let a = rig.call(node, "GET", &format!("/v1/agents/{}/memories?limit=1", ns(tenant)), &secret, None).await;
            rig.record(tenant, node, &a, Op::RevokedUse { key_id: id });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Requests with one key from 12 clients over every node for `secs`, counted by start time.
async fn rate_window(rig: &Arc<Rig>, key: &str, backend: &'static str, secs: u64, args: &Args) -> RateWindow {
    let start = rig.now();
    let end = start + secs * 1000;
    let counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let mut tasks = Vec::new();
    for c in 0..12usize {
        let (rig, key, counts) = (rig.clone(), key.to_string(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while rig.now() < end {
                let a = rig.call(i % rig.nodes(), "GET", "/v1/auth/whoami", &key, None).await;
                i += 1;
                if a.start >= end {
                    break;
                }
                let mut c = counts.lock();
                match a.status {
                    Some(200) => c.0 += 1,
                    Some(429) => c.1 += 1,
                    _ => c.2 += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (allowed, limited, other) = *counts.lock();
    RateWindow {
        backend,
        start,
        end,
        rate_rps: args.rate_rps,
        burst: args.rate_burst,
        nodes: rig.nodes(),
        allowed,
        limited,
        other,
    }
}

/// The node id a node reports on `/health`.
async fn node_id(rig: &Rig, node: usize) -> Option<String> {
    let a = rig.call(node, "GET", "/health", &rig.root, None).await;
    a.body["node_id"].as_u64().map(|n| n.to_string()).or_else(|| a.body["node_id"].as_str().map(String::from))
}

/// Waits until a node reports the cluster healthy with no unhealthy replica; the last report
/// otherwise.
async fn settled(rig: &Rig, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let a = rig.call(0, "GET", "/admin/cluster/status", &rig.root, None).await;
        if a.ok() {
            let state = a.body["state"].as_str().unwrap_or("?").to_string();
            let unhealthy = a.body["unhealthy_replicas"].as_array().map(Vec::len).unwrap_or(usize::MAX);
            if state == "healthy" && unhealthy == 0 {
                return Ok(());
            }
            last = format!("state {state}, {unhealthy} unhealthy replicas");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes < 3 {
        bail!("--nodes must be at least 3");
    }
    let root = root_key(&args.env_file)?;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let _ = RUN.set(format!("{run:x}"));
    let ports: Vec<u16> = (0..args.nodes as u16).map(|i| args.base_port + i).collect();
    let rig = Arc::new(Rig::new(ports, root, Duration::from_secs(10))?);
    let docker = Docker::new(&args.project, args.nodes, args.rig_script.clone());
    let iptables = !args.no_iptables && docker.iptables_usable().await;
    println!(
        "rig-chaos: {} nodes, {} tenants, seed {}, {} s of faults; iptables partitions {}",
        args.nodes,
        args.tenants,
        args.seed,
        args.seconds,
        if iptables { "on" } else { "off" }
    );
    if !rig.wait_all_ready(Duration::from_secs(180)).await {
        bail!("the rig is not ready (start it with `make rig-up`)");
    }
    let mut keys = Vec::new();
    for t in 0..args.tenants {
        keys.push(mint(&rig, &format!("tenant-{t}"), "write", json!([ns(t)])).await?.1);
    }
    let (_, probe_key) = mint(&rig, "rate-probe", "read", json!([format!("{}-rate-probe", ns(0))])).await?;
    let mut rate_windows = vec![rate_window(&rig, &probe_key, "redis", 8, &args).await];

    let stop = Arc::new(AtomicBool::new(false));
    let revs = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (t, key) in keys.iter().enumerate() {
        tasks.push(tokio::spawn(tenant_loop(rig.clone(), t, args.tenants, key.clone(), args.seed, stop.clone())));
    }
    tasks.push(tokio::spawn(revoker(rig.clone(), args.tenants, args.seed, stop.clone(), revs.clone())));

    let mut rng = StdRng::seed_from_u64(args.seed);
    // A deck holding each kind as often as its weight, shuffled and drawn in turn, so every
    // kind comes up once per deck (about every 10 faults).
    let mut kinds = vec![
        (Fault::Kill, 2),
        (Fault::Pause, 2),
        (Fault::Disconnect, 1),
        (Fault::RedisDown, 1),
        (Fault::ClusterRestart, 1),
        (Fault::Replace, 1),
    ];
    if iptables {
        kinds.extend([(Fault::Partition, 1), (Fault::OneWay, 1)]);
    }
    for k in &args.skip {
        if !kinds.iter().any(|(f, _)| f.key() == k) && !["partition", "one-way"].contains(&k.as_str()) {
            bail!(
                "--skip {k}: not a fault kind (kill, pause, disconnect, partition, one-way, redis, restart, replace)"
            );
        }
    }
    kinds.retain(|(f, _)| !args.skip.iter().any(|k| k == f.key()));
    if kinds.is_empty() {
        bail!("--skip leaves no fault kind");
    }
    let mut deck: Vec<Fault> = Vec::new();
    let mut faults = FaultCounts::new();
    let mut notes = Vec::new();
    let started = Instant::now();
    let log = |msg: String| println!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
    while started.elapsed() < Duration::from_secs(args.seconds) {
        if !rig.wait_all_ready(Duration::from_secs(120)).await {
            let note = "not every node was ready 120 s after the previous fault".to_string();
            log(note.clone());
            notes.push(note);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..5_000))).await;
        if deck.is_empty() {
            deck = kinds.iter().flat_map(|(k, w)| std::iter::repeat_n(*k, *w)).collect();
            deck.shuffle(&mut rng);
        }
        let Some(fault) = deck.pop() else { break };
        let victim = rng.random_range(0..args.nodes);
        let hold = Duration::from_millis(rng.random_range(3_000..args.max_hold_secs.max(4) * 1_000));
        log(format!("{} {} for {:.1}s", fault.name(), container(victim), hold.as_secs_f64()));
        let result: anyhow::Result<()> = async {
            match fault {
                Fault::Kill => {
                    docker.kill(victim).await?;
                    tokio::time::sleep(hold).await;
                    docker.start(&[container(victim)]).await
                }
                Fault::Pause => {
                    docker.pause(victim).await?;
                    tokio::time::sleep(hold).await;
                    docker.unpause(victim).await
                }
                Fault::Disconnect => {
                    docker.disconnect(victim).await?;
                    tokio::time::sleep(hold).await;
                    docker.connect(victim).await
                }
                Fault::Partition => {
                    // The victim and, on five nodes, one more, against the rest, both ways.
                    let mut side: Vec<usize> = vec![victim];
                    if args.nodes >= 5 {
                        side.push((victim + 1) % args.nodes);
                    }
                    for a in 0..args.nodes {
                        for b in 0..args.nodes {
                            if side.contains(&a) != side.contains(&b) {
                                docker.block(a, b).await?;
                            }
                        }
                    }
                    tokio::time::sleep(hold).await;
                    docker.unblock_all().await
                }
                Fault::OneWay => {
                    // The victim hears everyone; nothing it sends reaches the others.
                    for b in (0..args.nodes).filter(|b| *b != victim) {
                        docker.block(victim, b).await?;
                    }
                    tokio::time::sleep(hold).await;
                    docker.unblock_all().await
                }
                Fault::RedisDown => {
                    docker.stop(&["loci-redis".into()]).await?;
                    // Past the first failures and the circuit opening, then a burst at one key.
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    let w = rate_window(&rig, &probe_key, "local", 8, &args).await;
                    log(format!(
                        "rate window with Redis down: {} allowed, {} limited, bound {}",
                        w.allowed,
                        w.limited,
                        w.bound()
                    ));
                    rate_windows.push(w);
                    docker.start(&["loci-redis".into()]).await
                }
                Fault::ClusterRestart => {
                    docker.stop(&docker.all_nodes()).await?;
                    docker.start(&docker.all_nodes()).await
                }
                Fault::Replace => {
                    let old = node_id(&rig, victim).await;
                    docker.replace(victim).await?;
                    if !rig.wait_all_ready(Duration::from_secs(180)).await {
                        bail!("{} did not come back ready after its replacement", container(victim));
                    }
                    let new = node_id(&rig, victim).await;
                    log(format!("{} replaced: node id {old:?} -> {new:?}", container(victim)));
                    if let Some(old) = old {
                        // Remove the dead member (refused while gossip still reports it alive).
                        let deadline = Instant::now() + Duration::from_secs(60);
                        let other = (victim + 1) % args.nodes;
                        loop {
                            let a = rig
                                .call(other, "DELETE", &format!("/admin/cluster/nodes/{old}"), &rig.root, None)
                                .await;
                            if a.ok() || a.status == Some(404) {
                                break;
                            }
                            if Instant::now() > deadline {
                                bail!("the replaced member {old} could not be removed: {:?} {}", a.status, a.body);
                            }
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                    Ok(())
                }
            }
        }
        .await;
        *faults.entry(fault.name()).or_default() += 1;
        if let Err(e) = result {
            let note = format!("{}: {e:#}", fault.name());
            log(note.clone());
            notes.push(note);
            docker.heal().await;
        }
    }
    log("faults over; healing and letting the clients stop".into());
    stop.store(true, Ordering::Release);
    docker.heal().await;
    for t in tasks {
        let _ = t.await;
    }
    let ready = rig.wait_all_ready(Duration::from_secs(180)).await;
    let unsettled = match settled(&rig, Duration::from_secs(if ready { 180 } else { 30 })).await {
        Ok(()) if ready => None,
        Ok(()) => Some("not every node is ready".to_string()),
        Err(e) => Some(e),
    };
    log(format!("settled: {}", unsettled.as_deref().unwrap_or("healthy, no unhealthy replica")));
    // Unanswered reads are retried, for at most 120 s over all of them (a broken cluster must
    // not stretch the run by a minute per read).
    let mut final_reads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (t, key) in keys.iter().enumerate() {
        for node in 0..args.nodes {
            let mut rows = rig.read_all(node, &ns(t), key).await;
            while rows.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                rows = rig.read_all(node, &ns(t), key).await;
            }
            final_reads.push(FinalRead { tenant: t, node, rows });
        }
    }
    let history = History {
        tenants: args.tenants,
        nodes: args.nodes,
        events: std::mem::take(&mut *rig.events.lock()),
        revocations: std::mem::take(&mut *revs.lock()),
        final_reads,
        rate_windows,
        unsettled,
        faults,
    };
    if let Err(e) = std::fs::write(&args.history_out, serde_json::to_vec(&history)?) {
        eprintln!("cannot write {}: {e}", args.history_out.display());
    }
    let violations = check(&history);
    report(&history, &violations, &notes, started.elapsed());
    if violations.is_empty() { Ok(()) } else { std::process::exit(1) }
}

fn report(h: &History, violations: &[loci_chaos::checker::Violation], notes: &[String], took: Duration) {
    let t = tally(&h.events);
    let writes = h.events.iter().filter(|e| matches!(e.op, Op::Write { .. }));
    let acked_writes = writes.clone().filter(|e| e.ok()).count();
    println!("\n## rig-chaos results ({} nodes, {} tenants, {:.0} s)\n", h.nodes, h.tenants, took.as_secs_f64());
    println!("| fault | injected |\n|---|---|");
    for (k, v) in &h.faults {
        println!("| {k} | {v} |");
    }
    println!("| **total** | {} |\n", h.faults.values().sum::<u64>());
    println!("| operations | acknowledged | refused | uncertain | writes (acknowledged) | revocations | violations |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} ({acked_writes}) | {} | {} |\n",
        t.operations,
        t.acknowledged,
        t.refused,
        t.uncertain,
        writes.count(),
        h.revocations.len(),
        violations.len()
    );
    for w in &h.rate_windows {
        println!(
            "rate limit, {} backend, {:.0} s: {} allowed (bound {}), {} limited, {} other",
            w.backend,
            (w.end - w.start) as f64 / 1000.0,
            w.allowed,
            w.bound(),
            w.limited,
            w.other
        );
    }
    let mut errors: std::collections::BTreeMap<(u16, &str), u64> = std::collections::BTreeMap::new();
    for e in &h.events {
        if let (Some(s), Some(msg)) = (e.status, e.error.as_deref()) {
            *errors.entry((s, msg)).or_default() += 1;
        }
    }
    for ((s, msg), n) in errors {
        println!("answered {s} {n} times: {}", msg.chars().take(200).collect::<String>());
    }
    for n in notes {
        println!("note: {n}");
    }
    if violations.is_empty() {
        println!("\nOK: no violation");
    } else {
        for v in violations.iter().take(50) {
            println!("VIOLATION: {v}");
        }
        if violations.len() > 50 {
            println!("… and {} more (history in the JSON file)", violations.len() - 50);
        }
    }
}
