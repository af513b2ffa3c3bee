"""Seed 000_397dab186981e7e3.txt ("Memory Permissions"), example by example.

The curl lines are replayed as written (plain HTTP, the root key standing for `dk-admin-key`);
the Python lines through the published SDK (dakera 0.14.1). The TypeScript, Rust and Go lines
call the same routes as the Python ones; they are replayed over HTTP with the same bodies.
Where the seed's Python cannot run on the published SDK (it calls `.get` on a `RecallResponse`,
passes a dict to `batch_forget`), the test says so and replays the request the seed means.
"""

from __future__ import annotations

import pytest

from conftest import ROOT_KEY, client_for, names

from dakera.exceptions import AuthenticationError, AuthorizationError, ErrorCode

SEED = "000_397dab186981e7e3.txt"


@pytest.fixture(scope="module")
def world(admin, node):
    """Seed 000_397dab186981e7e3.txt:56-83: the admin provisioning block, as written."""
    out = {}
    r = admin.post("/v1/namespaces", json={"name": "shared-org", "description": "Organization-wide knowledge base"})
    assert r.status_code == 201, r.text
    out["shared-org"] = r.json()
    r = admin.post("/v1/namespaces", json={"name": "team-engineering", "description": "Engineering team shared memory"})
    assert r.status_code == 201, r.text
    r = admin.post("/v1/namespaces", json={"name": "user-alice-chen"})
    assert r.status_code == 201, r.text
    out["user-alice-chen"] = r.json()
    r = admin.post("/v1/api-keys", json={
        "label": "alice-chen-key",
        "permissions": [
            {"namespace": "user-alice-chen", "scopes": ["read", "write", "delete"]},
            {"namespace": "team-engineering", "scopes": ["read", "write"]},
            {"namespace": "shared-org", "scopes": ["read"]},
        ],
    })
    assert r.status_code == 201, r.text
    out["alice_key"] = r.json()
    # The organisation's shared knowledge, written by the admin (the seed's moderators/admins).
    for content in ("Engineering standards documentation: every service exposes /health",
                    "Performance goals are reviewed each quarter by the platform team"):
        r = admin.post("/v1/memory/store", json={"agent_id": "shared-org", "content": content})
        assert r.status_code == 200, r.text
    return out


def test_create_namespace_with_description(world, admin):
    """seed 000_397dab186981e7e3.txt:56-59 (and :61-64): POST /v1/namespaces {name, description}
    creates the namespace with the node's default embedder; the description comes back on the
    create answer, GET /v1/namespaces/{ns} and the list."""
    created = world["shared-org"]
    assert created["created"] is True and created["namespace"] == "shared-org"
    assert created["description"] == "Organization-wide knowledge base"
    g = admin.get("/v1/namespaces/shared-org").json()
    assert g["description"] == "Organization-wide knowledge base"
    assert g["dimension"] == g["embedding"]["dimension"] == 384
    listed = admin.get("/v1/namespaces").json()
    assert {"shared-org", "team-engineering"} <= set(listed["namespaces"])
    assert listed["descriptions"]["team-engineering"] == "Engineering team shared memory"
    # Idempotent by name: the same request again answers 200, created false, nothing changes.
    r = admin.post("/v1/namespaces", json={"name": "shared-org", "description": "Organization-wide knowledge base"})
    assert r.status_code == 200 and r.json()["created"] is False


def test_create_namespace_with_name_only(world, admin):
    """seed 000_397dab186981e7e3.txt:67-70: POST /v1/namespaces {"name": "user-alice-chen"}
    (no dimension) creates it with the node's default embedder and dimension."""
    c = world["user-alice-chen"]
    assert c["created"] is True and c["dimension"] == 384 and c["kind"] == "data"
    assert admin.get("/v1/namespaces/user-alice-chen").json()["embedding"]["provider"] in ("hash", "builtin-minilm")


def test_scoped_key_for_alice(world, admin):
    """seed 000_397dab186981e7e3.txt:73-83: POST /v1/api-keys {label, permissions} mints one key
    with a scope per namespace ("delete" is part of write)."""
    k = world["alice_key"]
    assert k["key"].startswith("dk_") and k["label"] == "alice-chen-key"
    perms = {p["namespace"]: p["scopes"] for p in k["permissions"]}
    assert perms == {"user-alice-chen": ["write"], "team-engineering": ["write"], "shared-org": ["read"]}


