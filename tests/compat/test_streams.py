"""The event streams through dakera-py 0.14.1 as published: `stream_memory_events`,
`stream_namespace_events`, `stream_global_events`, `stream_audit_events` (sync client) and
`agents_subscribe` (async client), against a node that writes an audit file.
"""

import asyncio
import threading
import time

import pytest

from conftest import client_for
from lociproc import ROOT_KEY, LociNode

from dakera import AsyncDakeraClient


@pytest.fixture(scope="module")
def streamed(base_dir):
    n = LociNode("streamed", base_dir, env={
        "LOCI_AUDIT_ENABLED": "true",
        "LOCI_AUDIT_FILE": str(base_dir / "streamed-audit.log"),
    }).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def sroot(streamed):
    c = client_for(streamed.url, ROOT_KEY)
    yield c
    c.close()


def collect(gen, want, out, ready=None, timeout=15.0):
    """Read `gen` in a thread until `want(out)` or `timeout`; `ready` is set on the first event."""
    def run():
        deadline = time.time() + timeout
        for ev in gen:
            if ready is not None:
                ready.set()
            out.append(ev)
            if want(out) or time.time() > deadline:
                break
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_memory_events_arrive_typed(sroot, uid):
    agent = f"pystream-{uid}"
    out, ready = [], threading.Event()
    gen = sroot.stream_memory_events(timeout=20)
    t = collect(gen, lambda o: sum(e.event_type == "stored" and e.agent_id == agent for e in o) >= 2, out, ready)
    assert ready.wait(10), "the stream opens with a connected event"
    assert out[0].event_type == "connected"
    a = sroot.store_memory(agent, "first streamed memory", tags=["x"])
    b = sroot.store_memory(agent, "second streamed memory")
    t.join(20)
    stored = [e for e in out if e.event_type == "stored" and e.agent_id == agent]
    assert [e.memory_id for e in stored] == [a["id"], b["id"]]
    assert stored[0].tags == ["x"] and stored[0].timestamp > 1_600_000_000
    assert stored[0].content is None, "events carry no content"


def test_namespace_and_global_events(sroot, uid):
    ns = f"pyns-{uid}"
    sroot.create_namespace(ns, dimensions=4)
    ns_out, ops_out = [], []
    t1 = collect(sroot.stream_namespace_events(ns, timeout=20), lambda o: any(e.type == "vectors_mutated" for e in o), ns_out)
    t2 = collect(sroot.stream_global_events(timeout=20), lambda o: any(e.type == "namespace_created" and e.namespace == f"{ns}-b" for e in o), ops_out)
    time.sleep(1.0)  # these streams send nothing before their first event
    sroot.upsert(ns, [{"id": "v1", "values": [1.0, 0.0, 0.0, 0.0]}])
    sroot.create_namespace(f"{ns}-b", dimensions=4)
    t1.join(20)
    t2.join(20)
    muts = [e for e in ns_out if e.type == "vectors_mutated"]
    assert muts and muts[0].namespace == ns and muts[0].op == "upserted" and muts[0].count == 1
    assert any(e.type == "namespace_created" and e.namespace == f"{ns}-b" for e in ops_out)


def test_audit_events_stream(sroot, uid):
    agent = f"pyaudstream-{uid}"
    out = []
    t = collect(sroot.stream_audit_events(agent_id=agent, timeout=20), lambda o: len(o) >= 1, out)
    time.sleep(1.0)
    sroot.store_memory(agent, "an audited, streamed store")
    t.join(20)
    assert out, "the store's audit record arrives"
    assert out[0].type == "request"


def test_agents_subscribe_filters_by_agent(streamed, sroot, uid):
    me, other = f"pysub-{uid}", f"pyother-{uid}"

    async def run():
        client = AsyncDakeraClient(streamed.url, api_key=ROOT_KEY)
        got = []

        async def consume():
            async for ev in client.agents_subscribe(me, reconnect=False):
                got.append(ev)
                if len(got) >= 1:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(sroot.store_memory, other, "not mine")
        await asyncio.to_thread(sroot.store_memory, me, "mine")
        await asyncio.wait_for(task, 15)
        await client.close()
        return got

    got = asyncio.run(run())
    assert [e.agent_id for e in got] == [me]
    assert got[0].event_type == "stored"
