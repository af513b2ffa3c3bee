//! The typed `loci.v1` gRPC services on the public port of a real node: each RPC does what its
//! REST call does (same data, same refusals, nothing changed by a refused call, the same audit
//! trail), errors carry the REST code as a `google.rpc.ErrorInfo`, every RPC names a real route,
//! `Reembed.Watch` streams a job to its end, and vector queries in 100 namespaces of seeded random
//! vectors answer only their own namespace's vectors.

use std::collections::BTreeMap;

use loci_api::pb;
use loci_api::pb::cluster_client::ClusterClient;
use loci_api::pb::keys_client::KeysClient;
use loci_api::pb::memories_client::MemoriesClient;
use loci_api::pb::namespaces_client::NamespacesClient;
use loci_api::pb::reembed_client::ReembedClient;
use loci_api::pb::sessions_client::SessionsClient;
use loci_api::pb::vectors_client::VectorsClient;
use loci_tests::{ROOT_KEY, TestNode, create_key};
use prost_types::value::Kind;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

async fn channel(node: &TestNode) -> Channel {
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
}

/// A request with `authorization: Bearer <key>` (no credentials when `None`).
fn req<T>(msg: T, key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut().insert("authorization", format!("Bearer {k}").parse().expect("ascii"));
    }
    r
}

fn root<T>(msg: T) -> tonic::Request<T> {
    req(msg, Some(ROOT_KEY))
}

