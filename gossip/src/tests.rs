use std::time::Duration;

use super::*;

fn ident(id: u64, port: u16) -> NodeIdentity {
    NodeIdentity {
        id,
        gossip_addr: format!("10.0.0.{id}:{port}").parse().unwrap(),
        rpc_addr: format!("10.0.0.{id}:50051"),
        http_addr: format!("10.0.0.{id}:3300"),
        bump: now_ms(),
    }
}

fn fast(mut c: GossipConfig) -> GossipConfig {
    c.probe_period = Duration::from_millis(100);
    c.suspect_to_down = Duration::from_millis(600);
    c
}

#[tokio::test]
async fn members_find_each_other_through_one_seed_and_see_a_node_leave() {
    let net = MemNetwork::default();
    let seed: SocketAddr = "10.0.0.1:7946".parse().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=4u64 {
        let me = ident(id, 7946);
        let t = net.bind(me.gossip_addr);
        nodes.push(Gossip::start(fast(GossipConfig::new(me, vec![seed], "s3cret-cluster".into())), t));
    }
    for g in &nodes {
        assert!(
            g.wait_for_members(4, Duration::from_secs(10)).await,
            "node {} sees {:?}",
            g.identity.id,
            g.view().members.keys()
        );
        let v = g.view();
        assert_eq!(v.members[&3].identity.rpc_addr, "10.0.0.3:50051", "identities carry the addresses");
    }
    // A node vanishes: the others mark it down.
    net.unbind("10.0.0.4:7946".parse().unwrap());
    for g in &nodes[..3] {
        let mut rx = g.watch();
        let ok = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| !v.is_alive(4))).await;
        assert!(ok.is_ok(), "node {} still thinks 4 is alive", g.identity.id);
    }
    assert!(nodes[0].view().down_for(4).is_some());
}

#[tokio::test]
async fn foreign_cluster_and_forged_packets_are_dropped_and_counted() {
    let net = MemNetwork::default();
    let a = ident(1, 7946);
    let b = ident(2, 7946);
    let ga =
        Gossip::start(fast(GossipConfig::new(a.clone(), vec![], "cluster-one-secret".into())), net.bind(a.gossip_addr));
    let gb = Gossip::start(
        fast(GossipConfig::new(b.clone(), vec![a.gossip_addr], "cluster-two-secret".into())),
        net.bind(b.gossip_addr),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ga.view().alive_count(), 1, "a node with another secret was admitted");
    assert_eq!(gb.view().alive_count(), 1);
    assert!(ga.stats.rejected.load(Ordering::Relaxed) > 0);
    let before = ga.stats.rejected.load(Ordering::Relaxed);
    net.inject(a.gossip_addr, "10.9.9.9:1".parse().unwrap(), vec![0u8; 200]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ga.stats.rejected.load(Ordering::Relaxed) > before);
}

#[tokio::test]
async fn partition_then_heal() {
    let net = MemNetwork::default();
    let seed: SocketAddr = "10.0.0.1:7946".parse().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let me = ident(id, 7946);
        nodes.push(Gossip::start(
            fast(GossipConfig::new(me.clone(), vec![seed], "s3cret-cluster".into())),
            net.bind(me.gossip_addr),
        ));
    }
    for g in &nodes {
        assert!(g.wait_for_members(3, Duration::from_secs(10)).await);
    }
    let c = nodes[2].identity.gossip_addr;
    for g in &nodes[..2] {
        g.set_blocked(c, true);
    }
    for a in [nodes[0].identity.gossip_addr, nodes[1].identity.gossip_addr] {
        nodes[2].set_blocked(a, true);
    }
    let mut rx = nodes[0].watch();
    assert!(tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| !v.is_alive(3))).await.is_ok());
    for g in &nodes[..2] {
        g.set_blocked(c, false);
    }
    for a in [nodes[0].identity.gossip_addr, nodes[1].identity.gossip_addr] {
        nodes[2].set_blocked(a, false);
    }
    for g in &nodes {
        assert!(g.wait_for_members(3, Duration::from_secs(15)).await, "node {} did not heal", g.identity.id);
    }
}

#[tokio::test]
async fn real_udp_on_loopback() {
    let t1 = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let t2 = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a1 = t1.local_addr().unwrap();
    let a2 = t2.local_addr().unwrap();
    let mk = |id: u64, addr: SocketAddr| NodeIdentity {
        id,
        gossip_addr: addr,
        rpc_addr: String::new(),
        http_addr: String::new(),
        bump: now_ms(),
    };
    let g1 = Gossip::start(fast(GossipConfig::new(mk(1, a1), vec![], "udp-secret-x".into())), t1);
    let g2 = Gossip::start(fast(GossipConfig::new(mk(2, a2), vec![a1], "udp-secret-x".into())), t2);
    assert!(g1.wait_for_members(2, Duration::from_secs(10)).await);
    assert!(g2.wait_for_members(2, Duration::from_secs(10)).await);
    g2.leave().await;
    let mut rx = g1.watch();
    assert!(tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| !v.is_alive(2))).await.is_ok());
}
