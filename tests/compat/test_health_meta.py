"""health / health_ready / health_live / is_ready / wait_until_ready / capabilities / whoami."""

from conftest import client_for
from lociproc import ROOT_KEY

from dakera import DakeraClient, ServerCapabilities, WhoamiResponse
from dakera.models import DistanceMetric


def test_health(root):
    h = root.health()
    assert h["status"] == "healthy"
    assert isinstance(h["version"], str) and h["version"]
    assert h["service"] == "loci"
    assert isinstance(h.get("uptime_seconds"), int)


def test_health_needs_no_key(node):
    anonymous = client_for(node.url, None, retries=1)
    assert anonymous.health()["status"] == "healthy"
    assert anonymous.health_live()["alive"] is True
    assert anonymous.health_ready()["ready"] is True


def test_health_live(root):
    live = root.health_live()
    assert live["alive"] is True
    assert isinstance(live["uptime_seconds"], int)


def test_health_ready(root):
    ready = root.health_ready()
    assert ready["ready"] is True
    assert ready["version"] == root.health()["version"]
    for check in ("storage", "embedding_engine"):
        assert ready["checks"][check]["status"] == "ok"


def test_is_ready_and_wait_until_ready(root):
    assert root.is_ready() is True
    ready = root.wait_until_ready(timeout=5)
    assert ready["ready"] is True


def test_capabilities(root):
    caps = root.capabilities(refresh=True)
    assert isinstance(caps, ServerCapabilities)
    assert caps.server_version == root.health()["version"]
    assert caps.api_versions == ["v1"]
    assert {DistanceMetric.COSINE, DistanceMetric.EUCLIDEAN, DistanceMetric.DOT_PRODUCT} <= set(caps.distance_metrics)
    assert caps.naming.agent_namespace_prefix == "_dakera_agent_"
    assert caps.auth.prefix_patterns is True
    assert caps.auth.rotation_grace_max_secs == 604800
    assert caps.sessions.touch is True
    assert any(m.active for m in caps.models)
    assert caps.records.enabled is False and caps.attachments.enabled is False


def test_whoami_root(root):
    me = root.whoami()
    assert isinstance(me, WhoamiResponse)
    assert me.key_id == "root"
    assert me.scope == "super_admin"
    assert me.namespaces is None and me.unrestricted is True
    assert me.auth_enabled is True
    assert me.expires_at is None


def test_preflight_client_works(node):
    """`preflight=True` fetches /v1/capabilities first and validates the distance metric."""
    c = DakeraClient(node.url, api_key=ROOT_KEY, preflight=True)
    info = c.create_namespace("preflight-ns", dimensions=8, distance=DistanceMetric.EUCLIDEAN)
    assert info.name == "preflight-ns" and info.dimensions == 8
    c.delete_namespace("preflight-ns")
