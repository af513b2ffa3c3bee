"""The SDK's backup calls (create_backup, list_backups, admin_get_backup, download_backup,
upload_backup, restore_backup, admin_restore_backup, admin_get_restore_status, the schedule,
delete_backup) against a node with a backup store; and against one without."""

import time
import uuid

import pytest

from conftest import client_for
from lociproc import ROOT_KEY, LociNode

from dakera.exceptions import DakeraError


def wait_status(get, ident, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        v = get(ident)
        if v["status"] in ("completed", "failed"):
            return v
        assert time.monotonic() < deadline, f"{ident} did not finish: {v}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def backup_node(base_dir):
    name = f"bk-{uuid.uuid4().hex[:6]}"
    store = base_dir / f"{name}-store"
    n = LociNode(name, base_dir, env={"LOCI_BACKUP_DIR": str(store)}).start()
    yield n
    n.stop()


def test_backup_list_get_download_restore_and_delete(backup_node):
    c = client_for(backup_node.url, ROOT_KEY)
    kept = c.store_memory("bk-agent", "kept through the backup")
    created = c.create_backup("sdk-full", backup_type="full", compression="zstd")
    bid = created["backup"]["backup_id"]
    assert created["backup"]["status"] in ("inprogress", "completed")
    done = wait_status(c.admin_get_backup, bid)
    assert done["status"] == "completed", done
    assert done["encrypted"] is True and done["vector_count"] >= 1
    listed = c.list_backups()
    assert listed["total"] >= 1 and bid in [b["backup_id"] for b in listed["backups"]]
    assert c.admin_list_backups()["backups"][0]["backup_id"] == bid

    archive = c.download_backup(bid)
    assert archive[:2] == b"\x1f\x8b"
    # The same backup again: the store holds it already.
    with pytest.raises(DakeraError) as e:
        c.upload_backup(archive)
    assert e.value.status_code == 409

    # Restoring onto the live node skips what exists: nothing is overwritten.
    r = c.restore_backup(bid)
    r = wait_status(c.admin_get_restore_status, r["restore_id"])
    assert r["status"] == "completed", r
    assert any(d["namespace"].endswith("bk-agent") and d["status"] == "skipped" for d in r["details"]), r
    assert c.get_memory("bk-agent", kept["id"])["content"] == "kept through the backup"

    sched = c.admin_update_backup_schedule(enabled=False, cron="@every 30m", max_backups=5)
    assert sched["cron"] == "@every 30m" and sched["enabled"] is False
    assert c.admin_get_backup_schedule()["max_backups"] == 5

    deleted = c.delete_backup(bid)
    assert deleted["deleted"] is True
    with pytest.raises(DakeraError) as e:
        c.admin_get_backup(bid)
    assert e.value.status_code == 404


def test_backup_bodies_are_checked(backup_node):
    c = client_for(backup_node.url, ROOT_KEY)
    with pytest.raises(ValueError):
        c.create_backup(None)
    for call in (
        lambda: c.create_backup("x", backup_type="weekly"),
        lambda: c.create_backup("x", encrypt=False),
        lambda: c.create_backup("x", compression="gzip"),
        lambda: c.admin_restore_backup("bk_x", point_in_time=12),
        lambda: c.admin_update_backup_schedule(cron="0 3 * * *"),
    ):
        with pytest.raises(DakeraError) as e:
            call()
        assert e.value.status_code == 422, e.value


def test_a_node_without_a_store_says_so(node):
    c = client_for(node.url, ROOT_KEY, retries=1)
    with pytest.raises(DakeraError) as e:
        c.list_backups()
    assert e.value.status_code == 503
    assert "LOCI_BACKUP_DIR" in e.value.message
