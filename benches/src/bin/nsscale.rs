//! `nsscale`: issue 13's scale figures on one real node. It starts a `loci serve` process (a
//! release build, `--binary`) on a fresh data directory and measures, in order:
//!
//! 1. creating `--namespaces` namespaces (`POST /v1/namespaces`, client vectors) with
//!    `--concurrency` clients: the rate, and the node's resident memory per namespace;
//! 2. storing `--memories` memories in each (`/v1/memories/store/batch`, batches of 100): the
//!    rate, and the resident memory per namespace once every namespace is loaded;
//! 3. vector queries (`/v1/memory/search`, top 10) on random namespaces: QPS and latency;
//! 4. a restart: the time from spawning the process to `/health/ready`, the resident memory
//!    after it, then the first query of namespaces nobody has touched since (cold) and a
//!    second one (warm).
//!
//! `cargo build --release -p loci-node -p loci-benches --bins && \
//!  /var/tmp/loci-target/release/nsscale --binary /var/tmp/loci-target/release/loci`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const KEY: &str = "nsscale-root-key-0123456789abcdef";

#[derive(Parser, Debug)]
#[command(about = "Scale figures of one Loci node: namespaces, memory per namespace, start-up, cold queries")]
struct Args {
    /// The `loci` binary to run (a release build).
    #[arg(long)]
    binary: PathBuf,
    /// Data directory (must not exist; default: a new one under /var/tmp).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Namespaces to create.
    #[arg(long, default_value_t = 50_000)]
    namespaces: usize,
    /// Memories stored in each namespace after they all exist (0: none).
    #[arg(long, default_value_t = 1)]
    memories: usize,
    /// Vector dimension (client-supplied vectors; no model runs).
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Vector queries in the warm query phase.
    #[arg(long, default_value_t = 4_000)]
    queries: usize,
    /// Namespaces whose first query after the restart is timed.
    #[arg(long, default_value_t = 200)]
    cold: usize,
    /// Keep the data directory afterwards.
    #[arg(long)]
    keep: bool,
}

struct Node {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn spawn(binary: &Path, dir: &Path) -> anyhow::Result<Node> {
    let port = free_port();
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let child = Command::new(binary)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--cluster-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())])
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_RATE_LIMIT_ENABLED", "false")
        .env("LOCI_EMBEDDING_PROVIDER", "hash")
        .env("LOCI_LOG", "warn")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Node { child, base: format!("http://127.0.0.1:{port}") })
}

async fn wait_ready(http: &reqwest::Client, base: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = http.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the node at {base} was not ready within {limit:?}")
}

/// Resident memory of a process, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn du_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

fn unit_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / norm).collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn ns_name(i: usize) -> String {
    format!("tenant-{i:06}")
}

/// Run `total` jobs over `concurrency` tasks; `job(i)` returns the latency in µs. Prints progress
/// every `every` jobs. Returns (seconds, sorted latencies).
async fn run_jobs<F, Fut>(
    label: &str,
    total: usize,
    concurrency: usize,
    every: usize,
    job: F,
) -> anyhow::Result<(f64, Vec<u64>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (job, next, done) = (job.clone(), next.clone(), done.clone());
        let label = label.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(lat);
                }
                lat.push(job(i).await?);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if every > 0 && d % every == 0 {
                    let s = start.elapsed().as_secs_f64();
                    println!("  {label}: {d}/{total} in {s:.1} s ({:.0}/s)", d as f64 / s);
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    Ok((start.elapsed().as_secs_f64(), all))
}