fn pv(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.into_iter().map(pv).collect() }),
        Value::Object(_) => Kind::StructValue(strukt(v)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn strukt(v: Value) -> prost_types::Struct {
    let Value::Object(m) = v else { panic!("an object") };
    prost_types::Struct { fields: m.into_iter().map(|(k, v)| (k, pv(v))).collect::<BTreeMap<_, _>>() }
}

fn string_field(s: &Option<prost_types::Struct>, k: &str) -> Option<String> {
    match s.as_ref()?.fields.get(k)?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

/// The REST code a refusal carries, from its `ErrorInfo`.
fn reason(st: &tonic::Status) -> String {
    st.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

async fn create_hash_ns(node: &TestNode, ns: &str, dimension: i64) {
    let mut nsc = NamespacesClient::new(channel(node).await);
    let created = nsc
        .create(root(pb::CreateNamespaceRequest {
            name: ns.into(),
            embedding: Some(pb::EmbeddingChoice { provider: "hash".into(), dimension: Some(dimension) }),
            ..Default::default()
        }))
        .await
        .expect("create")
        .into_inner();
    assert!(created.created, "{created:?}");
}

/// How many memories the namespace holds, asked over REST.
async fn rest_count(node: &TestNode, ns: &str) -> u64 {
    let (s, v) = node.client.post("/v1/memories/recall/batch", &json!({"namespace": ns, "limit": 1000})).await;
    assert_eq!(s, 200, "{v}");
    v["total"].as_u64().expect("total")
}

#[tokio::test]
async fn memories_round_trip_over_typed_grpc_as_over_rest() {
    let node = TestNode::start().await;
    create_hash_ns(&node, "typed", 16).await;
    let mut m = MemoriesClient::new(channel(&node).await);

    let stored = m
        .store(root(pb::StoreMemoryRequest {
            namespace: "typed".into(),
            agent_id: "agent-1".into(),
            content: "the sky over the harbour is blue".into(),
            tags: vec!["color".into()],
            importance: Some(0.9),
            metadata: Some(strukt(json!({"k": "v", "n": 3, "nested": {"ok": true}}))),
            ..Default::default()
        }))
        .await
        .expect("store");
    assert!(stored.metadata().get("x-request-id").is_some(), "the REST answer's request id is passed back");
    let mem = stored.into_inner().memory.expect("the stored memory");
    assert_eq!(
        (mem.content.as_str(), mem.importance, mem.namespace.as_str()),
        ("the sky over the harbour is blue", 0.9, "typed")
    );
    assert_eq!(string_field(&mem.metadata, "k").as_deref(), Some("v"));

    // The same memory through REST.
    let (s, v) = node.client.get(&format!("/v1/memory/get/{}?namespace=typed", mem.id)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"]["nested"]["ok"], true);
    assert_eq!(v["tags"], json!(["color"]));

    let got = m
        .get(root(pb::GetMemoryRequest { id: mem.id.clone(), namespace: "typed".into(), ..Default::default() }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.id, mem.id);
    let updated = m
        .update(root(pb::UpdateMemoryRequest {
            id: mem.id.clone(),
            namespace: "typed".into(),
            content: "the sky over the harbour is grey".into(),
            ..Default::default()
        }))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.content, "the sky over the harbour is grey");
    assert_eq!(updated.importance, 0.9, "fields not given are unchanged");
    let imp = m
        .set_importance(root(pb::SetImportanceRequest {
            namespace: "typed".into(),
            memory_id: mem.id.clone(),
            importance: Some(0.0),
            ..Default::default()
        }))
        .await
        .expect("importance")
        .into_inner();
    assert_eq!((imp.updated_count, imp.importance), (1, 0.0), "an explicit 0 is sent");

    let batch = m
        .store_batch(root(pb::StoreBatchRequest {
            namespace: "typed".into(),
            agent_id: "agent-1".into(),
            memories: vec![
                pb::MemoryInput { content: "harbour cranes unload ships".into(), ..Default::default() },
                pb::MemoryInput { content: "a lighthouse guards the harbour".into(), ..Default::default() },
            ],
            ..Default::default()
        }))
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(batch.stored_count, 2);
    assert_eq!(rest_count(&node, "typed").await, 3);

    let recalled = m
        .recall(root(pb::RecallRequest {
            namespace: "typed".into(),
            query: "harbour".into(),
            top_k: Some(10),
            ..Default::default()
        }))
        .await
        .expect("recall")
        .into_inner();
    assert_eq!(recalled.memories.len(), 3);
    assert!(recalled.memories.iter().all(|h| h.memory.is_some() && h.score.is_finite()));
    let found = m
        .search(root(pb::RecallRequest { namespace: "typed".into(), query: "lighthouse".into(), ..Default::default() }))
        .await
        .expect("search")
        .into_inner();
    assert!(found.total_count >= 1);
    let listed = m
        .recall_batch(root(pb::RecallBatchRequest {
            namespace: "typed".into(),
            filter: Some(pb::MemoryFilter { tags: vec!["color".into()], ..Default::default() }),
            ..Default::default()
        }))
        .await
        .expect("recall batch")
        .into_inner();
    assert_eq!((listed.filtered, listed.memories.len()), (1, 1));

    // Bad input: refused as REST refuses it, with REST's code, and nothing stored.
    let bad = m
        .store(root(pb::StoreMemoryRequest {
            namespace: "typed".into(),
            content: "too important".into(),
            importance: Some(1.5),
            ..Default::default()
        }))
        .await
        .expect_err("importance above 1");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let info = bad.get_details_error_info().expect("an ErrorInfo");
    assert_eq!((info.domain.as_str(), info.metadata.get("http_status").map(String::as_str)), ("loci", Some("400")));
    assert_eq!(rest_count(&node, "typed").await, 3);

    let gone = m
        .forget(root(pb::ForgetRequest {
            namespace: "typed".into(),
            memory_ids: vec![mem.id.clone()],
            ..Default::default()
        }))
        .await
        .expect("forget")
        .into_inner();
    assert_eq!(gone.deleted_count, 1);
    let missing = m
        .get(root(pb::GetMemoryRequest { id: mem.id.clone(), namespace: "typed".into(), ..Default::default() }))
        .await
        .expect_err("forgotten");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.metadata().get("x-loci-code").and_then(|v| v.to_str().ok()), Some(reason(&missing).as_str()));
    let (s, _) = node.client.get(&format!("/v1/memory/get/{}?namespace=typed", mem.id)).await;
    assert_eq!(s, 404, "gone for REST too");
}

#[tokio::test]
async fn typed_grpc_refuses_what_rest_refuses_and_changes_nothing() {
    let node = TestNode::start().await;
    create_hash_ns(&node, "tenant-a", 16).await;
    create_hash_ns(&node, "tenant-b", 16).await;
    let (s, v) = node
        .client
        .post("/v1/memory/store", &json!({"namespace": "tenant-a", "agent_id": "a", "content": "alpha payroll secret"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let a_id = v["memory"]["id"].as_str().expect("id").to_string();
    let (_, reader) = create_key(
        &node.client,
        "/admin/keys",
        &json!({"name": "a-reader", "scope": "read", "namespaces": ["tenant-a"]}),
    )
    .await;
    let (b_id, b_writer) = create_key(
        &node.client,
        "/admin/keys",
        &json!({"name": "b-writer", "scope": "write", "namespaces": ["tenant-b"]}),
    )
    .await;
    let ch = channel(&node).await;
    let mut m = MemoriesClient::new(ch.clone());
    let store_a = |key: Option<&str>| {
        req(
            pb::StoreMemoryRequest {
                namespace: "tenant-a".into(),
                agent_id: "a".into(),
                content: "planted".into(),
                ..Default::default()
            },
            key,
        )
    };

    // No key, a wrong key: unauthenticated.
    let e = m.store(store_a(None)).await.expect_err("no key");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = m.store(store_a(Some("dk_not_a_key"))).await.expect_err("wrong key");
    assert_eq!(e.code(), Code::Unauthenticated);
    // A read key does not write; another tenant's key does not write either.
    let e = m.store(store_a(Some(&reader))).await.expect_err("read key");
    assert_eq!((e.code(), reason(&e).as_str()), (Code::PermissionDenied, "INSUFFICIENT_SCOPE"));
    let e = m.store(store_a(Some(&b_writer))).await.expect_err("foreign key");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(rest_count(&node, "tenant-a").await, 1, "nothing was written");

    // Tenant B's key cannot read A's memory by id, by recall or by forget, and learns nothing.
    let e = m
        .get(req(
            pb::GetMemoryRequest { id: a_id.clone(), namespace: "tenant-a".into(), ..Default::default() },
            Some(&b_writer),
        ))
        .await
        .expect_err("foreign get");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(!e.message().contains("alpha"), "{}", e.message());
    let e = m
        .recall(req(
            pb::RecallRequest { namespace: "tenant-a".into(), query: "payroll".into(), ..Default::default() },
            Some(&b_writer),
        ))
        .await
        .expect_err("foreign recall");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = m
        .forget(req(
            pb::ForgetRequest { namespace: "tenant-a".into(), memory_ids: vec![a_id.clone()], ..Default::default() },
            Some(&b_writer),
        ))
        .await
        .expect_err("foreign forget");
    assert_eq!(e.code(), Code::PermissionDenied);
    let own = m
        .recall(req(
            pb::RecallRequest {
                namespace: "tenant-b".into(),
                query: "alpha payroll secret".into(),
                ..Default::default()
            },
            Some(&b_writer),
        ))
        .await
        .expect("own recall")
        .into_inner();
    assert!(own.memories.is_empty(), "B's own namespace holds none of A's memories");
    assert_eq!(rest_count(&node, "tenant-a").await, 1);

    // Tenant keys do not administer: keys, cluster.
    let e = KeysClient::new(ch.clone()).list(req(pb::KeysListRequest {}, Some(&b_writer))).await.expect_err("keys");
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut cl = ClusterClient::new(ch.clone());
    let e = cl.leave(req(pb::ClusterLeaveRequest {}, Some(&b_writer))).await.expect_err("leave");
    assert_eq!(e.code(), Code::PermissionDenied);
    let status = cl.status(root(pb::ClusterStatusRequest {})).await.expect("still a member").into_inner();
    assert_eq!(status.members.len(), 1);

    // Revoked over gRPC, refused over gRPC and REST.
    let revoked = KeysClient::new(ch.clone())
        .deactivate(root(pb::KeysDeactivateRequest { id: b_id.clone() }))
        .await
        .expect("deactivate");
    assert!(!revoked.into_inner().message.is_empty());
    let e = m
        .recall(req(
            pb::RecallRequest { namespace: "tenant-b".into(), query: "x".into(), ..Default::default() },
            Some(&b_writer),
        ))
        .await
        .expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(node.client.with_key(Some(&b_writer)).get("/v1/namespaces").await.0, 401);
}

#[tokio::test]
async fn keys_namespaces_sessions_vectors_and_cluster_over_typed_grpc() {
    let node = TestNode::start().await;
    let ch = channel(&node).await;
    create_hash_ns(&node, "ops", 8).await;
    let mut nsc = NamespacesClient::new(ch.clone());
    let info = nsc.get(root(pb::GetNamespaceRequest { ns: "ops".into() })).await.expect("get").into_inner();
    assert_eq!((info.namespace.as_str(), info.dimension), ("ops", 8));
    let policy = nsc
        .set_policy(root(pb::SetMemoryPolicyRequest { ns: "ops".into(), max_memories: Some(2), ..Default::default() }))
        .await
        .expect("policy")
        .into_inner();
    assert_eq!(policy.max_memories, Some(2));
    let again = nsc.get_policy(root(pb::GetMemoryPolicyRequest { ns: "ops".into() })).await.expect("get policy");
    assert_eq!(again.into_inner().max_memories, Some(2));

    // A key minted over gRPC works over gRPC, within its namespace only.
    let key = KeysClient::new(ch.clone())
        .create(root(pb::KeysCreateRequest {
            name: "ops-writer".into(),
            scope: "write".into(),
            namespaces: vec!["ops".into()],
            ..Default::default()
        }))
        .await
        .expect("mint")
        .into_inner();
    assert_eq!(key.scope, "write");
    let secret = key.key.clone();
    assert!(!secret.is_empty());
    let mut m = MemoriesClient::new(ch.clone());
    for i in 0..2 {
        m.store(req(
            pb::StoreMemoryRequest {
                namespace: "ops".into(),
                agent_id: "ops-agent".into(),
                content: format!("fact {i}"),
                ..Default::default()
            },
            Some(&secret),
        ))
        .await
        .expect("within the policy");
    }
    let over = m
        .store(req(
            pb::StoreMemoryRequest {
                namespace: "ops".into(),
                agent_id: "ops-agent".into(),
                content: "one too many".into(),
                ..Default::default()
            },
            Some(&secret),
        ))
        .await
        .expect_err("max_memories 2");
    assert_ne!(over.code(), Code::Ok);
    assert_eq!(rest_count(&node, "ops").await, 2, "the policy's ceiling held");

    // Sessions.
    let mut sc = SessionsClient::new(ch.clone());
    let started = sc
        .start(root(pb::StartSessionRequest { agent_id: "ops-agent".into(), ..Default::default() }))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("a session");
    let got = sc.get(root(pb::GetSessionRequest { id: started.id.clone(), ..Default::default() })).await.expect("get");
    assert_eq!(got.into_inner().agent_id, "ops-agent");
    let ended =
        sc.end(root(pb::EndSessionRequest { id: started.id.clone(), ..Default::default() })).await.expect("end");
    assert!(ended.into_inner().session.expect("session").ended_at.is_some());

    // Raw vectors.
    let mut vc = VectorsClient::new(ch.clone());
    let up = vc
        .upsert(root(pb::VectorsUpsertRequest {
            ns: "raw".into(),
            vectors: vec![
                pb::VectorUpsertItem {
                    id: "v1".into(),
                    values: vec![1.0, 0.0, 0.0],
                    metadata: Some(strukt(json!({"c": "red"}))),
                },
                pb::VectorUpsertItem { id: "v2".into(), values: vec![0.0, 1.0, 0.0], metadata: None },
            ],
        }))
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(up.upserted_count, 2);
    let hits = vc
        .query(root(pb::VectorsQueryRequest {
            ns: "raw".into(),
            vector: vec![1.0, 0.1, 0.0],
            top_k: Some(1),
            ..Default::default()
        }))
        .await
        .expect("query")
        .into_inner();
    assert_eq!(hits.results.len(), 1);
    assert_eq!(hits.results[0].id, "v1");
    assert_eq!(string_field(&hits.results[0].metadata, "c").as_deref(), Some("red"));

    // Cluster read-outs.
    let mut cl = ClusterClient::new(ch.clone());
    let status = cl.status(root(pb::ClusterStatusRequest {})).await.expect("status").into_inner();
    assert_eq!(status.state, "healthy");
    let placement = cl.placement(root(pb::ClusterPlacementRequest { ns: "ops".into() })).await.expect("placement");
    assert!(!placement.into_inner().replicas.is_empty());

    // Deleting over gRPC erases for REST too.
    let receipt = nsc.delete(root(pb::DeleteNamespaceRequest { ns: "ops".into() })).await.expect("delete").into_inner();
    assert!(receipt.data_key_destroyed);
    assert_eq!(node.client.get("/v1/namespaces/ops").await.0, 404);
}

#[tokio::test]
async fn reembed_watch_streams_the_job_until_it_ends() {
    let node = TestNode::start().await;
    create_hash_ns(&node, "moving", 8).await;
    for k in 0..40 {
        let (s, _) = node
            .client
            .post(
                "/v1/memory/store",
                &json!({"namespace": "moving", "agent_id": "a", "content": format!("fact {k} about topic {k}")}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let ch = channel(&node).await;
    let mut rc = ReembedClient::new(ch.clone());
    // A key outside the namespace cannot watch it.
    let (_, other) = create_key(
        &node.client,
        "/admin/keys",
        &json!({"name": "other", "scope": "read", "namespaces": ["elsewhere"]}),
    )
    .await;
    let e = rc.watch(req(pb::WatchReembedRequest { ns: "moving".into() }, Some(&other))).await.expect_err("foreign");
    assert_eq!(e.code(), Code::PermissionDenied);

    let started = rc
        .start(root(pb::StartReembedRequest {
            ns: "moving".into(),
            embedding: Some(pb::EmbeddingChoice { provider: "hash".into(), dimension: Some(32) }),
        }))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.job.expect("a job").total, 40);
    let mut stream = rc.watch(root(pb::WatchReembedRequest { ns: "moving".into() })).await.expect("watch").into_inner();
    let mut seen = Vec::new();
    let collected = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(item) = stream.next().await {
            seen.push(item.expect("no error"));
        }
    })
    .await;
    assert!(collected.is_ok(), "the stream ends when the job does");
    let last = seen.last().expect("at least one answer");
    let job = last.job.as_ref().expect("job");
    assert_eq!((job.state.as_str(), job.done, job.total), ("completed", 40, 40));
    assert_eq!(last.embedding.as_ref().map(|e| e.dimension), Some(32));
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "only changes are sent");
}

#[tokio::test]
async fn a_typed_call_is_audited_as_its_rest_call_with_the_rpc_named() {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.log");
    let ap = audit_path.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
    })
    .await;
    create_hash_ns(&node, "audited", 8).await;
    let mut m = MemoriesClient::new(channel(&node).await);
    m.store(root(pb::StoreMemoryRequest {
        namespace: "audited".into(),
        content: "audited over gRPC".into(),
        ..Default::default()
    }))
    .await
    .expect("store");
    let e = m
        .store(req(
            pb::StoreMemoryRequest { namespace: "audited".into(), content: "x".into(), ..Default::default() },
            None,
        ))
        .await;
    assert_eq!(e.expect_err("no key").code(), Code::Unauthenticated);
    node.stop().await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rec = lines
        .iter()
        .find(|l| l["grpc_method"] == "/loci.v1.Memories/Store" && l["status"] == 200)
        .expect("the typed store is audited");
    assert_eq!(
        (rec["path"].as_str(), rec["key_id"].as_str(), rec["namespace"].as_str()),
        (Some("/v1/memory/store"), Some("root"), Some("audited"))
    );
    assert!(rec["ip"].is_string(), "the caller's address: {rec}");
    assert!(lines.iter().any(|l| l["grpc_method"] == "/loci.v1.Memories/Store" && l["status"] == 401));
    assert!(!text.contains(ROOT_KEY));
}

#[tokio::test]
async fn every_typed_rpc_stands_for_a_route_of_the_rest_router() {
    let node = TestNode::start().await;
    // A read key on a namespace that does not exist: it can change nothing, so every route can
    // be probed; a route that exists answers anything but "no such route".
    let (_, probe) =
        create_key(&node.client, "/admin/keys", &json!({"name": "probe", "scope": "read", "namespaces": ["probe-ns"]}))
            .await;
    let c = node.client.with_key(Some(&probe));
    let routes = loci_api::grpc::typed_routes();
    assert!(routes.len() >= 80, "{}", routes.len());
    for (rpc, method, template) in routes {
        let path = template
            .replace("{ns}", "probe-ns")
            .replace("{node}", "1")
            .replace("{id}", "x")
            .replace("{agent_id}", "x")
            .replace("{pattern}", "x");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE).then(|| json!({}));
        let (s, v) = c.request(method.clone(), &path, body.as_ref()).await;
        assert_ne!(s, 405, "{rpc}: {method} {path} is not allowed: {v}");
        assert_ne!(v["code"], "ROUTE_NOT_FOUND", "{rpc}: {method} {path} is no route");
    }
}

/// A deterministic stream of numbers in [-1, 1) (seeded; a failing seed replays exactly).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next()).collect()
    }
}

