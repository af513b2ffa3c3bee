"""Fixtures for the dakera-py compatibility suite: real `loci` nodes on free loopback ports.

* `node`     — one standalone node for the whole session (hash embedder, root key ROOT_KEY).
* `root`     — a `dakera.DakeraClient` with the root key on `node`.
* `cluster`  — a 3-process cluster (started on first use, once per session).
* `limited_node` — a node whose per-key rate limit is tiny (for 429).

The SDK is used exactly as published (`pip install dakera==0.14.1`). A few set-up steps that
the SDK has no method for (minting a key with different scopes per namespace) use `requests`
directly and are marked as such.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from lociproc import ROOT_KEY, LociCluster, LociNode, loci_bin, make_base_dir, remove_dir  # noqa: E402

from dakera import DakeraClient  # noqa: E402
from dakera.models import RetryConfig  # noqa: E402


def pytest_configure(config):
    if not Path(loci_bin()).exists():
        raise pytest.UsageError(f"loci binary not found at {loci_bin()} (set LOCI_BIN or build it)")


@pytest.fixture(scope="session")
def base_dir():
    d = make_base_dir("loci-compat-")
    yield d
    if os.environ.get("LOCI_COMPAT_KEEP"):
        print(f"\nloci-compat: node data directories and logs kept in {d}")
    else:
        remove_dir(d)


@pytest.fixture(scope="session")
def node(base_dir):
    n = LociNode("single", base_dir).start()
    yield n
    n.stop()


def client_for(url: str, key: str | None, retries: int = 3) -> DakeraClient:
    """An SDK client. `retries=1` means one attempt (no retry on 429/503)."""
    return DakeraClient(url, api_key=key, timeout=30.0, retry_config=RetryConfig(max_retries=retries))


@pytest.fixture(scope="session")
def root(node):
    c = client_for(node.url, ROOT_KEY)
    yield c
    c.close()


@pytest.fixture
def uid():
    """A short unique suffix for names (namespace grammar: lower-case, digits, '-')."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def raw(node):
    """Plain HTTP with the root key, for Loci-only set-up steps the SDK has no method for."""
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {ROOT_KEY}"})
    s.base = node.url  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture(scope="session")
def cluster(base_dir):
    c = LociCluster(base_dir / "cluster", n=3).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def limited_node(base_dir):
    """Per-key budget: burst 3, refilled at 0.2 requests per second."""
    n = LociNode(
        f"limited-{uuid.uuid4().hex[:6]}", base_dir,
        env={"LOCI_RATE_LIMIT_RPS": "0.2", "LOCI_RATE_LIMIT_BURST": "3"},
    ).start()
    yield n
    n.stop()
