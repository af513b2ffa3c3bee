//! `loci-chaos`: a real cluster (in this process, on loopback) under a stream of writes while
//! nodes stop, restart and are partitioned off at random (primaries more often than chance). At the end it heals everything
//! and checks the promises: every acknowledged write is readable, with its content, through every
//! node; nothing appears that no client wrote; the replicas of each namespace hold the same rows.
//! Exits 1 when a promise is broken.
//!
//! `cargo run -p loci-chaos -- --seconds 120 --seed 7` (see `--help`).
//!
//! No `kill -9` here: an in-process node cannot lose its open connections and file locks the
//! way a killed process does. Crashes of real processes are covered by the `loci-node` binary
//! tests (`kill_9_loses_no_acknowledged_write`, `three_processes_form_a_cluster_and_survive_kill_9_of_a_primary`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use loci_tests::{ROOT_KEY, TestCluster, eventually};
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Fault injection against a real Loci cluster: writes under restarts and partitions")]
struct Args {
    /// Nodes in the cluster (3 or more: one fault at a time keeps a majority).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How long faults are injected.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Namespaces written concurrently (one writer each).
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// Seed of the fault schedule (the same seed gives the same schedule).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `--failover-after-secs` of every node.
    #[arg(long, default_value_t = 3)]
    failover_after_secs: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Stop,
    Partition,
    PartitionPrimary,
}

/// What the writers saw. A write that got no answer, or a 503, may or may not exist.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeMap<String, String>,
    uncertain: BTreeMap<String, String>,
    unexpected: Vec<String>,
}

struct Shared {
    /// REST base URL of each node, `None` while it is down.
    bases: RwLock<Vec<Option<String>>>,
    ledger: Mutex<Ledger>,
    refused: AtomicU64,
    stop: AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes < 3 {
        bail!("--nodes must be at least 3");
    }
    let failover = args.failover_after_secs;
    println!("starting {} nodes", args.nodes);
    let mut cluster = TestCluster::start_with(args.nodes, move |a| {
        a.failover_after_secs = failover;
        a.replication_factor = 3;
    })
    .await;
    let shared = Arc::new(Shared {
        bases: RwLock::new((0..args.nodes).map(|i| Some(cluster.client(i).base.clone())).collect()),
        ledger: Mutex::new(Ledger::default()),
        refused: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let namespaces: Vec<String> = (0..args.namespaces).map(|k| format!("chaos-{k}")).collect();
    let writers: Vec<_> =
        namespaces.iter().cloned().map(|ns| tokio::spawn(write_stream(shared.clone(), http.clone(), ns))).collect();

    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let mut faults = 0;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(rng.random_range(2..5))).await;
        let fault = [Fault::Stop, Fault::Partition, Fault::PartitionPrimary][rng.random_range(0..3)];
        // Sometimes shorter than the failover delay (the node keeps its roles), sometimes longer.
        let down_for = Duration::from_millis(rng.random_range(1_000..(failover * 2_000 + 2_000)));
        let victim = match fault {
            Fault::PartitionPrimary => {
                let ns = &namespaces[rng.random_range(0..namespaces.len())];
                let primary = cluster.handle(0).core.namespace(ns).and_then(|e| e.placement.primary());
                match primary.and_then(|p| cluster.index_of(p)) {
                    Some(i) => i,
                    None => continue,
                }
            }
            _ => rng.random_range(0..args.nodes),
        };
        faults += 1;
        println!(
            "[{:>5.1}s] {fault:?} node index {victim} for {:.1}s",
            started.elapsed().as_secs_f64(),
            down_for.as_secs_f64()
        );
        match fault {
            Fault::Stop => {
                shared.bases.write()[victim] = None;
                cluster.stop(victim).await;
                tokio::time::sleep(down_for).await;
                cluster.restart(victim).await;
                shared.bases.write()[victim] = Some(cluster.client(victim).base.clone());
            }
            Fault::Partition | Fault::PartitionPrimary => {
                cluster.partition(victim, true);
                tokio::time::sleep(down_for).await;
                cluster.partition(victim, false);
            }
        }
    }
    shared.stop.store(true, Ordering::Release);
    println!(
        "[{:>5.1}s] faults over; waiting for the writers and the cluster to settle",
        started.elapsed().as_secs_f64()
    );
    for w in writers {
        w.await.context("writer task")?;
    }
    cluster.wait_ready(Duration::from_secs(60)).await;

