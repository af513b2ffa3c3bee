"""A multi-tenant deployment driven through dakera-py.

* user A's key: read + write + delete on `user-a`, read on `shared-org`;
* it stores privately, builds an agent context from its own namespace plus `shared-org` (two recalls),
  is refused on `user-b` and on writing `shared-org`;
* GDPR erasure of user A by an admin client: delete the namespace and revoke the keys that grant it;
  afterwards nothing of A is recallable and A's key is useless.
"""

import pytest

from conftest import client_for

from dakera import BatchRecallRequest
from dakera.exceptions import AuthenticationError, AuthorizationError, ErrorCode, NotFoundError


@pytest.fixture
def tenants(root, raw, uid):
    a, b, org = f"user-a-{uid}", f"user-b-{uid}", f"shared-org-{uid}"
    root.store_memory(org, "Company policy: expense reports are due on the 5th of each month",
                      memory_type="semantic", tags=["policy"])
    root.store_memory(org, "The office wifi network is called orgnet", memory_type="semantic", tags=["it"])
    b_mem = root.store_memory(b, "User B's expense report was rejected twice", tags=["private"])
    # The SDK's create_key gives one scope to every listed namespace; Loci's POST /v1/api-keys mints a key
    # with a scope per namespace. This set-up step uses plain HTTP; everything after it uses the SDK.
    r = raw.post(f"{raw.base}/v1/api-keys", json={
        "label": f"user-a-{uid}",
        "permissions": [
            {"namespace": a, "scopes": ["read", "write", "delete"]},
            {"namespace": org, "scopes": ["read"]},
        ],
    })
    assert r.status_code == 201, r.text
    key = r.json()
    return {"a": a, "b": b, "org": org, "key": key, "b_mem": b_mem}


def test_multi_tenant_scenario(root, node, tenants):
    a, b, org = tenants["a"], tenants["b"], tenants["org"]
    user = client_for(node.url, tenants["key"]["key"], retries=1)

    me = user.whoami()
    assert me.key_id == tenants["key"]["key_id"]
    assert set(me.namespaces) == {a, org} and me.unrestricted is False

    # private writes
    m1 = user.store_memory(a, "I need to file my expense report for the Berlin trip", tags=["todo"], importance=0.8)
    m2 = user.store_memory(a, "My manager approves expenses on Fridays", memory_type="semantic")
    assert m1["agent_id"] == a

    # agent context = own namespace + shared org namespace, two recalls
    own = user.recall(a, "when is the expense report due", top_k=3)
    shared = user.recall(org, "when is the expense report due", top_k=1)
    context = [m.content for m in own.memories] + [m.content for m in shared.memories]
    assert m1["content"] in context
    assert "Company policy: expense reports are due on the 5th of each month" == shared.memories[0].content
    assert {m.id for m in own.memories} <= {m1["id"], m2["id"]}

    # only its own namespaces are listed
    assert {n.name for n in user.list_namespaces()} == {a, org}

    # refused on another tenant, for reads and writes, without learning whether it exists
    for call in (lambda: user.recall(b, "expense report"),
                 lambda: user.store_memory(b, "planting data"),
                 lambda: user.get_memory(b, tenants["b_mem"]["id"]),
                 lambda: user.batch_recall(BatchRecallRequest(agent_id=b)),
                 lambda: user.get_namespace(b),
                 lambda: user.recall(f"user-c-never-{a}", "x")):
        with pytest.raises(AuthorizationError) as e:
            call()
        assert e.value.code == ErrorCode.NAMESPACE_ACCESS_DENIED
    # the agent-less get does not reach B's memory either
    with pytest.raises(NotFoundError):
        user.get_memory(None, tenants["b_mem"]["id"])

    # shared-org is read-only for this key
    with pytest.raises(AuthorizationError) as e:
        user.store_memory(org, "I can rewrite company policy")
    assert e.value.code == ErrorCode.INSUFFICIENT_SCOPE
    with pytest.raises(AuthorizationError):
        user.forget(org, shared.memories[0].id)
    with pytest.raises(AuthorizationError):
        user.delete_namespace(org)
    assert len(root.recall(org, "company policy", top_k=5).memories) == 2

    # user A may delete its own memories
    assert user.forget(a, m2["id"])["deleted_count"] == 1

    # ---- GDPR erasure of user A, by an admin client
    receipt = root.delete_namespace(a)  # the SDK returns None; Loci answers a deletion receipt
    assert receipt is None
    for k in root.list_namespace_keys(a).keys:
        root.delete_namespace_key(a, k.key_id)

    assert a not in {n.name for n in root.list_namespaces()}
    assert root.recall(a, "expense report Berlin trip", top_k=10).memories == []
    assert root.search_memories(a, "expense") == []
    assert root.batch_recall(BatchRecallRequest(agent_id=a)).memories == []
    with pytest.raises(NotFoundError):
        root.get_memory(a, m1["id"])
    with pytest.raises(NotFoundError):
        root.get_memory(None, m1["id"])
    assert a not in [x["agent_id"] for x in root.list_agents()]

    with pytest.raises(AuthenticationError) as e:
        user.recall(a, "expense report")
    assert e.value.code == ErrorCode.INVALID_API_KEY
    with pytest.raises(AuthenticationError):
        user.recall(org, "company policy")

    # other tenants are untouched
    assert root.get_memory(b, tenants["b_mem"]["id"])["content"] == "User B's expense report was rejected twice"
    assert len(root.recall(org, "company policy", top_k=5).memories) == 2


def test_erasure_without_revocation_leaves_nothing_recallable(root, node, tenants):
    """Deleting the namespace alone erases the data; the key keeps its grant (documented) but finds nothing."""
    a = tenants["a"]
    user = client_for(node.url, tenants["key"]["key"], retries=1)
    m = user.store_memory(a, "Secret diary entry about the Berlin trip")
    root.delete_namespace(a)
    assert user.recall(a, "diary Berlin", top_k=5).memories == []
    with pytest.raises(NotFoundError):
        user.get_memory(a, m["id"])
    with pytest.raises(NotFoundError):
        user.get_namespace(a)
