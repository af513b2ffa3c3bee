"""Seed 003_758e344b40df4b99.txt ("Multi-Tenancy": tenant → users → conversations, per-tenant
settings), mapped onto Loci as docs/multi-tenancy.md describes: a tenant is a namespace (or a
namespace prefix), a user is an `agent_id` in it, a conversation is a session of that agent, and
the tenant's settings are the namespace's memory policy.
"""

from __future__ import annotations

import time

import pytest
from conftest import ROOT_KEY, Http, LociNode

SEED = "003_758e344b40df4b99.txt"


@pytest.fixture
def tenant(admin, uid):
    ns = f"tenant-{uid}"
    assert admin.post("/v1/namespaces", json={"name": ns, "description": "Tenant (developer)"}).status_code == 201
    return ns


def store(h, ns, user, content):
    return h.post("/v1/memory/store", json={"namespace": ns, "agent_id": user, "content": content})


def start(h, ns, user):
    return h.post("/v1/sessions/start", json={"namespace": ns, "agent_id": user})


def test_tenant_settings_take_the_seed_names(admin, tenant):
    """seed 003_758e344b40df4b99.txt:10-14 and :67-76: retention_days, max_users,
    max_conversations_per_user are set on the tenant's namespace policy (max_users and
    max_conversations_per_user are Loci's max_agents and max_sessions_per_agent)."""
    r = admin.put(f"/v1/namespaces/{tenant}/memory_policy",
                  json={"retention_days": 30, "max_users": 1000, "max_conversations_per_user": 100})
    assert r.status_code == 200, r.text
    p = admin.get(f"/v1/namespaces/{tenant}/memory_policy").json()
    assert (p["retention_days"], p["max_agents"], p["max_sessions_per_agent"]) == (30, 1000, 100)
    for bad in ({"max_users": 0}, {"max_conversations_per_user": 0}, {"max_users": -1}):
        assert admin.put(f"/v1/namespaces/{tenant}/memory_policy", json=bad).status_code == 400
    assert admin.get(f"/v1/namespaces/{tenant}/memory_policy").json()["max_agents"] == 1000


def test_max_users_caps_agents_per_tenant(admin, tenant):
    """seed 003_758e344b40df4b99.txt:72: max_users — a memory or a conversation for one user more
    than allowed is refused (413 QUOTA_EXCEEDED) and nothing is written; existing users go on."""
    admin.put(f"/v1/namespaces/{tenant}/memory_policy", json={"max_users": 2})
    assert store(admin, tenant, "user-a", "A's first memory").status_code == 200
    assert start(admin, tenant, "user-b").status_code in (200, 201)
    before = admin.get(f"/v1/namespaces/{tenant}").json()
    for r in (store(admin, tenant, "user-c", "C's memory"), start(admin, tenant, "user-c")):
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "QUOTA_EXCEEDED" and "max_agents" in r.json()["error"]
    after = admin.get(f"/v1/namespaces/{tenant}").json()
    assert (after["memory_count"], after["session_count"]) == (before["memory_count"], before["session_count"])
    agents = {a["agent_id"] for a in admin.get("/v1/agents").json() if a["agent_id"].startswith("user-")}
    assert "user-c" not in agents
    assert store(admin, tenant, "user-b", "B's memory").status_code == 200
    # A batch that would bring in a new user is refused whole.
    r = admin.post("/v1/memories/store/batch", json={"namespace": tenant, "memories": [
        {"agent_id": "user-a", "content": "fine"}, {"agent_id": "user-d", "content": "too many"}]})
    assert r.status_code == 413
    assert admin.get(f"/v1/namespaces/{tenant}").json()["memory_count"] == before["memory_count"] + 1


