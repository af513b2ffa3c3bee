"""Raw vectors and documents through dakera-py 0.14.1: `upsert`, `query` (filters, `include_values`),
`batch_query`, `count_vectors`, `export_vectors` (cursor pages), `bulk_update_vectors`,
`bulk_delete_vectors`, `delete` (ids and filter), `warm_cache`, `upsert_text`, `query_text`,
`batch_query_text`, `index_documents`, `fulltext_search`, `fulltext_stats`, `fulltext_delete`,
`hybrid_search`; a read key's refusal (nothing changed) and another tenant's invisibility.
"""

import pytest

from conftest import client_for

from dakera.exceptions import AuthorizationError, ValidationError


@pytest.fixture
def vns(root, uid):
    ns = f"pyvec-{uid}"
    root.create_namespace(ns, dimensions=3)
    root.upsert(ns, vectors=[
        {"id": "x", "values": [1.0, 0.0, 0.0], "metadata": {"color": "red", "n": 1}},
        {"id": "xy", "values": [0.9, 0.1, 0.0], "metadata": {"color": "red", "n": 2}},
        {"id": "y", "values": [0.0, 1.0, 0.0], "metadata": {"color": "blue", "n": 3}},
    ])
    yield ns
    root.delete_namespace(ns)


def test_upsert_query_count_export(root, vns):
    r = root.query(vns, vector=[1.0, 0.0, 0.0], top_k=2, include_values=True)
    assert [m.id for m in r.results] == ["x", "xy"]
    assert abs(r.results[0].score - 1.0) < 1e-4
    assert r.results[0].values == [1.0, 0.0, 0.0]
    assert r.results[0].metadata == {"color": "red", "n": 1}
    r = root.query(vns, vector=[1.0, 0.0, 0.0], top_k=10, filter={"n": {"$gte": 2}})
    assert [m.id for m in r.results] == ["xy", "y"]
    batch = root.batch_query(vns, queries=[{"vector": [0.0, 1.0, 0.0], "top_k": 1},
                                           {"vector": [1.0, 0.0, 0.0], "top_k": 1, "filter": {"color": "blue"}}])
    assert [[m.id for m in b.results] for b in batch] == [["y"], ["y"]]
    assert root.count_vectors(vns)["count"] == 3
    assert root.count_vectors(vns, filter={"color": "red"})["count"] == 2
    page = root.export_vectors(vns, limit=2)
    assert [v["id"] for v in page["vectors"]] == ["x", "xy"] and page["total_count"] == 3
    rest = root.export_vectors(vns, cursor=page["next_cursor"], limit=2)
    assert [v["id"] for v in rest["vectors"]] == ["y"] and "next_cursor" not in rest
    assert root.export_vectors(vns, filter={"color": "blue"})["total_count"] == 1
    warm = root.warm_cache(vns, vector_ids=["x", "gone"])
    assert warm.success and warm.entries_warmed == 1 and warm.entries_skipped == 1


def test_bulk_update_and_deletes(root, vns):
    assert root.bulk_update_vectors(vns, filter={"color": "red"}, update={"stale": True})["updated"] == 2
    assert root.count_vectors(vns, filter={"stale": True})["count"] == 2
    assert root.bulk_delete_vectors(vns, filter={"stale": True})["deleted"] == 2
    assert root.count_vectors(vns)["count"] == 1
    assert root.delete(vns, ids=["y", "nope"])["deleted_count"] == 1
    assert root.count_vectors(vns)["count"] == 0


def test_invalid_input_is_a_validation_error_and_changes_nothing(root, vns):
    with pytest.raises(ValidationError) as e:
        root.upsert(vns, vectors=[{"id": "bad", "values": [1.0, 0.0]}])
    assert "DIMENSION_MISMATCH" in str(e.value.code)
    with pytest.raises(ValidationError):
        root.query(vns, vector=[1.0, 0.0, 0.0], top_k=0)
    with pytest.raises(ValidationError):
        root.query(vns, vector=[1.0, 0.0, 0.0], filter={"n": {"$regex": "x"}})
    assert root.count_vectors(vns)["count"] == 3


def test_a_read_key_reads_and_cannot_write_and_other_tenants_are_invisible(root, node, vns, uid):
    key = root.create_key(f"pyvec-read-{uid}", scope="read", namespaces=[vns])["key"]
    reader = client_for(node.url, key)
    assert len(reader.query(vns, vector=[1.0, 0.0, 0.0], top_k=10).results) == 3
    with pytest.raises(AuthorizationError):
        reader.upsert(vns, vectors=[{"id": "evil", "values": [0.0, 0.0, 1.0]}])
    with pytest.raises(AuthorizationError):
        reader.delete(vns, ids=["x"])
    assert root.count_vectors(vns)["count"] == 3
    other = f"pyvec-other-{uid}"
    root.create_namespace(other, dimensions=3)
    try:
        with pytest.raises(AuthorizationError) as existing:
            reader.query(other, vector=[1.0, 0.0, 0.0])
        with pytest.raises(AuthorizationError) as missing:
            reader.query(f"pyvec-missing-{uid}", vector=[1.0, 0.0, 0.0])
        assert existing.value.code == missing.value.code
    finally:
        root.delete_namespace(other)


def test_documents_text_fulltext_and_hybrid(root, uid):
    ns = f"pydocs-{uid}"
    root.create_namespace(ns, dimensions=256)
    try:
        up = root.upsert_text(ns, documents=[
            {"id": "d1", "text": "Machine learning transforms data into insights"},
            {"id": "d2", "text": "Natural language processing understands text"},
            {"id": "d3", "text": "Deep learning uses neural networks"},
        ])
        assert up.upserted_count == 3
        assert root.query_text(ns, "deep learning neural networks", top_k=1).results[0].id == "d3"
        batch = root.batch_query_text(ns, queries=["language processing", "neural networks"], top_k=1)
        assert [r[0].id for r in batch.results] == ["d2", "d3"]
        assert root.index_documents(ns, documents=[{"id": "f1", "text": "zebras graze"}])["indexed_count"] == 1
        hits = root.fulltext_search(ns, query="zebras", top_k=3)
        assert [h.id for h in hits] == ["f1"] and hits[0].content == "zebras graze"
        stats = root.fulltext_stats(ns)
        assert stats.document_count == 4 and stats.unique_terms > 10 and stats.avg_doc_length > 2
        assert root.hybrid_search(ns, query="machine learning data", top_k=1)[0].id == "d1"
        assert root.fulltext_delete(ns, ["f1"])["deleted_count"] == 1
        assert root.fulltext_search(ns, query="zebras") == []
    finally:
        root.delete_namespace(ns)
