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
        audit_capture_body_bytes: 0,
        security_preset: "default".into(),
        csp: None,
        cors_origins: String::new(),
        cors_credentials: false,
        sweep_interval_secs: 1,
        join: Vec::new(),
        bootstrap_expect: 0,
        replication_factor: 3,
        voters: 3,
        failover_after_secs: 3,
        dead_node_grace_secs: 30,
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
