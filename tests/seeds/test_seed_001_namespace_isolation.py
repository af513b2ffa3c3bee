"""Seed 001_fa9ab30b08094a15.txt ("Namespace Isolation"), example by example.

The seed's TypeScript (`tenantA.memory.store({content, namespace, metadata})`,
`tenantB.memory.recall({query, namespace})`) is replayed as the requests it sends:
POST /v1/memory/store and /v1/memory/recall with those bodies.
"""

from __future__ import annotations

import pytest

from conftest import names

SEED = "001_fa9ab30b08094a15.txt"


@pytest.fixture(scope="module")
def tenants(admin):
    """seed 001_fa9ab30b08094a15.txt:21-30 and :61-62: one key per tenant, scoped to its namespace
    only (POST /admin/keys with `namespace`)."""
    keys = {}
    for t in ("tenant-a", "tenant-b"):
        r = admin.post("/admin/keys", json={"name": f"{t}-key", "scope": "write", "namespace": t})
        assert r.status_code == 201, r.text
        assert r.json()["namespaces"] == [t]
        keys[t] = r.json()["key"]
    return keys


def test_tenant_a_stores_with_namespace_field(tenants, http, admin):
    """seed 001_fa9ab30b08094a15.txt:31-36: store {content, namespace: 'tenant-a', metadata}."""
    r = http(tenants["tenant-a"]).post("/v1/memory/store", json={
        "content": "Internal roadmap: launching feature X in Q3", "namespace": "tenant-a",
        "metadata": {"type": "confidential"}})
    assert r.status_code == 200, r.text
    m = r.json()["memory"]
    assert m["metadata"] == {"type": "confidential"}
    assert admin.get("/v1/namespaces/tenant-a").json()["memory_count"] == 1


def test_tenant_b_cannot_recall_tenant_a(tenants, http):
    """seed 001_fa9ab30b08094a15.txt:37-42: tenant B's recall of namespace tenant-a is
    403 'API key not authorized for namespace'; the answer holds no memory."""
    r = http(tenants["tenant-b"]).post("/v1/memory/recall", json={"query": "roadmap plans", "namespace": "tenant-a"})
    assert r.status_code == 403
    body = r.json()
    assert body["code"] == "NAMESPACE_ACCESS_DENIED" and "memories" not in body
    assert "roadmap" not in r.text.lower()


def test_tenant_b_stores_in_its_own(tenants, http):
    """seed 001_fa9ab30b08094a15.txt:43-48: tenant B stores in tenant-b; its recall sees only its own."""
    b = http(tenants["tenant-b"])
    r = b.post("/v1/memory/store", json={"content": "Our launch date is Q4", "namespace": "tenant-b",
                                         "metadata": {"type": "planning"}})
    assert r.status_code == 200, r.text
    hits = b.post("/v1/memory/recall", json={"query": "launching feature roadmap Q3", "namespace": "tenant-b",
                                             "top_k": 10}).json()["memories"]
    assert [h["memory"]["content"] for h in hits] == ["Our launch date is Q4"]


def test_storage_level_isolation_even_for_the_root_key(tenants, admin):
    """seed 001_fa9ab30b08094a15.txt:6 and :85: each namespace has its own store and index; a
    recall in tenant-b never returns tenant-a's memory, whatever the key."""
    hits = admin.post("/v1/memory/recall", json={"query": "Internal roadmap feature X Q3", "namespace": "tenant-b",
                                                 "top_k": 50}).json()["memories"]
    assert all("roadmap" not in h["memory"]["content"] for h in hits)


def test_list_and_create_namespace_rest(tenants, admin):
    """seed 001_fa9ab30b08094a15.txt:50-60: GET /v1/namespaces; POST /v1/namespaces
    {name: tenant-c, description} creates it (name and description only)."""
    assert {"tenant-a", "tenant-b"} <= set(names(admin.get("/v1/namespaces")))
    r = admin.post("/v1/namespaces", json={"name": "tenant-c", "description": "Isolated namespace for Tenant C"})
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "Isolated namespace for Tenant C"
    assert admin.get("/v1/namespaces/tenant-c").json()["description"] == "Isolated namespace for Tenant C"


def test_per_user_isolation(admin, http, uid):
    """seed 001_fa9ab30b08094a15.txt:64-67: namespace user-{user_id}, key scoped to it only."""
    k = admin.post("/admin/keys", json={"name": f"user-{uid}", "scope": "write", "namespace": f"user-{uid}"}).json()
    u = http(k["key"])
    assert u.post("/v1/memory/store", json={"agent_id": f"user-{uid}", "content": "mine"}).status_code == 200
    assert u.post("/v1/memory/store", json={"agent_id": f"user-x{uid}", "content": "theirs"}).status_code == 403


