//! `loadgen`: concurrent clients storing and recalling memories over REST (or, with `--grpc`, the
//! typed gRPC `loci.v1.Memories`), against a running node (`--url`) or against nodes it starts in
//! this process (`--nodes`, 3 or more form a cluster and requests are spread over every node, so
//! most are forwarded). Prints throughput and latency percentiles per operation.
//!
//! `cargo run --release -p loci-benches --bin loadgen -- --nodes 3 --seconds 30` (see `--help`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use loci_tests::{ROOT_KEY, TestCluster, TestNode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Load generator for Loci: stores and recalls over REST, reports throughput and latency")]
struct Args {
    /// Base URL of a running node, or several comma-separated (the clients spread their requests
    /// over them in turn; then `--key` is needed). Without it, nodes start in-process.
    #[arg(long)]
    url: Option<String>,
    /// API key for `--url` (write scope on the namespaces it uses, `loadgen-*`).
    #[arg(long, env = "LOCI_API_KEY")]
    key: Option<String>,
    /// In-process nodes to start when `--url` is absent (1: a single node; 3 or more: a cluster).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Duration of the measured run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Namespaces the clients spread over (`loadgen-0` …).
    #[arg(long, default_value_t = 8)]
    namespaces: usize,
    /// Memories stored in each namespace before the measured run.
    #[arg(long, default_value_t = 200)]
    prefill: usize,
    /// Share of operations that are recalls, in percent (the rest are stores).
    #[arg(long, default_value_t = 50)]
    recall_percent: u32,
    /// Memories per store request (1: `/v1/memory/store`; more: `/v1/memories/store/batch`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// After the run, add a node to the in-process cluster and time the moves onto it.
    #[arg(long)]
    grow: bool,
    /// Client-supplied vectors of this dimension (0: none, the nodes embed the content). The
    /// namespaces are created with the `client` embedder, and every store and recall carries a
    /// random unit vector, so no model runs anywhere.
    #[arg(long, default_value_t = 0)]
    vector_dim: usize,
    /// Recalls become vector searches (`POST /v1/memory/search`, `routing: vector`, the query
    /// vector only, no text): the read of issue 13's multi-tenant workload. Needs `--vector-dim`.
    #[arg(long)]
    search: bool,
    /// The measured requests go over the typed gRPC service `loci.v1.Memories` (`Store`,
    /// `StoreBatch`, `Recall`, `Search`) instead of REST, to the in-process nodes' gRPC ports or
    /// to `--grpc-url` (prefilling stays on REST).
    #[arg(long)]
    grpc: bool,
    /// gRPC addresses of the `--url` nodes, comma-separated, for `--grpc`
    /// (`http://127.0.0.1:50051`).
    #[arg(long)]
    grpc_url: Option<String>,
    /// `off`: the namespaces make no similarity links on store and extract no entities (their
    /// memory policy: `graph_link_threshold: null`, `extract_entities: false`), set after the
    /// prefill; `on` (default): the defaults (links at 0.85, at most 3; entities extracted).
    #[arg(long, default_value = "on")]
    graph: String,
}

/// A random unit vector of `dim` components (empty when `dim` is 0).
fn unit_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / norm).collect()
}

/// A memory or recall body aimed at `ns`: by agent id when the nodes embed, by namespace with a
/// vector when the client does.
fn body(ns: &str, mut fields: serde_json::Value, rng: &mut StdRng, dim: usize) -> serde_json::Value {
    if dim == 0 {
        fields["agent_id"] = json!(ns);
    } else {
        fields["namespace"] = json!(ns);
        fields["embedding"] = json!(unit_vector(rng, dim));
    }
    fields
}

const WORDS: &[&str] = &[
    "customer",
    "prefers",
    "email",
    "meeting",
    "tuesday",
    "invoice",
    "overdue",
    "project",
    "deadline",
    "moved",
    "coffee",
    "allergy",
    "peanuts",
    "flight",
    "berlin",
    "budget",
    "approved",
    "design",
    "review",
    "password",
    "reset",
    "vacation",
    "august",
    "server",
    "outage",
    "report",
    "quarterly",
    "renewal",
    "contract",
    "signed",
];