def test_max_conversations_per_user(admin, tenant):
    """seed 003_758e344b40df4b99.txt:73: max_conversations_per_user — a user's sessions beyond the
    limit are refused (413), other users are not affected, nothing is written."""
    admin.put(f"/v1/namespaces/{tenant}/memory_policy", json={"max_conversations_per_user": 2})
    ids = [start(admin, tenant, "user-a").json()["session"]["id"] for _ in range(2)]
    assert len(set(ids)) == 2
    r = start(admin, tenant, "user-a")
    assert r.status_code == 413 and "max_sessions_per_agent" in r.json()["error"]
    assert admin.get(f"/v1/namespaces/{tenant}").json()["session_count"] == 2
    assert start(admin, tenant, "user-b").status_code in (200, 201)
    # Starting an existing conversation again is not a new one.
    r = admin.post("/v1/sessions/start", json={"namespace": tenant, "agent_id": "user-a", "id": ids[0]})
    assert r.status_code in (200, 201), r.text


def test_retention_deletes_old_memories(admin, tenant):
    """seed 003_758e344b40df4b99.txt:71: retention_days — how long memory is kept; the background
    sweeper deletes older memories (shown with the finer retention_seconds, same sweeper)."""
    assert store(admin, tenant, "user-a", "short-lived interaction").status_code == 200
    assert admin.put(f"/v1/namespaces/{tenant}/memory_policy", json={"retention_seconds": 1}).status_code == 200
    deadline = time.monotonic() + 30
    while admin.get(f"/v1/namespaces/{tenant}").json()["memory_count"] != 0:
        assert time.monotonic() < deadline, "retention did not delete the memory"
        time.sleep(0.2)


def test_tenant_key_scopes(admin, http, tenant, mint):
    """seed 003_758e344b40df4b99.txt:7-9, :25-26 and :77-97: a default key with all scopes and
    additional keys with limited ones; the seed's scope names (memory:read, …, tenant:admin) are
    accepted and map onto read, write and admin."""
    full = mint({"label": "default", "permissions": [{"namespace": tenant, "scopes": [
        "memory:read", "memory:write", "users:read", "users:write", "conversations:read",
        "conversations:write", "tenant:read", "tenant:admin"]}]})
    ro = mint({"label": "analytics", "permissions": [{"namespace": tenant, "scopes": [
        "memory:read", "users:read", "conversations:read", "tenant:read"]}]})
    agent = mint({"label": "agent", "permissions": [{"namespace": tenant, "scopes": [
        "memory:read", "memory:write", "conversations:read", "conversations:write"]}]})
    assert [p["scopes"] for p in full["permissions"]] == [["admin"]]
    assert [p["scopes"] for p in ro["permissions"]] == [["read"]]
    assert [p["scopes"] for p in agent["permissions"]] == [["write"]]
    a = http(agent["key"])
    assert store(a, tenant, "user-a", "interaction").status_code == 200
    assert start(a, tenant, "user-a").status_code in (200, 201)
    assert a.put(f"/v1/namespaces/{tenant}/memory_policy", json={"max_users": 5}).status_code == 403
    assert http(full["key"]).put(f"/v1/namespaces/{tenant}/memory_policy", json={"max_users": 5}).status_code == 200
    r = http(ro["key"])
    assert r.post("/v1/memory/recall", json={"namespace": tenant, "query": "interaction"}).status_code == 200
    assert store(r, tenant, "user-a", "x").status_code == 403
    bad = admin.post("/v1/api-keys", json={"label": "x", "permissions": [{"namespace": tenant, "scopes": ["memory:delete-all"]}]})
    assert bad.status_code == 400


def test_tenant_isolation_of_users_and_conversations(admin, http, mint, uid):
    """seed 003_758e344b40df4b99.txt:23-32 and :34-51: each tenant's data is isolated: a tenant
    key cannot see another tenant's users, conversations or memories."""
    t1, t2 = f"tenant-one-{uid}", f"tenant-two-{uid}"
    k1 = mint({"label": "t1", "permissions": [{"namespace": t1, "scopes": ["write"]}]})["key"]
    k2 = mint({"label": "t2", "permissions": [{"namespace": t2, "scopes": ["write"]}]})["key"]
    s = start(http(k1), t1, "user-a").json()["session"]["id"]
    store(http(k1), t1, "user-a", "tenant one's conversation")
    h2 = http(k2)
    assert h2.get(f"/v1/sessions/{s}").status_code in (403, 404)
    assert h2.get(f"/v1/agents/{t1}/sessions").status_code == 403
    assert h2.post("/v1/memory/recall", json={"namespace": t1, "query": "conversation"}).status_code == 403