def test_alice_stores_privately_and_is_blocked_elsewhere(world, http, admin):
    """seed 000_397dab186981e7e3.txt:86-96: Alice stores in her namespace (200); the same key
    writing agent user-bob-smith answers 403, and nothing is created for bob."""
    alice = http(world["alice_key"]["key"])
    r = alice.post("/v1/memory/store", json={
        "agent_id": "user-alice-chen", "content": "My private notes: negotiating salary increase", "importance": 0.85})
    assert r.status_code == 200, r.text
    assert r.json()["memory"]["importance"] == 0.85
    r = alice.post("/v1/memory/store", json={"agent_id": "user-bob-smith", "content": "Cross-tenant write attempt"})
    assert r.status_code == 403 and r.json()["code"] == "NAMESPACE_ACCESS_DENIED"
    assert "user-bob-smith" not in names(admin.get("/v1/namespaces"))


def test_sdk_user_memory_client(world, node):
    """seed 000_397dab186981e7e3.txt:151-212 and :250-254: UserMemoryClient through the SDK:
    store_memory(agent_id=…, content, importance, memory_type="semantic"), recall of the private,
    shared and team namespaces, build_agent_context from two recalls. The seed reads results with
    `result.get("memories", [])`; the published SDK returns a RecallResponse whose list is
    `result.memories` (`m.content`), which is what this replay reads."""
    client = client_for(node.url, world["alice_key"]["key"], retries=1)
    client.store_memory(agent_id="user-alice-chen",
                        content="My Q3 performance goal: improve API response time by 40%",
                        importance=0.88, memory_type="semantic")
    private = client.recall(agent_id="user-alice-chen", query="performance goals", top_k=5)
    assert any("improve API response time by 40%" in m.content for m in private.memories)
    assert all(m.memory_type for m in private.memories)
    shared = client.recall(agent_id="shared-org", query="performance goals", top_k=3)
    assert any("Performance goals are reviewed" in m.content for m in shared.memories)
    team = client.recall(agent_id="team-engineering", query="anything", top_k=5)
    assert team.memories == []
    parts = []
    if private.memories:
        parts.append("[Your private context]\n" + "\n".join(m.content for m in private.memories))
    if shared.memories:
        parts.append("[Organizational knowledge]\n" + "\n".join(m.content for m in shared.memories))
    context = "\n\n".join(parts)
    assert context.startswith("[Your private context]") and "[Organizational knowledge]" in context
    # Nothing of the salary note leaks into the shared answer.
    assert not any("salary" in m.content for m in shared.memories)
    client.close()


def test_read_only_namespace_refuses_writes(world, node, admin):
    """seed 000_397dab186981e7e3.txt:392-394 (and :441-447, Go): a store to shared-org with a
    key that only reads it is 403 (AuthorizationError), and nothing is stored."""
    before = admin.get("/v1/namespaces/shared-org").json()["memory_count"]
    client = client_for(node.url, world["alice_key"]["key"], retries=1)
    with pytest.raises(AuthorizationError):
        client.store_memory(agent_id="shared-org", content="Attempted write to a read-only namespace")
    assert admin.get("/v1/namespaces/shared-org").json()["memory_count"] == before
    client.close()


def test_recall_other_users_namespace_forbidden(world, node, admin):
    """seed 000_397dab186981e7e3.txt:396-398 and :518-521: alice recalling user-bob-smith, and bob
    recalling user-alice-chen, are 403."""
    admin.post("/v1/memory/store", json={"agent_id": "user-bob-smith", "content": "bob's own salary note"})
    r = admin.post("/v1/api-keys", json={"label": "bob-smith-key",
                                          "permissions": [{"namespace": "user-bob-smith", "scopes": ["read", "write"]}]})
    bob = client_for(node.url, r.json()["key"], retries=1)
    alice = client_for(node.url, world["alice_key"]["key"], retries=1)
    with pytest.raises(AuthorizationError) as e:
        alice.recall(agent_id="user-bob-smith", query="salary", top_k=5)
    assert e.value.code == ErrorCode.NAMESPACE_ACCESS_DENIED
    with pytest.raises(AuthorizationError):
        bob.recall(agent_id="user-alice-chen", query="salary", top_k=5)
    alice.close()
    bob.close()


def test_admin_sdk_lists_namespaces_and_reads_policy(world, root):
    """seed 000_397dab186981e7e3.txt:110, :121 (list_namespaces), :365-372 (Rust), :400-402 and
    :449-452 (get_memory_policy("shared-org")), :527-538 (method table)."""
    listed = {ns.name for ns in root.list_namespaces()}
    assert {"shared-org", "team-engineering", "user-alice-chen"} <= listed
    policy = root.get_memory_policy("shared-org")
    assert policy.working_ttl_seconds == 14400 and policy.semantic_decay == "logarithmic"


def test_scoped_key_lists_only_its_namespaces(world, node):
    """seed 000_397dab186981e7e3.txt:332-335 and :545: list_namespaces() with a user-scoped key
    returns only its authorized namespaces."""
    client = client_for(node.url, world["alice_key"]["key"], retries=1)
    assert {ns.name for ns in client.list_namespaces()} == {"user-alice-chen", "team-engineering", "shared-org"}
    client.close()