fn sentence(rng: &mut StdRng) -> String {
    (0..12).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Samples {
    /// Latencies of successful operations, in microseconds.
    ok: Vec<u64>,
    /// Failed operations by HTTP status (0: no answer).
    failed: BTreeMap<u16, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Keep in-process nodes alive for the whole run.
    let mut _single = None;
    let mut _cluster: Option<TestCluster> = None;
    let mut grpc_targets: Vec<String> = Vec::new();
    let (targets, key) = match &args.url {
        Some(url) => {
            let key = args.key.clone().ok_or_else(|| anyhow::anyhow!("--url needs --key (or LOCI_API_KEY)"))?;
            let urls: Vec<String> =
                url.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
            anyhow::ensure!(!urls.is_empty(), "--url names no node");
            (urls, key)
        }
        None if args.nodes >= 3 => {
            let c = TestCluster::start(args.nodes).await;
            let bases = c.running().into_iter().map(|i| c.client(i).base.clone()).collect();
            grpc_targets = c.running().into_iter().map(|i| format!("http://{}", c.handle(i).grpc_addr)).collect();
            _cluster = Some(c);
            (bases, ROOT_KEY.to_string())
        }
        None => {
            let n = TestNode::start().await;
            let base = n.client.base.clone();
            if let Some(h) = n.handle.as_ref() {
                grpc_targets.push(format!("http://{}", h.grpc_addr));
            }
            _single = Some(n);
            (vec![base], ROOT_KEY.to_string())
        }
    };
    if let Some(g) = &args.grpc_url {
        grpc_targets = g.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
    }
    anyhow::ensure!(!args.grpc || !grpc_targets.is_empty(), "--grpc with --url needs --grpc-url");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let namespaces: Vec<String> = (0..args.namespaces).map(|k| format!("loadgen-{k}")).collect();

    let dim = args.vector_dim;
    anyhow::ensure!(!args.search || dim > 0, "--search needs --vector-dim");
    if dim > 0 {
        for ns in &namespaces {
            let r = http
                .post(format!("{}/v1/namespaces", targets[0]))
                .bearer_auth(&key)
                .json(&json!({"name": ns, "embedding": {"provider": "client", "dimension": dim}}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "creating {ns} failed: {} {}", r.status(), r.text().await?);
        }
    }
    println!("prefilling {} namespaces with {} memories each", namespaces.len(), args.prefill);
    let mut rng = StdRng::seed_from_u64(1);
    for ns in &namespaces {
        for chunk in (0..args.prefill).collect::<Vec<_>>().chunks(100) {
            let memories: Vec<_> = chunk
                .iter()
                .map(|_| {
                    let mut m = json!({"content": sentence(&mut rng)});
                    if dim > 0 {
                        m["embedding"] = json!(unit_vector(&mut rng, dim));
                    }
                    m
                })
                .collect();
            let batch = if dim == 0 {
                json!({"agent_id": ns, "memories": memories})
            } else {
                json!({"namespace": ns, "memories": memories})
            };
            let r = http
                .post(format!("{}/v1/memories/store/batch", targets[0]))
                .bearer_auth(&key)
                .json(&batch)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "prefill failed: {} {}", r.status(), r.text().await?);
        }
    }

    anyhow::ensure!(matches!(args.graph.as_str(), "on" | "off"), "--graph is on or off");
    if args.graph == "off" {
        for ns in &namespaces {
            let r = http
                .put(format!("{}/v1/namespaces/{ns}/memory_policy", targets[0]))
                .bearer_auth(&key)
                .json(&json!({"graph_link_threshold": null, "extract_entities": false}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "policy of {ns}: {} {}", r.status(), r.text().await?);
        }
    }
    println!(
        "running {} {} clients for {} s against {} node(s), {}% recalls, {} memories per store, graph {}",
        args.concurrency,
        if args.grpc { "gRPC" } else { "REST" },
        args.seconds,
        targets.len(),
        args.recall_percent,
        args.batch,
        args.graph
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (targets, namespaces, key) = (Arc::new(targets), Arc::new(namespaces), Arc::new(key));
    let mut workers = Vec::new();
    if args.grpc {
        for w in 0..args.concurrency {
            let spec = GrpcWorker {
                targets: grpc_targets.clone(),
                namespaces: namespaces.clone(),
                key: key.clone(),
                recall_percent: args.recall_percent,
                batch: args.batch.max(1),
                dim: args.vector_dim,
                search: args.search,
                deadline,
            };
            workers.push(tokio::spawn(async move { spec.run(w).await }));
        }
    }
    for w in 0..if args.grpc { 0 } else { args.concurrency } {
        let (http, targets, namespaces, key) = (http.clone(), targets.clone(), namespaces.clone(), key.clone());
        let (recall_percent, batch, dim, search) =
            (args.recall_percent, args.batch.max(1), args.vector_dim, args.search);
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + w as u64);
            let mut samples: BTreeMap<&'static str, Samples> = BTreeMap::new();
            let mut k = w;
            while Instant::now() < deadline {
                let base = &targets[k % targets.len()];
                let ns = &namespaces[rng.random_range(0..namespaces.len())];
                k += 1;
                let read = rng.random_range(0..100) < recall_percent;
                let (op, request) = if read && search {
                    let q = json!({"top_k": 10, "routing": "vector"});
                    let b = body(ns, q, &mut rng, dim);
                    ("search", http.post(format!("{base}/v1/memory/search")).json(&b))
                } else if read {
                    let q = json!({"query": sentence(&mut rng), "top_k": 10});
                    let b = body(ns, q, &mut rng, dim);
                    ("recall", http.post(format!("{base}/v1/memory/recall")).json(&b))
                } else if batch == 1 {
                    let b = body(ns, json!({"content": sentence(&mut rng)}), &mut rng, dim);
                    ("store", http.post(format!("{base}/v1/memory/store")).json(&b))
                } else {
                    let memories: Vec<_> = (0..batch)
                        .map(|_| body(ns, json!({"content": sentence(&mut rng)}), &mut rng, dim))
                        .map(|mut m| {
                            // The target goes on the batch, not on each memory.
                            if let Some(o) = m.as_object_mut() {
                                o.remove("namespace");
                                o.remove("agent_id");
                            }
                            m
                        })
                        .collect();
                    let target = if dim == 0 { json!({"agent_id": ns}) } else { json!({"namespace": ns}) };
                    let mut b = target;
                    b["memories"] = json!(memories);
                    ("store_batch", http.post(format!("{base}/v1/memories/store/batch")).json(&b))
                };
                let started = Instant::now();
                let status = match request.bearer_auth(key.as_str()).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        // The whole body is part of the request's cost.
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let entry = samples.entry(op).or_default();
                if (200..300).contains(&status) {
                    entry.ok.push(started.elapsed().as_micros() as u64);
                } else {
                    *entry.failed.entry(status).or_default() += 1;
                }
            }
            samples
        }));
    }
    let mut all: BTreeMap<&'static str, Samples> = BTreeMap::new();
    for w in workers {
        for (op, s) in w.await? {
            let e = all.entry(op).or_default();
            e.ok.extend(s.ok);
            for (status, n) in s.failed {
                *e.failed.entry(status).or_default() += n;
            }
        }
    }
    report(&all, args.seconds, args.batch.max(1));
    if args.grow {
        let Some(cluster) = _cluster.as_mut() else {
            anyhow::bail!("--grow needs an in-process cluster (--nodes 3 or more, no --url)");
        };
        grow(cluster, &http, &namespaces).await?;
    }
    Ok(())
}