def test_integration_flow(admin, http, mint, tenant):
    """seed 003_758e344b40df4b99.txt:97-122: create users on demand (first write for an agent_id;
    the seed's external_ref is the agent_id), start a conversation per chat, ingest every
    interaction into it, query context before answering."""
    key = mint({"label": "agent", "permissions": [{"namespace": tenant, "scopes": ["write"]}]})["key"]
    h = http(key)
    user = "your-user-123"
    sid = start(h, tenant, user).json()["session"]["id"]
    for turn in ("User asked about the pro plan pricing", "Agent explained the pro plan costs 20 euros"):
        r = h.post("/v1/memory/store", json={"namespace": tenant, "agent_id": user, "content": turn, "session_id": sid})
        assert r.status_code == 200, r.text
    ctx = h.post("/v1/memory/recall", json={"namespace": tenant, "agent_id": user, "query": "pro plan pricing",
                                            "top_k": 5}).json()["memories"]
    assert len(ctx) == 2 and all(m["memory"]["agent_id"] == user for m in ctx)
    mems = h.get(f"/v1/sessions/{sid}/memories").json()
    assert len(mems["memories"] if isinstance(mems, dict) else mems) == 2
    users = [a for a in h.get("/v1/agents").json() if a["agent_id"] == user]
    assert users and users[0]["session_count"] == 1


@pytest.fixture(scope="module")
def hook_node(base_dir):
    """A node that lets webhooks reach this machine's loopback (where the test's receiver is)."""
    n = LociNode("seed003-webhooks", base_dir, env={"LOCI_WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/32",
                                                    "LOCI_WEBHOOK_RETRY_BASE_MS": "100"}).start()
    yield n
    n.stop()


def test_tenant_webhook_url(hook_node, uid):
    """seed 003_758e344b40df4b99.txt:14 and :76: webhook_url, "URL for event notifications" — set
    on the tenant's policy, the tenant's events are POSTed there, signed with the secret the PUT
    answered once; an internal address is refused."""
    import hashlib
    import hmac
    import http.server
    import json
    import threading

    got: list[tuple[dict, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        admin = Http(hook_node.url, ROOT_KEY)
        tenant = f"tenant-{uid}"
        assert admin.post("/v1/namespaces", json={"name": tenant}).status_code == 201
        r = admin.put(f"/v1/namespaces/{tenant}/memory_policy",
                      json={"webhook_url": "http://169.254.169.254/latest/meta-data/"})
        assert r.status_code == 400 and r.json()["code"] == "WEBHOOK_TARGET_REFUSED", r.text
        url = f"http://127.0.0.1:{srv.server_port}/raven-events"
        r = admin.put(f"/v1/namespaces/{tenant}/memory_policy", json={"retention_days": 30, "webhook_url": url})
        assert r.status_code == 200, r.text
        secret = r.json()["webhook_secret"]
        assert admin.get(f"/v1/namespaces/{tenant}/memory_policy").json()["webhook_url"] == url
        assert store(admin, tenant, "user-a", "a memory").status_code == 200
        deadline = time.time() + 10
        while time.time() < deadline and not any(json.loads(b)["event_type"] == "stored" for _, b in got):
            time.sleep(0.1)
        stored = [(h, b) for h, b in got if json.loads(b)["event_type"] == "stored"]
        assert stored, got
        h, body = stored[0]
        want = "v1=" + hmac.new(secret.encode(), f"{h['x-loci-timestamp']}.".encode() + body,
                                hashlib.sha256).hexdigest()
        assert hmac.compare_digest(want, h["x-loci-signature"])
        event = json.loads(body)
        assert event["namespace"] == tenant and event["data"]["agent_id"] == "user-a"
        assert "a memory" not in body.decode()
    finally:
        srv.shutdown()
