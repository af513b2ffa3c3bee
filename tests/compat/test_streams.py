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


def until(seen, act, tries=30, pause=0.5):
    """Do `act` until `seen()` (a stream that has no first event may not be subscribed yet when
    the first action happens; every action here is safe to repeat)."""
    for i in range(tries):
        act(i)
        deadline = time.time() + pause
        while time.time() < deadline:
            if seen():
                return True
            time.sleep(0.05)
    return seen()


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
    def created(o):
        return any(e.type == "namespace_created" and (e.namespace or "").startswith(f"{ns}-b") for e in o)

    t1 = collect(sroot.stream_namespace_events(ns, timeout=30), lambda o: any(e.type == "vectors_mutated" for e in o), ns_out)
    t2 = collect(sroot.stream_global_events(timeout=30), created, ops_out)
    assert until(lambda: any(e.type == "vectors_mutated" for e in ns_out),
                 lambda i: sroot.upsert(ns, [{"id": "v1", "values": [1.0, 0.0, 0.0, 0.0]}]))
    assert until(lambda: created(ops_out), lambda i: sroot.create_namespace(f"{ns}-b{i}", dimensions=4))
    t1.join(20)
    t2.join(20)
    muts = [e for e in ns_out if e.type == "vectors_mutated"]
    assert muts[0].namespace == ns and muts[0].op == "upserted" and muts[0].count == 1


def test_audit_events_stream(sroot, uid):
    agent = f"pyaudstream-{uid}"
    out = []
    t = collect(sroot.stream_audit_events(agent_id=agent, timeout=30), lambda o: len(o) >= 1, out)
    assert until(lambda: bool(out), lambda i: sroot.store_memory(agent, f"an audited, streamed store {i}")), \
        "the store's audit record arrives"
    t.join(20)
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
        # The subscription may open after the first stores: store until one arrives.
        for i in range(30):
            await asyncio.to_thread(sroot.store_memory, other, f"not mine {i}")
            await asyncio.to_thread(sroot.store_memory, me, f"mine {i}")
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                break
        await asyncio.wait_for(task, 15)
        await client.close()
        return got

    got = asyncio.run(run())
    assert [e.agent_id for e in got] == [me]
    assert got[0].event_type == "stored"