/// A client of the typed gRPC service: the same operations as the REST clients.
struct GrpcWorker {
    targets: Vec<String>,
    namespaces: Arc<Vec<String>>,
    key: Arc<String>,
    recall_percent: u32,
    batch: usize,
    dim: usize,
    search: bool,
    deadline: Instant,
}

impl GrpcWorker {
    async fn run(self, w: usize) -> BTreeMap<&'static str, Samples> {
        use loci_api::pb;
        let mut samples: BTreeMap<&'static str, Samples> = BTreeMap::new();
        // One channel (HTTP/2 connection) per worker and node, as a REST client keeps one
        // connection per request in flight.
        let mut clients = Vec::new();
        for t in &self.targets {
            match tonic::transport::Endpoint::from_shared(t.clone()) {
                Ok(e) => match e.connect().await {
                    Ok(ch) => {
                        clients.push(pb::memories_client::MemoriesClient::new(ch).max_decoding_message_size(64 << 20))
                    }
                    Err(e) => eprintln!("cannot connect to {t}: {e}"),
                },
                Err(e) => eprintln!("not an address: {t}: {e}"),
            }
        }
        if clients.is_empty() {
            return samples;
        }
        let auth: tonic::metadata::MetadataValue<_> = match format!("Bearer {}", self.key).parse() {
            Ok(v) => v,
            Err(_) => return samples,
        };
        let mut rng = StdRng::seed_from_u64(1000 + w as u64);
        let mut k = w;
        while Instant::now() < self.deadline {
            let n = clients.len();
            let client = &mut clients[k % n];
            let ns = self.namespaces[rng.random_range(0..self.namespaces.len())].clone();
            k += 1;
            let (agent_id, namespace) = if self.dim == 0 { (ns, String::new()) } else { (String::new(), ns) };
            let read = rng.random_range(0..100) < self.recall_percent;
            let started = Instant::now();
            let embedding = unit_vector(&mut rng, self.dim);
            macro_rules! call {
                ($method:ident, $msg:expr) => {{
                    let mut r = tonic::Request::new($msg);
                    r.metadata_mut().insert("authorization", auth.clone());
                    client.$method(r).await.map(|_| ()).map_err(|e| e.code())
                }};
            }
            let (op, result) = if read && self.search {
                let q = pb::RecallRequest {
                    agent_id,
                    namespace,
                    top_k: Some(10),
                    routing: "vector".into(),
                    embedding,
                    ..Default::default()
                };
                ("search", call!(search, q))
            } else if read {
                let q = pb::RecallRequest {
                    agent_id,
                    namespace,
                    query: sentence(&mut rng),
                    top_k: Some(10),
                    embedding,
                    ..Default::default()
                };
                ("recall", call!(recall, q))
            } else if self.batch == 1 {
                let m = pb::StoreMemoryRequest {
                    agent_id,
                    namespace,
                    content: sentence(&mut rng),
                    embedding,
                    ..Default::default()
                };
                ("store", call!(store, m))
            } else {
                let memories = (0..self.batch)
                    .map(|_| pb::MemoryInput {
                        content: sentence(&mut rng),
                        embedding: unit_vector(&mut rng, self.dim),
                        ..Default::default()
                    })
                    .collect();
                (
                    "store_batch",
                    call!(store_batch, pb::StoreBatchRequest { agent_id, namespace, memories, ..Default::default() }),
                )
            };
            let entry = samples.entry(op).or_default();
            match result {
                Ok(()) => entry.ok.push(started.elapsed().as_micros() as u64),
                // Failures by gRPC code (as numbers, in the same table as HTTP statuses).
                Err(code) => *entry.failed.entry(code as u16).or_default() += 1,
            }
        }
        samples
    }
}

