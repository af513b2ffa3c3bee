"""Seed 002_beb034b3af00d10c.txt (the Namespace Isolation table and the Security page), example
by example: scopes, key lifecycle, namespace isolation, admin namespaces, encryption rotation,
field limits, input screening, security headers, CORS and the 429 body.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import ROOT_KEY, Http, LociNode, names
from lociproc import loci_bin

SEED = "002_beb034b3af00d10c.txt"


# --------------------------------------------------------------------------- scope hierarchy


@pytest.fixture(scope="module")
def scoped(admin):
    """One global key per scope (seed 002_beb034b3af00d10c.txt:98-104)."""
    out = {}
    for s in ("read", "write", "admin", "super_admin"):
        r = admin.post("/admin/keys", json={"name": f"scope-{s}", "scope": s})
        assert r.status_code == 201, r.text
        out[s] = r.json()["key"]
    return out


def test_scope_read(scoped, http, admin, uid):
    """seed 002_beb034b3af00d10c.txt:101: read = recall memories, get namespace info; no writes."""
    ns = f"scope-r-{uid}"
    admin.post("/v1/memory/store", json={"agent_id": ns, "content": "readable fact"})
    r = http(scoped["read"])
    assert r.post("/v1/memory/recall", json={"agent_id": ns, "query": "fact"}).status_code == 200
    assert r.get(f"/v1/namespaces/{ns}").status_code == 200
    w = r.post("/v1/memory/store", json={"agent_id": ns, "content": "x"})
    assert w.status_code == 403 and w.json()["code"] == "INSUFFICIENT_SCOPE"
    assert admin.get(f"/v1/namespaces/{ns}").json()["memory_count"] == 1


def test_scope_write(scoped, http, admin, uid):
    """seed 002_beb034b3af00d10c.txt:102: write = store/forget memories (includes read); no
    namespace management or policy config."""
    ns = f"scope-w-{uid}"
    w = http(scoped["write"])
    r = w.post("/v1/memory/store", json={"agent_id": ns, "content": "written"})
    assert r.status_code == 200
    mid = r.json()["memory"]["id"]
    assert w.post("/v1/memory/recall", json={"agent_id": ns, "query": "written"}).status_code == 200
    assert w.post("/v1/memory/forget", json={"agent_id": ns, "memory_ids": [mid]}).json()["deleted_count"] == 1
    p = w.put(f"/v1/namespaces/{ns}/memory_policy", json={"retention_days": 1})
    assert p.status_code == 403
    assert "retention_days" not in admin.get(f"/v1/namespaces/{ns}/memory_policy").json()
    assert w.delete(f"/v1/namespaces/{ns}").status_code == 403
    assert admin.get(f"/v1/namespaces/{ns}").status_code == 200


def test_scope_admin(scoped, http, admin, uid):
    """seed 002_beb034b3af00d10c.txt:103: admin = namespace management and policy config
    (includes write); not encryption rotation, and never a key above itself."""
    ns = f"scope-a-{uid}"
    a = http(scoped["admin"])
    assert a.post("/admin/namespaces", json={"name": ns}).status_code == 201
    assert a.put(f"/v1/namespaces/{ns}/memory_policy", json={"retention_days": 30}).status_code == 200
    assert a.post("/v1/memory/store", json={"agent_id": ns, "content": "x"}).status_code == 200
    r = a.post("/admin/encryption/rotate", json={})
    assert r.status_code == 403
    r = a.post("/admin/keys", json={"name": "escalate", "scope": "super_admin"})
    assert r.status_code == 403
    assert a.delete(f"/v1/namespaces/{ns}").status_code == 200


def test_scope_super_admin_manages_keys(scoped, http):
    """seed 002_beb034b3af00d10c.txt:104: super_admin = key management (includes admin)."""
    s = http(scoped["super_admin"])
    r = s.post("/admin/keys", json={"name": "made-by-super", "scope": "super_admin"})
    assert r.status_code == 201, r.text
    assert s.delete(f"/admin/keys/{r.json()['key_id']}").status_code == 200
    # A write key manages no keys at all.
    assert http(scoped["write"]).post("/admin/keys", json={"name": "x", "scope": "read"}).status_code == 403


# --------------------------------------------------------------------------- key lifecycle


def test_key_lifecycle(admin, http, uid):
    """seed 002_beb034b3af00d10c.txt:108-137: create a read key with expires_in_days 90, a key
    restricted to a namespace, list, usage, revoke. The seed shows `expires_at` as an ISO string
    (:118); the published clients decode Unix seconds, which is what Loci answers."""
    r = admin.post("/admin/keys", json={"name": "query-service", "scope": "read", "expires_in_days": 90})
    assert r.status_code == 201, r.text
    k = r.json()
    assert k["key"].startswith("dk_") and k["name"] == "query-service" and k["scope"] == "read"
    assert abs(k["expires_at"] - (int(time.time()) + 90 * 86400)) < 120

    r = admin.post("/admin/keys", json={"name": "tenant-a", "scope": "write", "namespace": f"tenant-a-{uid}",
                                        "expires_in_days": 90})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["namespaces"] == [f"tenant-a-{uid}"] and t["scope"] == "write"
    tk = http(t["key"])
    assert tk.post("/v1/memory/store", json={"agent_id": f"tenant-a-{uid}", "content": "ok"}).status_code == 200
    assert tk.post("/v1/memory/store", json={"agent_id": f"tenant-b-{uid}", "content": "no"}).status_code == 403

    listed = admin.get("/admin/keys").json()
    assert {k["key_id"], t["key_id"]} <= {x["key_id"] for x in listed["keys"]}
    assert all("key" not in x for x in listed["keys"]), "secrets are never listed"

    usage = admin.get(f"/admin/keys/{t['key_id']}/usage")
    assert usage.status_code == 200 and usage.json()["total_requests"] >= 2

    assert admin.delete(f"/admin/keys/{t['key_id']}").status_code == 200
    r = tk.post("/v1/memory/recall", json={"agent_id": f"tenant-a-{uid}", "query": "ok"})
    assert r.status_code == 401


def test_rotate_application_key(admin, http, uid):
    """seed 002_beb034b3af00d10c.txt:137 and :248: rotate every 90 days: POST
    /admin/keys/{id}/rotate issues a new secret with the same name, scope and namespaces."""
    k = admin.post("/admin/keys", json={"name": f"rot-{uid}", "scope": "write", "namespace": f"rot-{uid}",
                                        "expires_in_days": 90}).json()
    r = admin.post(f"/admin/keys/{k['key_id']}/rotate", json={})
    assert r.status_code == 200, r.text
    new = r.json()
    assert http(k["key"]).post("/v1/memory/recall", json={"agent_id": f"rot-{uid}", "query": "x"}).status_code == 401
    assert http(new["new_key"]).post("/v1/memory/recall", json={"agent_id": f"rot-{uid}", "query": "x"}).status_code == 200
    info = admin.get(f"/admin/keys/{new['key_id']}").json()
    assert info["namespaces"] == [f"rot-{uid}"] and info["scope"] == "write"


def test_key_name_forms_refused_cleanly(admin):
    """seed 002_beb034b3af00d10c.txt:36: API key name 128 characters at most."""
    assert admin.post("/admin/keys", json={"name": "k" * 128, "scope": "read"}).status_code == 201
    r = admin.post("/admin/keys", json={"name": "k" * 129, "scope": "read"})
    assert r.status_code == 400


# --------------------------------------------------------------------------- namespace isolation


def test_namespace_scoped_key_cannot_discover_others(admin, http, uid):
    """seed 002_beb034b3af00d10c.txt:141-145: a key scoped to tenant-a cannot read, write or even
    discover other namespaces: the list shows only its own, and an existing and a missing
    namespace answer the same 403."""
    mine, other = f"tenant-a-{uid}", f"tenant-b-{uid}"
    admin.post("/v1/memory/store", json={"agent_id": other, "content": "tenant b secret"})
    k = admin.post("/admin/keys", json={"name": "tenant-a-app", "scope": "write", "namespace": mine}).json()
    t = http(k["key"])
    t.post("/v1/memory/store", json={"agent_id": mine, "content": "tenant a fact"})
    assert names(t.get("/v1/namespaces")) == [mine]
    exists, missing = t.get(f"/v1/namespaces/{other}"), t.get(f"/v1/namespaces/nothing-{uid}")
    assert exists.status_code == missing.status_code == 403
    assert exists.json()["code"] == missing.json()["code"]
    r = t.post("/v1/memory/recall", json={"agent_id": other, "query": "secret"})
    assert r.status_code == 403 and "tenant b secret" not in r.text


def test_policy_isolation(admin, uid):
    """seed 002_beb034b3af00d10c.txt:147: decay and retention policies are per namespace."""
    a, b = f"piso-a-{uid}", f"piso-b-{uid}"
    for n in (a, b):
        admin.post("/v1/namespaces", json={"name": n})
    assert admin.put(f"/v1/namespaces/{a}/memory_policy", json={"retention_days": 10,
                                                                "working_decay": "linear"}).status_code == 200
    pb = admin.get(f"/v1/namespaces/{b}/memory_policy").json()
    assert "retention_days" not in pb and pb["working_decay"] == "exponential"


def test_admin_namespaces_create(admin, uid):
    """seed 002_beb034b3af00d10c.txt:148-152: POST /admin/namespaces {name, config: {vector_index:
    hnsw, encryption: true}} creates an (always encrypted) namespace."""
    ns = f"tenant-a-adm-{uid}"
    r = admin.post("/admin/namespaces", json={"name": ns, "config": {"vector_index": "hnsw", "encryption": True}})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["namespace"] == ns and v["index_type"] == "hnsw" and v["encryption"]["enabled"] is True
    assert ns in names(admin.get("/v1/namespaces"))
    # The same again: 200, not created twice.
    again = admin.post("/admin/namespaces", json={"name": ns, "config": {"vector_index": "hnsw", "encryption": True}})
    assert again.status_code == 200 and again.json()["created"] is False


def test_admin_namespaces_refuses_what_it_cannot_honour(admin, uid):
    """seed 002_beb034b3af00d10c.txt:152: config values are validated: `encryption: false` cannot
    be honoured (every namespace is encrypted) and an unknown index or config field is refused;
    nothing is created."""
    for cfg in ({"vector_index": "hnsw", "encryption": False}, {"vector_index": "ivf"}, {"sharding": 4}):
        ns = f"bad-cfg-{uid}"
        r = admin.post("/admin/namespaces", json={"name": ns, "config": cfg})
        assert r.status_code == 400, (cfg, r.text)
        assert ns not in names(admin.get("/v1/namespaces"))
    r = admin.post("/admin/namespaces", json={"name": f"bad-cfg-{uid}", "config": {"encryption": False}})
    assert "encrypted" in r.json()["error"]


def test_key_scoped_to_admin_created_namespace(admin, http, uid):
    """seed 002_beb034b3af00d10c.txt:154-158: a key scoped to that namespace (no expiry)."""
    ns = f"tenant-app-{uid}"
    admin.post("/admin/namespaces", json={"name": ns, "config": {"vector_index": "hnsw", "encryption": True}})
    r = admin.post("/admin/keys", json={"name": "tenant-a-app", "scope": "write", "namespace": ns})
    assert r.status_code == 201 and r.json()["expires_at"] is None
    t = http(r.json()["key"])
    assert t.post("/v1/memory/store", json={"namespace": ns, "content": "app memory"}).status_code == 200
    assert t.post("/admin/namespaces", json={"name": f"{ns}-2"}).status_code == 403


# --------------------------------------------------------------------------- field limits


def test_field_limits(admin, uid):
    """seed 002_beb034b3af00d10c.txt:28-37: 50 tags, 256-character tags, 256-character agent ids,
    128-character alphanumeric+hyphen namespace names, 32 levels of JSON nesting; beyond each
    limit the write is 400 and nothing is stored."""
    ns = f"limits-{uid}"
    ok = admin.post("/v1/memory/store", json={"agent_id": ns, "content": "x", "tags": [f"t{i}" for i in range(50)]})
    assert ok.status_code == 200
    bad = [
        {"agent_id": ns, "content": "x", "tags": [f"t{i}" for i in range(51)]},
        {"agent_id": ns, "content": "x", "tags": ["t" * 257]},
        {"agent_id": "a" * 257, "content": "x"},
    ]
    nested: dict = {}
    cur = nested
    for _ in range(33):
        cur["k"] = {}
        cur = cur["k"]
    bad.append({"agent_id": ns, "content": "x", "metadata": nested})
    for body in bad:
        r = admin.post("/v1/memory/store", json=body)
        assert r.status_code == 400, (list(body), r.text)
    assert admin.get(f"/v1/namespaces/{ns}").json()["memory_count"] == 1
    assert admin.post("/v1/namespaces", json={"name": "n" * 128}).status_code == 201
    for name in ("n" * 129, "bad_name!", "../../etc/passwd"):
        assert admin.post("/v1/namespaces", json={"name": name}).status_code == 400, name


def test_body_size_limit(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:31: memory content is bounded by the body limit
    (DAKERA_MAX_BODY_SIZE is accepted as the name of LOCI_MAX_BODY_SIZE)."""
    n = LociNode(f"seed002-body-{uid}", base_dir, env={"DAKERA_MAX_BODY_SIZE": "4096"}).start()
    try:
        r = Http(n.url, ROOT_KEY).post("/v1/memory/store", json={"agent_id": "big", "content": "x" * 5000})
        assert r.status_code == 413
        assert Http(n.url, ROOT_KEY).get("/v1/namespaces").json()["namespaces"] == []
    finally:
        n.stop()


