"""A 3-process Loci cluster driven through dakera-py: cluster_status / cluster_nodes / replication /
shards from every node, and writes on one node read on the others."""

import time

import pytest

from conftest import client_for
from lociproc import ROOT_KEY

from dakera import BatchRecallRequest
from dakera.exceptions import AuthenticationError, ErrorCode, NotFoundError


@pytest.fixture(scope="module")
def clients(cluster):
    cs = [client_for(n.url, ROOT_KEY) for n in cluster.nodes]
    yield cs
    for c in cs:
        c.close()


def eventually(fn, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = fn()
            if out:
                return out
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def test_cluster_status_from_every_node(cluster, clients):
    ids = {str(n.node_id) for n in cluster.nodes}
    leaders = set()
    for c in clients:
        def ok():
            s = c.cluster_status()
            assert s["node_count"] == 3 and s["state"] == "healthy", s
            assert {m["node_id"] for m in s["members"]} == ids
            assert all(m["state"] == "alive" for m in s["members"])
            return s
        s = eventually(ok)
        assert isinstance(s["cluster_id"], str) and s["cluster_id"]
        assert isinstance(s["timestamp"], int) and s["version"] == c.health()["version"]
        leaders.add(s["leader"])
    assert len(leaders) == 1 and leaders <= ids


def test_cluster_nodes(cluster, clients):
    ids = {str(n.node_id) for n in cluster.nodes}
    by_id = {str(n.node_id): n for n in cluster.nodes}
    for c in clients:
        res = c.cluster_nodes()
        nodes = res["nodes"] if isinstance(res, dict) else res
        assert {n["node_id"] for n in nodes} == ids
        assert res["total"] == 3
        for n in nodes:
            assert n["status"] == "healthy"
            assert n["role"] in ("leader", "follower", "voter", "learner")
            assert n["address"].endswith(by_id[n["node_id"]].info["http_addr"].split(":")[1])
            for field in ("version", "uptime_seconds", "last_heartbeat", "vector_count"):
                assert field in n
    assert sum(n["role"] == "leader" for n in clients[0].cluster_nodes()["nodes"]) == 1


def test_write_anywhere_read_everywhere(cluster, clients, uid):
    agent = f"cl-{uid}"
    m = clients[1].store_memory(agent, "The cluster stores this on three replicas", tags=["cluster"])
    for c in clients:
        got = c.get_memory(agent, m["id"])
        assert got["content"] == m["content"] and got["tags"] == ["cluster"]
        r = c.recall(agent, "three replicas", top_k=1)
        assert [x.id for x in r.memories] == [m["id"]]
    clients[2].update_memory(agent, m["id"], content="Updated through the third node")
    assert clients[0].get_memory(agent, m["id"])["content"] == "Updated through the third node"
    assert clients[0].forget(agent, m["id"])["deleted_count"] == 1
    for c in clients:
        with pytest.raises(NotFoundError):
            c.get_memory(agent, m["id"])
        assert c.batch_recall(BatchRecallRequest(agent_id=agent)).memories == []


def test_namespaces_sessions_and_keys_are_cluster_wide(cluster, clients, uid):
    ns = f"clns-{uid}"
    clients[2].create_namespace(ns, dimensions=1024)
    for c in clients:
        assert eventually(lambda c=c: ns in [i.name for i in c.list_namespaces()])
        assert c.get_namespace(ns).dimensions == 1024

    s = clients[0].start_session(f"clsess-{uid}")
    assert clients[1].get_session(s["id"])["id"] == s["id"]
    assert clients[2].end_session(s["id"])["session"]["ended_reason"] == "client"

    k = clients[0].create_key(f"cl-key-{uid}", scope="write", namespaces=[ns])
    for n in cluster.nodes:
        kc = client_for(n.url, k["key"], retries=1)
        assert eventually(lambda kc=kc: kc.whoami().key_id == k["key_id"])
    mem = client_for(cluster.nodes[2].url, k["key"]).store_memory(ns, "written with a key minted on node 1")
    assert clients[1].get_memory(ns, mem["id"])["content"] == "written with a key minted on node 1"

    clients[1].delete_key(k["key_id"])
    for n in cluster.nodes:
        def revoked(n=n):
            try:
                client_for(n.url, k["key"], retries=1).whoami()
            except AuthenticationError as e:
                assert e.code == ErrorCode.INVALID_API_KEY
                return True
            return False
        assert eventually(revoked)

    clients[0].delete_namespace(ns)
    for c in clients:
        def gone(c=c):
            try:
                c.get_namespace(ns)
            except NotFoundError:
                return True
            return False
        assert eventually(gone)


def test_replication_and_shards(cluster, clients, uid):
    agent = f"shard-{uid}"
    clients[0].store_memory(agent, "placed on three replicas")
    rep = clients[0].admin_cluster_replication()
    assert rep["total_nodes"] == 3 and rep["replication_factor"] == 3
    shards = clients[1].admin_list_shards()
    mine = [s for s in shards["shards"] if s["namespace"] == agent]
    assert len(mine) == 1
    ids = {str(n.node_id) for n in cluster.nodes}
    assert mine[0]["primary_node"] in ids
    assert {mine[0]["primary_node"], *mine[0]["replica_nodes"]} == ids
    plan = clients[2].admin_rebalance_shards(dry_run=True)
    assert plan["initiated"] is False and isinstance(plan["planned_moves"], list)


def test_cluster_counts_vectors(cluster, clients, uid):
    """cluster_status.total_vectors / nodes[].vector_count / shards[].vector_count count stored memories."""
    agent = f"count-{uid}"
    clients[0].store_memory(agent, "one")
    clients[0].store_memory(agent, "two")
    s = clients[0].cluster_status()
    assert s["total_vectors"] >= 2, s
    shard = next(x for x in clients[0].admin_list_shards()["shards"] if x["namespace"] == agent)
    assert shard["vector_count"] == 2, shard
    assert sum(n["vector_count"] for n in clients[0].cluster_nodes()["nodes"]) >= 2