#[tokio::test]
async fn vector_queries_never_return_another_namespaces_vectors() {
    const NAMESPACES: usize = 100;
    const PER_NAMESPACE: usize = 12;
    const DIM: usize = 8;
    let node = TestNode::start().await;
    let mut vc = VectorsClient::new(channel(&node).await);
    let mut rng = Lcg(0x5eed_0f_1050_1a7e);
    let mut own: Vec<Vec<(String, Vec<f32>)>> = Vec::new();
    for n in 0..NAMESPACES {
        let items: Vec<(String, Vec<f32>)> =
            (0..PER_NAMESPACE).map(|i| (format!("n{n}-v{i}"), rng.vector(DIM))).collect();
        let up = vc
            .upsert(root(pb::VectorsUpsertRequest {
                ns: format!("iso-{n}"),
                vectors: items
                    .iter()
                    .map(|(id, v)| pb::VectorUpsertItem { id: id.clone(), values: v.clone(), metadata: None })
                    .collect(),
            }))
            .await
            .expect("upsert")
            .into_inner();
        assert_eq!(up.upserted_count, PER_NAMESPACE as u64);
        own.push(items);
    }
    for (n, items) in own.iter().enumerate() {
        let ns = format!("iso-{n}");
        let prefix = format!("n{n}-");
        // Random queries asking for more than the namespace holds, and each of its own vectors.
        let mut queries: Vec<(Option<&str>, Vec<f32>)> = (0..3).map(|_| (None, rng.vector(DIM))).collect();
        queries.extend(items.iter().take(2).map(|(id, v)| (Some(id.as_str()), v.clone())));
        for (expect_first, q) in queries {
            let hits = vc
                .query(root(pb::VectorsQueryRequest {
                    ns: ns.clone(),
                    vector: q.clone(),
                    top_k: Some(50),
                    ..Default::default()
                }))
                .await
                .expect("query")
                .into_inner()
                .results;
            assert_eq!(hits.len(), PER_NAMESPACE, "{ns}: every own vector, nothing else");
            assert!(
                hits.iter().all(|h| h.id.starts_with(&prefix)),
                "{ns} answered {:?}",
                hits.iter().map(|h| &h.id).collect::<Vec<_>>()
            );
            if let Some(id) = expect_first {
                assert_eq!(hits[0].id, id, "an own vector is its own nearest");
            }
            // The same over REST.
            let (s, v) =
                node.client.post(&format!("/v1/namespaces/{ns}/query"), &json!({"vector": q, "top_k": 50})).await;
            assert_eq!(s, 200, "{v}");
            let rest: Vec<&str> =
                v["results"].as_array().expect("results").iter().filter_map(|r| r["id"].as_str()).collect();
            assert_eq!(rest.len(), PER_NAMESPACE);
            assert!(rest.iter().all(|id| id.starts_with(&prefix)), "{ns} answered {rest:?} over REST");
        }
    }
}
