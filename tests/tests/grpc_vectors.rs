//! `dakera.v1.VectorService` on the public gRPC port of a real node: the seven RPCs, `top_k`
//! bounds, and the authentication and scope failures as gRPC status codes (with nothing changed).

use loci_api::pb_dakera::vector_service_client::VectorServiceClient;
use loci_api::pb_dakera::*;
use loci_tests::{ROOT_KEY, TestNode, create_key};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

async fn client(node: &TestNode) -> VectorServiceClient<Channel> {
    let addr = node.handle.as_ref().expect("running").grpc_addr;
    let ch = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    VectorServiceClient::new(ch)
}

/// A request with `x-api-key` (or `authorization: Bearer` when `bearer`).
fn req<T>(msg: T, key: Option<&str>, bearer: bool) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = key {
        let (name, value) =
            if bearer { ("authorization", format!("Bearer {k}")) } else { ("x-api-key", k.to_string()) };
        r.metadata_mut().insert(name, value.parse().expect("ascii"));
    }
    r
}

fn vector(id: &str, values: &[f32], meta: Option<&str>) -> ProtoVector {
    ProtoVector { id: id.into(), values: values.to_vec(), metadata_json: meta.map(str::to_string) }
}

fn query(ns: &str, v: &[f32], top_k: u32) -> QueryRequest {
    QueryRequest {
        namespace: ns.into(),
        vector: v.to_vec(),
        top_k,
        distance_metric: "cosine".into(),
        include_metadata: true,
        include_vectors: true,
    }
}