def test_per_tenant_sub_namespaces(mint, http, admin, uid):
    """seed 001_fa9ab30b08094a15.txt:68-73: Alice's key reads org-acme and reads/writes
    org-acme-user-alice; bob's namespace and writes to org-acme are refused."""
    org, alice_ns, bob_ns = f"org-acme{uid}", f"org-acme{uid}-user-alice", f"org-acme{uid}-user-bob"
    admin.post("/v1/memory/store", json={"namespace": org, "content": "Acme's travel policy: economy class"})
    admin.post("/v1/memory/store", json={"namespace": bob_ns, "content": "Bob's personal memo"})
    k = mint({"label": f"alice-{uid}", "permissions": [{"namespace": org, "scopes": ["read"]},
                                                       {"namespace": alice_ns, "scopes": ["read", "write"]}]})
    a = http(k["key"])
    assert a.post("/v1/memory/store", json={"namespace": alice_ns, "content": "Alice's note"}).status_code == 200
    hits = a.post("/v1/memory/recall", json={"namespace": org, "query": "travel policy"}).json()["memories"]
    assert hits and "travel policy" in hits[0]["memory"]["content"]
    assert a.post("/v1/memory/store", json={"namespace": org, "content": "x"}).status_code == 403
    assert a.post("/v1/memory/recall", json={"namespace": bob_ns, "query": "memo"}).status_code == 403


def test_per_agent_isolation(mint, http, uid):
    """seed 001_fa9ab30b08094a15.txt:74-78: agent-researcher and agent-writer private, `shared`
    collaborative: each agent's key writes its own and the shared namespace, not the other's."""
    shared = f"shared-{uid}"
    keys = {a: mint({"label": f"{a}-{uid}", "permissions": [{"namespace": f"{a}-{uid}", "scopes": ["write"]},
                                                             {"namespace": shared, "scopes": ["write"]}]})["key"]
            for a in ("agent-researcher", "agent-writer")}
    r = http(keys["agent-researcher"])
    assert r.post("/v1/memory/store", json={"namespace": f"agent-researcher-{uid}", "content": "notes"}).status_code == 200
    assert r.post("/v1/memory/store", json={"namespace": shared, "content": "finding"}).status_code == 200
    assert r.post("/v1/memory/recall", json={"namespace": f"agent-writer-{uid}", "query": "x"}).status_code == 403
    w = http(keys["agent-writer"])
    assert "finding" in w.post("/v1/memory/recall", json={"namespace": shared, "query": "finding"}).text


def test_independent_policy_per_namespace(admin, uid):
    """seed 001_fa9ab30b08094a15.txt:89: each namespace has independent decay configuration."""
    a, b = f"pol-a-{uid}", f"pol-b-{uid}"
    for n in (a, b):
        assert admin.post("/v1/namespaces", json={"name": n}).status_code == 201
    r = admin.put(f"/v1/namespaces/{a}/memory_policy", json={"episodic_decay": "exponential", "retention_days": 7})
    assert r.status_code == 200, r.text
    assert admin.get(f"/v1/namespaces/{a}/memory_policy").json()["episodic_decay"] == "exponential"
    other = admin.get(f"/v1/namespaces/{b}/memory_policy").json()
    assert other["episodic_decay"] == "power_law" and "retention_days" not in other


def test_rate_limit_is_per_key(base_dir, uid):
    """seed 001_fa9ab30b08094a15.txt:10 and :88: rate limiting per API key, so one tenant cannot
    exhaust another's budget."""
    from conftest import ROOT_KEY, Http, LociNode
    n = LociNode(f"seed001-limited-{uid}", base_dir,
                 env={"LOCI_RATE_LIMIT_RPS": "0.01", "LOCI_RATE_LIMIT_BURST": "3"}).start()
    try:
        root = Http(n.url, ROOT_KEY)
        keys = [root.post("/admin/keys", json={"name": f"t{i}", "scope": "write", "namespace": f"t{i}"}).json()["key"]
                for i in range(2)]
        # A new connection per request: a refusal sent before the body is read may close one.
        def a():
            return Http(n.url, keys[0])
        b = Http(n.url, keys[1])
        codes = [a().post("/v1/memory/recall", json={"namespace": "t0", "query": "x"}).status_code for _ in range(6)]
        assert 429 in codes
        limited = a().post("/v1/memory/recall", json={"namespace": "t0", "query": "x"})
        assert limited.status_code == 429 and limited.headers.get("retry-after")
        assert b.post("/v1/memory/recall", json={"namespace": "t1", "query": "x"}).status_code == 200
    finally:
        n.stop()
