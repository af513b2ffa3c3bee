//! Test harness: real Loci nodes (in-process, or the real binary) on loopback with free ports,
//! and a small JSON client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use loci_node::{NodeHandle, ServeArgs};
use serde_json::Value;

pub const ROOT_KEY: &str = "test-root-key-0123456789";
/// 64 hex: skips Argon2 so tests start fast (passphrases are covered by unit tests).
pub const ENCRYPTION_KEY: &str = "7f3a9c1e5b2d4f6a8c0e1a3b5d7f9e2c4a6b8d0f1e3c5a7b9d2f4e6a8c0b1d3f";

/// Arguments for a node in `dir` on free loopback ports.
pub fn serve_args(dir: &Path) -> ServeArgs {
    ServeArgs {
        config: None,
        data_dir: dir.to_path_buf(),
        http_addr: "127.0.0.1:0".into(),
        grpc_addr: "127.0.0.1:0".into(),
        metrics_auth: false,
        metrics_addr: None,
        cluster_addr: "127.0.0.1:0".into(),
        cluster_advertise_addr: None,
        cluster_certs_dir: None,
        tls_cert: None,
        tls_key: None,
        gossip_addr: "127.0.0.1:0".into(),
        advertise_host: None,
        node_id: None,
        root_api_key: Some(ROOT_KEY.into()),
        encryption_key: Some(ENCRYPTION_KEY.into()),
        cluster_secret: None,
        log_format: loci_node::config::LogFormat::Text,
        ready_file: None,
        max_body_size: 10 * 1024 * 1024,
        max_content_bytes: 100_000,
        sync_writes: true,
        ann_threshold: 10_000,
        default_dimension: 384,
        // Tests drive nodes hard; rate-limit tests lower this explicitly.
        rate_limit_enabled: true,
        rate_limit_rps: 1_000_000.0,
        rate_limit_burst: 1_000_000,
        redis_url: None,
        audit_enabled: false,
        audit_file: None,
        audit_exclude_paths: "/health,/metrics".into(),
        security_preset: "default".into(),
        cors_origins: String::new(),
        cors_credentials: false,
        sweep_interval_secs: 1,
        join: Vec::new(),
        bootstrap_expect: 0,
        replication_factor: 3,
        voters: 3,
        failover_after_secs: 3,
        dead_node_grace_secs: 30,
        embedding_model_dir: None,
        embedding_provider: "hash".into(),
        openai_embeddings_url: None,
        openai_embeddings_model: "test-model".into(),
        openai_embeddings_key: None,
        entity_extractor: "rules".into(),
        openai_extractor_url: None,
        openai_extractor_model: "test-model".into(),
        openai_extractor_key: None,
        csp_directives: None,
        csp_enabled: None,
        hsts_enabled: None,
        hsts_max_age: 31_536_000,
        frame_options: "DENY".into(),
        audit_request_body: false,
        audit_response_body: false,
        audit_max_body_size: 4096,
        audit_max_file_bytes: 100 * 1024 * 1024,
        audit_retain_files: 10,
        audit_retention_days: 0,
        jwt: Default::default(),
        webhooks: Default::default(),
        event_buffer: loci_service::events::DEFAULT_BUFFER,
        backup_dir: None,
        backup_key: None,
        backup_s3_endpoint: None,
        backup_s3_region: None,
        backup_s3_access_key: None,
        backup_s3_secret_key: None,
    }
}

/// A Server-Sent Events stream read by a test.
pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

/// One event of an [`SseStream`].
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

impl SseStream {
    /// Open `path` on `base` with `key` (as a bearer token), resuming after `last_id`.
    pub async fn open(base: &str, path: &str, key: &str, last_id: Option<&str>) -> Result<SseStream, (u16, Value)> {
        let http = reqwest::Client::new();
        let mut req = http.get(format!("{base}{path}")).bearer_auth(key);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("stream request sent");
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err((status, serde_json::from_str(&text).unwrap_or(Value::String(text))));
        }
        Ok(SseStream { resp, buf: String::new() })
    }

    /// The next event (keep-alive comments skipped), or None when none came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return Some(SseEvent { event, id, data });
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Events until `n` of them have come or `wait` passes.
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }
}

/// An in-process node with its own temporary data directory.
pub struct TestNode {
    pub handle: Option<NodeHandle>,
    pub dir: tempfile::TempDir,
    pub client: Client,
}