    let ledger = std::mem::take(&mut *shared.ledger.lock());
    let mut broken = ledger.unexpected.clone();
    for ns in &namespaces {
        println!("[{:>5.1}s] checking {ns}", started.elapsed().as_secs_f64());
        broken.extend(check_namespace(&cluster, &http, ns, &ledger).await);
    }
    let refused = shared.refused.load(Ordering::Relaxed);
    let epochs: Vec<u64> =
        namespaces.iter().filter_map(|ns| cluster.handle(0).core.namespace(ns)).map(|e| e.placement.epoch).collect();
    println!(
        "{faults} faults; {} writes acknowledged, {refused} refused with 503, {} without an answer (outcome unknown); placement epochs now {epochs:?}",
        ledger.acknowledged.len(),
        ledger.uncertain.len() as u64 - refused,
    );
    if broken.is_empty() {
        println!("OK: no acknowledged write lost, no phantom write, replicas identical");
        Ok(())
    } else {
        for b in &broken {
            println!("BROKEN: {b}");
        }
        std::process::exit(1);
    }
}

/// Write `ns-0`, `ns-1`, … through the nodes in turn, each with a client-chosen id.
async fn write_stream(shared: Arc<Shared>, http: reqwest::Client, ns: String) {
    let mut k: u64 = 0;
    while !shared.stop.load(Ordering::Acquire) {
        let bases: Vec<String> = shared.bases.read().iter().flatten().cloned().collect();
        let Some(base) = bases.get(k as usize % bases.len().max(1)).cloned() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (id, content) = (format!("{ns}-{k}"), format!("{ns} write {k}"));
        let body = json!({"agent_id": ns, "id": id, "content": content});
        let answer = http.post(format!("{base}/v1/memory/store")).bearer_auth(ROOT_KEY).json(&body).send().await;
        let status = answer.as_ref().map(|r| r.status().as_u16()).ok();
        {
            let mut ledger = shared.ledger.lock();
            match status {
                Some(200) => {
                    ledger.acknowledged.insert(id, content);
                }
                Some(503) | None => {
                    if status == Some(503) {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    ledger.uncertain.insert(id, content);
                }
                Some(s) => ledger
                    .unexpected
                    .push(format!("{ns}: store {id} answered {s} (only 200 or a retryable 503 are expected)")),
            }
        }
        if status != Some(200) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        k += 1;
    }
}

/// The promises for one namespace, once the cluster has settled. Returns what is broken.
async fn check_namespace(cluster: &TestCluster, http: &reqwest::Client, ns: &str, ledger: &Ledger) -> Vec<String> {
    let prefix = format!("{ns}-");
    let mut broken = Vec::new();
    // Through every node: each acknowledged write, with its content; nothing no client wrote.
    for i in cluster.running() {
        let base = &cluster.client(i).base;
        // A failover may still be settling: 503 is retried for a while.
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut rows = read_all(http, base, ns).await;
        while rows.is_none() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(250)).await;
            rows = read_all(http, base, ns).await;
        }
        let Some(rows) = rows else {
            broken.push(format!("{ns}: node index {i} did not answer a read within 60 s"));
            continue;
        };
        for (id, content) in ledger.acknowledged.range(prefix.clone()..).take_while(|(id, _)| id.starts_with(&prefix)) {
            if rows.get(id) != Some(content) {
                broken
                    .push(format!("{ns}: acknowledged write {id} missing or changed when read through node index {i}"));
            }
        }
        for (id, content) in &rows {
            let known = ledger.acknowledged.get(id).or_else(|| ledger.uncertain.get(id));
            if known != Some(content) {
                broken.push(format!("{ns}: node index {i} returns {id} = {content:?}, which no client wrote"));
            }
        }
    }
    // Every replica holds the same rows (read from each replica's own store).
    let converged = eventually(Duration::from_secs(60), || async {
        let Some(entry) = cluster.handle(0).core.namespace(ns) else { return false };
        let mut copies = Vec::new();
        for node in &entry.placement.replicas {
            let Some(i) = cluster.index_of(*node) else { return false };
            copies.push(cluster.local_content(i, ns).await);
        }
        copies.iter().all(|c| c.is_some() && *c == copies[0])
    })
    .await;
    if !converged {
        broken.push(format!("{ns}: replicas still differ after 60 s"));
    }
    broken
}

/// Every memory of `ns` through the node at `base`, a page of 1000 at a time (writes have stopped).
async fn read_all(http: &reqwest::Client, base: &str, ns: &str) -> Option<BTreeMap<String, String>> {
    let mut rows = BTreeMap::new();
    loop {
        let url = format!("{base}/v1/agents/{ns}/memories?limit=1000&offset={}", rows.len());
        let r = http.get(url).bearer_auth(ROOT_KEY).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        let page = v.as_array()?;
        for m in page {
            rows.insert(m["id"].as_str()?.to_string(), m["content"].as_str()?.to_string());
        }
        if page.len() < 1000 {
            return Some(rows);
        }
    }
}
