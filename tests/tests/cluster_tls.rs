//! Mutual TLS between nodes (issue 14): node-to-node traffic is encrypted and carries no
//! cluster secret, peers without a certificate of the cluster CA are refused, and the public
//! gRPC port does not serve the node-to-node services.

use std::sync::Arc;
use std::time::Duration;

use loci_service::cluster::wire::pb;
use loci_tests::{CLUSTER_SECRET, TestCluster, TestNode, eventually};
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// What a recording proxy saw: the bytes of each connection, in the direction dialled.
type Captured = Arc<Mutex<Vec<Vec<u8>>>>;

/// A TCP proxy on a free port forwarding to `target`, recording what callers send.
async fn recording_proxy(target: u16) -> (u16, Captured) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let captured: Captured = Arc::default();
    let seen = captured.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                let index = {
                    let mut s = seen.lock();
                    s.push(Vec::new());
                    s.len() - 1
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let upstream = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ri.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        {
                            let mut s = seen.lock();
                            if s[index].len() < 4 * 1024 * 1024 {
                                s[index].extend_from_slice(&buf[..n]);
                            }
                        }
                        if wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = wo.shutdown().await;
                };
                let downstream = async {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    (port, captured)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A three-node cluster whose every node-to-node connection passes a recording proxy (each
/// node advertises its proxy as its cluster address); returns what the proxies saw after a
/// write and a forwarded read.
async fn cluster_through_proxies(certs: Option<std::path::PathBuf>) -> Vec<Vec<u8>> {
    let mut ports = Vec::new();
    let mut captures = Vec::new();
    for _ in 0..3 {
        let listen = free_tcp_port();
        let (proxy, captured) = recording_proxy(listen).await;
        ports.push((listen, proxy));
        captures.push(captured);
    }
    // Nodes are told apart by their gossip port, in start order.
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let ports2 = ports.clone();
    let c = TestCluster::start_with(3, move |a| {
        let mut o = order.lock();
        let i = match o.iter().position(|g| *g == a.gossip_addr) {
            Some(i) => i,
            None => {
                o.push(a.gossip_addr.clone());
                o.len() - 1
            }
        };
        a.cluster_addr = format!("127.0.0.1:{}", ports2[i].0);
        a.cluster_advertise_addr = Some(format!("127.0.0.1:{}", ports2[i].1));
        a.cluster_certs_dir = certs.clone();
    })
    .await;
    let (s, body) =
        c.client(0).post("/v1/memory/store", &json!({"agent_id": "tls-a", "content": "the vault code is 4411"})).await;
    assert_eq!(s, 200, "{body}");
    let found = eventually(Duration::from_secs(20), || async {
        let (s, b) = c.client(2).post("/v1/memory/recall", &json!({"agent_id": "tls-a", "query": "vault code"})).await;
        s == 200 && b.to_string().contains("4411")
    })
    .await;
    assert!(found, "a forwarded read did not see the write");
    let mut all = Vec::new();
    for cap in captures {
        all.extend(cap.lock().iter().filter(|c| !c.is_empty()).cloned());
    }
    drop(c);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_to_node_traffic_is_tls_and_carries_no_cluster_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    loci_node::tls::create_ca(&dir.path().join("ca")).expect("ca");
    loci_node::tls::create_node(&dir.path().join("ca"), &dir.path().join("node"), &["127.0.0.1".into()])
        .expect("node cert");

    // The control: in plaintext the proxies see what nodes send (the replicated memory's
    // content), so the capture can catch a leak. (Header values such as the token are
    // HPACK-compressed in HTTP/2, so the content is the reliable marker.)
    let plain = cluster_through_proxies(None).await;
    assert!(!plain.is_empty(), "no node-to-node traffic was captured");
    assert!(
        plain.iter().any(|c| contains(c, b"the vault code is 4411")),
        "plaintext replication should show the content (else this capture proves nothing)"
    );
    assert!(plain.iter().all(|c| c.first() != Some(&0x16)), "plaintext connections look like TLS");

    let tls = cluster_through_proxies(Some(dir.path().join("node"))).await;
    assert!(tls.len() >= 2, "too little node-to-node traffic captured: {} connections", tls.len());
    for conn in &tls {
        // Every connection opens with a TLS handshake record (ContentType 22, version 3.x).
        assert_eq!(&conn[..2], &[0x16, 0x03], "a node-to-node connection is not TLS");
        assert!(!contains(conn, CLUSTER_SECRET.as_bytes()), "the cluster secret travelled");
        assert!(!contains(conn, b"x-loci-cluster-token"), "a cluster token header travelled");
        assert!(!contains(conn, b"the vault code is 4411"), "memory content travelled in clear");
    }
}

async fn node_info(channel: tonic::transport::Channel) -> Result<pb::NodeInfo, tonic::Status> {
    let mut c = pb::internal_client::InternalClient::new(channel);
    c.node_info(pb::NodeInfoRequest {}).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_certificate_of_the_cluster_ca_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, other_ca) = (dir.path().join("ca"), dir.path().join("other-ca"));
    loci_node::tls::create_ca(&ca).expect("ca");
    loci_node::tls::create_ca(&other_ca).expect("other ca");
    loci_node::tls::create_node(&ca, &dir.path().join("member"), &[]).expect("member cert");
    loci_node::tls::create_node(&other_ca, &dir.path().join("intruder"), &[]).expect("intruder cert");
    let certs = dir.path().join("member");
    let node = TestNode::start_with(move |a| {
        a.cluster_certs_dir = Some(certs.clone());
        a.cluster_secret = Some(CLUSTER_SECRET.into());
    })
    .await;
    let h = node.handle.as_ref().expect("handle");
    let cluster = h.cluster_addr;

    // A member's certificate: answered, with no token sent.
    let member = loci_node::tls::ClusterTls::load(&dir.path().join("member")).expect("load");
    let ok = loci_raft::ChannelPool::with_tls(Some(member.client_config())).get(&cluster.to_string()).expect("channel");
    let info = node_info(ok).await.expect("a member is answered");
    assert_eq!(info.node_id, h.node_id);

    // A certificate of another CA.
    let intruder = loci_node::tls::ClusterTls::load(&dir.path().join("intruder")).expect("load");
    let bad = loci_raft::ChannelPool::with_tls(Some(intruder.client_config())).get(&cluster.to_string()).expect("ch");
    assert!(node_info(bad).await.is_err(), "a certificate of another CA was accepted");

    // No TLS at all, even with the right cluster secret.
    let plain = loci_raft::ChannelPool::default().get(&cluster.to_string()).expect("channel");
    let mut c = pb::internal_client::InternalClient::new(plain);
    let mut req = tonic::Request::new(pb::NodeInfoRequest {});
    req.metadata_mut().insert("x-loci-cluster-token", CLUSTER_SECRET.parse().expect("ascii"));
    assert!(c.node_info(req).await.is_err(), "a plaintext peer was answered");

    // The public port does not serve node-to-node services at all.
    let public = loci_raft::ChannelPool::default().get(&h.grpc_addr.to_string()).expect("channel");
    let mut c = pb::internal_client::InternalClient::new(public);
    let mut req = tonic::Request::new(pb::NodeInfoRequest {});
    req.metadata_mut().insert("x-loci-cluster-token", CLUSTER_SECRET.parse().expect("ascii"));
    let err = c.node_info(req).await.expect_err("internal service on the public port");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Refusals are counted (and logged: see the binary test).
    let metrics = reqwest::get(format!("http://{}/metrics", h.http_addr)).await.expect("metrics");
    let text = metrics.text().await.expect("metrics text");
    assert!(text.contains("loci_cluster_tls_refused_total"), "refused handshakes are not counted");
}
