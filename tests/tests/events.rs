//! Event streams (issue 17 items 3 and 4): memory, namespace, ops and audit events as SSE,
//! scoped by the key's namespaces, resumed by event id without gaps or repeats, over every
//! member of a cluster, with the documented overflow rule.

use std::collections::BTreeSet;
use std::time::Duration;

use loci_tests::{SseStream, TestCluster, TestNode, create_key};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn store(ns: &str, agent: &str, content: &str) -> Value {
    json!({"namespace": ns, "agent_id": agent, "content": content})
}

/// The memory ids of `stored` events.
fn stored_ids(events: &[loci_tests::SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "stored")
        .filter_map(|e| e.data["memory_id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_tenant_sees_only_its_namespaces_and_resumes_exactly_where_it_left() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (_, acme_key) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "read", "namespaces": ["acme-*"]})).await;
    let mut acme = SseStream::open(&root.base, "/v1/events/stream", &acme_key, None).await.expect("acme stream");
    let hello = acme.next(WAIT).await.expect("connected");
    assert_eq!(hello.event, "connected");
    assert_eq!(hello.data["type"], "connected");

    let mut acme_ids = Vec::new();
    for i in 0..3 {
        let (s, v) = root.post("/v1/memory/store", &store("globex", "g", &format!("globex secret {i}"))).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) =
            root.post("/v1/memory/store", &store(&format!("acme-{i}"), "alice", &format!("acme note {i}"))).await;
        assert_eq!(s, 200, "{v}");
        acme_ids.push(v["memory"]["id"].as_str().expect("id").to_string());
    }
    let got = acme.take(3, WAIT).await;
    assert_eq!(stored_ids(&got), acme_ids, "acme's stores, in order, and nothing of globex");
    for e in &got {
        assert!(e.data["namespace"].as_str().is_some_and(|n| n.starts_with("acme-")), "{:?}", e.data);
        assert_eq!(e.data["event_type"], "stored");
        assert_eq!(e.data["agent_id"], "alice");
        let text = e.data.to_string();
        assert!(!text.contains("acme note") && !text.contains("globex"), "no content in events: {text}");
    }
    // Nothing else is pending for acme (globex's events never arrive).
    assert!(acme.next(Duration::from_millis(700)).await.is_none());

    // Disconnect after the second event; more happens meanwhile.
    let resume_at = got[1].id.clone();
    drop(acme);
    let (s, v) = root.post("/v1/memory/store", &store("acme-0", "bob", "while away")).await;
    assert_eq!(s, 200, "{v}");
    let away = v["memory"]["id"].as_str().expect("id").to_string();
    let (s, _) =
        root.post("/v1/memory/forget", &json!({"namespace": "acme-0", "agent_id": "bob", "memory_ids": [away]})).await;
    assert_eq!(s, 200);
    let mut again =
        SseStream::open(&root.base, "/v1/events/stream", &acme_key, Some(&resume_at)).await.expect("resume");
    assert_eq!(again.next(WAIT).await.map(|e| e.event), Some("connected".into()));
    let missed = again.take(3, WAIT).await;
    let kinds: Vec<&str> = missed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, vec!["stored", "stored", "forgotten"], "{missed:?}");
    assert_eq!(stored_ids(&missed), vec![acme_ids[2].clone(), away.clone()], "no gap, no repeat");
    assert_eq!(missed[2].data["memory_id"], away.as_str());
    assert!(again.next(Duration::from_millis(500)).await.is_none());

    // A key may not name a namespace outside its grants, nor use a garbled id.
    let r = SseStream::open(&root.base, "/v1/events/stream?namespace=globex", &acme_key, None).await;
    assert_eq!(r.err().map(|e| e.0), Some(403));
    let r = SseStream::open(&root.base, "/v1/events/stream", &acme_key, Some("not-an-id")).await;
    assert_eq!(r.err().map(|e| e.0), Some(400));
}