#[tokio::test]
async fn the_vector_service_answers_the_published_clients_rpcs() {
    let node = TestNode::start().await;
    let root = &node.client;
    let (s, _) = root.put("/v1/namespaces/grpc-ns", &json!({"dimension": 3})).await;
    assert!(s == 200 || s == 201);
    let mut c = client(&node).await;

    // Health needs no key.
    let h = c.health(req(HealthRequest {}, None, false)).await.expect("health").into_inner();
    assert_eq!(h.status, "healthy");
    assert!(!h.version.is_empty());

    // Upsert with x-api-key, query with a bearer token.
    let up = UpsertRequest {
        namespace: "grpc-ns".into(),
        vectors: vec![
            vector("g-1", &[1.0, 0.0, 0.0], Some(r#"{"color":"red"}"#)),
            vector("g-2", &[0.0, 1.0, 0.0], None),
            vector("g-3", &[0.7, 0.7, 0.0], None),
        ],
    };
    let r = c.upsert(req(up, Some(ROOT_KEY), false)).await.expect("upsert").into_inner();
    assert_eq!(r.upserted_count, 3);
    let r =
        c.query(req(query("grpc-ns", &[1.0, 0.0, 0.0], 2), Some(ROOT_KEY), true)).await.expect("query").into_inner();
    let got: Vec<&str> = r.results.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(got, ["g-1", "g-3"]);
    assert!((r.results[0].score - 1.0).abs() < 1e-4);
    assert_eq!(r.results[0].metadata_json.as_deref(), Some(r#"{"color":"red"}"#));
    assert_eq!(r.results[0].values, [1.0, 0.0, 0.0]);

    // top_k bounds: 0 and above 10,000 are INVALID_ARGUMENT; 10,000 is fine.
    for k in [0, 10_001] {
        let e = c.query(req(query("grpc-ns", &[1.0, 0.0, 0.0], k), Some(ROOT_KEY), false)).await.expect_err("bound");
        assert_eq!(e.code(), Code::InvalidArgument, "top_k {k}: {e:?}");
    }
    let r = c.query(req(query("grpc-ns", &[1.0, 0.0, 0.0], 10_000), Some(ROOT_KEY), false)).await.expect("10000");
    assert_eq!(r.into_inner().results.len(), 3);
    // A wrong dimension is INVALID_ARGUMENT too.
    let e = c.query(req(query("grpc-ns", &[1.0, 0.0], 1), Some(ROOT_KEY), false)).await.expect_err("dimension");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("dimension"), "{e:?}");

    // Namespace info.
    let info = c
        .get_namespace(req(GetNamespaceRequest { namespace: "grpc-ns".into() }, Some(ROOT_KEY), false))
        .await
        .expect("get")
        .into_inner();
    assert_eq!((info.name.as_str(), info.vector_count, info.dimension), ("grpc-ns", 3, Some(3)));

    // Warm and delete.
    let w = c
        .warm_cache(req(WarmCacheRequest { namespace: "grpc-ns".into(), vector_ids: vec![] }, Some(ROOT_KEY), false))
        .await
        .expect("warm")
        .into_inner();
    assert_eq!(w.warmed_count, 3);
    let d = c
        .delete_vectors(req(
            DeleteVectorsRequest { namespace: "grpc-ns".into(), ids: vec!["g-2".into(), "nope".into()] },
            Some(ROOT_KEY),
            false,
        ))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(d.deleted_count, 1);

    // Authentication and scope failures, and nothing changed by them.
    let (_, reader) =
        create_key(root, "/admin/keys", &json!({"name": "g-read", "scope": "read", "namespace": "grpc-ns"})).await;
    let (_, other) =
        create_key(root, "/admin/keys", &json!({"name": "g-other", "scope": "write", "namespace": "other-ns"})).await;
    let evil = || UpsertRequest { namespace: "grpc-ns".into(), vectors: vec![vector("evil", &[0.0, 0.0, 1.0], None)] };
    let e = c.upsert(req(evil(), None, false)).await.expect_err("no key");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = c.upsert(req(evil(), Some("dk_not_a_key_0123456789"), false)).await.expect_err("bad key");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = c.upsert(req(evil(), Some(&reader), true)).await.expect_err("read key");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c.upsert(req(evil(), Some(&other), false)).await.expect_err("other tenant");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .delete_vectors(req(
            DeleteVectorsRequest { namespace: "grpc-ns".into(), ids: vec!["g-1".into()] },
            Some(&reader),
            false,
        ))
        .await
        .expect_err("read key deletes");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .get_namespace(req(GetNamespaceRequest { namespace: "grpc-ns".into() }, None, false))
        .await
        .expect_err("no key");
    assert_eq!(e.code(), Code::Unauthenticated);
    // The read key reads; the other tenant's key sees nothing, as for a missing namespace.
    let r = c.query(req(query("grpc-ns", &[0.0, 0.0, 1.0], 10), Some(&reader), false)).await.expect("read");
    let got: Vec<String> = r.into_inner().results.into_iter().map(|x| x.id).collect();
    assert!(!got.contains(&"evil".to_string()), "a refused upsert was applied: {got:?}");
    assert_eq!(got.len(), 2);
    let a = c.query(req(query("grpc-ns", &[0.0, 0.0, 1.0], 10), Some(&other), false)).await.expect_err("other");
    let b = c.query(req(query("missing-ns", &[0.0, 0.0, 1.0], 10), Some(&other), false)).await.expect_err("missing");
    assert_eq!((a.code(), b.code()), (Code::PermissionDenied, Code::PermissionDenied));

    // Namespace deletion needs admin; the root key erases it, and it is gone.
    let e = c
        .delete_namespace(req(DeleteNamespaceRequest { namespace: "grpc-ns".into() }, Some(&reader), false))
        .await
        .expect_err("read key erases");
    assert_eq!(e.code(), Code::PermissionDenied);
    let r = c
        .delete_namespace(req(DeleteNamespaceRequest { namespace: "grpc-ns".into() }, Some(ROOT_KEY), false))
        .await
        .expect("erase")
        .into_inner();
    assert!(r.success);
    let e = c
        .get_namespace(req(GetNamespaceRequest { namespace: "grpc-ns".into() }, Some(ROOT_KEY), false))
        .await
        .expect_err("gone");
    assert_eq!(e.code(), Code::NotFound);
}

/// gRPC calls are audited like REST calls (the record names the route, the key and the status,
/// refusals included), and the per-key rate limit answers RESOURCE_EXHAUSTED.
#[tokio::test]
async fn grpc_calls_are_audited_and_rate_limited_like_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let ap = audit_path.clone();
    let node = TestNode::start_with(move |a| {
        a.audit_enabled = true;
        a.audit_file = Some(ap);
        a.rate_limit_rps = 0.2;
        a.rate_limit_burst = 4;
    })
    .await;
    let mut c = client(&node).await;
    let up = UpsertRequest { namespace: "audited-ns".into(), vectors: vec![vector("a-1", &[1.0, 0.0], None)] };
    c.upsert(req(up, Some(ROOT_KEY), false)).await.expect("upsert");
    let e = c
        .upsert(req(
            UpsertRequest { namespace: "audited-ns".into(), vectors: vec![vector("a-2", &[1.0, 0.0], None)] },
            Some("dk_wrong_key_0123456789"),
            false,
        ))
        .await
        .expect_err("wrong key");
    assert_eq!(e.code(), Code::Unauthenticated);
    // The burst of 4 is spent within a few more calls; then RESOURCE_EXHAUSTED.
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = c.query(req(query("audited-ns", &[1.0, 0.0], 1), Some(ROOT_KEY), false)).await;
        codes.push(r.err().map(|e| e.code()));
    }
    assert!(codes.contains(&None), "some queries pass: {codes:?}");
    assert!(codes.contains(&Some(Code::ResourceExhausted)), "the key's budget is enforced: {codes:?}");
    node.stop().await;
    let text = std::fs::read_to_string(&audit_path).expect("audit log");
    let records: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let upserts: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["path"] == "/v1/namespaces/audited-ns/vectors").collect();
    assert!(
        upserts.iter().any(|r| r["status"] == 200 && r["key_id"] == "root" && r["namespace"] == "audited-ns"),
        "the gRPC upsert is audited: {upserts:?}"
    );
    assert!(upserts.iter().any(|r| r["status"] == 401), "the refused one too: {upserts:?}");
    assert!(
        records.iter().any(|r| r["path"] == "/v1/namespaces/audited-ns/query" && r["status"] == 429),
        "rate-limited calls are audited"
    );
    assert!(!text.contains("dk_wrong_key_0123456789"), "no secret in the audit log");
}
