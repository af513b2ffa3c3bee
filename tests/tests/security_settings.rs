//! The settings and stated behaviour of Dakera's security page
//! (`/work/shared/seeds/002_beb034b3af00d10c.txt`, "seed 002"), against a running node: response
//! headers and their presets, CORS, the audit log's fields and bodies, the 429 body and the
//! field limits. Each test names the seed line it checks.

use loci_tests::{Client, TestNode, create_key};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SEED_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const STRICT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";

async fn headers_of(c: &Client, path: &str) -> HeaderMap {
    reqwest::Client::new().get(format!("{}{path}", c.base)).send().await.unwrap().headers().clone()
}

fn h<'a>(m: &'a HeaderMap, name: &str) -> Option<&'a str> {
    m.get(name).map(|v| v.to_str().unwrap())
}

/// seed 002_beb034b3af00d10c.txt lines 66-74 (the security headers table) and line 57 (the
/// default preset's CSP): every value exactly, on a public route, an authenticated route's
/// refusal and an unknown path.
#[tokio::test]
async fn default_headers_are_the_seed_table() {
    let node = TestNode::start().await;
    for path in ["/health", "/v1/namespaces", "/no/such/route"] {
        let m = headers_of(&node.client, path).await;
        assert_eq!(h(&m, "strict-transport-security"), Some("max-age=31536000; includeSubDomains"), "{path}");
        assert_eq!(h(&m, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(h(&m, "x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(h(&m, "x-xss-protection"), Some("1; mode=block"), "{path}");
        assert_eq!(h(&m, "referrer-policy"), Some("strict-origin-when-cross-origin"), "{path}");
        assert_eq!(h(&m, "content-security-policy"), Some(SEED_CSP), "{path}");
    }
}

/// seed 002_beb034b3af00d10c.txt line 58: the permissive preset disables CSP and HSTS (chosen by
/// `LOCI_SECURITY_PRESET` or by a preset name in `DAKERA_CSP_DIRECTIVES`); the always-on headers
/// (lines 71-73) stay.
#[tokio::test]
async fn permissive_preset_drops_csp_and_hsts() {
    for how in ["preset", "directives"] {
        let node = TestNode::start_with(|a| match how {
            "preset" => a.security_preset = "permissive".into(),
            _ => a.csp_directives = Some("permissive".into()),
        })
        .await;
        let m = headers_of(&node.client, "/health").await;
        assert_eq!(h(&m, "content-security-policy"), None, "{how}");
        assert_eq!(h(&m, "strict-transport-security"), None, "{how}");
        assert_eq!(h(&m, "x-content-type-options"), Some("nosniff"), "{how}");
        assert_eq!(h(&m, "x-xss-protection"), Some("1; mode=block"), "{how}");
        assert_eq!(h(&m, "referrer-policy"), Some("strict-origin-when-cross-origin"), "{how}");
        assert_eq!(h(&m, "x-frame-options"), Some("DENY"), "{how}");
    }
}

/// seed 002_beb034b3af00d10c.txt line 59: the strict preset sends a restrictive CSP and HSTS with
/// `preload`.
#[tokio::test]
async fn strict_preset_sends_a_restrictive_csp_and_hsts_preload() {
    let node = TestNode::start_with(|a| a.csp_directives = Some("strict".into())).await;
    let m = headers_of(&node.client, "/v1/namespaces").await;
    assert_eq!(h(&m, "content-security-policy"), Some(STRICT_CSP));
    assert_eq!(h(&m, "strict-transport-security"), Some("max-age=31536000; includeSubDomains; preload"));
    assert_eq!(h(&m, "cache-control"), Some("no-store"));
}

/// seed 002_beb034b3af00d10c.txt lines 60-62: custom directives replace the preset's CSP, and
/// `DAKERA_CSP_ENABLED=false` (line 74) sends none.
#[tokio::test]
async fn custom_csp_directives_and_csp_enabled() {
    let custom = "default-src 'none'; frame-ancestors 'none'; base-uri 'self'";
    let node = TestNode::start_with(|a| {
        a.csp_enabled = Some(true);
        a.csp_directives = Some(custom.into());
    })
    .await;
    assert_eq!(h(&headers_of(&node.client, "/health").await, "content-security-policy"), Some(custom));
    let off = TestNode::start_with(|a| a.csp_enabled = Some(false)).await;
    let m = headers_of(&off.client, "/health").await;
    assert_eq!(h(&m, "content-security-policy"), None);
    assert_eq!(h(&m, "strict-transport-security"), Some("max-age=31536000; includeSubDomains"), "HSTS unaffected");
}

/// seed 002_beb034b3af00d10c.txt line 69: `DAKERA_HSTS_MAX_AGE` changes max-age and
/// `DAKERA_HSTS_ENABLED=false` removes the header.
#[tokio::test]
async fn hsts_settings_change_the_header() {
    let node = TestNode::start_with(|a| a.hsts_max_age = 600).await;
    assert_eq!(
        h(&headers_of(&node.client, "/health").await, "strict-transport-security"),
        Some("max-age=600; includeSubDomains")
    );
    let off = TestNode::start_with(|a| a.hsts_enabled = Some(false)).await;
    let m = headers_of(&off.client, "/health").await;
    assert_eq!(h(&m, "strict-transport-security"), None);
    assert_eq!(h(&m, "content-security-policy"), Some(SEED_CSP), "CSP unaffected");
}

/// seed 002_beb034b3af00d10c.txt line 70: `DAKERA_FRAME_OPTIONS` takes DENY, SAMEORIGIN or a custom
/// value; a value that cannot be a header refuses to start and names the setting.
#[tokio::test]
async fn frame_options_setting() {
    for (given, sent) in [
        ("SAMEORIGIN", "SAMEORIGIN"),
        ("sameorigin", "SAMEORIGIN"),
        ("ALLOW-FROM https://app.example.com", "ALLOW-FROM https://app.example.com"),
    ] {
        let node = TestNode::start_with(|a| a.frame_options = given.into()).await;
        assert_eq!(h(&headers_of(&node.client, "/health").await, "x-frame-options"), Some(sent), "{given}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = loci_tests::serve_args(dir.path());
    args.frame_options = "DENY\r\nSet-Cookie: a=b".into();
    let err = loci_node::start(args).await.err().expect("must refuse").to_string();
    assert!(err.contains("FRAME_OPTIONS"), "{err}");
}

async fn preflight(c: &Client, origin: &str) -> HeaderMap {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/memory/recall", c.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap()
        .headers()
        .clone()
}

/// seed 002_beb034b3af00d10c.txt lines 43-45: specific origins with credentials: each listed
/// origin is allowed with credentials, any other gets no CORS grant.
#[tokio::test]
async fn cors_specific_origins_with_credentials() {
    let node = TestNode::start_with(|a| {
        a.cors_origins = "https://app.example.com,https://dashboard.example.com".into();
        a.cors_credentials = true;
    })
    .await;
    for origin in ["https://app.example.com", "https://dashboard.example.com"] {
        let m = preflight(&node.client, origin).await;
        assert_eq!(h(&m, "access-control-allow-origin"), Some(origin));
        assert_eq!(h(&m, "access-control-allow-credentials"), Some("true"));
    }
    let m = preflight(&node.client, "https://evil.example.com").await;
    assert_eq!(h(&m, "access-control-allow-origin"), None);
    // A real cross-origin request from a listed origin is readable by the page.
    let r = reqwest::Client::new()
        .get(format!("{}/health", node.client.base))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(h(r.headers(), "access-control-allow-origin"), Some("https://app.example.com"));
}

/// seed 002_beb034b3af00d10c.txt lines 47-49: `*` without credentials allows every origin and
/// never grants credentials.
#[tokio::test]
async fn cors_wildcard_without_credentials() {
    let node = TestNode::start_with(|a| a.cors_origins = "*".into()).await;
    let m = preflight(&node.client, "https://anything.example").await;
    assert_eq!(h(&m, "access-control-allow-origin"), Some("*"));
    assert_eq!(h(&m, "access-control-allow-credentials"), None);
}

/// seed 002_beb034b3af00d10c.txt line 50: `*` with credentials is refused at start, naming both
/// settings (the real binary's exit status is checked in node/tests/binary.rs).
#[tokio::test]
async fn cors_wildcard_with_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = loci_tests::serve_args(&data);
    args.cors_origins = "*".into();
    args.cors_credentials = true;
    let err = loci_node::start(args).await.err().expect("must refuse").to_string();
    assert!(err.contains("CORS_ORIGINS") && err.contains("CORS_CREDENTIALS"), "{err}");
    assert!(!data.exists(), "nothing is created before the settings are checked");
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn requests<'a>(lines: &'a [Value], path: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == "request" && l["path"] == path).collect()
}

/// seed 002_beb034b3af00d10c.txt lines 188-202: a request record carries every field of the
/// example entry, with the key's name and scope, the namespace, the agent and the user agent; the
/// hash chain still verifies.
#[tokio::test]
async fn audit_record_has_the_seed_example_fields() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let ap = audit.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
    })
    .await;
    let c = node.client.clone();
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "production", "dimension": 384})).await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let (_, secret) = create_key(
        &c,
        "/admin/keys",
        &json!({"name": "query-service", "scope": "write", "namespaces": ["production"]}),
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/memory/store", c.base))
        .bearer_auth(&secret)
        .header("user-agent", "dakera-py/0.11.46")
        .json(&json!({"agent_id": "assistant-v2", "namespace": "production", "content": "seed 002 audit example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    node.stop().await;

    let lines = audit_lines(&audit);
    let rec = requests(&lines, "/v1/memory/store");
    assert_eq!(rec.len(), 1, "{lines:?}");
    let rec = rec[0];
    for field in [
        "timestamp",
        "method",
        "path",
        "status",
        "latency_ms",
        "key_name",
        "key_scope",
        "namespace",
        "agent_id",
        "ip",
        "user_agent",
    ] {
        assert!(rec.get(field).is_some_and(|v| !v.is_null()), "missing {field}: {rec}");
    }
    assert_eq!(rec["method"], "POST");
    assert_eq!(rec["status"], 200);
    assert!(rec["latency_ms"].is_u64(), "whole milliseconds as in the example: {rec}");
    assert_eq!(rec["key_name"], "query-service");
    assert_eq!(rec["key_scope"], "write");
    assert_eq!(rec["namespace"], "production");
    assert_eq!(rec["agent_id"], "assistant-v2");
    assert_eq!(rec["ip"], "127.0.0.1");
    assert_eq!(rec["user_agent"], "dakera-py/0.11.46");
    let ts = rec["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == "2026-05-15T14:30:22.456Z".len(), "{ts}");
    // No header but the user agent, and never the key's secret.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&secret), "the API key secret reached the audit log");
    assert!(!text.to_ascii_lowercase().contains("authorization"), "a header reached the audit log");
    assert_eq!(
        loci_service::audit::verify(&audit).unwrap(),
        loci_service::audit::Verdict::Intact { lines: lines.len() as u64 }
    );
}

/// seed 002_beb034b3af00d10c.txt lines 181-185: request bodies recorded, response bodies not,
/// bodies over `DAKERA_AUDIT_MAX_BODY_SIZE` truncated to it; secrets (named secret fields and the
/// presented API key) never recorded.
#[tokio::test]
async fn audit_bodies_follow_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let ap = audit.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
        a.audit_request_body = true;
        a.audit_response_body = false;
        a.audit_max_body_size = 4096;
    })
    .await;
    let c = node.client.clone();
    let (_, secret) = create_key(&c, "/admin/keys", &json!({"name": "bodies", "scope": "write"})).await;
    let k = c.with_key(Some(&secret));
    assert_eq!(k.post("/v1/memory/store", &json!({"agent_id": "small", "content": "a small body"})).await.0, 200);
    let long = "x".repeat(10_000);
    assert_eq!(k.post("/v1/memory/store", &json!({"agent_id": "large", "content": long})).await.0, 200);
    let leak = format!("the key is {secret} here");
    assert_eq!(k.post("/v1/memory/store", &json!({"agent_id": "leak", "content": leak})).await.0, 200);
    node.stop().await;

    let lines = audit_lines(&audit);
    let stores = requests(&lines, "/v1/memory/store");
    let small = stores.iter().find(|l| l["agent_id"] == "small").unwrap();
    assert_eq!(small["request_body"]["content"], "a small body");
    assert_eq!(small["request_body_truncated"], false);
    assert!(small.get("response_body").is_none(), "response bodies are off: {small}");
    let large = stores.iter().find(|l| l["agent_id"] == "large").unwrap();
    let cut = large["request_body"].as_str().expect("a truncated body is kept as text");
    assert_eq!(cut.len(), 4096);
    assert!(cut.starts_with("{\"agent_id\":\"large\",\"content\":\"xxx"), "{cut:.60}");
    assert_eq!(large["request_body_truncated"], true);
    assert!(large["request_body_bytes"].as_u64().unwrap() > 10_000);
    let leaky = stores.iter().find(|l| l["agent_id"] == "leak").unwrap();
    assert_eq!(leaky["request_body"]["content"], "the key is [redacted] here");
    // The key-creation request from the root key: the root key never appears, the minted key's
    // secret (in the response) neither, since responses are not recorded.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&secret) && !text.contains(loci_tests::ROOT_KEY));
    assert!(matches!(loci_service::audit::verify(&audit).unwrap(), loci_service::audit::Verdict::Intact { .. }));

    // Response bodies on: recorded, secret fields redacted (the minted key's `key`), and cut to
    // the maximum like request bodies.
    let dir2 = tempfile::tempdir().unwrap();
    let audit2 = dir2.path().join("audit.log");
    let ap = audit2.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
        a.audit_response_body = true;
        a.audit_max_body_size = 4096;
    })
    .await;
    let c = node.client.clone();
    let (kid, secret) = create_key(&c, "/admin/keys", &json!({"name": "resp", "scope": "read"})).await;
    let id = c.store("big-answer", &"y".repeat(10_000)).await;
    let (s, _) = c.get(&format!("/v1/memory/get/{id}?agent_id=big-answer")).await;
    assert_eq!(s, 200);
    node.stop().await;
    let lines = audit_lines(&audit2);
    let created = requests(&lines, "/admin/keys")[0];
    assert!(created.get("request_body").is_none(), "request bodies are off: {created}");
    assert_eq!(created["response_body"]["key"], "[redacted]", "{created}");
    assert_eq!(created["response_body"]["key_id"], kid.as_str());
    let got = requests(&lines, &format!("/v1/memory/get/{id}"))[0];
    assert_eq!(got["response_body"].as_str().map(str::len), Some(4096), "{got:.300}");
    assert_eq!(got["response_body_truncated"], true);
    let text = std::fs::read_to_string(&audit2).unwrap();
    assert!(!text.contains(&secret), "the minted secret reached the audit log");
}