def test_implicit_namespace_on_first_store(root, admin, uid):
    """seed 000_397dab186981e7e3.txt:127-129: a namespace is created implicitly by the first store
    to a new agent_id."""
    agent = f"user-implicit-{uid}"
    assert agent not in names(admin.get("/v1/namespaces"))
    root.store_memory(agent_id=agent, content="first memory", importance=0.5, memory_type="semantic")
    listed = admin.get("/v1/namespaces").json()
    assert agent in listed["namespaces"] and listed["kinds"][agent] == "agent"


def test_onboard_user_permissions_with_moderator_duplicate(mint, http, uid):
    """seed 000_397dab186981e7e3.txt:132-143 (and :267-281, TypeScript buildPermissions): the
    permission list of a moderator names shared-org twice (read, then read+write); the key holds
    the wider grant once."""
    ns = f"user-mod-{uid}"
    k = mint({"label": f"{uid}-key", "permissions": [
        {"namespace": ns, "scopes": ["read", "write", "delete"]},
        {"namespace": "shared-org", "scopes": ["read"]},
        {"namespace": "shared-docs", "scopes": ["read"]},
        {"namespace": f"team-{uid}", "scopes": ["read", "write"]},
        {"namespace": "shared-org", "scopes": ["read", "write"]},
    ]})
    perms = {p["namespace"]: p["scopes"] for p in k["permissions"]}
    assert perms["shared-org"] == ["write"] and len(k["permissions"]) == 4
    r = http(k["key"]).post("/v1/memory/store", json={"agent_id": "shared-org", "content": "moderated note"})
    assert r.status_code == 200, r.text


def test_rotate_key_on_role_change(mint, http, admin, uid):
    """seed 000_397dab186981e7e3.txt:45-46, :235-247 and :350-358: revoke the old key, issue a
    new one with the new permissions; the old secret is refused from then on (401)."""
    ns = f"user-role-{uid}"
    old = mint({"label": f"{uid}-key", "permissions": [{"namespace": ns, "scopes": ["read", "write"]}]})
    assert http(old["key"]).post("/v1/memory/store", json={"agent_id": ns, "content": "x"}).status_code == 200
    r = admin.delete(f"/admin/keys/{old['key_id']}")
    assert r.status_code == 200 and r.json()["success"] is True
    new = mint({"label": f"{uid}-key", "permissions": [{"namespace": ns, "scopes": ["read", "write"]},
                                                       {"namespace": "shared-org", "scopes": ["read", "write"]}]})
    r = http(old["key"]).post("/v1/memory/recall", json={"agent_id": ns, "query": "x"})
    assert r.status_code == 401 and r.json()["code"] == "INVALID_API_KEY"
    assert http(new["key"]).post("/v1/memory/recall", json={"agent_id": ns, "query": "x"}).status_code == 200


def test_no_scope_upgrade_in_place(mint, admin, http, uid):
    """seed 000_397dab186981e7e3.txt:543: a read-only key cannot be upgraded; a wider role needs a
    new key (PATCH may only narrow: widening is 403 and the key is unchanged)."""
    k = mint({"name": f"analytics-{uid}", "scope": "read", "namespaces": [f"an-{uid}"]}, path="/admin/keys")
    r = admin.patch(f"/admin/keys/{k['key_id']}", json={"namespaces": [f"an-{uid}", "shared-org"]})
    assert r.status_code == 403
    assert admin.get(f"/admin/keys/{k['key_id']}").json()["namespaces"] == [f"an-{uid}"]
    r = http(k["key"]).post("/v1/memory/store", json={"agent_id": f"an-{uid}", "content": "x"})
    assert r.status_code == 403 and r.json()["code"] == "INSUFFICIENT_SCOPE"


def test_gdpr_delete_user_data_via_recall_star(root, admin, uid):
    """seed 000_397dab186981e7e3.txt:214-233: admin.recall(agent_id=ns, query="*", top_k=1000)
    returns every memory of the namespace; their ids are batch-forgotten. The SDK's batch_forget
    takes a BatchForgetRequest, not the seed's dict (`request.to_dict()` fails on a dict), so the
    delete is replayed as the request the seed means: DELETE /v1/memories/forget/batch
    {agent_id, memory_ids}."""
    ns = f"user-gdpr-{uid}"
    stored = {root.store_memory(agent_id=ns, content=c)["id"] for c in
              ("I live in Lisbon", "My phone number is private", "Tuesday: dentist appointment")}
    everything = root.recall(agent_id=ns, query="*", top_k=1000)
    ids = [m.id for m in everything.memories]
    assert set(ids) == stored
    r = admin.delete("/v1/memories/forget/batch", json={"agent_id": ns, "memory_ids": ids})
    assert r.status_code == 200 and r.json()["deleted_count"] == 3
    assert root.recall(agent_id=ns, query="Lisbon", top_k=10).memories == []


