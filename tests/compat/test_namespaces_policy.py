"""list/create/get/configure/delete namespaces, the 1024-dimension decision, memory policies."""

import pytest

from dakera import ConfigureNamespaceResponse, MemoryPolicy, NamespaceInfo
from dakera.exceptions import ConflictError, ErrorCode, NotFoundError, ValidationError
from dakera.models import DistanceMetric


def names(infos):
    return [i.name for i in infos]


def test_namespace_lifecycle(root, uid):
    ns = f"docs-{uid}"
    created = root.create_namespace(ns, dimensions=1024, distance=DistanceMetric.COSINE)
    assert isinstance(created, NamespaceInfo)
    assert created.name == ns and created.dimensions == 1024
    assert created.kind == "data"

    again = root.create_namespace(ns, dimensions=1024)  # idempotent
    assert again.name == ns and again.dimensions == 1024

    got = root.get_namespace(ns)
    assert got.name == ns and got.dimensions == 1024 and got.vector_count == 0
    assert isinstance(got.created_at, int)

    listed = root.list_namespaces()
    assert ns in names(listed)
    assert next(i for i in listed if i.name == ns).kind == "data"

    conf = root.configure_namespace(ns, 1024)
    assert isinstance(conf, ConfigureNamespaceResponse)
    assert conf.namespace == ns and conf.dimension == 1024 and conf.created is False
    assert conf.distance == DistanceMetric.COSINE

    root.delete_namespace(ns)
    assert ns not in names(root.list_namespaces())
    with pytest.raises(NotFoundError) as e:
        root.get_namespace(ns)
    assert e.value.code == ErrorCode.NAMESPACE_NOT_FOUND
    assert e.value.resource == "namespace"


def test_configure_namespace_creates(root, uid):
    ns = f"conf-{uid}"
    conf = root.configure_namespace(ns, 16, distance=DistanceMetric.EUCLIDEAN)
    assert conf.namespace == ns and conf.dimension == 16 and conf.created is True
    assert conf.distance == DistanceMetric.EUCLIDEAN
    assert root.get_namespace(ns).dimensions == 16
    root.delete_namespace(ns)


def test_namespace_dimension_conflict(root, uid):
    ns = f"conflict-{uid}"
    root.create_namespace(ns, dimensions=32)
    with pytest.raises(ConflictError) as e:
        root.configure_namespace(ns, 64)
    assert e.value.code == ErrorCode.CONFLICT and e.value.status_code == 409
    with pytest.raises(ConflictError):
        root.create_namespace(ns, dimensions=8)
    root.delete_namespace(ns)


def test_create_namespace_without_dimension_gets_the_node_default(root, uid):
    # The seeds create namespaces by name alone (docs/compatibility.md, "Seeds"): the node's
    # default embedder and dimension; no client relies on the former 422.
    info = root.create_namespace(f"nodim-{uid}")
    assert info.name == f"nodim-{uid}"
    assert root.get_namespace(f"nodim-{uid}").dimensions == 384


def test_create_namespace_bad_name(root):
    with pytest.raises(ValidationError) as e:
        root.create_namespace("Not A Valid Name!", dimensions=8)
    assert e.value.code == ErrorCode.INVALID_REQUEST


def test_delete_missing_namespace(root, uid):
    with pytest.raises(NotFoundError) as e:
        root.delete_namespace(f"never-{uid}")
    assert e.value.code == ErrorCode.NAMESPACE_NOT_FOUND


def test_requested_dimension_differing_from_default_is_honoured(root, uid):
    """Dakera's clients create data namespaces with dimension=1024 (bge-large). Loci keeps its own default
    embedder for agent namespaces and embeds a namespace created with another dimension with the hashed
    n-gram embedder at that dimension, so memory operations on it work."""
    ns = f"dim1024-{uid}"
    root.create_namespace(ns, dimensions=1024)
    a = root.store_memory(ns, "Vectors in this namespace have 1024 dimensions")
    root.store_memory(ns, "An unrelated sentence about gardening")
    assert a["agent_id"] == ns
    r = root.recall(ns, "how many dimensions do the vectors have", top_k=1)
    assert [m.id for m in r.memories] == [a["id"]]
    assert r.memories[0].vector_score is not None
    info = root.get_namespace(ns)
    assert info.dimensions == 1024 and info.vector_count == 2
    root.delete_namespace(ns)


def test_memory_policy_round_trip(root, uid):
    agent = f"pol-{uid}"
    root.store_memory(agent, "policy holder")
    default = root.get_memory_policy(agent)
    assert isinstance(default, MemoryPolicy)
    assert default.episodic_ttl_seconds == 2592000 and default.working_decay == "exponential"
    assert default.rate_limit_enabled is False and default.dedup_threshold == pytest.approx(0.92)

    wanted = MemoryPolicy(
        working_ttl_seconds=7200, episodic_ttl_seconds=86400, semantic_ttl_seconds=None, procedural_ttl_seconds=None,
        working_decay="linear", episodic_decay="exponential", semantic_decay="flat", procedural_decay="flat",
        spaced_repetition_factor=1.5, spaced_repetition_base_interval_seconds=3600,
        consolidation_enabled=True, consolidation_threshold=0.8, consolidation_interval_hours=12,
        rate_limit_enabled=True, rate_limit_stores_per_minute=600, rate_limit_recalls_per_minute=1200,
        dedup_on_store=True, dedup_threshold=0.95,
    )
    saved = root.set_memory_policy(agent, wanted)
    again = root.get_memory_policy(agent)
    for p in (saved, again):
        assert p.working_ttl_seconds == 7200 and p.episodic_ttl_seconds == 86400
        assert p.working_decay == "linear" and p.episodic_decay == "exponential" and p.semantic_decay == "flat"
        assert p.spaced_repetition_factor == pytest.approx(1.5)
        assert p.spaced_repetition_base_interval_seconds == 3600
        assert p.consolidation_enabled is True and p.consolidation_threshold == pytest.approx(0.8)
        assert p.consolidation_interval_hours == 12
        assert p.rate_limit_enabled is True
        assert p.rate_limit_stores_per_minute == 600 and p.rate_limit_recalls_per_minute == 1200
        assert p.dedup_on_store is True and p.dedup_threshold == pytest.approx(0.95)
        assert p.consolidated_count == 0


def test_memory_policy_missing_namespace(root, uid):
    with pytest.raises(NotFoundError) as e:
        root.get_memory_policy(f"nopol-{uid}")
    assert e.value.code == ErrorCode.NAMESPACE_NOT_FOUND
