"""Sessions (start/get/touch/list/memories/end, ChatMemorySession) and agents."""

import pytest

from dakera import AsyncChatMemorySession, AsyncDakeraClient, ChatMemorySession, CreateAgentResponse
from dakera.exceptions import NotFoundError
from dakera.models import SessionTouchResponse
from lociproc import ROOT_KEY


def test_session_lifecycle(root, uid):
    agent = f"sess-{uid}"
    s = root.start_session(agent, metadata={"channel": "chat"}, idle_timeout_secs=600)
    assert s["id"].startswith("sess_")
    assert s["agent_id"] == agent
    assert s["metadata"] == {"channel": "chat"}
    assert s["idle_timeout_secs"] == 600
    assert isinstance(s["started_at"], int)
    assert s.get("ended_at") is None

    m1 = root.store_memory(agent, "first turn of the chat", session_id=s["id"])
    m2 = root.store_memory(agent, "second turn of the chat", session_id=s["id"])
    root.store_memory(agent, "not in the session")

    got = root.get_session(s["id"])
    assert got["id"] == s["id"] and got["memory_count"] == 2

    touched = root.touch_session(s["id"])
    assert isinstance(touched, SessionTouchResponse)
    assert touched.session_state == "active"
    assert touched.session.session_id == s["id"] and touched.session.memory_count == 2

    mems = root.session_memories(s["id"])
    assert [m["id"] for m in mems] == [m1["id"], m2["id"]]  # oldest first
    assert root.session_memories(s["id"], limit=1, offset=1)[0]["id"] == m2["id"]

    listed = root.list_sessions(agent_id=agent)
    sessions = listed["sessions"] if isinstance(listed, dict) else listed
    assert [x["id"] for x in sessions] == [s["id"]]
    assert listed["total"] == 1

    ended = root.end_session(s["id"], summary="two turns")
    assert ended["session"]["id"] == s["id"]
    assert ended["session"]["summary"] == "two turns"
    assert ended["session"]["ended_reason"] == "client"
    assert isinstance(ended["session"]["ended_at"], int)
    assert ended["memory_count"] == 2

    again = root.end_session(s["id"])  # idempotent
    assert again["session"]["summary"] == "two turns"
    assert root.touch_session(s["id"]).session_state == "ended"
    assert root.list_sessions(agent_id=agent, active_only=True)["sessions"] == []
    assert root.get_session(s["id"])["ended_at"] == ended["session"]["ended_at"]

    # recall within the session
    r = root.recall(agent, "turn of the chat", top_k=10, session_id=s["id"])
    assert {m.id for m in r.memories} == {m1["id"], m2["id"]}


def test_missing_session_is_not_found(root, uid):
    with pytest.raises(NotFoundError) as e:
        root.get_session(f"sess_missing{uid}")
    assert e.value.resource == "session"


def test_client_chosen_session_id(root, uid):
    agent = f"urn-{uid}"
    s = root.start_session(agent)
    # a session id with ':' is valid (v0.12.3 clients use urn:chat:42)
    root.store_memory(agent, "tagged with a URN session", session_id="urn:chat:42")
    r = root.recall(agent, "URN session", session_id="urn:chat:42")
    assert [m.content for m in r.memories] == ["tagged with a URN session"]
    root.end_session(s["id"])


def test_chat_memory_session(root, uid):
    agent = f"chat-{uid}"
    with ChatMemorySession.create(root, agent, metadata={"k": "v"}) as chat:
        assert chat.agent_id == agent and chat.session_id.startswith("sess_")
        stored = chat.store("user", "My favourite colour is indigo.")
        assert stored["id"] and stored["session_id"] == chat.session_id
        assert set(stored["tags"]) >= {"user"}
        chat.store("assistant", "Noted: indigo.")
        ranked = chat.recall("favourite colour", top_k=5)
        assert ranked and ranked[0].content == "My favourite colour is indigo."
        assert chat.touch().session_state == "active"
        sid = chat.session_id
    assert root.get_session(sid)["ended_at"] is not None


async def test_async_chat_memory_session(node, uid):
    agent = f"achat-{uid}"
    async with AsyncDakeraClient(node.url, api_key=ROOT_KEY) as c:
        chat = await AsyncChatMemorySession.create(c, agent)
        await chat.store("user", "The async password hint is a blue whale.")
        ranked = await chat.recall("blue whale")
        assert ranked and ranked[0].content == "The async password hint is a blue whale."
        closed = await chat.close()
        assert closed["session"]["ended_reason"] == "client"


