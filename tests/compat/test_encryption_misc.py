"""rotate_encryption_key (on a dedicated node, restarted with the new key), get_index_stats,
require_supported, and the client-side helpers."""

import uuid

import pytest

from conftest import client_for
from lociproc import ROOT_KEY, LociNode

from dakera import IndexStats
from dakera.exceptions import ErrorCode, FeatureNotAvailableError, UnsupportedCapabilityError


def test_rotate_encryption_key_then_restart_with_it(base_dir):
    node = LociNode(f"enc-{uuid.uuid4().hex[:6]}", base_dir).start()
    try:
        c = client_for(node.url, ROOT_KEY)
        m = c.store_memory("vault", "encrypted at rest with the first master key")
        with pytest.raises(FeatureNotAvailableError) as e:
            c.rotate_encryption_key(new_key="a" * 64, namespace="vault")
        assert e.value.code == ErrorCode.NOT_IMPLEMENTED

        new_key = "5e" * 32
        res = c.rotate_encryption_key(new_key=new_key)
        assert res.rotated >= 1 and "vault" in res.namespaces
        assert res.scope == "global" and res.failed_namespaces == []
        assert res.key_id and res.previous_key_id and res.key_id != res.previous_key_id
        # still serving before the restart
        assert c.get_memory("vault", m["id"])["content"] == m["content"]

        node.stop()
        node.env_extra["LOCI_ENCRYPTION_KEY"] = new_key
        node.start()
        c = client_for(node.url, ROOT_KEY)
        assert c.get_memory("vault", m["id"])["content"] == "encrypted at rest with the first master key"
        assert c.recall("vault", "first master key").memories[0].id == m["id"]
    finally:
        node.stop()


def test_get_index_stats(root, uid):
    agent = f"idx-{uid}"
    root.store_memory(agent, "one vector")
    root.store_memory(agent, "two vectors")
    st = root.get_index_stats(agent)
    assert isinstance(st, IndexStats)
    assert st.total_vectors == 2 and st.dimensions > 0 and st.index_type == "hnsw"
    assert st.disk_usage_bytes and st.disk_usage_bytes > 0


def test_require_supported(root):
    root.require_supported("distance_metric", "cosine")
    root.require_supported("index_kind", "hnsw")
    with pytest.raises(UnsupportedCapabilityError) as e:
        root.require_supported("distance_metric", "manhattan")
    assert "cosine" in e.value.supported


def test_context_manager_and_close(node):
    with client_for(node.url, ROOT_KEY) as c:
        assert c.health()["status"] == "healthy"