def test_injection_screening(admin, uid):
    """seed 002_beb034b3af00d10c.txt:15-26: the seven injection families. Loci stores content
    encrypted and never executes or renders it, so screening is a per-namespace policy
    (`content_screening`: off, flag, block); with `block` each family is refused (422) and nothing
    is stored; injection in names is refused by the name grammar whatever the policy."""
    ns = f"screen-{uid}"
    admin.post("/v1/namespaces", json={"name": ns})
    assert admin.put(f"/v1/namespaces/{ns}/memory_policy", json={"content_screening": "block"}).status_code == 200
    payloads = ["x'; DROP TABLE users; --", '{"$ne": null, "$gt": ""}', "run $(rm -rf /)", "../../etc/passwd",
                "<script>alert(1)</script>", "fetch http://169.254.169.254/latest/meta-data",
                "a\r\nSet-Cookie: b=c"]
    for p in payloads:
        r = admin.post("/v1/memory/store", json={"namespace": ns, "content": p})
        assert r.status_code == 422, (p, r.text)
    assert admin.get(f"/v1/namespaces/{ns}").json()["memory_count"] == 0
    assert admin.post("/v1/memory/store", json={"agent_id": "a/../../b", "content": "x"}).status_code == 400


# --------------------------------------------------------------------------- encryption


