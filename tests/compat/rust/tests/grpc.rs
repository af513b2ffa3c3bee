//! The published `dakera-client` 0.12.3 gRPC client (feature `grpc`) against a live Loci node's
//! public gRPC port (`run.sh` sets DAKERA_TEST_URL, DAKERA_TEST_GRPC_URL and DAKERA_API_KEY): a
//! scripted session over `dakera.v1.VectorService` (health, upsert, query with its `top_k`
//! bounds, delete, cache warming, namespace get and delete) and its authentication failures.

use std::collections::HashMap;

use dakera_client::grpc::{GrpcClient, GrpcClientConfig};
use dakera_client::{CreateNamespaceRequest, DakeraClient, Vector};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("run.sh sets {name}"))
}

async fn grpc(key: &str) -> GrpcClient {
    GrpcClient::connect(GrpcClientConfig::new(env("DAKERA_TEST_GRPC_URL")).with_api_key(key)).await.expect("connect")
}

/// A key with `scope` on `ns` alone, minted over REST with the root key.
async fn mint(ns: &str, scope: &str) -> String {
    let http = dakera_client::reqwest::Client::new();
    let resp = http
        .post(format!("{}/admin/keys", env("DAKERA_TEST_URL")))
        .bearer_auth(env("DAKERA_API_KEY"))
        .json(&serde_json::json!({"name": format!("grpc-{scope}"), "scope": scope, "namespace": ns}))
        .send()
        .await
        .expect("mint");
    let v: serde_json::Value = resp.json().await.expect("json");
    v["key"].as_str().expect("key").to_string()
}

#[tokio::test]
async fn a_scripted_grpc_session() {
    let key = env("DAKERA_API_KEY");
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let ns = format!("rs-grpc-{n:x}");
    let rest = DakeraClient::builder(&env("DAKERA_TEST_URL")).api_key(&key).build().expect("client");
    rest.create_namespace(&ns, CreateNamespaceRequest { dimensions: Some(3), ..Default::default() })
        .await
        .expect("create");

    let c = grpc(&key).await;
    let health = c.health().await.expect("health");
    assert!(health.healthy, "{health:?}");

    let meta: HashMap<String, serde_json::Value> = [("color".to_string(), serde_json::json!("red"))].into();
    let up = c
        .upsert(
            &ns,
            vec![
                Vector::with_metadata("a", vec![1.0, 0.0, 0.0], meta),
                Vector::new("b", vec![0.0, 1.0, 0.0]),
                Vector::new("c", vec![0.8, 0.6, 0.0]),
            ],
        )
        .await
        .expect("upsert");
    assert_eq!(up.upserted_count, 3);

    let q = c.query(&ns, vec![1.0, 0.0, 0.0], 2, "cosine", true, false).await.expect("query");
    let ids: Vec<&str> = q.results.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert!((q.results[0].score - 1.0).abs() < 1e-4, "{:?}", q.results[0]);
    assert_eq!(q.results[0].metadata.as_ref().and_then(|m| m.get("color")), Some(&serde_json::json!("red")));
    for top_k in [0, 10_001] {
        let e = c.query(&ns, vec![1.0, 0.0, 0.0], top_k, "cosine", false, false).await.expect_err("bound");
        assert!(e.to_string().contains("INVALID_ARGUMENT"), "top_k {top_k}: {e}");
    }
    assert_eq!(c.query(&ns, vec![1.0, 0.0, 0.0], 10_000, "cosine", false, false).await.expect("max").results.len(), 3);

    let deleted = c.delete_vectors(&ns, vec!["b".into(), "missing".into()]).await.expect("delete");
    assert_eq!(deleted.deleted_count, 1);
    let info = c.get_namespace(&ns).await.expect("get");
    assert_eq!((info.name.as_str(), info.vector_count, info.dimensions), (ns.as_str(), 2, Some(3)));
    assert_eq!(c.warm_cache(&ns, vec![]).await.expect("warm"), 2);
    assert_eq!(c.warm_cache(&ns, vec!["a".into(), "zzz".into()]).await.expect("warm ids"), 1);

    // Authentication failures: no key, a wrong key, a read key writing, another tenant's key.
    for bad in ["", "dk_this_is_not_a_key_0123456789"] {
        let e = grpc(bad).await.upsert(&ns, vec![Vector::new("x", vec![0.0, 0.0, 1.0])]).await.expect_err("refused");
        assert!(e.is_auth_error() && e.to_string().contains("UNAUTHENTICATED"), "{bad:?}: {e}");
    }
    let reader = grpc(&mint(&ns, "read").await).await;
    let e = reader.upsert(&ns, vec![Vector::new("x", vec![0.0, 0.0, 1.0])]).await.expect_err("read key writes");
    assert!(e.is_auth_error() && e.to_string().contains("PERMISSION_DENIED"), "{e}");
    assert_eq!(reader.query(&ns, vec![0.0, 0.0, 1.0], 10, "cosine", false, false).await.expect("read").results.len(), 2);
    let other = grpc(&mint("rs-grpc-other", "write").await).await;
    let e = other.get_namespace(&ns).await.expect_err("other tenant");
    assert!(e.to_string().contains("PERMISSION_DENIED"), "{e}");
    assert_eq!(c.get_namespace(&ns).await.expect("unchanged").vector_count, 2, "a refused write changed something");

    assert!(c.delete_namespace(&ns).await.expect("erase"));
    let e = c.get_namespace(&ns).await.expect_err("erased");
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");
}