impl TestNode {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, |_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut ServeArgs)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, f).await
    }

    pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(&mut ServeArgs)) -> Self {
        init_tracing();
        let mut args = serve_args(dir.path());
        f(&mut args);
        let handle = loci_node::start(args).await.expect("node starts");
        let client = Client::new(&format!("http://{}", handle.http_addr), ROOT_KEY);
        TestNode { handle: Some(handle), dir, client }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Graceful stop; the data directory stays for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
        self.dir
    }

    /// Stop and start again on the same data directory.
    pub async fn restart(self) -> Self {
        let dir = self.stop().await;
        Self::start_in(dir, |_| {}).await
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Result<(), ()> {
    // Quiet by default; LOCI_TEST_LOG=debug to see node logs.
    if let Ok(level) = std::env::var("LOCI_TEST_LOG") {
        loci_node::logging::init_with_filter(&level);
    }
    Ok(())
}

/// Minimal JSON client: every call returns (status, body as JSON or a string value).
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            key: Some(key.to_string()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
        }
    }

    pub fn with_key(&self, key: Option<&str>) -> Self {
        Client { key: key.map(str::to_string), ..self.clone() }
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path)).body(body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POST, retrying 503 answers (with their Retry-After) like the published clients do.
    pub async fn post_retrying(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut last = (0, Value::Null);
        for _ in 0..5 {
            last = self.post(path, body).await;
            if last.0 != 503 {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, None).await
    }
    pub async fn delete_with(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, Some(body)).await
    }

    /// Store and return the memory id (panics unless 200).
    pub async fn store(&self, agent: &str, content: &str) -> String {
        let (s, v) = self.post("/v1/memory/store", &serde_json::json!({"agent_id": agent, "content": content})).await;
        assert_eq!(s, 200, "store failed: {v}");
        v["memory"]["id"].as_str().expect("id").to_string()
    }

    /// Ids returned by a recall, best first.
    pub async fn recall_ids(&self, agent: &str, query: &str, top_k: usize) -> Vec<String> {
        let (s, v) = self
            .post("/v1/memory/recall", &serde_json::json!({"agent_id": agent, "query": query, "top_k": top_k}))
            .await;
        assert_eq!(s, 200, "recall failed: {v}");
        ids_of(&v["memories"])
    }
}