/// Add a node and wait until the placements settle with it: report how many memories moved onto
/// it and how fast.
async fn grow(cluster: &mut TestCluster, http: &reqwest::Client, namespaces: &[String]) -> anyhow::Result<()> {
    println!("\nadding a node");
    let started = Instant::now();
    let i = cluster.add_node().await;
    let new_id = cluster.node_id(i);
    let placements = |c: &TestCluster| -> Vec<loci_raft::catalogue::Placement> {
        namespaces.iter().filter_map(|ns| c.handle(0).core.namespace(ns)).map(|e| e.placement).collect()
    };
    // Settled: the new node holds replicas, every replica is active, no move is in progress, and
    // nothing changed for 5 s.
    let (mut last, mut last_change) = (placements(cluster), Instant::now());
    while last_change.elapsed() < Duration::from_secs(5) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "placements did not settle in 600 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = placements(cluster);
        let settled = now.iter().all(|p| p.leaving.is_empty() && p.active_count() == p.replicas.len())
            && now.iter().any(|p| p.replicas.contains(&new_id));
        if now != last || !settled {
            (last, last_change) = (now, Instant::now());
        }
    }
    let took = last_change.duration_since(started);
    let mut moved = 0u64;
    let mut copies = 0;
    for (ns, p) in namespaces.iter().zip(&last) {
        if p.replicas.contains(&new_id) {
            let r =
                http.get(format!("{}/v1/namespaces/{ns}", cluster.client(0).base)).bearer_auth(ROOT_KEY).send().await?;
            let v: serde_json::Value = r.json().await?;
            moved += v["memory_count"].as_u64().unwrap_or(0);
            copies += 1;
        }
    }
    println!(
        "{copies} namespace copies ({moved} memories) moved onto the new node in {:.1} s: {:.0} memories/s, including joining",
        took.as_secs_f64(),
        moved as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn report(all: &BTreeMap<&'static str, Samples>, seconds: u64, batch: usize) {
    let total: usize = all.values().map(|s| s.ok.len()).sum();
    println!("\n{total} successful requests, {:.0} requests/s", total as f64 / seconds as f64);
    println!(
        "{:<12} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}  failed",
        "operation", "ok", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (op, s) in all {
        let mut v = s.ok.clone();
        v.sort_unstable();
        let pct = |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |x| *x as f64 / 1000.0);
        let per_s = v.len() as f64 / seconds as f64;
        println!(
            "{op:<12} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {:?}",
            v.len(),
            per_s,
            pct(0.50),
            pct(0.95),
            pct(0.99),
            pct(1.0),
            s.failed
        );
        if *op == "store_batch" {
            println!("{:<12} memories stored per s: {:.0}", "", per_s * batch as f64);
        }
    }
}
