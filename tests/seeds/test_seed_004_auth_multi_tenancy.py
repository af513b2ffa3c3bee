"""Seed 004_b1c39ad399d3255f.txt ("Authentication & Multi-Tenancy"): API keys with expiry and
scoping, session isolation, tenant isolation at the state level."""

from __future__ import annotations

import time

SEED = "004_b1c39ad399d3255f.txt"


def test_keys_with_expiration_dates(admin, http, mint, uid):
    """seed 004_b1c39ad399d3255f.txt:14: issue keys with expiration dates: `expires_in_days` sets
    expires_at; a key past its `expires_at` is refused with 401 API_KEY_EXPIRED and does nothing."""
    ns = f"exp-{uid}"
    k = mint({"name": f"exp-{uid}", "scope": "write", "namespace": ns, "expires_in_days": 30}, path="/admin/keys")
    assert abs(k["expires_at"] - (int(time.time()) + 30 * 86400)) < 120
    soon = int(time.time()) + 3
    short = mint({"label": f"short-{uid}", "permissions": [{"namespace": ns, "scopes": ["write"]}], "expires_at": soon})
    assert short["expires_at"] == soon
    h = http(short["key"])
    assert h.post("/v1/memory/store", json={"agent_id": ns, "content": "before expiry"}).status_code == 200
    deadline = time.monotonic() + 30
    while h.post("/v1/memory/recall", json={"agent_id": ns, "query": "expiry"}).status_code == 200:
        assert time.monotonic() < deadline, "the key never expired"
        time.sleep(0.5)
    # A fresh connection: the node may close one on which it refused a request without reading
    # its body, and requests does not retry a POST on a closed pooled connection.
    r = http(short["key"]).post("/v1/memory/store", json={"agent_id": ns, "content": "after expiry"})
    assert r.status_code == 401 and r.json()["code"] == "API_KEY_EXPIRED"
    contents = [m["content"] for m in admin.post("/v1/memories/recall/batch",
                                                 json={"agent_id": ns, "filter": {}}).json()["memories"]]
    assert "after expiry" not in contents
    assert admin.get(f"/admin/keys/{short['key_id']}").json()["active"] is False


def test_keys_limited_to_agents_and_actions(mint, http, uid):
    """seed 004_b1c39ad399d3255f.txt:14: limit each key to specific agents (namespaces, or a
    prefix `agent-*`) or actions (scope)."""
    k = mint({"label": f"lim-{uid}", "permissions": [{"namespace": f"agent-{uid}-*", "scopes": ["read"]}]})
    h = http(k["key"])
    assert h.post("/v1/memory/recall", json={"agent_id": f"agent-{uid}-1", "query": "x"}).status_code == 200
    assert h.post("/v1/memory/store", json={"agent_id": f"agent-{uid}-1", "content": "x"}).status_code == 403
    assert h.post("/v1/memory/recall", json={"agent_id": f"other-{uid}", "query": "x"}).status_code == 403


def test_session_isolation(admin, mint, http, uid):
    """seed 004_b1c39ad399d3255f.txt:13: one user's conversation cannot be read or modified with
    another user's key."""
    a, b = f"sess-a-{uid}", f"sess-b-{uid}"
    ka = mint({"label": "a", "permissions": [{"namespace": a, "scopes": ["write"]}]})["key"]
    kb = mint({"label": "b", "permissions": [{"namespace": b, "scopes": ["write"]}]})["key"]
    sid = http(ka).post("/v1/sessions/start", json={"agent_id": a}).json()["session"]["id"]
    hb = http(kb)
    assert hb.get(f"/v1/sessions/{sid}").status_code in (403, 404)
    assert hb.post(f"/v1/sessions/{sid}/end", json={}).status_code in (403, 404)
    assert "ended_at" not in admin.get(f"/v1/sessions/{sid}").json(), "the session was not ended"


def test_tenant_isolation_at_state_level(mint, http, uid):
    """seed 004_b1c39ad399d3255f.txt:11 and :26-31: memory is stored by tenant (namespace); a
    missing tenant filter cannot return another tenant's data, because each request is confined
    to the namespaces of its key."""
    t = f"state-{uid}"
    k = mint({"label": "t", "permissions": [{"namespace": t, "scopes": ["write"]}]})["key"]
    h = http(k)
    assert h.post("/v1/memory/store", json={"agent_id": t, "content": "tenant data"}).status_code == 200
    # Naming no namespace at all is not "every namespace": it is refused.
    r = h.post("/v1/memory/recall", json={"query": "tenant data"})
    assert r.status_code == 400
    r = h.get("/v1/agents")
    assert r.status_code == 200 and {a["agent_id"] for a in r.json()} <= {t}