async fn search(http: &reqwest::Client, base: &str, ns: &str, v: Vec<f32>) -> anyhow::Result<u64> {
    let t = Instant::now();
    let r = http
        .post(format!("{base}/v1/memory/search"))
        .bearer_auth(KEY)
        .json(&json!({"namespace": ns, "embedding": v, "top_k": 10, "routing": "vector"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "search {ns}: {} {}", r.status(), r.text().await?);
    r.bytes().await?;
    Ok(t.elapsed().as_micros() as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => PathBuf::from(format!("/var/tmp/loci-nsscale-{}", std::process::id())),
    };
    anyhow::ensure!(!dir.exists(), "{} exists; give a new --data-dir", dir.display());
    std::fs::create_dir_all(&dir)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).pool_max_idle_per_host(64).build()?;

    let spawned = Instant::now();
    let mut node = spawn(&a.binary, &dir)?;
    wait_ready(&http, &node.base, Duration::from_secs(120)).await?;
    println!("node ready in {:.2} s (empty)", spawned.elapsed().as_secs_f64());
    let pid = node.child.id();
    let rss0 = rss_kib(pid);
    println!("resident memory, empty node: {:.1} MiB", rss0 as f64 / 1024.0);

    // 1. Namespaces.
    let (n, dim) = (a.namespaces, a.dim);
    let base = Arc::new(node.base.clone());
    let (secs, lat) = {
        let (http, base) = (http.clone(), base.clone());
        run_jobs("create", n, a.concurrency, (n / 10).max(1), move |i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/v1/namespaces"))
                    .bearer_auth(KEY)
                    .json(&json!({"name": ns_name(i), "embedding": {"provider": "client", "dimension": dim}}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "create {}: {} {}", ns_name(i), r.status(), r.text().await?);
                Ok(t.elapsed().as_micros() as u64)
            }
        })
        .await?
    };
    let rss1 = rss_kib(pid);
    println!(
        "created {n} namespaces in {secs:.1} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        n as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!(
        "resident memory: {:.1} MiB ({:.2} KiB per namespace, created, not loaded)",
        rss1 as f64 / 1024.0,
        (rss1.saturating_sub(rss0)) as f64 / n.max(1) as f64
    );

    // 2. Memories.
    let m = a.memories;
    if m > 0 {
        let batches_per_ns = m.div_ceil(100);
        let total = n * batches_per_ns;
        let (secs, lat) = {
            let (http, base) = (http.clone(), base.clone());
            run_jobs("store", total, a.concurrency, (total / 10).max(1), move |j| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let (i, b) = (j / batches_per_ns, j % batches_per_ns);
                    let mut rng = StdRng::seed_from_u64(j as u64);
                    let count = (m - b * 100).min(100);
                    let memories: Vec<_> = (0..count)
                        .map(|k| {
                            json!({"id": format!("m-{b}-{k}"),
                                   "content": format!("memory {k} of batch {b} in namespace {i}: the customer prefers email on tuesdays"),
                                   "embedding": unit_vector(&mut rng, dim)})
                        })
                        .collect();
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}/v1/memories/store/batch"))
                        .bearer_auth(KEY)
                        .json(&json!({"namespace": ns_name(i), "memories": memories}))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "store {}: {} {}", ns_name(i), r.status(), r.text().await?);
                    Ok(t.elapsed().as_micros() as u64)
                }
            })
            .await?
        };
        let rss2 = rss_kib(pid);
        println!(
            "stored {} memories in {secs:.1} s: {:.0} memories/s, batch p50 {:.1} ms, p99 {:.1} ms",
            n * m,
            (n * m) as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        println!(
            "resident memory: {:.1} MiB ({:.2} KiB per loaded namespace with {m} memories)",
            rss2 as f64 / 1024.0,
            (rss2.saturating_sub(rss0)) as f64 / n.max(1) as f64
        );

        // 3. Warm queries.
        let (secs, lat) = {
            let (http, base) = (http.clone(), base.clone());
            run_jobs("query", a.queries, a.concurrency, 0, move |q| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let mut rng = StdRng::seed_from_u64(1_000_000 + q as u64);
                    let i = rng.random_range(0..n);
                    search(&http, &base, &ns_name(i), unit_vector(&mut rng, dim)).await
                }
            })
            .await?
        };
        println!(
            "{} queries over random namespaces: {:.0} QPS, p50 {:.2} ms, p99 {:.2} ms",
            a.queries,
            a.queries as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }

    // 4. Restart.
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = node.child.wait();
    println!("disk: {:.1} MiB", du_bytes(&dir) as f64 / 1048576.0);
    let spawned = Instant::now();
    node = spawn(&a.binary, &dir)?;
    wait_ready(&http, &node.base, Duration::from_secs(600)).await?;
    let ready = spawned.elapsed().as_secs_f64();
    let pid = node.child.id();
    println!("restart: ready in {ready:.2} s; resident memory {:.1} MiB", rss_kib(pid) as f64 / 1024.0);
    if m > 0 {
        let mut rng = StdRng::seed_from_u64(7);
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        let picks: Vec<usize> = (0..a.cold.min(n)).map(|_| rng.random_range(0..n)).collect();
        for i in picks {
            cold.push(search(&http, &node.base, &ns_name(i), unit_vector(&mut rng, dim)).await?);
            warm.push(search(&http, &node.base, &ns_name(i), unit_vector(&mut rng, dim)).await?);
        }
        cold.sort_unstable();
        warm.sort_unstable();
        println!(
            "first query of a cold namespace: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; the second: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&cold, 0.5),
            percentile(&cold, 0.99),
            percentile(&cold, 1.0),
            percentile(&warm, 0.5),
            percentile(&warm, 0.99)
        );
        println!("resident memory after the cold queries: {:.1} MiB", rss_kib(pid) as f64 / 1024.0);
    }
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = node.child.wait();
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
