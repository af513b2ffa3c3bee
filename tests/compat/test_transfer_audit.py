"""Export, import and the audit trail through dakera-py 0.14.1 as published: `export_memories`
(JSON Lines and CSV), `import_memories` (multipart upload, as the SDK sends it), `list_audit_events`
(filters, cursor) and `export_audit` (JSON and CSV), against a node that writes an audit file.
"""

import pytest

from conftest import client_for
from lociproc import ROOT_KEY, LociNode


@pytest.fixture(scope="module")
def audited(base_dir):
    n = LociNode("audited", base_dir, env={
        "LOCI_AUDIT_ENABLED": "true",
        "LOCI_AUDIT_FILE": str(base_dir / "audited-audit.log"),
    }).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def aroot(audited):
    c = client_for(audited.url, ROOT_KEY)
    yield c
    c.close()


def test_export_then_import_into_another_agent(aroot, uid):
    src, dst = f"pyexp-{uid}", f"pyimp-{uid}"
    for i in range(7):
        aroot.store_memory(src, f"fact {i} about the export", importance=0.1 * i, tags=[f"t{i % 2}"])
    out = aroot.export_memories(agent_id=src)
    assert out.count == 7 and len(out.data) == 7
    assert sorted(m["content"] for m in out.data) == sorted(f"fact {i} about the export" for i in range(7))
    res = aroot.import_memories(out.raw, format="jsonl", agent_id=dst)
    assert res.imported_count == 7 and res.skipped_count == 0
    back = aroot.export_memories(agent_id=dst)
    assert {m["id"]: (m["content"], m["tags"], m["importance"]) for m in back.data} == \
        {m["id"]: (m["content"], m["tags"], m["importance"]) for m in out.data}
    # Again: idempotent on ids.
    assert aroot.import_memories(out.raw, format="jsonl", agent_id=dst).imported_count == 7
    assert aroot.export_memories(agent_id=dst).count == 7
    csv = aroot.export_memories(format="csv", agent_id=src)
    assert csv.raw.splitlines()[0].startswith("id,agent_id,content")


def test_audit_events_list_and_export(aroot, uid):
    agent = f"pyaud-{uid}"
    aroot.store_memory(agent, "an audited store")
    page = aroot.list_audit_events(agent_id=agent)
    assert page.total >= 1
    assert all(e.agent_id == agent for e in page.events)
    ev = page.events[0]
    assert ev.event_type == "request" and ev.timestamp > 1_600_000_000_000
    # Cursor paging through the SDK.
    first = aroot.list_audit_events(limit=2)
    assert len(first.events) == 2 and first.cursor
    second = aroot.list_audit_events(limit=2, cursor=first.cursor)
    assert {e.id for e in second.events}.isdisjoint({e.id for e in first.events}) or \
        all(a.timestamp >= b.timestamp for a in first.events for b in second.events)
    created = aroot.list_audit_events(event_type="namespace_created")
    assert all(e.event_type == "namespace_created" for e in created.events)
    exported = aroot.export_audit(format="json", agent_id=agent)
    assert exported.count >= 1
    as_csv = aroot.export_audit(format="csv", agent_id=agent)
    assert "event_type" in as_csv.data.splitlines()[0]


def test_csv_mem0_and_zep_through_the_sdk(aroot, uid):
    src = f"pyfmt-{uid}"
    for i in range(3):
        aroot.store_memory(src, f"format fact {i}", tags=["f"], importance=0.3)
    for fmt in ("csv", "mem0", "zep"):
        out = aroot.export_memories(format=fmt, agent_id=src)
        assert out.count == 3, (fmt, out.raw)
        dst = f"pyfmt-{fmt}-{uid}"
        res = aroot.import_memories(out.raw, format=fmt, agent_id=dst)
        assert (res.imported_count, res.skipped_count) == (3, 0), (fmt, res)
        assert res.job_id and res.status == "done"
        back = aroot.export_memories(agent_id=dst)
        assert sorted(m["content"] for m in back.data) == [f"format fact {i}" for i in range(3)], fmt
        st = aroot.import_job_status(res.job_id)
        assert (st.status, st.imported, st.total, st.format) == ("done", 3, 3, fmt)
    # The SDK serialises a list of dicts for mem0 and zep itself.
    res = aroot.import_memories([{"id": f"m0-{uid}", "memory": "from mem0", "user_id": "x"}], format="mem0", agent_id=f"pym0-{uid}")
    assert res.imported_count == 1
    res = aroot.import_memories([{"uuid": f"z0-{uid}", "role": "user", "content": "from zep"}], format="zep", agent_id=f"pyz0-{uid}")
    assert res.imported_count == 1