#[tokio::test]
async fn namespace_and_ops_streams_and_the_query_string_key() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (_, reader) =
        create_key(&root, "/admin/keys", &json!({"name": "r", "scope": "read", "namespaces": ["acme-*"]})).await;
    let (_, admin) =
        create_key(&root, "/admin/keys", &json!({"name": "a", "scope": "admin", "namespaces": ["acme-*"]})).await;
    // /ops/events needs admin somewhere.
    let r = SseStream::open(&root.base, "/ops/events", &reader, None).await;
    assert_eq!(r.err().map(|e| e.0), Some(403));
    let mut ops = SseStream::open(&root.base, "/ops/events", &admin, None).await.expect("ops");
    let mut ns = SseStream::open(&root.base, "/v1/namespaces/acme-1/events", &reader, None).await.expect("ns");
    let r = SseStream::open(&root.base, "/v1/namespaces/globex/events", &reader, None).await;
    assert_eq!(r.err().map(|e| e.0), Some(403));

    let (s, v) = root.post("/v1/namespaces", &json!({"name": "globex", "dimension": 8})).await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = root.post("/v1/namespaces", &json!({"name": "acme-1", "dimension": 8})).await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = root
        .post(
            "/v1/namespaces/acme-1/vectors",
            &json!({"vectors": [{"id": "v1", "values": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let created = ops.next(WAIT).await.expect("namespace_created");
    assert_eq!(
        (created.event.as_str(), created.data["type"].as_str()),
        ("namespace_created", Some("namespace_created"))
    );
    assert_eq!(created.data["namespace"], "acme-1", "globex's creation is not acme's admin's to see");
    let first = ns.next(WAIT).await.expect("namespace_created");
    assert_eq!((first.event.as_str(), first.data["namespace"].as_str()), ("namespace_created", Some("acme-1")));
    let mutated = ns.next(WAIT).await.expect("vectors_mutated");
    assert_eq!(mutated.data["type"], "vectors_mutated");
    assert_eq!((mutated.data["op"].as_str(), mutated.data["count"].as_u64()), (Some("upserted"), Some(1)));

    // EventSource cannot send headers: the stream routes take ?api_key=, nothing else does.
    let http = reqwest::Client::new();
    let resp =
        http.get(format!("{}/v1/namespaces/acme-1/events?api_key={reader}", root.base)).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    drop(resp);
    let resp = http.get(format!("{}/v1/namespaces?api_key={reader}", root.base)).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 401, "a key in the query string is refused outside the streams");
}

#[tokio::test]
async fn a_subscriber_that_fell_out_of_the_buffer_is_told_how_much_it_missed() {
    let node = TestNode::start_with(|a| a.event_buffer = 5).await;
    let root = node.client.clone();
    let mut s = SseStream::open(&root.base, "/v1/events/stream", loci_tests::ROOT_KEY, None).await.expect("stream");
    assert_eq!(s.next(WAIT).await.map(|e| e.event), Some("connected".into()));
    assert_eq!(root.post("/v1/memory/store", &store("ns", "a", "first")).await.0, 200);
    let first = s.next(WAIT).await.expect("first stored");
    drop(s);
    // Each store is two events (stored, vectors_mutated): 21 follow the one read, 5 are kept.
    let mut last = String::new();
    for i in 0..10 {
        let (st, v) = root.post("/v1/memory/store", &store("ns", "a", &format!("n{i}"))).await;
        assert_eq!(st, 200);
        last = v["memory"]["id"].as_str().unwrap_or_default().to_string();
    }
    let mut s =
        SseStream::open(&root.base, "/v1/events/stream", loci_tests::ROOT_KEY, Some(&first.id)).await.expect("resume");
    assert_eq!(s.next(WAIT).await.map(|e| e.event), Some("connected".into()));
    let lag = s.next(WAIT).await.expect("stream_lagged");
    assert_eq!(lag.event, "stream_lagged");
    assert_eq!(lag.data["dropped"], 16, "{:?}", lag.data);
    let rest = s.take(2, WAIT).await;
    let ids = stored_ids(&rest);
    assert_eq!(ids.len(), 2, "the stores still held follow: {rest:?}");
    assert_eq!(ids.last(), Some(&last));
}

#[tokio::test]
async fn the_audit_stream_shows_a_tenant_admin_only_its_own_records() {
    let node = TestNode::start_with(|a| {
        a.audit_enabled = true;
        a.audit_file = Some(a.data_dir.join("audit.log"));
    })
    .await;
    let root = node.client.clone();
    let (_, acme_admin) =
        create_key(&root, "/admin/keys", &json!({"name": "acme", "scope": "admin", "namespaces": ["acme-*"]})).await;
    let (_, globex_w) =
        create_key(&root, "/admin/keys", &json!({"name": "gw", "scope": "write", "namespaces": ["globex"]})).await;
    let (_, reader) =
        create_key(&root, "/admin/keys", &json!({"name": "r", "scope": "read", "namespaces": ["acme-*"]})).await;
    let r = SseStream::open(&root.base, "/v1/audit/stream", &reader, None).await;
    assert_eq!(r.err().map(|e| e.0), Some(403), "the audit stream needs admin");
    let mut acme = SseStream::open(&root.base, "/v1/audit/stream", &acme_admin, None).await.expect("acme audit");
    let mut all = SseStream::open(&root.base, "/v1/audit/stream?event_type=request", loci_tests::ROOT_KEY, None)
        .await
        .expect("root audit");
    let globex = root.with_key(Some(&globex_w));
    assert_eq!(globex.post("/v1/memory/store", &store("globex", "g", "globex only")).await.0, 200);
    assert_eq!(globex.post("/v1/memory/store", &store("acme-app", "g", "intrusion")).await.0, 403);
    let acme_c = root.with_key(Some(&acme_admin));
    assert_eq!(acme_c.post("/v1/memory/store", &store("acme-app", "alice", "mine")).await.0, 200);

    let seen = acme.take(2, WAIT).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let statuses: BTreeSet<u64> = seen.iter().filter_map(|e| e.data["status"].as_u64()).collect();
    assert_eq!(statuses, BTreeSet::from([200, 403]));
    for e in &seen {
        assert_eq!(e.data["namespace"], "acme-app", "{:?}", e.data);
    }
    let intrusion = seen.iter().find(|e| e.data["status"] == 403).expect("the intrusion");
    assert_eq!(intrusion.data["key_id"], Value::Null, "another tenant's key is not shown to acme");
    assert!(acme.next(Duration::from_millis(700)).await.is_none(), "globex's own store is not acme's");

    let root_seen = all.take(10, Duration::from_secs(3)).await;
    assert!(root_seen.iter().all(|e| e.event == "request"));
    let stores: Vec<_> = root_seen.iter().filter(|e| e.data["path"] == "/v1/memory/store").collect();
    assert_eq!(stores.len(), 3, "the operator sees every request: {root_seen:?}");
}

#[tokio::test]
async fn a_subscription_on_one_node_sees_writes_served_by_every_member_and_resumes_on_another() {
    let c = TestCluster::start(3).await;
    c.wait_ready(Duration::from_secs(60)).await;
    let key = loci_tests::ROOT_KEY;
    let mut s = SseStream::open(&c.client(0).base, "/v1/events/stream?event_type=stored", key, None)
        .await
        .expect("stream on node 0");
    assert_eq!(s.next(WAIT).await.map(|e| e.event), Some("connected".into()));
    let mut want = Vec::new();
    for i in 0..3 {
        let (st, v) = c.client(i).post_retrying("/v1/memory/store", &store("shared", "a", &format!("via {i}"))).await;
        assert_eq!(st, 200, "{v}");
        want.push(v["memory"]["id"].as_str().expect("id").to_string());
    }
    let got = s.take(3, Duration::from_secs(30)).await;
    let got_ids: BTreeSet<String> = stored_ids(&got).into_iter().collect();
    assert_eq!(got_ids, want.iter().cloned().collect::<BTreeSet<_>>(), "{got:?}");
    assert!(got.iter().all(|e| e.id.split(',').count() == 3), "an id holds a position on every member: {got:?}");
    let resume = got.last().map(|e| e.id.clone()).unwrap_or_default();
    drop(s);
    let mut more = Vec::new();
    for i in 0..3 {
        let (st, v) = c.client(i).post_retrying("/v1/memory/store", &store("shared", "a", &format!("later {i}"))).await;
        assert_eq!(st, 200, "{v}");
        more.push(v["memory"]["id"].as_str().expect("id").to_string());
    }
    let mut s = SseStream::open(&c.client(2).base, "/v1/events/stream?event_type=stored", key, Some(&resume))
        .await
        .expect("resumed on node 2");
    assert_eq!(s.next(WAIT).await.map(|e| e.event), Some("connected".into()));
    let got = s.take(3, Duration::from_secs(30)).await;
    let got_ids: BTreeSet<String> = stored_ids(&got).into_iter().collect();
    assert_eq!(got_ids, more.iter().cloned().collect::<BTreeSet<_>>(), "exactly the missed ones: {got:?}");
    assert!(s.next(Duration::from_millis(700)).await.is_none(), "nothing read before is repeated");
}

#[tokio::test]
async fn a_key_cannot_hold_more_than_its_share_of_open_streams() {
    let node = TestNode::start().await;
    let root = node.client.clone();
    let (_, key) = create_key(&root, "/admin/keys", &json!({"name": "r", "scope": "read", "namespaces": ["a"]})).await;
    let mut open = Vec::new();
    for _ in 0..loci_service::events::MAX_SUBSCRIPTIONS_PER_KEY {
        open.push(SseStream::open(&root.base, "/v1/events/stream", &key, None).await.expect("within the bound"));
    }
    let refused = SseStream::open(&root.base, "/v1/events/stream", &key, None).await.err();
    assert_eq!(refused.as_ref().map(|e| e.0), Some(429), "{refused:?}");
    assert_eq!(refused.map(|e| e.1["code"].clone()), Some(json!("TOO_MANY_STREAMS")));
    assert!(
        SseStream::open(&root.base, "/v1/events/stream", loci_tests::ROOT_KEY, None).await.is_ok(),
        "other keys go on"
    );
    drop(open.pop());
    // The closed stream's place is freed once the node notices the connection is gone.
    let freed = loci_tests::eventually(Duration::from_secs(30), || async {
        SseStream::open(&root.base, "/v1/events/stream", &key, None).await.is_ok()
    })
    .await;
    assert!(freed);
}