def test_agents(root, uid):
    agent = f"agent-{uid}"
    created = root.create_agent(agent)
    assert isinstance(created, CreateAgentResponse)
    assert created.agent_id == agent and created.created is True
    assert isinstance(created.dimension, int) and created.dimension > 0
    again = root.create_agent(agent)
    assert again.created is False

    s = root.start_session(agent)
    root.store_memory(agent, "episodic one", importance=0.4)
    root.store_memory(agent, "semantic one", memory_type="semantic", importance=0.8)

    listed = {a["agent_id"]: a for a in root.list_agents()}
    assert listed[agent]["memory_count"] == 2
    assert listed[agent]["session_count"] == 1 and listed[agent]["active_sessions"] == 1

    stats = root.agent_stats(agent)
    assert stats["agent_id"] == agent
    assert stats["total_memories"] == 2
    assert stats["memories_by_type"]["semantic"] == 1 and stats["memories_by_type"]["episodic"] == 1
    assert stats["total_sessions"] == 1 and stats["active_sessions"] == 1
    assert stats["avg_importance"] == pytest.approx(0.6)

    mems = root.agent_memories(agent)
    assert [m["content"] for m in mems] == ["semantic one", "episodic one"]  # newest first
    assert [m["content"] for m in root.agent_memories(agent, memory_type="semantic")] == ["semantic one"]
    assert len(root.agent_memories(agent, limit=1)) == 1

    sessions = root.agent_sessions(agent)
    assert [x["id"] for x in sessions] == [s["id"]]
    root.end_session(s["id"])
    assert root.agent_sessions(agent, active_only=True) == []


def test_store_reports_session_state(root, uid):
    """v0.12.2: a store into a started session carries `session_state` ("active" / "ended"); storing into
    an ended session still succeeds. The SDK copies the field onto the returned memory."""
    agent = f"sstate-{uid}"
    s = root.start_session(agent)
    live = root.store_memory(agent, "into the open session", session_id=s["id"])
    assert live.get("session_state") == "active", live
    root.end_session(s["id"])
    late = root.store_memory(agent, "into the ended session", session_id=s["id"])
    assert late["session_id"] == s["id"]
    assert late.get("session_state") == "ended", late
    plain = root.store_memory(agent, "no session")
    assert "session_state" not in plain


def test_batch_store_reports_ended_sessions(root, uid):
    """v0.12.2: `ended_sessions` lists the ended sessions a batch stored into."""
    from dakera import BatchStoreMemoryItem, BatchStoreMemoryRequest

    agent = f"bended-{uid}"
    open_s = root.start_session(agent)
    ended_s = root.start_session(agent)
    root.end_session(ended_s["id"])
    res = root.store_memories_batch(BatchStoreMemoryRequest(agent_id=agent, memories=[
        BatchStoreMemoryItem(content="open", session_id=open_s["id"]),
        BatchStoreMemoryItem(content="late", session_id=ended_s["id"]),
    ]))
    assert res.stored_count == 2
    assert res.ended_sessions == [ended_s["id"]]


def test_create_agent_names_the_agent_namespace(root, uid):
    """CreateAgentResponse.namespace is documented as the agent's memory namespace `_dakera_agent_<agent_id>`."""
    agent = f"agns-{uid}"
    created = root.create_agent(agent)
    assert created.namespace == f"_dakera_agent_{agent}", created


def test_content_preview_chars(root, uid):
    """v0.12.2: `content_preview_chars` cuts each listed memory's content and adds content_len /
    content_truncated (session_memories and agent_memories)."""
    agent = f"preview-{uid}"
    s = root.start_session(agent)
    text = "a fairly long memory content that a listing may cut"
    root.store_memory(agent, text, session_id=s["id"])
    root.store_memory(agent, "tiny", session_id=s["id"])
    for listing in (root.session_memories(s["id"], content_preview_chars=10),
                    root.agent_memories(agent, content_preview_chars=10)):
        by_len = {m["content_len"]: m for m in listing}
        assert by_len[len(text)]["content"] == text[:10] and by_len[len(text)]["content_truncated"] is True
        assert by_len[4]["content"] == "tiny" and by_len[4]["content_truncated"] is False