/// Memory ids of a list of recall hits (`{memory:{id}}`) or flat memories (`{id}`).
pub fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["memory"]["id"].as_str().or_else(|| m["id"].as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every regular file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

/// A real `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let bin = which("redis-server")
            .expect("redis-server is not installed; `make test` installs it (apt-get install redis-server)");
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { port, child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn which(bin: &str) -> Option<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"]) {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// Create a key with the root client; returns (key_id, secret).
pub async fn create_key(root: &Client, path: &str, body: &Value) -> (String, String) {
    let (s, v) = root.post(path, body).await;
    assert!(s == 200 || s == 201, "key creation failed: {s} {v}");
    (v["key_id"].as_str().expect("key_id").to_string(), v["key"].as_str().expect("key").to_string())
}

pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

/// A free UDP port on loopback (for gossip).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Several real nodes in this process, talking gossip (UDP) and gRPC over loopback.
pub struct TestCluster {
    pub nodes: Vec<Option<TestNode>>,
    pub gossip_ports: Vec<u16>,
    /// Data directories kept across crashes and restarts.
    dirs: Vec<Option<tempfile::TempDir>>,
    tweak: std::sync::Arc<dyn Fn(&mut ServeArgs) + Send + Sync>,
}

impl TestCluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// Start `n` nodes that bootstrap together (`--bootstrap-expect n`, every node seeded with
    /// every gossip address) and wait until all are ready.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut ServeArgs) + Send + Sync + 'static) -> Self {
        init_tracing();
        let gossip_ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let mut c = TestCluster {
            nodes: (0..n).map(|_| None).collect(),
            gossip_ports,
            dirs: (0..n).map(|_| Some(tempfile::tempdir().expect("tempdir"))).collect(),
            tweak: std::sync::Arc::new(tweak),
        };
        let mut handles = Vec::new();
        for i in 0..n {
            let args = c.args(i, n);
            let dir = c.dirs[i].take().expect("dir");
            handles.push(tokio::spawn(async move { TestNode::start_in(dir, move |a| *a = args).await }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            c.nodes[i] = Some(h.await.expect("node task"));
        }
        c.wait_ready(Duration::from_secs(60)).await;
        c
    }

    fn args(&self, i: usize, expect: usize) -> ServeArgs {
        let dir = self.dirs[i].as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default();
        let mut a = serve_args(&dir);
        a.gossip_addr = format!("127.0.0.1:{}", self.gossip_ports[i]);
        a.join = self.gossip_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        a.bootstrap_expect = expect;
        a.cluster_secret = Some(CLUSTER_SECRET.into());
        (self.tweak)(&mut a);
        a
    }

    pub fn node(&self, i: usize) -> &TestNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn client(&self, i: usize) -> &Client {
        &self.node(i).client
    }

    pub fn handle(&self, i: usize) -> &NodeHandle {
        self.node(i).handle.as_ref().expect("handle")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).collect()
    }

    pub fn node_id(&self, i: usize) -> u64 {
        self.handle(i).node_id
    }

    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.running().into_iter().find(|i| self.node_id(*i) == node_id)
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let ok = eventually(timeout, || async {
            for i in self.running() {
                if self.client(i).get("/health/ready").await.0 != 200 {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(ok, "cluster did not become ready");
    }

    /// Add a node that joins through the existing ones' seeds.
    pub async fn add_node(&mut self) -> usize {
        let port = free_udp_port();
        self.gossip_ports.push(port);
        self.dirs.push(Some(tempfile::tempdir().expect("tempdir")));
        self.nodes.push(None);
        let i = self.nodes.len() - 1;
        let mut args = self.args(i, 0);
        args.bootstrap_expect = 0;
        args.join = self.gossip_ports[..i].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let dir = self.dirs[i].take().expect("dir");
        self.nodes[i] = Some(TestNode::start_in(dir, move |a| *a = args).await);
        i
    }

    /// Crash node `i` (no flush, no goodbye); its data directory is kept.
    pub async fn crash(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("running");
        let h = node.handle.take().expect("handle");
        h.crash().await;
        self.dirs[i] = Some(node.dir);
    }

    /// Graceful stop of node `i`; its data directory is kept.
    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        self.dirs[i] = Some(node.stop().await);
    }

    /// Replace node `i` by a new one with an empty disk on the same addresses (what
    /// re-creating a container under the same name does): it gets a new node id.
    pub async fn replace(&mut self, i: usize) {
        if self.nodes[i].is_some() {
            self.crash(i).await;
        }
        self.dirs[i] = Some(tempfile::tempdir().expect("tempdir"));
        self.restart(i).await;
    }

    /// Start node `i` again on its data directory and gossip port.
    pub async fn restart(&mut self, i: usize) {
        let args = self.args(i, 0);
        let dir = self.dirs[i].take().expect("stopped node");
        self.nodes[i] = Some(TestNode::start_in(dir, move |a| *a = args).await);
    }

    /// Cut the nodes in `side` off from every other node (both directions), or heal that.
    pub fn partition_groups(&self, side: &[usize], cut: bool) {
        for i in side.iter().copied() {
            for j in self.running().into_iter().filter(|j| !side.contains(j)) {
                let (a, b) = (self.handle(i), self.handle(j));
                a.cluster.gossip.set_blocked(b.gossip_addr, cut);
                b.cluster.gossip.set_blocked(a.gossip_addr, cut);
                a.cluster.pool.set_blocked(&b.cluster_addr.to_string(), cut);
                b.cluster.pool.set_blocked(&a.cluster_addr.to_string(), cut);
            }
        }
    }

    /// Node `i`'s own rows of `ns` as sorted (id, content) pairs, read from its store, not
    /// through the primary: what that replica holds.
    pub async fn local_content(&self, i: usize, ns: &str) -> Option<Vec<(String, String)>> {
        use loci_storage::model::{DataOp, DataResult, MemoryFilter, SortBy};
        let core = &self.handle(i).core;
        let entry = core.namespace(ns)?;
        let op =
            DataOp::List { filter: MemoryFilter::default(), sort: SortBy::CreatedAtAsc, limit: usize::MAX, offset: 0 };
        match core.cluster.local().execute(&entry, op).await.ok()?.result {
            DataResult::Memories { memories, .. } => {
                let mut rows: Vec<(String, String)> = memories.into_iter().map(|m| (m.id, m.content)).collect();
                rows.sort();
                Some(rows)
            }
            _ => None,
        }
    }

    /// Cut node `i` off from every other node (both directions), or heal it.
    pub fn partition(&self, i: usize, cut: bool) {
        for j in self.running() {
            if j == i {
                continue;
            }
            let (a, b) = (self.handle(i), self.handle(j));
            a.cluster.gossip.set_blocked(b.gossip_addr, cut);
            b.cluster.gossip.set_blocked(a.gossip_addr, cut);
            a.cluster.pool.set_blocked(&b.cluster_addr.to_string(), cut);
            b.cluster.pool.set_blocked(&a.cluster_addr.to_string(), cut);
        }
    }
}
