//! Webhooks (issue 17 item 5, seed 003's `webhook_url`): signed deliveries of a tenant's events
//! to a real HTTP receiver, retried with back-off, logged and replayable; targets on internal
//! addresses refused; one tenant's webhooks invisible to another.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use loci_tests::{Client, TestCluster, TestNode, create_key, eventually};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

/// One POST a receiver got: (its path, headers, body).
type Received = (String, HeaderMap, Vec<u8>);

/// A webhook receiver on loopback: records every POST; `/flaky` fails its first two, `/down`
/// fails all.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = axum::Router::new().route("/{path}", axum::routing::post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, format!("http://{addr}"))
    }

    fn on(&self, path: &str) -> Vec<(HeaderMap, Value, Vec<u8>)> {
        self.got
            .lock()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), serde_json::from_slice(b).unwrap_or(Value::Null), b.clone()))
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut got = r.got.lock();
    got.push((path.clone(), headers, body.to_vec()));
    let seen = got.iter().filter(|(p, _, _)| *p == path).count();
    match path.as_str() {
        "flaky" if seen <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "down" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

fn loopback_allowed(a: &mut loci_node::ServeArgs) {
    a.webhooks.webhook_allowed_cidrs = "127.0.0.1/32".into();
    a.webhooks.webhook_retry_base_ms = 100;
    a.webhooks.webhook_max_attempts = 4;
}

/// Checked independently of the server's code: HMAC-SHA256 over "timestamp.body".
fn signed_by(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let ts = headers.get("x-loci-timestamp").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let sig = headers.get("x-loci-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    sig == format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn create(c: &Client, url: &str, ns: &str, events: &[&str]) -> (u16, Value) {
    c.post("/v1/webhooks", &json!({"url": url, "namespace": ns, "events": events})).await
}

#[tokio::test]
async fn deliveries_are_signed_retried_logged_and_replayable() {
    let (rx, base) = Receiver::start().await;
    let node = TestNode::start_with(loopback_allowed).await;
    let root = node.client.clone();
    let (_, acme_admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let acme = root.with_key(Some(&acme_admin));
    let (s, hook) = create(&acme, &format!("{base}/flaky"), "acme-*", &["stored"]).await;
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"].as_str().expect("the secret, once").to_string();
    let id = hook["id"].as_str().expect("id").to_string();
    let (s, down) = create(&acme, &format!("{base}/down"), "acme-1", &[]).await;
    assert_eq!(s, 201, "{down}");
    let (s, shown) = acme.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(s, 200);
    assert!(shown.get("secret").is_none(), "the secret is never shown again: {shown}");

    let (s, v) =
        root.post("/v1/memory/store", &json!({"namespace": "globex", "agent_id": "g", "content": "globex only"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = root
        .post("/v1/memory/store", &json!({"namespace": "acme-1", "agent_id": "alice", "content": "private words"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let memory_id = v["memory"]["id"].as_str().expect("id").to_string();

    // Two failures, then the third attempt lands: back-off 100 ms, 200 ms.
    assert!(
        eventually(Duration::from_secs(15), || async { rx.on("flaky").len() >= 3 }).await,
        "retried until accepted"
    );
    let flaky = rx.on("flaky");
    assert_eq!(flaky.len(), 3, "nothing after the success");
    for (h, body, raw) in &flaky {
        assert!(signed_by(&secret, h, raw), "every attempt is signed");
        assert!(!signed_by("whsec_wrong", h, raw));
        assert_eq!(body["event_type"], "stored");
        assert_eq!(body["namespace"], "acme-1", "globex's event is not acme's");
        assert_eq!(body["data"]["memory_id"], memory_id.as_str());
        assert_eq!(h["x-loci-webhook-id"].to_str().ok(), Some(id.as_str()));
        assert!(!String::from_utf8_lossy(raw).contains("private words"), "no content in deliveries");
    }
    let delivery = flaky[0].1["id"].as_str().expect("delivery id").to_string();
    assert!(flaky.iter().all(|(_, b, _)| b["id"] == delivery.as_str()), "one delivery, three attempts");

    let (s, log) = acme.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["count"], 1);
    let d = &log["deliveries"][0];
    assert_eq!(d["state"], "delivered");
    let statuses: Vec<u64> =
        d["attempts"].as_array().expect("attempts").iter().filter_map(|a| a["status"].as_u64()).collect();
    assert_eq!(statuses, vec![500, 500, 200]);

    // The always-failing target: every attempt made, then failed (and the store, a vectors_mutated
    // event too: that webhook takes every type).
    let down_id = down["id"].as_str().expect("id").to_string();
    let done = eventually(Duration::from_secs(15), || {
        let acme = acme.clone();
        let path = format!("/v1/webhooks/{down_id}/deliveries");
        async move {
            let (_, log) = acme.get(&path).await;
            let list = log["deliveries"].as_array().cloned().unwrap_or_default();
            !list.is_empty() && list.iter().all(|d| d["state"] == "failed")
        }
    })
    .await;
    assert!(done, "the down target's deliveries end failed");
    let (_, log) = acme.get(&format!("/v1/webhooks/{down_id}/deliveries")).await;
    for d in log["deliveries"].as_array().expect("list") {
        assert_eq!(d["attempts"].as_array().map(Vec::len), Some(4), "max attempts: {d}");
    }

    // Replay: a new delivery, same event, signed afresh.
    let (s, r) = acme.post(&format!("/v1/webhooks/{id}/deliveries/{delivery}/replay"), &json!({})).await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["delivery"]["replay_of"], delivery.as_str());
    assert!(eventually(Duration::from_secs(10), || async { rx.on("flaky").len() >= 4 }).await);
    let (h, body, raw) = rx.on("flaky").pop().expect("the replay");
    assert!(signed_by(&secret, &h, &raw));
    assert_eq!(body["replay_of"], delivery.as_str());
    assert_eq!(body["data"]["memory_id"], memory_id.as_str());

    // Rotating the master key re-wraps the signing secret: deliveries stay signed with it.
    let (s, v) = root
        .post(
            "/admin/encryption/rotate",
            &json!({"new_key": "a7f3a9c1e5b2d4f6a8c0e1a3b5d7f9e2c4a6b8d0f1e3c5a7b9d2f4e6a8c0b1d3"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let before = rx.on("flaky").len();
    assert_eq!(
        root.post("/v1/memory/store", &json!({"namespace": "acme-2", "agent_id": "a", "content": "z"})).await.0,
        200
    );
    assert!(eventually(Duration::from_secs(10), || async { rx.on("flaky").len() > before }).await);
    let (h, _, raw) = rx.on("flaky").pop().expect("after the rotation");
    assert!(signed_by(&secret, &h, &raw), "the same secret signs after a rotation");

    // Deleted: no more deliveries.
    assert_eq!(acme.delete(&format!("/v1/webhooks/{id}")).await.0, 200);
    let before = rx.on("flaky").len();
    assert_eq!(
        root.post("/v1/memory/store", &json!({"namespace": "acme-1", "agent_id": "a", "content": "x"})).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.on("flaky").len(), before);
}

#[tokio::test]
async fn internal_targets_are_refused_and_nothing_is_created() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    for url in [
        "http://127.0.0.1:9/h",
        "http://localhost:9/h",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/h",
        "http://192.168.1.1/h",
        "http://[::1]:9/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://0.0.0.0/h",
    ] {
        let (s, v) = create(&root, url, "acme", &[]).await;
        assert_eq!(s, 400, "{url}: {v}");
        assert_eq!(v["code"], "WEBHOOK_TARGET_REFUSED", "{url}: {v}");
    }
    for (url, why) in
        [("ftp://example.com/h", "scheme"), ("http://user:pw@example.com/h", "credentials"), ("not a url", "form")]
    {
        let (s, v) = create(&root, url, "acme", &[]).await;
        assert_eq!(s, 400, "{why}: {v}");
    }
    let (s, v) = create(&root, "https://example.com/h", "acme", &["no_such_event"]).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = root.get("/v1/webhooks").await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 0, "nothing was created: {v}");
}

#[tokio::test]
async fn one_tenant_neither_sees_nor_touches_another_tenants_webhooks() {
    let (_rx, base) = Receiver::start().await;
    let node = TestNode::start_with(loopback_allowed).await;
    let root = node.client.clone();
    let (_, acme_admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let (_, acme_writer) =
        create_key(&root, "/admin/keys", &json!({"name": "aw", "scope": "write", "namespaces": ["acme-*"]})).await;
    let acme = root.with_key(Some(&acme_admin));
    let (s, globex_hook) = create(&root, &format!("{base}/ok"), "globex", &[]).await;
    assert_eq!(s, 201, "{globex_hook}");
    let gid = globex_hook["id"].as_str().expect("id");

    let (s, v) = create(&acme, &format!("{base}/ok"), "globex", &[]).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = create(&acme, &format!("{base}/ok"), "*", &[]).await;
    assert_eq!(s, 403, "a tenant admin cannot hook every namespace: {v}");
    let (s, v) = create(&root.with_key(Some(&acme_writer)), &format!("{base}/ok"), "acme-1", &[]).await;
    assert_eq!(s, 403, "write is not admin: {v}");
    let (s, mine) = create(&acme, &format!("{base}/ok"), "acme-1", &[]).await;
    assert_eq!(s, 201, "{mine}");

    let (_, list) = acme.get("/v1/webhooks").await;
    let ids: Vec<&str> = list["webhooks"].as_array().expect("list").iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, vec![mine["id"].as_str().expect("id")]);
    assert_eq!(
        acme.get(&format!("/v1/webhooks/{gid}")).await.0,
        404,
        "another tenant's webhook does not exist for acme"
    );
    assert_eq!(acme.delete(&format!("/v1/webhooks/{gid}")).await.0, 404);
    assert_eq!(acme.get(&format!("/v1/webhooks/{gid}/deliveries")).await.0, 404);
    let (_, all) = root.get("/v1/webhooks").await;
    assert_eq!(all["count"], 2, "globex's webhook is untouched: {all}");
}

#[tokio::test]
async fn a_delivery_is_sent_by_the_node_that_served_the_write_and_listed_from_any_node() {
    let (rx, base) = Receiver::start().await;
    let c = TestCluster::start_with(3, loopback_allowed).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let (s, hook) = create(c.client(0), &format!("{base}/ok"), "shop", &["stored"]).await;
    assert_eq!(s, 201, "{hook}");
    let id = hook["id"].as_str().expect("id").to_string();
    // Stored through node 2: node 2 sends it; node 0 lists it.
    let (s, v) = c
        .client(2)
        .post_retrying("/v1/memory/store", &json!({"namespace": "shop", "agent_id": "a", "content": "x"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(eventually(Duration::from_secs(15), || async { !rx.on("ok").is_empty() }).await);
    let (s, log) = c.client(0).get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["count"], 1, "{log}");
    assert_eq!(log["complete"], true);
    assert_eq!(log["deliveries"][0]["node"], c.node_id(2));
}

#[tokio::test]
async fn the_seed_tenant_setting_webhook_url_is_a_webhook_on_the_tenant() {
    let (rx, base) = Receiver::start().await;
    let node = TestNode::start_with(loopback_allowed).await;
    let root = node.client.clone();
    assert!(matches!(root.post("/v1/namespaces", &json!({"name": "tenant-acme"})).await.0, 200 | 201));
    let (s, policy) = root
        .put(
            "/v1/namespaces/tenant-acme/memory_policy",
            &json!({"retention_days": 30, "webhook_url": format!("{base}/ok")}),
        )
        .await;
    assert_eq!(s, 200, "{policy}");
    let secret = policy["webhook_secret"].as_str().expect("the secret, once").to_string();
    let hook = policy["webhook_id"].as_str().expect("webhook id").to_string();
    assert_eq!(policy["webhook_url"], format!("{base}/ok"));
    let (_, got) = root.get("/v1/namespaces/tenant-acme/memory_policy").await;
    assert_eq!(got["webhook_id"], hook.as_str());
    assert!(got.get("webhook_secret").is_none());
    let (s, v) = root.put("/v1/namespaces/tenant-acme/memory_policy", &json!({"webhook_id": "wh_forged"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) =
        root.put("/v1/namespaces/tenant-acme/memory_policy", &json!({"webhook_url": "http://169.254.169.254/"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(root.get("/v1/namespaces/tenant-acme/memory_policy").await.1["webhook_id"], hook.as_str(), "unchanged");

    let (s, v) =
        root.post("/v1/memory/store", &json!({"namespace": "tenant-acme", "agent_id": "u1", "content": "hello"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            rx.on("ok").iter().any(|(_, b, _)| b["event_type"] == "stored")
        })
        .await
    );
    for (h, _, raw) in rx.on("ok") {
        assert!(signed_by(&secret, &h, &raw));
    }
    // Removing the setting removes the webhook.
    let (s, v) = root.put("/v1/namespaces/tenant-acme/memory_policy", &json!({"webhook_url": null})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("webhook_id").is_none(), "{v}");
    assert_eq!(root.get(&format!("/v1/webhooks/{hook}")).await.0, 404);
}

fn grpc<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-api-key", key.parse().expect("ascii"));
    r
}

#[tokio::test]
async fn webhooks_and_event_streams_over_typed_grpc() {
    use loci_api::pb;
    use loci_api::pb::events_client::EventsClient;
    use loci_api::pb::webhooks_client::WebhooksClient;
    use tokio_stream::StreamExt;

    let (rx, base) = Receiver::start().await;
    let node = TestNode::start_with(loopback_allowed).await;
    let root = node.client.clone();
    let (_, acme_admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut hooks = WebhooksClient::new(ch.clone());
    let mut events = EventsClient::new(ch);

    let created = hooks
        .create(grpc(
            pb::WebhooksCreateRequest {
                url: format!("{base}/ok"),
                namespace: "acme-*".into(),
                events: vec!["stored".into()],
                description: None,
            },
            &acme_admin,
        ))
        .await
        .expect("create")
        .into_inner();
    assert!(created.id.starts_with("wh_") && created.secret.as_deref().is_some_and(|s| s.starts_with("whsec_")));
    let refused = hooks
        .create(grpc(
            pb::WebhooksCreateRequest {
                url: format!("{base}/ok"),
                namespace: "globex".into(),
                events: vec![],
                description: None,
            },
            &acme_admin,
        ))
        .await
        .expect_err("another tenant's namespace");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = hooks
        .create(grpc(
            pb::WebhooksCreateRequest {
                url: "http://169.254.169.254/".into(),
                namespace: "acme-1".into(),
                events: vec![],
                description: None,
            },
            &acme_admin,
        ))
        .await
        .expect_err("metadata address");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let mut stream = events
        .memory(grpc(
            pb::EventsSubscribeRequest { namespace: Some("acme-1".into()), ..Default::default() },
            &acme_admin,
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let hello = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.ok().flatten().expect("connected");
    assert_eq!(hello.expect("message").event_type, "connected");
    let (s, v) =
        root.post("/v1/memory/store", &json!({"namespace": "acme-1", "agent_id": "a", "content": "grpc"})).await;
    assert_eq!(s, 200, "{v}");
    let stored = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .ok()
        .flatten()
        .expect("stored")
        .expect("message");
    assert_eq!(stored.event_type, "stored");
    assert!(!stored.id.is_empty(), "an id to resume from");
    let data = stored.data.unwrap_or_default();
    assert!(data.fields.contains_key("memory_id"));

    assert!(eventually(Duration::from_secs(10), || async { !rx.on("ok").is_empty() }).await);
    let listed = hooks.list(grpc(pb::WebhooksListRequest {}, &acme_admin)).await.expect("list").into_inner();
    assert_eq!(listed.count, 1);
    let got = hooks
        .get(grpc(pb::WebhooksGetRequest { id: created.id.clone() }, &acme_admin))
        .await
        .expect("get")
        .into_inner();
    assert!(got.secret.is_none());
    let log = hooks
        .list_deliveries(grpc(pb::WebhooksDeliveriesRequest { id: created.id.clone(), limit: Some(10) }, &acme_admin))
        .await
        .expect("deliveries")
        .into_inner();
    assert_eq!((log.count, log.deliveries[0].state.as_str()), (1, "delivered"));
    let replay = hooks
        .replay(grpc(
            pb::WebhooksReplayRequest { id: created.id.clone(), delivery: log.deliveries[0].id.clone() },
            &acme_admin,
        ))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.delivery.and_then(|d| d.replay_of), Some(log.deliveries[0].id.clone()));
    let gone = hooks
        .delete(grpc(pb::WebhooksDeleteRequest { id: created.id.clone() }, &acme_admin))
        .await
        .expect("delete")
        .into_inner();
    assert!(gone.deleted);
    let e = hooks.get(grpc(pb::WebhooksGetRequest { id: created.id }, &acme_admin)).await.expect_err("deleted");
    assert_eq!(e.code(), tonic::Code::NotFound);
}
