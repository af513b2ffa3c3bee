"""API keys: create/list/get/update/usage/rotate/deactivate/delete, whoami, namespace keys."""

import time

import pytest

from conftest import client_for

from dakera import CreateNamespaceKeyResponse, KeyInfo, ListNamespaceKeysResponse, NamespaceKeyUsageResponse
from dakera.exceptions import AuthenticationError, AuthorizationError, ErrorCode, NotFoundError


def test_create_key_and_use_it(root, node, uid):
    ns = f"kns-{uid}"
    k = root.create_key(f"app-{uid}", scope="write", namespaces=[ns], expires_in_days=30)
    assert k["key"].startswith("dk_") and k["key_id"].startswith("dk_key_")
    assert k["name"] == f"app-{uid}" and k["scope"] == "write" and k["namespaces"] == [ns]
    assert k["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=120)
    assert k["warning"]

    c = client_for(node.url, k["key"], retries=1)
    me = c.whoami()
    assert me.key_id == k["key_id"] and me.scope == "write" and me.namespaces == [ns]
    assert me.unrestricted is False and me.expires_at == k["expires_at"]

    m = c.store_memory(ns, "written with a scoped key")
    assert c.recall(ns, "scoped key").memories[0].id == m["id"]
    with pytest.raises(AuthorizationError) as e:
        c.store_memory(f"other-{uid}", "not allowed")
    assert e.value.code == ErrorCode.NAMESPACE_ACCESS_DENIED

    listed = root.list_keys()
    keys = listed["keys"] if isinstance(listed, dict) else listed
    assert k["key_id"] in [x["key_id"] for x in keys]

    got = root.get_key(k["key_id"])
    assert got["key_id"] == k["key_id"] and got["active"] is True and "key" not in got

    renamed = root.update_key(k["key_id"], name=f"renamed-{uid}")
    assert isinstance(renamed, KeyInfo)
    assert renamed.name == f"renamed-{uid}" and renamed.namespaces == [ns] and renamed.active is True

    usage = root.key_usage(k["key_id"])
    assert usage["key_id"] == k["key_id"]
    assert usage["total_requests"] >= 3 and usage["failed_requests"] >= 1
    assert usage["successful_requests"] + usage["failed_requests"] == usage["total_requests"]


def test_global_read_key_scope(root, node, uid):
    k = root.create_key(f"reader-{uid}", scope="read")
    c = client_for(node.url, k["key"], retries=1)
    agent = f"readable-{uid}"
    root.store_memory(agent, "readable by a global read key")
    assert c.recall(agent, "readable").memories
    assert c.whoami().namespaces is None and c.whoami().unrestricted is True
    with pytest.raises(AuthorizationError) as e:
        c.store_memory(agent, "no write")
    assert e.value.code == ErrorCode.INSUFFICIENT_SCOPE
    with pytest.raises(AuthorizationError) as e:
        c.list_keys()
    assert e.value.code == ErrorCode.INSUFFICIENT_SCOPE


def test_rotate_key(root, node, uid):
    k = root.create_key(f"rot-{uid}", scope="read")
    old = client_for(node.url, k["key"], retries=1)
    assert old.whoami().key_id == k["key_id"]

    rot = root.rotate_key(k["key_id"])
    assert rot["old_key_id"] == k["key_id"] and rot["key_id"] != k["key_id"]
    assert rot["new_key"].startswith("dk_") and rot["warning"]
    new = client_for(node.url, rot["new_key"], retries=1)
    me = new.whoami()
    assert me.key_id == rot["key_id"] and me.name == f"rot-{uid}" and me.scope == "read"
    with pytest.raises(AuthenticationError) as e:
        old.whoami()
    assert e.value.code == ErrorCode.API_KEY_EXPIRED

    # with a grace period the old secret keeps working until it expires
    rot2 = root.rotate_key(rot["key_id"], grace_secs=2)
    assert rot2["old_key_expires_at"] == pytest.approx(time.time() + 2, abs=2)
    assert new.whoami().key_id == rot["key_id"]
    time.sleep(3.2)
    with pytest.raises(AuthenticationError) as e:
        new.whoami()
    assert e.value.code == ErrorCode.API_KEY_EXPIRED
    assert client_for(node.url, rot2["new_key"], retries=1).whoami().key_id == rot2["key_id"]


def test_revoke_key(root, node, uid):
    k1 = root.create_key(f"deact-{uid}", scope="read")
    k2 = root.create_key(f"del-{uid}", scope="read")
    c1 = client_for(node.url, k1["key"], retries=1)
    c2 = client_for(node.url, k2["key"], retries=1)
    assert c1.whoami() and c2.whoami()

    d = root.deactivate_key(k1["key_id"])
    assert d["success"] is True
    with pytest.raises(AuthenticationError) as e:
        c1.whoami()
    assert e.value.code == ErrorCode.INVALID_API_KEY
    assert root.get_key(k1["key_id"])["active"] is False

    d = root.delete_key(k2["key_id"])
    assert d["success"] is True
    with pytest.raises(AuthenticationError) as e:
        c2.whoami()
    assert e.value.code == ErrorCode.INVALID_API_KEY
    with pytest.raises(NotFoundError) as e:
        root.get_key(k2["key_id"])
    assert e.value.code == ErrorCode.API_KEY_NOT_FOUND


def test_namespace_keys(root, node, uid):
    ns = f"team-{uid}"
    extra = f"team-extra-{uid}"
    root.create_namespace(ns, dimensions=384)
    nk = root.create_namespace_key(ns, f"writer-{uid}", scope="write", extra_namespaces=[extra], expires_in_days=7)
    assert isinstance(nk, CreateNamespaceKeyResponse)
    assert nk.key.startswith("dk_") and nk.key_id.startswith("dk_key_")
    assert nk.namespace == ns and nk.scope == "write"
    assert set(nk.namespaces) == {ns, extra}
    assert nk.expires_at == pytest.approx(time.time() + 7 * 86400, abs=120)

    c = client_for(node.url, nk.key, retries=1)
    m = c.store_memory(ns, "team memory")
    assert c.get_memory(ns, m["id"])["content"] == "team memory"
    c.store_memory(extra, "extra namespace memory")

    listed = root.list_namespace_keys(ns)
    assert isinstance(listed, ListNamespaceKeysResponse)
    assert nk.key_id in [x.key_id for x in listed.keys]
    assert listed.total == len(listed.keys)

    usage = root.get_namespace_key_usage(ns, nk.key_id)
    assert isinstance(usage, NamespaceKeyUsageResponse)
    assert usage.key_id == nk.key_id and usage.total_requests >= 3

    upd = root.update_namespace_key(ns, nk.key_id, name=f"writer2-{uid}", namespaces=[ns])
    assert upd.name == f"writer2-{uid}" and upd.namespaces == [ns]
    with pytest.raises(AuthorizationError):
        c.store_memory(extra, "no longer granted")

    # a namespace admin manages the namespace's keys
    admin = root.create_namespace_key(ns, f"admin-{uid}", scope="admin")
    ac = client_for(node.url, admin.key, retries=1)
    reader = ac.create_namespace_key(ns, f"reader-{uid}", scope="read")
    assert reader.scope == "read"
    assert {nk.key_id, reader.key_id} <= {x.key_id for x in ac.list_namespace_keys(ns).keys}

    deleted = root.delete_namespace_key(ns, nk.key_id)
    assert deleted["success"] is True
    with pytest.raises(AuthenticationError) as e:
        c.whoami()
    assert e.value.code == ErrorCode.INVALID_API_KEY
    assert nk.key_id not in [x.key_id for x in root.list_namespace_keys(ns).keys]