/// seed 002_beb034b3af00d10c.txt line 186: excluded paths (and the paths below them) leave no
/// record; other requests are recorded.
#[tokio::test]
async fn excluded_paths_are_absent_from_the_audit_file() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let ap = audit.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
        a.audit_exclude_paths = "/health,/metrics,/v1/auth/whoami".into();
    })
    .await;
    let c = node.client.clone();
    for p in ["/health", "/health/ready", "/metrics", "/v1/auth/whoami", "/v1/namespaces"] {
        assert_eq!(c.get(p).await.0, 200, "{p}");
    }
    node.stop().await;
    let lines = audit_lines(&audit);
    let paths: Vec<&str> = lines.iter().filter(|l| l["type"] == "request").filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(paths, vec!["/v1/namespaces"], "{lines:?}");
}

/// seed 002_beb034b3af00d10c.txt lines 13 and 182: without `DAKERA_AUDIT_ENABLED=true` no audit
/// file is written, even with a file configured.
#[tokio::test]
async fn audit_disabled_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let ap = audit.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = false;
        a.audit_file = Some(ap);
        a.audit_request_body = true;
    })
    .await;
    let c = node.client.clone();
    assert_eq!(c.post("/v1/memory/store", &json!({"agent_id": "quiet", "content": "not audited"})).await.0, 200);
    assert_eq!(c.get("/v1/namespaces").await.0, 200);
    node.stop().await;
    assert!(!audit.exists(), "audit disabled, yet {} was written", audit.display());
}

