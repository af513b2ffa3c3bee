//! Tests of the real `loci` binary: crash safety under `kill -9`, graceful SIGTERM, `--help`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "binary-test-root-key";
const ENC: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

struct Proc {
    child: Child,
    base: String,
}

/// `loci serve` on free loopback HTTP and gRPC ports, writing its ready file to `ready`.
fn serve_command(data: &Path, ready: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loci"));
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--ready-file")
        .arg(ready);
    cmd
}

/// Wait (up to 60 s) for a node's ready file; its REST base URL.
fn wait_ready(ready: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "node did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let info: Value = serde_json::from_str(&std::fs::read_to_string(ready).unwrap()).unwrap();
    format!("http://{}", info["http_addr"].as_str().unwrap())
}

fn spawn(dir: &Path, extra_env: &[(&str, &str)]) -> Proc {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = serve_command(&dir.join("data"), &ready);
    cmd.args(["--gossip-addr", "127.0.0.1:0"])
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .env("LOCI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn loci");
    Proc { child, base: wait_ready(&ready) }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(format!("{base}{path}")).bearer_auth(KEY).json(body).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}{path}")).bearer_auth(KEY).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let (_guard, dir) = tmp();
    let mut p = spawn(&dir, &[]);
    // Writers keep storing while the process is killed; every 200 answer is an acknowledged write.
    let base = p.base.clone();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..100_000 {
            let body = json!({"agent_id": "crash", "content": format!("acknowledged write {i}")});
            match client().post(format!("{base}/v1/memory/store")).bearer_auth(KEY).json(&body).send() {
                Ok(r) if r.status().as_u16() == 200 => {
                    let v: Value = r.json().unwrap();
                    acked.push((v["memory"]["id"].as_str().unwrap().to_string(), i));
                }
                _ => break,
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    p.child.kill().expect("SIGKILL");
    p.child.wait().unwrap();
    let acked = writer.join().unwrap();
    assert!(acked.len() > 20, "too few writes before the kill: {}", acked.len());

    let p2 = spawn(&dir, &[]);
    let (s, v) =
        post(&p2.base, "/v1/memories/recall/batch", &json!({"agent_id": "crash", "filter": {}, "limit": 10000}));
    assert_eq!(s, 200);
    let have: std::collections::HashMap<String, String> = v["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect();
    for (id, i) in &acked {
        assert_eq!(have.get(id), Some(&format!("acknowledged write {i}")), "acknowledged write {i} lost");
    }
    // The text index caught up with the rows after the crash too.
    let last = acked.last().unwrap();
    let (_, v) = post(
        &p2.base,
        "/v1/memory/recall",
        &json!({"agent_id": "crash", "query": format!("acknowledged write {}", last.1), "routing": "bm25", "top_k": 200}),
    );
    assert!(v["memories"].as_array().unwrap().iter().any(|m| m["memory"]["id"] == last.0.as_str()));
    let mut p2 = p2;
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}

#[test]
fn health_probe_exits_zero_only_on_a_2xx() {
    let (_guard, dir) = tmp();
    let mut p = spawn(&dir, &[]);
    let probe = |url: &str| Command::new(env!("CARGO_BIN_EXE_loci")).args(["health", "--url", url]).output().unwrap();
    let ok = probe(&format!("{}/health/ready", p.base));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // A non-public path without a key answers 401: the probe fails and says so.
    let denied = probe(&format!("{}/v1/namespaces", p.base));
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let gone = probe(&format!("{}/health/ready", p.base));
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot connect"));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let (_guard, dir) = tmp();
    let mut p = spawn(&dir, &[]);
    let (s, _) = post(&p.base, "/v1/memory/store", &json!({"agent_id": "t", "content": "before sigterm"}));
    assert_eq!(s, 200);
    let status = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let p2 = spawn(&dir, &[]);
    let (_, v) = post(&p2.base, "/v1/memories/recall/batch", &json!({"agent_id": "t", "filter": {}}));
    assert_eq!(v["memories"][0]["content"], "before sigterm");
    let mut p2 = p2;
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}

#[test]
fn generated_secrets_are_private_files_and_never_logged() {
    let (_guard, dir) = tmp();
    let ready = dir.join("ready.json");
    let mut child = serve_command(&dir.join("data"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0", "--log-format", "json"])
        .env_remove("LOCI_ROOT_API_KEY")
        .env_remove("LOCI_ENCRYPTION_KEY")
        .env_remove("DAKERA_ROOT_API_KEY")
        .env_remove("DAKERA_ENCRYPTION_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = wait_ready(&ready);
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::read_to_string(dir.join("data/root.key")).unwrap();
    let master = std::fs::read_to_string(dir.join("data/master.key")).unwrap();
    for f in ["root.key", "master.key"] {
        let mode = std::fs::metadata(dir.join("data").join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} mode {mode:o}");
    }
    // The generated root key works.
    let r = client().get(format!("{base}/v1/auth/whoami")).bearer_auth(root.trim()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("root.key"), "the log says where the root key is: {logs}");
    assert!(logs.contains("\"level\""), "json logs: {logs}");
    assert!(!logs.contains(root.trim()), "root key leaked into logs");
    assert!(!logs.contains(master.trim()), "master key leaked into logs");
}

#[test]
fn help_documents_every_option_and_env_var() {
    let out = Command::new(env!("CARGO_BIN_EXE_loci")).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--data-dir",
        "LOCI_DATA_DIR",
        "--http-addr",
        "LOCI_HTTP_ADDR",
        "--grpc-addr",
        "LOCI_GRPC_ADDR",
        "--gossip-addr",
        "LOCI_GOSSIP_ADDR",
        "LOCI_ROOT_API_KEY",
        "LOCI_ENCRYPTION_KEY",
        "--log-format",
        "--ready-file",
        "LOCI_MAX_BODY_SIZE",
        "--config",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let (_guard, dir) = tmp();
    let out = Command::new(env!("CARGO_BIN_EXE_loci"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 8 characters"), "{err}");
    // Config file values apply, and the environment overrides them.
    let cfg = dir.join("loci.toml");
    std::fs::write(&cfg, "max_content_bytes = 10\nroot_api_key = \"from-the-config-file\"\n").unwrap();
    let ready = dir.join("ready.json");
    let mut child = serve_command(&dir.join("data2"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = wait_ready(&ready);
    let (s, v) = post(&base, "/v1/memory/store", &json!({"agent_id": "c", "content": "longer than ten bytes"}));
    assert_eq!(s, 413, "config file limit applies: {v}");
    let (s, _) = get(&base, "/v1/namespaces");
    assert_eq!(s, 200, "env root key overrides the file");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Start a `redis-server` on a free port for the shared-budget test.
fn redis() -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed by `make test`");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

#[test]
fn two_processes_share_one_rate_limit_budget_through_redis() {
    let (mut redis, port) = redis();
    let url = format!("redis://127.0.0.1:{port}/");
    let env = [("LOCI_REDIS_URL", url.as_str()), ("LOCI_RATE_LIMIT_RPS", "0.5"), ("LOCI_RATE_LIMIT_BURST", "10")];
    let (_g1, d1) = tmp();
    let (_g2, d2) = tmp();
    let mut a = spawn(&d1, &env);
    let mut b = spawn(&d2, &env);
    // The same key alternates between the two processes; one shared budget of 10 means about 10
    // successes in total, where two separate budgets would allow 20.
    let mut ok = 0;
    for i in 0..30 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = client().get(format!("{base}/v1/auth/whoami")).bearer_auth(KEY).send().unwrap();
        if r.status().as_u16() == 200 {
            ok += 1;
            assert_eq!(r.headers().get("x-ratelimit-backend").unwrap(), "redis");
        } else {
            assert_eq!(r.status().as_u16(), 429);
        }
    }
    assert!((10..=11).contains(&ok), "{ok} requests passed a shared budget of 10");
    a.child.kill().unwrap();
    b.child.kill().unwrap();
    a.child.wait().unwrap();
    b.child.wait().unwrap();
    redis.kill().unwrap();
    redis.wait().unwrap();
}

#[test]
fn created_key_secrets_never_reach_logs_and_audit_verify_detects_tampering() {
    let (_guard, dir) = tmp();
    let audit = dir.join("audit.log");
    let audit_s = audit.to_str().unwrap().to_string();
    let ready = dir.join("ready.json");
    let mut child = serve_command(&dir.join("data"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0", "--log-format", "json"])
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .env("LOCI_LOG", "debug")
        .env("LOCI_AUDIT_ENABLED", "true")
        .env("LOCI_AUDIT_FILE", &audit_s)
        // Both bodies recorded: the minted and rotated secrets are in the responses.
        .env("LOCI_AUDIT_REQUEST_BODY", "true")
        .env("LOCI_AUDIT_RESPONSE_BODY", "true")
        .env("LOCI_AUDIT_MAX_BODY_SIZE", "65536")
        .stdout(Stdio::null())
        // A file, not a pipe: debug logs would fill a pipe nobody reads until the end.
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr.log")).unwrap()))
        .spawn()
        .unwrap();
    let base = wait_ready(&ready);
    let (s, v) = post(&base, "/admin/keys", &json!({"name": "leak-test", "scope": "write"}));
    assert_eq!(s, 201);
    let secret = v["key"].as_str().unwrap().to_string();
    let id = v["key_id"].as_str().unwrap().to_string();
    let r = client().get(format!("{base}/v1/auth/whoami")).bearer_auth(&secret).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, v) = post(&base, &format!("/admin/keys/{id}/rotate"), &json!({}));
    assert_eq!(s, 200);
    let rotated = v["new_key"].as_str().unwrap().to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(logs.len() > 100, "debug logs were produced");
    for s in [&secret, &rotated, &KEY.to_string()] {
        assert!(!logs.contains(s.as_str()), "a secret reached the tracing output");
        assert!(!audit_text.contains(s.as_str()), "a secret reached the audit log");
    }
    let verify =
        |path: &Path| Command::new(env!("CARGO_BIN_EXE_loci")).args(["audit", "verify"]).arg(path).output().unwrap();
    let ok = verify(&audit);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    // Remove one line from the middle: detected, with the line number.
    let lines: Vec<&str> = audit_text.lines().collect();
    assert!(lines.len() >= 3);
    let tampered: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| *l).collect();
    let bad = dir.join("tampered.log");
    std::fs::write(&bad, tampered.join("\n") + "\n").unwrap();
    let res = verify(&bad);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stdout).contains("line 2"));
}

fn loci(args: &[&str], key: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loci")).args(args).env("LOCI_API_KEY", key).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn grpc_of(dir: &Path) -> String {
    let info: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("ready.json")).unwrap()).unwrap();
    info["grpc_addr"].as_str().unwrap().to_string()
}

#[test]
fn operator_cli_over_grpc() {
    let (_guard, dir) = tmp();
    let mut p = spawn(&dir, &[]);
    let addr = grpc_of(&dir);
    let (ok, out, err) = loci(&["cluster", "status", "--addr", &addr], KEY);
    assert!(ok, "{err}");
    assert!(out.contains("state healthy") && out.contains("voter"), "{out}");
    let (ok, out, _) = loci(&["cluster", "status", "--addr", &addr, "--json"], KEY);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
    let (ok, out, err) = loci(&["ns", "create", "cli-docs", "--dimension", "8", "--addr", &addr], KEY);
    assert!(ok && out.contains("created"), "{out}{err}");
    let (ok, out, _) = loci(&["ns", "placement", "cli-docs", "--addr", &addr], KEY);
    assert!(ok && out.contains("primary"), "{out}");
    let (ok, out, _) = loci(
        &[
            "keys",
            "create",
            "--name",
            "cli-key",
            "--scope",
            "write",
            "--namespace",
            "cli-docs",
            "--addr",
            &addr,
            "--json",
        ],
        KEY,
    );
    assert!(ok);
    let created: Value = serde_json::from_str(&out).unwrap();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    let (ok, out, _) = loci(&["keys", "list", "--addr", &addr], KEY);
    assert!(ok && out.contains(&key_id) && out.contains("cli-key"), "{out}");
    let (ok, out, _) = loci(&["keys", "rotate", &key_id, "--addr", &addr, "--json"], KEY);
    assert!(ok);
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_id = rotated["key_id"].as_str().unwrap().to_string();
    let r = client().get(format!("{}/v1/auth/whoami", p.base)).bearer_auth(&secret).send().unwrap();
    assert_eq!(r.status().as_u16(), 401, "the rotated-away secret stopped working");
    let (ok, _, _) = loci(&["keys", "revoke", &new_id, "--addr", &addr], KEY);
    assert!(ok);
    let (ok, out, _) = loci(&["ns", "delete", "cli-docs", "--addr", &addr], KEY);
    assert!(ok && out.contains("data key destroyed: true"), "{out}");
    // A wrong key fails with the server's message and a non-zero exit.
    let (ok, _, err) = loci(&["ns", "list", "--addr", &addr], "not-a-key");
    assert!(!ok && err.contains("INVALID_API_KEY"), "{err}");
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[test]
fn three_processes_form_a_cluster_and_survive_kill_9_of_a_primary() {
    let ports: Vec<u16> =
        (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let join = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let guards: Vec<_> = (0..3).map(|_| tmp()).collect();
    let mut procs = Vec::new();
    for (i, (_, dir)) in guards.iter().enumerate() {
        let g = format!("127.0.0.1:{}", ports[i]);
        let env = [
            ("LOCI_GOSSIP_ADDR", g.as_str()),
            ("LOCI_JOIN", join.as_str()),
            ("LOCI_BOOTSTRAP_EXPECT", "3"),
            ("LOCI_CLUSTER_SECRET", "binary-cluster-secret-123"),
            ("LOCI_FAILOVER_AFTER_SECS", "3"),
        ];
        procs.push(spawn_with_gossip(dir, &env));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while procs.iter().any(|p| {
        client().get(format!("{}/health/ready", p.base)).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200
    }) {
        assert!(Instant::now() < deadline, "cluster did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut tries = 0;
        loop {
            let (s, v) = post(
                &procs[i % 3].base,
                "/v1/memory/store",
                &json!({"agent_id": "bin-ns", "content": format!("binary cluster fact {i}")}),
            );
            if s == 200 {
                ids.push(v["memory"]["id"].as_str().unwrap().to_string());
                break;
            }
            tries += 1;
            assert!(tries < 10 && s == 503, "store failed: {s} {v}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let (_, placement) = get(&procs[0].base, "/v1/namespaces/bin-ns/placement");
    let primary = placement["primary"].as_str().unwrap().to_string();
    let victim = (0..3).find(|i| {
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(guards[*i].1.join("ready.json")).unwrap()).unwrap();
        info["node_id"].to_string() == primary
    });
    let victim = victim.expect("primary is one of the processes");
    procs[victim].child.kill().unwrap();
    procs[victim].child.wait().unwrap();
    let survivor = (0..3).find(|i| *i != victim).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) = get(&procs[survivor].base, "/v1/namespaces/bin-ns/placement");
        if p["primary"].as_str().is_some_and(|p| p != primary) {
            break;
        }
        assert!(Instant::now() < deadline, "no failover after kill -9");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in (0..3).filter(|i| *i != victim) {
        let (s, v) = post(
            &procs[i].base,
            "/v1/memories/recall/batch",
            &json!({"agent_id": "bin-ns", "filter": {}, "limit": 1000}),
        );
        assert_eq!(s, 200, "{v}");
        let have: Vec<&str> = v["memories"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        for id in &ids {
            assert!(have.contains(&id.as_str()), "acknowledged write {id} lost after kill -9 of the primary");
        }
    }
    // The CLI, against a survivor, reports the dead member.
    let (ok, out, err) = loci(&["cluster", "status", "--addr", &grpc_of(&guards[survivor].1), "--json"], KEY);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert!(
        st["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["node_id"].as_str() == Some(primary.as_str()) && m["gossip_state"] == "down"),
        "{out}"
    );
    for (i, p) in procs.iter_mut().enumerate() {
        if i != victim {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
    }
}

/// Like `spawn`, with the gossip address taken from the environment list.
fn spawn_with_gossip(dir: &Path, extra_env: &[(&str, &str)]) -> Proc {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = serve_command(&dir.join("data"), &ready);
    cmd.env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .env("LOCI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("stderr.log")).unwrap()));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn loci");
    Proc { child, base: wait_ready(&ready) }
}

/// Issue 14: `loci cluster certs` makes a CA and a node certificate; a node serving with them
/// refuses (and logs) a peer that does not complete a TLS handshake with a certificate of the
/// cluster CA.
#[test]
fn cluster_certificates_from_the_cli_and_refused_peers_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let node_certs = dir.path().join("node-1");
    let loci = env!("CARGO_BIN_EXE_loci");
    let out = Command::new(loci).args(["cluster", "certs", "create-ca", "--certs-dir"]).arg(&certs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(loci)
        .args(["cluster", "certs", "create-node", "--host", "127.0.0.1,localhost", "--certs-dir"])
        .arg(&certs)
        .arg("--out-dir")
        .arg(&node_certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.crt", "node.crt", "node.key"] {
        assert!(node_certs.join(f).exists(), "{f} missing");
    }
    // A second CA in the same place is refused (nothing is overwritten).
    let again = Command::new(loci).args(["cluster", "certs", "create-ca", "--certs-dir"]).arg(&certs).output().unwrap();
    assert!(!again.status.success());

    let ready = dir.path().join("ready.json");
    let mut child = serve_command(&dir.path().join("data"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0"])
        .arg("--cluster-certs-dir")
        .arg(&node_certs)
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .env("LOCI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&ready);
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let cluster_addr = info["cluster_addr"].as_str().unwrap().to_string();
    // A plaintext peer: an HTTP/2 preface instead of a TLS ClientHello.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&cluster_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        // The node closes the connection (or answers a TLS alert), it never speaks HTTP/2.
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || buf[0] == 0x15, "a plaintext peer got an answer: {:?}", &buf[..n]);
    }
    // The refusal is logged as the handshake fails (read while the node runs).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logged = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("refused a cluster connection") => {
                logged = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(logged, "the refusal is not logged");
}

/// Headers of a GET without credentials.
fn headers(base: &str, path: &str) -> reqwest::header::HeaderMap {
    client().get(format!("{base}{path}")).send().unwrap().headers().clone()
}

fn header<'a>(m: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    m.get(name).map(|v| v.to_str().unwrap())
}

/// seed 002_beb034b3af00d10c.txt line 50: `DAKERA_CORS_ORIGINS=*` with
/// `DAKERA_CORS_CREDENTIALS=true` (and the same through the `LOCI_` names) exits non-zero with a
/// message naming both settings, before serving anything.
#[test]
fn cors_wildcard_with_credentials_refuses_to_start() {
    for (origins, credentials) in
        [("DAKERA_CORS_ORIGINS", "DAKERA_CORS_CREDENTIALS"), ("LOCI_CORS_ORIGINS", "LOCI_CORS_CREDENTIALS")]
    {
        let (_guard, dir) = tmp();
        let ready = dir.join("ready.json");
        let out = serve_command(&dir.join("data"), &ready)
            .args(["--gossip-addr", "127.0.0.1:0"])
            .env("LOCI_ROOT_API_KEY", KEY)
            .env("LOCI_ENCRYPTION_KEY", ENC)
            .env(origins, "*")
            .env(credentials, "true")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{origins}=* with credentials started");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to start"), "{err}");
        assert!(err.contains("CORS_ORIGINS") && err.contains("CORS_CREDENTIALS"), "{err}");
        assert!(!ready.exists(), "it must not have served");
        assert!(!dir.join("data").exists(), "nothing is created before the settings are checked");
    }
}

/// seed 002_beb034b3af00d10c.txt lines 44-45, 61-62, 69-70 and 182-186: the seed's `DAKERA_*`
/// names are read by the real binary (headers and audit change accordingly), and an unknown
/// `DAKERA_*` or `LOCI_*` variable is warned about by name, once, at start.
#[test]
fn seed_002_dakera_names_apply_and_unknown_names_are_warned() {
    let (_guard, dir) = tmp();
    let audit = dir.join("audit.log");
    let audit_s = audit.to_str().unwrap().to_string();
    let custom = "default-src 'none'; frame-ancestors 'none'; base-uri 'self'";
    let p = spawn(
        &dir,
        &[
            ("DAKERA_FRAME_OPTIONS", "SAMEORIGIN"),
            ("DAKERA_HSTS_MAX_AGE", "600"),
            ("DAKERA_CSP_ENABLED", "true"),
            ("DAKERA_CSP_DIRECTIVES", custom),
            ("DAKERA_CORS_ORIGINS", "https://app.example.com,https://dashboard.example.com"),
            ("DAKERA_CORS_CREDENTIALS", "true"),
            ("DAKERA_AUDIT_ENABLED", "true"),
            ("LOCI_AUDIT_FILE", &audit_s),
            ("DAKERA_AUDIT_REQUEST_BODY", "true"),
            ("DAKERA_AUDIT_RESPONSE_BODY", "false"),
            ("DAKERA_AUDIT_MAX_BODY_SIZE", "40"),
            ("DAKERA_AUDIT_EXCLUDE_PATHS", "/health,/metrics"),
            ("DAKERA_CORS_ORIGINZ", "typo"),
            ("LOCI_NOT_A_SETTING", "1"),
            ("LOCI_TEST_HARNESS_ONLY", "1"),
        ],
    );
    let m = headers(&p.base, "/health");
    assert_eq!(header(&m, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(header(&m, "strict-transport-security"), Some("max-age=600; includeSubDomains"));
    assert_eq!(header(&m, "content-security-policy"), Some(custom));
    assert_eq!(header(&m, "x-xss-protection"), Some("1; mode=block"));
    let pre = client()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/memory/recall", p.base))
        .header("origin", "https://dashboard.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(header(pre.headers(), "access-control-allow-origin"), Some("https://dashboard.example.com"));
    assert_eq!(header(pre.headers(), "access-control-allow-credentials"), Some("true"));
    let (s, _) = post(
        &p.base,
        "/v1/memory/store",
        &json!({"agent_id": "bin", "content": "a body longer than forty bytes, cut"}),
    );
    assert_eq!(s, 200);
    let Proc { mut child, .. } = p;
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    for name in ["DAKERA_CORS_ORIGINZ", "LOCI_NOT_A_SETTING"] {
        let lines = logs.lines().filter(|l| l.contains(&format!("unknown environment variable {name} "))).count();
        assert_eq!(lines, 1, "{name} warned once: {logs}");
    }
    for known in [
        "DAKERA_CORS_ORIGINS ",
        "DAKERA_AUDIT_MAX_BODY_SIZE ",
        "LOCI_AUDIT_FILE ",
        "LOCI_LOG ",
        "LOCI_TEST_HARNESS_ONLY ",
    ] {
        assert!(!logs.contains(&format!("unknown environment variable {known}")), "{known} is known: {logs}");
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(recs.iter().all(|r| r["path"] != "/health"), "excluded path recorded");
    let store = recs.iter().find(|r| r["path"] == "/v1/memory/store").expect("the store is audited");
    assert_eq!(store["request_body"].as_str().map(str::len), Some(40), "{store}");
    assert_eq!(store["request_body_truncated"], true);
    assert!(store.get("response_body").is_none());
    assert_eq!(store["agent_id"], "bin");
    let verify = Command::new(env!("CARGO_BIN_EXE_loci")).args(["audit", "verify"]).arg(&audit).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// seed 002_beb034b3af00d10c.txt lines 58, 69-70 and 74: the same settings under their `LOCI_`
/// names: HSTS and CSP switched off, frame options custom, preset by name.
#[test]
fn seed_002_settings_by_loci_names() {
    let (_guard, dir) = tmp();
    let p = spawn(
        &dir,
        &[
            ("LOCI_FRAME_OPTIONS", "ALLOW-FROM https://app.example.com"),
            ("LOCI_HSTS_ENABLED", "false"),
            ("LOCI_CSP_ENABLED", "false"),
        ],
    );
    let m = headers(&p.base, "/health");
    assert_eq!(header(&m, "x-frame-options"), Some("ALLOW-FROM https://app.example.com"));
    assert_eq!(header(&m, "strict-transport-security"), None);
    assert_eq!(header(&m, "content-security-policy"), None);
    assert_eq!(header(&m, "referrer-policy"), Some("strict-origin-when-cross-origin"));
    let Proc { mut child, .. } = p;
    child.kill().unwrap();
    child.wait().unwrap();
    let p = spawn(&dir, &[("LOCI_CSP_DIRECTIVES", "strict")]);
    let m = headers(&p.base, "/health");
    assert_eq!(header(&m, "strict-transport-security"), Some("max-age=31536000; includeSubDomains; preload"));
    assert!(header(&m, "content-security-policy").unwrap().contains("sandbox"));
    let Proc { mut child, .. } = p;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Wait (up to 60 s) for a process that must refuse to start; its stderr.
fn expect_refusal(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the node started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

fn stop(mut p: Proc) {
    let status = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seed 002: `POST /admin/encryption/rotate {"old_key", "new_key"}` with passphrases; a wrong
/// old key changes nothing; after the rotation the node restarted with the new key reads
/// everything, and the old key no longer starts it.
#[test]
fn master_key_rotation_with_old_key_then_restart_with_the_new_key() {
    let (_guard, dir) = tmp();
    let old = [("LOCI_ENCRYPTION_KEY", "current-passphrase")];
    let p = spawn(&dir, &old);
    let (s, v) =
        post(&p.base, "/v1/memory/store", &json!({"agent_id": "vault", "content": "sealed under the old key"}));
    assert_eq!(s, 200, "{v}");
    let id = v["memory"]["id"].as_str().unwrap().to_string();
    let (s, v) =
        post(&p.base, "/admin/encryption/rotate", &json!({"old_key": "wrong-passphrase", "new_key": "new-passphrase"}));
    assert_eq!((s, v["code"].as_str()), (403, Some("ENCRYPTION_KEY_MISMATCH")), "{v}");
    stop(p);
    // Nothing changed: the old key still opens it.
    let p = spawn(&dir, &old);
    let (s, v) = post(
        &p.base,
        "/admin/encryption/rotate",
        &json!({"old_key": "current-passphrase", "new_key": "new-passphrase"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rotated"], 1);
    stop(p);
    let p = spawn(&dir, &[("LOCI_ENCRYPTION_KEY", "new-passphrase")]);
    let (s, v) = get(&p.base, &format!("/v1/memory/get/{id}?agent_id=vault"));
    assert_eq!((s, v["content"].as_str()), (200, Some("sealed under the old key")));
    let (s, v) = post(&p.base, "/v1/memory/recall", &json!({"agent_id": "vault", "query": "sealed old key"}));
    assert_eq!(s, 200);
    assert_eq!(v["memories"][0]["memory"]["id"], id.as_str());
    stop(p);
    let ready = dir.join("ready-old.json");
    let child = serve_command(&dir.join("data"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0"])
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", "current-passphrase")
        .env("LOCI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = expect_refusal(child);
    assert!(err.contains("does not match"), "{err}");
    assert!(!ready.exists());
}

/// A newcomer's path: `loci model fetch` with no destination, then a bare `loci serve` (other
/// working directory, other data directory, no LOCI_EMBEDDING_MODEL_DIR) uses the model.
#[test]
fn serve_finds_the_model_where_fetch_puts_it_by_default() {
    let model = std::env::var_os("LOCI_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/loci-models/all-MiniLM-L6-v2"));
    assert!(
        loci_storage::minilm::verify_dir(&model).is_ok(),
        "all-MiniLM-L6-v2 is not in {} — `make test` fetches it (make model)",
        model.display()
    );
    let (_guard, dir) = tmp();
    let home = dir.join("home");
    let where_fetch_puts_it = home.join(".local/share/loci/models/all-MiniLM-L6-v2");
    std::fs::create_dir_all(&where_fetch_puts_it).unwrap();
    // Stand-ins for the download (verified files, linked): fetch then finds them in place.
    for (name, _) in loci_storage::minilm::MODEL_FILES {
        std::os::unix::fs::symlink(model.join(name), where_fetch_puts_it.join(name)).unwrap();
    }
    let work = dir.join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loci"))
        .args(["model", "fetch"])
        .current_dir(&work)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("LOCI_EMBEDDING_MODEL_DIR")
        .env_remove("LOCI_DATA_DIR")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&where_fetch_puts_it.display().to_string()), "fetch's default is elsewhere: {said}");
    let ready = dir.join("ready.json");
    let mut child = serve_command(&dir.join("some-other-data"), &ready)
        .args(["--gossip-addr", "127.0.0.1:0"])
        .current_dir(&work)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("LOCI_EMBEDDING_MODEL_DIR")
        .env_remove("LOCI_EMBEDDING_PROVIDER")
        .env("LOCI_ROOT_API_KEY", KEY)
        .env("LOCI_ENCRYPTION_KEY", ENC)
        .env("LOCI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = wait_ready(&ready);
    let (s, v) = get(&base, "/health");
    let (s2, ns) = post(&base, "/v1/namespaces", &json!({"name": "notes"}));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["embedder"], "builtin-minilm", "{v}");
    assert_eq!(s2, 201);
    assert_eq!(ns["dimension"], 384);
}

/// A `--join` seed whose name does not resolve yet (a peer container not started) does not stop
/// the node: it starts, serves `/health`, and says it will look the seed up again.
#[test]
fn an_unresolvable_join_seed_does_not_stop_the_node() {
    let (_guard, dir) = tmp();
    let p = spawn(
        &dir,
        &[
            ("LOCI_JOIN", "loci-seed-that-does-not-exist.invalid:7946"),
            ("LOCI_CLUSTER_SECRET", "a-test-cluster-secret"),
        ],
    );
    let r = client().get(format!("{}/health", p.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let Proc { mut child, .. } = p;
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("does not resolve yet"), "no warning about the seed: {logs}");
}

/// Issue 14: TLS on the public listeners (`--tls-cert`, `--tls-key`). REST answers over HTTPS
/// to a client that trusts the CA, a plaintext request gets no HTTP
/// answer, a client that does not trust the CA is refused, and the operator CLI reaches the
/// gRPC listener over TLS with `--tls-ca`.
#[test]
fn public_listeners_serve_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_loci");
    let (ca_dir, node_dir) = (dir.path().join("ca"), dir.path().join("node"));
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(Command::new(bin).args(["cluster", "certs", "create-ca", "--certs-dir"]).arg(&ca_dir).output().unwrap());
    ok(Command::new(bin)
        .args(["cluster", "certs", "create-node", "--host", "localhost", "--certs-dir"])
        .arg(&ca_dir)
        .arg("--out-dir")
        .arg(&node_dir)
        .output()
        .unwrap());
    let (cert, key) = (node_dir.join("node.crt"), node_dir.join("node.key"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut p = spawn(dir.path(), &[("LOCI_TLS_CERT", cert), ("LOCI_TLS_KEY", key)]);
    let ready = dir.path().join("ready.json");
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let port = |k: &str| info[k].as_str().unwrap().rsplit(':').next().unwrap().to_string();
    let (http_port, grpc_port) = (port("http_addr"), port("grpc_addr"));
    let base = format!("https://localhost:{http_port}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_dir.join("ca.crt")).unwrap()).unwrap();
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = trusting.get(format!("{base}/v1/auth/whoami")).bearer_auth(KEY).send().expect("HTTPS request");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert!(body["key_id"].is_string(), "{body}");
    // Plaintext HTTP on the TLS port: no HTTP answer.
    let plain = client().get(format!("http://127.0.0.1:{http_port}/health")).send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "a plaintext request was served");
    // A client that does not trust the CA refuses the node's certificate.
    let untrusting =
        reqwest::blocking::Client::builder().tls_built_in_root_certs(false).timeout(Duration::from_secs(10)).build();
    assert!(untrusting.unwrap().get(format!("{base}/health")).send().is_err());
    // The operator CLI over gRPC with TLS.
    let grpc = format!("https://localhost:{grpc_port}");
    let ca_path = ca_dir.join("ca.crt");
    let (good, out, err) = loci(&["cluster", "status", "--addr", &grpc, "--tls-ca", ca_path.to_str().unwrap()], KEY);
    assert!(good && out.contains("state healthy"), "{out}{err}");
    let (good, _, err) = loci(&["cluster", "status", "--addr", &grpc], KEY);
    assert!(!good && err.contains("--tls-ca"), "an https address without a CA is refused with a hint: {err}");
    let (good, _, _) = loci(&["cluster", "status", "--addr", &format!("http://127.0.0.1:{grpc_port}")], KEY);
    assert!(!good, "plaintext gRPC on the TLS port is not served");
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