def _start(base_dir, name, key):
    return LociNode(name, base_dir, env={"LOCI_ENCRYPTION_KEY": key}).start()


def test_encryption_rotation_with_old_key(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:82-94: a passphrase master key; POST
    /admin/encryption/rotate {old_key, new_key}. A wrong old_key is 403 and changes nothing (the
    node still restarts with the current key); the right one re-wraps every namespace key at
    once; restarted with the new key the node reads everything, and the old key no longer starts
    it."""
    name = f"seed002-rotate-{uid}"
    n = _start(base_dir, name, "current-passphrase")
    try:
        h = Http(n.url, ROOT_KEY)
        mid = h.post("/v1/memory/store", json={"agent_id": "vault", "content": "sealed before rotation"}).json()["memory"]["id"]
        r = h.post("/admin/encryption/rotate", json={"old_key": "not-the-passphrase", "new_key": "new-passphrase"})
        assert r.status_code == 403 and r.json()["code"] == "ENCRYPTION_KEY_MISMATCH"
    finally:
        n.stop()
    n = _start(base_dir, name, "current-passphrase")  # nothing changed: the old key still opens it
    try:
        h = Http(n.url, ROOT_KEY)
        r = h.post("/admin/encryption/rotate", json={"old_key": "current-passphrase", "new_key": "new-passphrase"})
        assert r.status_code == 200, r.text
        assert r.json()["rotated"] >= 1 and "vault" in r.json()["namespaces"]
    finally:
        n.stop()
    n = _start(base_dir, name, "new-passphrase")
    try:
        got = Http(n.url, ROOT_KEY).get(f"/v1/memory/get/{mid}?agent_id=vault")
        assert got.status_code == 200 and got.json()["content"] == "sealed before rotation"
    finally:
        n.stop()
    with pytest.raises(RuntimeError, match="does not match"):
        _start(base_dir, name, "current-passphrase")


def test_encryption_key_forms(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:84-88: a passphrase of at least 8 characters or 64 hex
    characters; a shorter passphrase refuses to start."""
    n = _start(base_dir, f"seed002-hex-{uid}", "ab" * 32)
    n.stop()
    with pytest.raises(RuntimeError):
        _start(base_dir, f"seed002-short-{uid}", "short")


# --------------------------------------------------------------------------- deployment facts


def test_default_ports():
    """seed 002_beb034b3af00d10c.txt:223-226: REST 3300, gRPC 50051, gossip 7946 by default."""
    out = subprocess.run([loci_bin(), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    for port in ("127.0.0.1:3300", "127.0.0.1:50051", "127.0.0.1:7946"):
        assert port in out


def test_rate_limit_env_names_accepted(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:162-168: RATE_LIMIT_RPS / RATE_LIMIT_BURST set the per-key
    budget; a limited client gets 429 with Retry-After."""
    n = LociNode(f"seed002-rl-{uid}", base_dir, env={
        "RATE_LIMIT_RPS": "0.01", "RATE_LIMIT_BURST": "2",
        "LOCI_RATE_LIMIT_RPS": None, "LOCI_RATE_LIMIT_BURST": None}).start()
    try:
        h = Http(n.url, ROOT_KEY)
        codes = [h.get("/v1/namespaces").status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and 429 in codes[2:]
        r = h.get("/v1/namespaces")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        n.stop()


def test_dakera_variable_names(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:8-9, :85 and :111: DAKERA_ENCRYPTION_KEY and
    DAKERA_ROOT_API_KEY configure the node as their LOCI_ names do."""
    n = LociNode(f"seed002-alias-{uid}", base_dir, env={
        "LOCI_ENCRYPTION_KEY": None, "LOCI_ROOT_API_KEY": None,
        "DAKERA_ENCRYPTION_KEY": "your-passphrase-min-8-chars", "DAKERA_ROOT_API_KEY": "dakera-root-0123456789"}).start()
    try:
        assert Http(n.url, "dakera-root-0123456789").get("/v1/namespaces").status_code == 200
        assert Http(n.url, ROOT_KEY).get("/v1/namespaces").status_code == 401
    finally:
        n.stop()
    # The data was sealed under that passphrase: the same node does not start with another.
    with pytest.raises(RuntimeError, match="does not match"):
        LociNode(f"seed002-alias-{uid}", base_dir, env={
            "LOCI_ENCRYPTION_KEY": None, "LOCI_ROOT_API_KEY": None,
            "DAKERA_ENCRYPTION_KEY": "another-passphrase", "DAKERA_ROOT_API_KEY": "dakera-root-0123456789"}).start()


def test_rate_limited_body(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:170-175: the 429 body is
    {"error": "rate_limited", "message": "Too many requests. Retry after 1 second."}."""
    n = LociNode(f"seed002-429-{uid}", base_dir, env={"LOCI_RATE_LIMIT_RPS": "0.01", "LOCI_RATE_LIMIT_BURST": "1"}).start()
    try:
        h = Http(n.url, ROOT_KEY)
        codes = [h.get("/v1/namespaces") for _ in range(3)]
        limited = [r for r in codes if r.status_code == 429][0]
        assert limited.headers["retry-after"]
        body = limited.json()
        assert body["error"] == "rate_limited" and body["message"].startswith("Too many requests.")
    finally:
        n.stop()


def test_security_headers(admin):
    """seed 002_beb034b3af00d10c.txt:64-74: HSTS, X-Frame-Options DENY, nosniff,
    X-XSS-Protection, Referrer-Policy, CSP default-src 'none'; frame-ancestors 'none'."""
    h = admin.get("/v1/namespaces").headers
    assert h["strict-transport-security"].startswith("max-age=31536000")
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-xss-protection"] == "1; mode=block"
    assert h["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "default-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in h["content-security-policy"]


def test_cors_origins(base_dir, uid):
    """seed 002_beb034b3af00d10c.txt:39-50: DAKERA_CORS_ORIGINS lists the allowed origins,
    DAKERA_CORS_CREDENTIALS=true allows credentials; another origin gets no CORS grant."""
    n = LociNode(f"seed002-cors-{uid}", base_dir, env={
        "DAKERA_CORS_ORIGINS": "https://app.example.com,https://dashboard.example.com",
        "DAKERA_CORS_CREDENTIALS": "true"}).start()
    try:
        h = Http(n.url, ROOT_KEY)
        ok = h.request("OPTIONS", "/v1/namespaces", headers={"Origin": "https://app.example.com",
                                                             "Access-Control-Request-Method": "GET"})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example.com"
        assert ok.headers.get("access-control-allow-credentials") == "true"
        no = h.request("OPTIONS", "/v1/namespaces", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in no.headers
    finally:
        n.stop()