/// seed 002_beb034b3af00d10c.txt lines 168-175: a rate-limited request gets 429, `Retry-After: 1`,
/// JSON, `"error":"rate_limited"` and the message with the retry time; the clients' `code`
/// (`RATE_LIMIT_EXCEEDED`) is kept.
#[tokio::test]
async fn rate_limited_answer_reads_as_the_seed() {
    let node = TestNode::start_with(|a| {
        a.rate_limit_rps = 1.0;
        a.rate_limit_burst = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/auth/whoami", node.client.base);
    let mut limited = None;
    for _ in 0..5 {
        let r = http.get(&url).bearer_auth(loci_tests::ROOT_KEY).send().await.unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 5 requests at burst 1");
    assert_eq!(h(r.headers(), "retry-after"), Some("1"));
    assert_eq!(h(r.headers(), "content-type"), Some("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(body["message"], "Too many requests. Retry after 1 second.", "{body}");
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED", "{body}");
    assert_eq!(body["status"], 429, "{body}");
}

fn deep(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "k": v });
    }
    v
}

/// seed 002_beb034b3af00d10c.txt lines 28-37, the field-limit table: each limit at its value is
/// accepted and one past it is a 4xx naming the limit, with nothing stored.
#[tokio::test]
async fn field_limits_of_the_seed_table() {
    let node = TestNode::start().await;
    let c = node.client.clone();
    let store = |body: Value| {
        let c = c.clone();
        async move { c.post("/v1/memory/store", &body).await }
    };
    // Line 32: 50 tags.
    let tags50: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let tags51: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    assert_eq!(store(json!({"agent_id": "lim", "content": "tags", "tags": tags50})).await.0, 200);
    let (s, v) = store(json!({"agent_id": "lim", "content": "tags", "tags": tags51})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("50 tags"), "{v}");
    // Line 33: 256 characters per tag (characters, not bytes).
    let (s, v) = store(json!({"agent_id": "lim", "content": "tag", "tags": ["é".repeat(256)]})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = store(json!({"agent_id": "lim", "content": "tag", "tags": ["a".repeat(257)]})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("256"), "{v}");
    // Line 34: agent id 256 characters.
    let (s, v) = store(json!({"agent_id": "a".repeat(256), "namespace": "lim", "content": "agent"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = store(json!({"agent_id": "a".repeat(257), "namespace": "lim", "content": "agent"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("256"), "{v}");
    // Line 35: namespace names 128 characters of letters, digits and hyphens.
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "n".repeat(128), "dimension": 8})).await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "n".repeat(129), "dimension": 8})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("128"), "{v}");
    let (s, v) = c.post("/v1/namespaces", &json!({"name": "tenant_a", "dimension": 8})).await;
    assert_eq!(s, 400, "{v}");
    // Line 36: API key names 128 characters.
    let (s, v) = c.post("/admin/keys", &json!({"name": "k".repeat(128), "scope": "read"})).await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = c.post("/admin/keys", &json!({"name": "k".repeat(129), "scope": "read"})).await;
    assert_eq!(s, 400, "{v}");
    // Line 37: JSON nesting 32 levels (the body is level 1, metadata level 2).
    let (s, v) = store(json!({"agent_id": "lim", "content": "deep ok", "metadata": deep(30)})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = store(json!({"agent_id": "lim", "content": "too deep", "metadata": deep(32)})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("32 levels"), "{v}");
    let deep_filter = json!({"agent_id": "lim", "query": "x", "filter": deep(40)});
    let (s, v) = c.post("/v1/memory/recall", &deep_filter).await;
    assert_eq!(s, 400, "deep JSON anywhere in a body: {v}");
    // Line 31: the body limit, DAKERA_MAX_BODY_SIZE default 10 MB.
    let big = format!("{{\"agent_id\":\"lim\",\"content\":\"{}\"}}", "b".repeat(10 * 1024 * 1024));
    let (s, v) = c.raw(reqwest::Method::POST, "/v1/memory/store", Some("application/json"), big.into_bytes()).await;
    assert_eq!(s, 413, "{v}");
    // Nothing refused was stored.
    let (s, v) = c.post("/v1/memories/recall/batch", &json!({"agent_id": "lim", "filter": {}, "limit": 100})).await;
    assert_eq!(s, 200, "{v}");
    let contents: Vec<&str> = v["memories"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(!contents.contains(&"too deep"), "{contents:?}");
    assert_eq!(contents.iter().filter(|c| **c == "tags").count(), 1, "{contents:?}");
}