def test_gdpr_batch_forget_by_ids(root, admin, uid):
    """seed 000_397dab186981e7e3.txt:226-228, :338-348 and :455-475: batch-forget the ids a recall
    returned (TypeScript recalls 'user data personal information', Go 'all memories', top_k
    1000); only those memories go, the shared namespace is untouched."""
    ns = f"user-gdpr2-{uid}"
    stored = {root.store_memory(agent_id=ns, content=c)["id"] for c in
              ("user data: personal information about my address", "personal information: my birthday")}
    before_shared = admin.get("/v1/namespaces/shared-org").json()["memory_count"] if \
        admin.get("/v1/namespaces/shared-org").status_code == 200 else None
    hits = root.recall(agent_id=ns, query="user data personal information", top_k=1000)
    ids = [m.id for m in hits.memories]
    assert set(ids) == stored
    r = admin.delete("/v1/memories/forget/batch", json={"agent_id": ns, "memory_ids": ids})
    assert r.status_code == 200 and r.json()["deleted_count"] == len(stored)
    assert admin.post("/v1/memories/recall/batch", json={"agent_id": ns, "filter": {}}).json()["memories"] == []
    if before_shared is not None:
        assert admin.get("/v1/namespaces/shared-org").json()["memory_count"] == before_shared


def test_gdpr_delete_namespace_then_list(admin, root, uid):
    """seed 000_397dab186981e7e3.txt:98-104 and :546: DELETE /v1/namespaces/{ns} erases every
    memory (a receipt of the physical deletion: the data key is destroyed), and the namespace is
    gone from GET /v1/namespaces."""
    ns = f"user-erase-{uid}"
    assert admin.post("/v1/namespaces", json={"name": ns}).status_code == 201
    root.store_memory(agent_id=ns, content="My private notes: negotiating salary increase")
    r = admin.delete(f"/v1/namespaces/{ns}")
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["namespace"] == ns and receipt["deleted"] is True and receipt["memories_deleted"] == 1
    assert ns not in names(admin.get("/v1/namespaces"))
    assert admin.get(f"/v1/namespaces/{ns}").status_code == 404


def test_tenant_admin_issues_sub_scoped_keys(mint, http, admin, uid):
    """seed 000_397dab186981e7e3.txt:487-488 and :561-582: a tenant-admin key for acme (admin on
    user-acme-*, team-acme-*, shared-acme) issues user keys inside its prefix, and is refused
    (403) for another tenant's users and for shared-org; nothing is minted then."""
    acme = f"acme{uid}"
    tadmin = mint({"label": f"tenant-admin-{acme}", "permissions": [
        {"namespace": f"user-{acme}-*", "scopes": ["admin"]},
        {"namespace": f"team-{acme}-*", "scopes": ["admin"]},
        {"namespace": f"shared-{acme}", "scopes": ["admin"]},
    ]})
    t = http(tadmin["key"])
    ok = t.post("/v1/api-keys", json={"label": f"{acme}-bob", "permissions": [
        {"namespace": f"user-{acme}-bob", "scopes": ["read", "write"]},
        {"namespace": f"shared-{acme}", "scopes": ["read"]}]})
    assert ok.status_code == 201, ok.text
    assert http(ok.json()["key"]).post("/v1/memory/store", json={
        "agent_id": f"user-{acme}-bob", "content": "bob's note"}).status_code == 200
    keys_before = admin.get("/admin/keys").json()["total"]
    for ns in (f"user-widgets{uid}-carol", "shared-org"):
        r = t.post("/v1/api-keys", json={"label": "escape", "permissions": [{"namespace": ns, "scopes": ["read"]}]})
        assert r.status_code == 403, (ns, r.text)
    assert admin.get("/admin/keys").json()["total"] == keys_before


def test_naming_convention_with_tenant_ids(admin, uid):
    """seed 000_397dab186981e7e3.txt:487 and :542: user-{customerId}-{userId},
    team-{customerId}-{teamId}, shared-{customerId}, customer-{customerId} are valid names."""
    for n in (f"customer-{uid}", f"user-{uid}-alice", f"team-{uid}-eng", f"shared-{uid}"):
        assert admin.post("/v1/namespaces", json={"name": n}).status_code == 201, n


def test_unknown_key_is_refused(http):
    """seed 000_397dab186981e7e3.txt:33-35: every request passes key validation; an unknown key is
    401 (the seed's literal 'dk-alice-scoped-key' placeholder is not a key)."""
    r = http("dk-alice-scoped-key").post("/v1/memory/store", json={"agent_id": "user-alice-chen", "content": "x"})
    assert r.status_code == 401 and r.json()["code"] == "INVALID_API_KEY"
    r = http(None).get("/v1/namespaces")
    assert r.status_code == 401
