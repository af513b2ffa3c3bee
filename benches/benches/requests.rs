//! The per-request cost of authentication + authorisation + rate limiting, in-process through
//! the real REST router of a running node: an authenticated `GET /v1/auth/whoami` minus the
//! unauthenticated `GET /health/live` (same router, same middleware otherwise), with the rate
//! limiter local and backed by a real Redis server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

fn request(path: &str, key: Option<&str>) -> axum::http::Request<Body> {
    let mut b = axum::http::Request::builder().uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let mut req = b.body(Body::empty()).expect("request");
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let redis = loci_tests::RedisServer::start();
    for (label, redis_url) in [("local", None), ("redis", Some(redis.url()))] {
        let node = rt.block_on(loci_tests::TestNode::start_with(move |a| a.redis_url = redis_url));
        let router = node.handle.as_ref().expect("running").router.clone();
        let mut g = c.benchmark_group(format!("request/{label}"));
        g.sample_size(50).measurement_time(Duration::from_secs(8));
        g.bench_function("health_live_unauthenticated", |b| {
            b.to_async(&rt).iter(|| async {
                let r = router.clone().oneshot(request("/health/live", None)).await.expect("answer");
                assert!(r.status().is_success());
            })
        });
        g.bench_function("whoami_authenticated", |b| {
            b.to_async(&rt).iter(|| async {
                let r = router
                    .clone()
                    .oneshot(request("/v1/auth/whoami", Some(loci_tests::ROOT_KEY)))
                    .await
                    .expect("answer");
                assert!(r.status().is_success());
            })
        });
        g.finish();
        rt.block_on(async { drop(node.stop().await) });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
