"""Memory methods of dakera-py against Loci: store, recall, get, update, forget, batch, search,
importance. Every test asserts on returned values, not only on the absence of exceptions."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from dakera import (
    AsyncDakeraClient,
    BatchForgetRequest,
    BatchMemoryFilter,
    BatchRecallRequest,
    BatchStoreMemoryItem,
    BatchStoreMemoryRequest,
    Memory,
    RecallResponse,
    RecalledMemory,
)
from dakera.exceptions import FeatureNotAvailableError, NotFoundError, ValidationError
from dakera.exceptions import ErrorCode
from lociproc import ROOT_KEY

MEMORY_FIELDS = {"id", "content", "agent_id", "memory_type", "importance", "tags", "metadata", "session_id",
                 "created_at", "last_accessed_at", "access_count"}


def ids(memories):
    return [m.id if hasattr(m, "id") else m["id"] for m in memories]


# --------------------------------------------------------------------------- store / get


def test_store_memory_with_every_documented_field(root, uid):
    agent = f"store-{uid}"
    session = root.start_session(agent)
    expires = int(time.time()) + 3600
    stored = root.store_memory(
        agent,
        "The user moved to Lisbon in spring 2021",
        memory_type="semantic",
        importance=0.7,
        metadata={"source": "compat", "n": 3},
        session_id=session["id"],
        tags=["move", "city"],
        ttl_seconds=86400,
        valid_from=1600000000,
        lang="en",
        event_time="2021-04-01T00:00:00+00:00",
    )
    assert MEMORY_FIELDS <= set(stored), f"missing {MEMORY_FIELDS - set(stored)}"
    assert stored["id"].startswith("mem_")
    assert stored["content"] == "The user moved to Lisbon in spring 2021"
    assert stored["agent_id"] == agent
    assert stored["memory_type"] == "semantic"
    assert stored["importance"] == pytest.approx(0.7)
    assert stored["tags"] == ["move", "city"]
    assert stored["session_id"] == session["id"]
    meta = stored["metadata"]
    assert meta["source"] == "compat" and meta["n"] == 3
    assert meta["valid_from"] == 1600000000  # the SDK sends valid_from inside metadata
    assert meta["_dakera_event_time"] == 1617235200
    assert meta["_dakera_lang"] == "en"
    assert isinstance(stored["created_at"], int) and abs(stored["created_at"] - time.time()) < 120
    assert stored["expires_at"] == pytest.approx(stored["created_at"] + 86400, abs=5)
    assert "warnings" not in stored  # only known fields were sent

    # expires_at wins over ttl_seconds
    s2 = root.store_memory(agent, "expiring note", ttl_seconds=60, expires_at=expires)
    assert s2["expires_at"] == expires
    assert s2["memory_type"] == "episodic" and s2["importance"] == pytest.approx(0.5)
    assert s2["tags"] == [] and s2["metadata"] is None and s2["session_id"] is None

    fetched = root.get_memory(agent, stored["id"])
    for k in ("id", "content", "memory_type", "tags", "session_id", "metadata", "created_at", "expires_at"):
        assert fetched[k] == stored[k], k

    # v0.12.3 agent-less get: looks in every namespace the key can read
    anywhere = root.get_memory(None, stored["id"])
    assert anywhere["id"] == stored["id"] and anywhere["content"] == stored["content"]
    assert anywhere["metadata"]["_dakera_event_time"] == 1617235200


def test_store_unix_event_time(root, uid):
    stored = root.store_memory(f"evt-{uid}", "numeric event time", event_time=1684549260)
    assert stored["metadata"]["_dakera_event_time"] == 1684549260


def test_store_attachment_ref_is_feature_disabled(root, uid):
    with pytest.raises(FeatureNotAvailableError) as e:
        root.store_memory(f"att-{uid}", "with attachment", attachment_ref="sha256:" + "0" * 64)
    assert e.value.status_code == 501
    assert e.value.is_feature_disabled


def test_ttl_expiry(root, uid):
    agent = f"ttl-{uid}"
    short = root.store_memory(agent, "short lived reminder about the dentist", ttl_seconds=1)
    keep = root.store_memory(agent, "long lived reminder about the dentist")
    time.sleep(2.2)
    with pytest.raises(NotFoundError):
        root.get_memory(agent, short["id"])
    assert ids(root.recall(agent, "reminder dentist", top_k=5).memories) == [keep["id"]]
    assert [m.id for m in root.batch_recall(BatchRecallRequest(agent_id=agent)).memories] == [keep["id"]]


def test_get_memory_missing_is_not_found(root, uid):
    agent = f"get-{uid}"
    root.store_memory(agent, "something")
    with pytest.raises(NotFoundError) as e:
        root.get_memory(agent, "mem_doesnotexist")
    assert e.value.code == ErrorCode.VECTOR_NOT_FOUND
    assert e.value.resource == "memory"


# --------------------------------------------------------------------------- recall


@pytest.fixture(scope="module")
def corpus(root):
    """Memories with distinct types, importances, tags and creation times."""
    import uuid

    agent = f"recall-{uuid.uuid4().hex[:8]}"
    old = root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="Old note about the espresso machine", tags=["kitchen"], importance=0.3,
                             memory_type="episodic"),
    ])).stored[0].id
    time.sleep(1.1)
    boundary = int(time.time())
    time.sleep(1.1)
    items = [
        ("The user drinks espresso every morning", "semantic", 0.9, ["coffee", "habit"]),
        ("Coffee beans are stored in the pantry", "episodic", 0.4, ["coffee", "kitchen"]),
        ("Always grind coffee beans right before brewing", "procedural", 0.8, ["coffee", "howto"]),
        ("Scratchpad: espresso order for the team meeting", "working", 0.2, ["scratch"]),
        ("The user's cat is called Miso", "semantic", 0.6, ["pets"]),
    ]
    res = root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content=c, memory_type=t, importance=i, tags=tg) for c, t, i, tg in items
    ]))
    by_content = {m.content: m.id for m in res.stored}
    by_content["Old note about the espresso machine"] = old
    return {"agent": agent, "ids": by_content, "boundary": boundary}


def test_recall_returns_what_was_stored(root, corpus):
    r = root.recall(corpus["agent"], "espresso every morning", top_k=5)
    assert isinstance(r, RecallResponse)
    assert r.memories, "recall found nothing"
    top = r.memories[0]
    assert isinstance(top, RecalledMemory)
    assert top.id == corpus["ids"]["The user drinks espresso every morning"]
    assert top.content == "The user drinks espresso every morning"
    assert top.memory_type == "semantic"
    assert top.importance == pytest.approx(0.9, abs=0.11)
    assert top.score > 0
    assert isinstance(top.created_at, int)
    scores = [m.score for m in r.memories]
    assert scores == sorted(scores, reverse=True)
    assert r.rerank_report is not None and r.rerank_report.applied is False
    assert r.warnings == []
    assert isinstance(r.search_time_ms, int)


def test_recall_top_k(root, corpus):
    for k in (1, 2, 3):
        assert len(root.recall(corpus["agent"], "coffee", top_k=k).memories) == k


def test_recall_memory_type_filter(root, corpus):
    r = root.recall(corpus["agent"], "coffee beans brewing", top_k=10, memory_type="procedural")
    assert ids(r.memories) == [corpus["ids"]["Always grind coffee beans right before brewing"]]


def test_recall_min_importance(root, corpus):
    r = root.recall(corpus["agent"], "coffee espresso", top_k=10, min_importance=0.75)
    assert r.memories
    # recall itself may boost importance, so compare with what was stored
    stored_imp = {"The user drinks espresso every morning": 0.9, "Always grind coffee beans right before brewing": 0.8}
    allowed = {corpus["ids"][c] for c in stored_imp}
    assert set(ids(r.memories)) <= allowed


def test_recall_tags_any_match(root, corpus):
    r = root.recall(corpus["agent"], "coffee espresso cat", top_k=10, tags=["pets", "howto"])
    assert set(ids(r.memories)) == {corpus["ids"]["The user's cat is called Miso"],
                                    corpus["ids"]["Always grind coffee beans right before brewing"]}


def test_recall_since_until(root, corpus):
    b = datetime.fromtimestamp(corpus["boundary"], tz=timezone.utc)
    old_id = corpus["ids"]["Old note about the espresso machine"]
    after = root.recall(corpus["agent"], "espresso", top_k=10, since=b.isoformat())
    assert after.memories and old_id not in ids(after.memories)
    before = root.recall(corpus["agent"], "espresso", top_k=10, until=b.isoformat())
    assert ids(before.memories) == [old_id]
    window = root.recall(corpus["agent"], "espresso", top_k=10, since=(b - timedelta(days=1)).isoformat(),
                         until=(b + timedelta(days=1)).isoformat())
    assert old_id in ids(window.memories) and len(window.memories) >= 2


@pytest.mark.parametrize("fusion", ["minmax", "rrf"])
@pytest.mark.parametrize("vector_weight", [0.0, 0.5, 1.0])
def test_recall_fusion_and_vector_weight(root, corpus, fusion, vector_weight):
    r = root.recall(corpus["agent"], "cat called Miso", top_k=3, fusion=fusion, vector_weight=vector_weight,
                    routing="hybrid")
    cat = corpus["ids"]["The user's cat is called Miso"]
    assert r.warnings == []
    if fusion == "rrf" and vector_weight == 1.0:
        # RRF over the vector list alone (k = 60) leaves ranks 1-5 within 7 % of each other, so the
        # importance factor may reorder them; the relevant memory must still be among the hits.
        assert cat in ids(r.memories)
    else:
        assert r.memories[0].id == cat
        hit = r.memories[0]
        if vector_weight > 0:
            assert hit.vector_score is not None
        if vector_weight < 1:
            assert hit.text_score is not None and hit.text_score > 0


@pytest.mark.parametrize("routing", ["auto", "vector", "bm25", "hybrid"])
def test_recall_routing(root, corpus, routing):
    r = root.recall(corpus["agent"], "cat called Miso", top_k=3, routing=routing)
    assert r.memories[0].id == corpus["ids"]["The user's cat is called Miso"]


def test_recall_accepts_every_sdk_option(root, corpus):
    """Options Loci does not act on (rerank, neighbourhood, associations) are accepted without warnings."""
    r = root.recall(
        corpus["agent"], "espresso", top_k=3, include_associated=True, associated_memories_cap=2,
        associated_memories_depth=1, associated_memories_min_weight=0.0, rerank=True, iterations=1,
        neighborhood=True, neighborhood_mode="separate", include_summaries=False, lang="en", rerank_candidates=20,
    )
    assert r.memories and r.warnings == []


def test_recall_unknown_agent_is_empty(root, uid):
    r = root.recall(f"nobody-{uid}", "anything at all")
    assert r.memories == []


def test_search_memories(root, corpus):
    hits = root.search_memories(corpus["agent"], "coffee beans", top_k=10)
    assert isinstance(hits, list) and hits
    assert all(h["content"] for h in hits)
    assert {"id", "score", "memory_type", "importance", "tags"} <= set(hits[0])
    proc = root.search_memories(corpus["agent"], "coffee", memory_type="procedural")
    assert [h["id"] for h in proc] == [corpus["ids"]["Always grind coffee beans right before brewing"]]
    tagged = root.search_memories(corpus["agent"], "coffee", tags=["kitchen"], top_k=10)
    assert set(h["id"] for h in tagged) == {corpus["ids"]["Coffee beans are stored in the pantry"],
                                           corpus["ids"]["Old note about the espresso machine"]}
    assert root.search_memories(corpus["agent"], "coffee", min_importance=0.95) == []


# --------------------------------------------------------------------------- update / importance / forget


def test_update_memory(root, uid):
    agent = f"upd-{uid}"
    m = root.store_memory(agent, "Anna lives in Berlin", tags=["city"], importance=0.4, metadata={"a": 1})
    u = root.update_memory(agent, m["id"], content="Anna lives in Hamburg", memory_type="semantic",
                           metadata={"b": 2}, importance=0.9, tags=["city", "moved"])
    assert u["id"] == m["id"]
    assert u["content"] == "Anna lives in Hamburg"
    assert u["memory_type"] == "semantic"
    assert u["importance"] == pytest.approx(0.9)
    assert u["tags"] == ["city", "moved"]
    assert u["metadata"] == {"b": 2}
    assert u["created_at"] == m["created_at"]
    got = root.get_memory(agent, m["id"])
    assert got["content"] == "Anna lives in Hamburg"
    # the new content is what recall finds
    r = root.recall(agent, "Hamburg", top_k=1, routing="bm25")
    assert ids(r.memories) == [m["id"]]
    assert root.recall(agent, "Berlin", top_k=5, routing="bm25").memories == []
    # only the given fields change
    u2 = root.update_memory(agent, m["id"], lang="de")
    assert u2["content"] == "Anna lives in Hamburg" and u2["metadata"]["_dakera_lang"] == "de"
    assert u2["metadata"]["b"] == 2


def test_update_missing_memory(root, uid):
    agent = f"upd-miss-{uid}"
    root.store_memory(agent, "x")
    with pytest.raises(NotFoundError) as e:
        root.update_memory(agent, "mem_missing", content="y")
    assert e.value.code == ErrorCode.VECTOR_NOT_FOUND


def test_update_importance(root, uid):
    agent = f"imp-{uid}"
    a = root.store_memory(agent, "first", importance=0.5)
    b = root.store_memory(agent, "second", importance=0.5)
    one = root.update_importance(agent, [a["id"]], 0.95)
    assert one["memory_id"] == a["id"] and one["importance"] == pytest.approx(0.95)
    both = root.update_importance(agent, [a["id"], b["id"]], 0.2)  # the sync SDK sends one request per id
    assert isinstance(both, list) and len(both) == 2
    assert root.get_memory(agent, a["id"])["importance"] == pytest.approx(0.2)
    assert root.get_memory(agent, b["id"])["importance"] == pytest.approx(0.2)


def test_patch_memory_importance(root, uid):
    agent = f"pimp-{uid}"
    a = root.store_memory(agent, "patch me", importance=0.5)
    m = root.patch_memory_importance(a["id"], agent, 0.33)
    assert isinstance(m, Memory)
    assert m.id == a["id"] and m.content == "patch me" and m.importance == pytest.approx(0.33)


def test_forget(root, uid):
    agent = f"forget-{uid}"
    a = root.store_memory(agent, "forget this secret")
    b = root.store_memory(agent, "keep this one")
    res = root.forget(agent, a["id"])
    assert res["deleted_count"] == 1
    with pytest.raises(NotFoundError):
        root.get_memory(agent, a["id"])
    assert ids(root.recall(agent, "forget this secret", top_k=5).memories) == [b["id"]]
    assert root.forget(agent, a["id"])["deleted_count"] == 0


# --------------------------------------------------------------------------- batches


def test_store_memories_batch_and_batch_recall(root, uid):
    agent = f"batch-{uid}"
    res = root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="alpha fact", tags=["a", "b"], importance=0.9, memory_type="semantic",
                             metadata={"k": "v"}),
        BatchStoreMemoryItem(content="beta fact", tags=["a"], id=f"mem-custom-{uid}", session_id="urn:chat:42"),
        BatchStoreMemoryItem(content="gamma fact", tags=["c"], importance=0.2, ttl_seconds=3600,
                             event_time="2023-05-20T02:21:00Z"),
    ]))
    assert res.stored_count == 3 and len(res.stored) == 3
    assert [s.content for s in res.stored] == ["alpha fact", "beta fact", "gamma fact"]
    assert res.stored[1].id == f"mem-custom-{uid}"
    assert all(s.id and s.agent_id == agent for s in res.stored)
    assert res.stored[0].tags == ["a", "b"] and res.stored[0].importance == pytest.approx(0.9)
    assert res.total_embedding_time_ms >= 0 and res.warnings == [] and res.truncated == []

    all_ = root.batch_recall(BatchRecallRequest(agent_id=agent))
    assert all_.total == 3 and all_.filtered == 3 and all_.truncated is False
    assert {m.content for m in all_.memories} == {"alpha fact", "beta fact", "gamma fact"}

    tagged = root.batch_recall(BatchRecallRequest(agent_id=agent, filter=BatchMemoryFilter(tags=["a", "b"])))
    assert [m.content for m in tagged.memories] == ["alpha fact"]  # ALL-match
    assert tagged.memories[0].metadata == {"k": "v"} and tagged.memories[0].memory_type == "semantic"

    imp = root.batch_recall(BatchRecallRequest(agent_id=agent, min_importance=0.8))
    assert [m.content for m in imp.memories] == ["alpha fact"]

    f = BatchMemoryFilter(memory_type="episodic", session_id="urn:chat:42", max_importance=0.6,
                          created_after=0, created_before=4102444800)
    sess = root.batch_recall(BatchRecallRequest(agent_id=agent, filter=f, limit=10))
    assert [m.id for m in sess.memories] == [f"mem-custom-{uid}"]

    limited = root.batch_recall(BatchRecallRequest(agent_id=agent, limit=2))
    assert len(limited.memories) == 2 and limited.filtered == 3 and limited.truncated is True


def test_batch_recall_unknown_agent(root, uid):
    r = root.batch_recall(BatchRecallRequest(agent_id=f"nobody-{uid}", limit=10))
    assert r.memories == [] and r.filtered == 0


def test_batch_forget(root, uid):
    agent = f"bforget-{uid}"
    root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="one", tags=["x", "y"]),
        BatchStoreMemoryItem(content="two", tags=["x"]),
        BatchStoreMemoryItem(content="three", tags=["z"], importance=0.1),
    ]))
    with pytest.raises(ValidationError) as e:
        root.batch_forget(BatchForgetRequest(agent_id=agent, filter=BatchMemoryFilter()))
    assert e.value.code == ErrorCode.INVALID_REQUEST
    assert root.batch_forget(BatchForgetRequest(agent_id=agent, filter=BatchMemoryFilter(tags=["x", "y"]))
                             ).deleted_count == 1
    assert root.batch_forget(BatchForgetRequest(agent_id=agent, filter=BatchMemoryFilter(max_importance=0.2))
                             ).deleted_count == 1
    left = root.batch_recall(BatchRecallRequest(agent_id=agent))
    assert [m.content for m in left.memories] == ["two"]


# --------------------------------------------------------------------------- async client


async def test_async_client_memory_round_trip(node, uid):
    agent = f"async-{uid}"
    async with AsyncDakeraClient(node.url, api_key=ROOT_KEY) as c:
        a = await c.store_memory(agent, "async stored fact about tulips", tags=["flowers"], importance=0.6)
        b = await c.store_memory(agent, "async second fact about roses", tags=["flowers"])
        r = await c.recall(agent, "tulips", top_k=1)
        assert r.memories[0].id == a["id"]
        # the async SDK sends ONE request with memory_ids
        res = await c.update_importance(agent, [a["id"], b["id"]], 0.85)
        assert res["updated_count"] == 2
        got = await c.get_memory(agent, b["id"])
        assert got["importance"] == pytest.approx(0.85)
        hits = await c.search_memories(agent, "roses")
        assert hits[0]["id"] == b["id"]
        assert (await c.forget(agent, a["id"]))["deleted_count"] == 1


def test_unicode_content_and_nested_metadata_round_trip(root, uid):
    agent = f"uni-{uid}"
    content = "Zoë 🧠 日本語 — naïve café"
    meta = {"nested": {"list": [1, {"x": None}], "ü": "ß"}, "flag": True}
    m = root.store_memory(agent, content, metadata=meta)
    got = root.get_memory(agent, m["id"])
    assert got["content"] == content and got["metadata"] == meta
    assert root.recall(agent, "naïve café", top_k=1).memories[0].content == content


def test_client_chosen_ids_with_colon_and_at(root, uid):
    agent = f"cid-{uid}"
    root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="a URN-style id", id="urn:note:1"),
        BatchStoreMemoryItem(content="an e-mail-style id", id="user@example.com"),
    ]))
    assert root.get_memory(agent, "urn:note:1")["content"] == "a URN-style id"
    assert root.get_memory(None, "user@example.com")["content"] == "an e-mail-style id"
    assert root.update_memory(agent, "urn:note:1", content="updated URN")["content"] == "updated URN"
    assert root.forget(agent, "urn:note:1")["deleted_count"] == 1
    # storing again under an existing id replaces the memory
    again = root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="replaced", id="user@example.com")]))
    assert again.stored[0].id == "user@example.com"
    assert root.get_memory(agent, "user@example.com")["content"] == "replaced"
    assert root.batch_recall(BatchRecallRequest(agent_id=agent)).total == 1
