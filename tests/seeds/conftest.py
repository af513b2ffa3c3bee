"""Fixtures of the seed conformance suite: the compatibility suite's harness, shared, not copied.

`tests/compat/conftest.py` is loaded under another module name (both files are called
`conftest.py`) and its fixtures are re-exported: `node` (one standalone `loci` node for the
session, hash embedder, root key `ROOT_KEY`), `root` (a `dakera.DakeraClient` with the root key),
`raw`, `uid`, `base_dir`. On top of them:

* `http` — plain HTTP as a given key (`http(key).post(path, json=…)`), for the seeds' curl lines;
* `mint` — mint a key over `POST /v1/api-keys` or `POST /admin/keys` and return its JSON;
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import requests

COMPAT = Path(__file__).resolve().parent.parent / "compat"
sys.path.insert(0, str(COMPAT))

_spec = importlib.util.spec_from_file_location("loci_compat_conftest", COMPAT / "conftest.py")
_compat = importlib.util.module_from_spec(_spec)
sys.modules["loci_compat_conftest"] = _compat
_spec.loader.exec_module(_compat)

# Re-exported fixtures and helpers (pytest collects fixtures from the conftest module's names).
base_dir = _compat.base_dir
node = _compat.node
root = _compat.root
raw = _compat.raw
uid = _compat.uid
client_for = _compat.client_for
pytest_configure = _compat.pytest_configure

from lociproc import ENCRYPTION_KEY, ROOT_KEY, LociNode  # noqa: E402,F401


class Http:
    """`requests` bound to one node and one key (None = no Authorization header)."""

    def __init__(self, base: str, key: str | None):
        self.base = base
        self.s = requests.Session()
        if key is not None:
            self.s.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.s.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="session")
def http(node):
    made: list[Http] = []

    def make(key: str | None = ROOT_KEY, base: str | None = None) -> Http:
        h = Http(base or node.url, key)
        made.append(h)
        return h

    yield make
    for h in made:
        h.s.close()


@pytest.fixture(scope="session")
def admin(http):
    """The seeds' `dk-admin-key`: the node's root key."""
    return http(ROOT_KEY)


@pytest.fixture
def mint(admin):
    def make(body: dict, path: str = "/v1/api-keys") -> dict:
        r = admin.post(path, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    return make


def names(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return resp.json()["namespaces"]

