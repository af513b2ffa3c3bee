"""Run dakera-py 0.14.1's own live suites, unmodified, against a Loci node.

The sdist is downloaded once (`pip download --no-deps --no-binary :all: dakera==0.14.1`) into
$LOCI_COMPAT_CACHE (default /var/tmp/loci-compat-cache), checked against its SHA-256 and unpacked.
`tests/test_integration.py` and `tests/test_playground_integration.py` run in a subprocess with
DAKERA_TEST_URL / DAKERA_API_KEY pointing at a fresh node; the JUnit report is compared with
`sdist_expectations.py`. A second pass runs the v0.12.3-gated class through `versionshim.py`.
Per-test results are written to $LOCI_COMPAT_OUT (default /var/tmp/loci-compat-out).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lociproc import ROOT_KEY, LociNode
from sdist_expectations import EXPECTED_TEST_COUNT, OUT_OF_SCOPE, VERSION_GATED
from versionshim import VersionShim

SDIST = "dakera-0.14.1"
SDIST_SHA256 = "8e895753902c7bf2f8bc1e07bea070c2e8ee82de5f144bace0128f5d767b9183"
FILES = ["tests/test_integration.py", "tests/test_playground_integration.py"]


def cache_dir() -> Path:
    return Path(os.environ.get("LOCI_COMPAT_CACHE") or "/var/tmp/loci-compat-cache")


def out_dir() -> Path:
    d = Path(os.environ.get("LOCI_COMPAT_OUT") or "/var/tmp/loci-compat-out")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def sdist() -> Path:
    root = cache_dir()
    unpacked = root / SDIST
    if (unpacked / FILES[0]).exists():
        return unpacked
    dl = root / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    tarball = dl / f"{SDIST}.tar.gz"
    if not tarball.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "dakera==0.14.1", "-d", str(dl)], check=True)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert digest == SDIST_SHA256, f"{tarball} has SHA-256 {digest}, expected {SDIST_SHA256}"
    with tarfile.open(tarball) as t:
        t.extractall(root, filter="data")
    return unpacked


@pytest.fixture(scope="module")
def sdist_node(base_dir):
    n = LociNode("sdist", base_dir).start()
    yield n
    n.stop()


def run_suite(sdist: Path, url: str, junit: Path, extra: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DAKERA_TEST_URL=url, DAKERA_API_KEY=ROOT_KEY)
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-rA",
           f"--junitxml={junit}", *extra]
    return subprocess.run(cmd, cwd=sdist, env=env, capture_output=True, text=True, timeout=600)


def parse_junit(path: Path) -> dict[str, dict]:
    """node id -> {"status": passed|failed|skipped, "message": str}"""
    out: dict[str, dict] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_integration.TestX
        mod_end = next(i for i, p in enumerate(parts) if p.startswith("test_")) + 1
        nodeid = "/".join(parts[:mod_end]) + ".py::" + "::".join(parts[mod_end:] + [case.get("name", "")])
        status, message = "passed", ""
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                status = "failed"
                message = (el.get("message") or "") + "\n" + (el.text or "")
        sk = case.find("skipped")
        if sk is not None:
            status, message = "skipped", sk.get("message") or ""
        out[nodeid] = {"status": status, "message": message.strip()}
    return out


def judge(results: dict[str, dict], allow_gated_skips: bool) -> tuple[list[str], list[str], dict[str, str]]:
    """Returns (problems, stale out-of-scope entries, verdict per test)."""
    problems, stale, verdict = [], [], {}
    for nodeid, r in sorted(results.items()):
        st, msg = r["status"], r["message"]
        first_line = msg.splitlines()[0][:200] if msg else ""
        if nodeid in OUT_OF_SCOPE:
            reason, must_contain = OUT_OF_SCOPE[nodeid]
            if st == "passed":
                stale.append(nodeid)
                verdict[nodeid] = "pass (listed out of scope: take it off the list)"
            elif st == "failed" and must_contain in msg:
                verdict[nodeid] = f"out of scope — {reason}"
            elif st == "skipped" and allow_gated_skips and nodeid in VERSION_GATED:
                verdict[nodeid] = f"skipped — {VERSION_GATED[nodeid]}"
            else:
                problems.append(f"{nodeid}: {st} but not as expected (want '{must_contain}'): {first_line}")
                verdict[nodeid] = f"FAIL — {first_line}"
        elif st == "passed":
            verdict[nodeid] = "pass"
        elif st == "skipped" and allow_gated_skips and nodeid in VERSION_GATED:
            verdict[nodeid] = f"skipped — {VERSION_GATED[nodeid]}"
        else:
            problems.append(f"{nodeid}: {st}: {first_line}")
            verdict[nodeid] = f"FAIL — {first_line}"
    return problems, stale, verdict


def report(name: str, results: dict[str, dict], verdict: dict[str, str], proc: subprocess.CompletedProcess) -> None:
    d = out_dir()
    (d / f"{name}.json").write_text(json.dumps({"results": results, "verdict": verdict}, indent=2))
    (d / f"{name}.log").write_text(proc.stdout + "\n" + proc.stderr)
    lines = [f"| test | result |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in sorted(verdict.items())]
    (d / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"\n{name}:")
    for k, v in sorted(verdict.items()):
        print(f"  {k}: {v}")


def test_dakera_py_live_suites(sdist, sdist_node, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = run_suite(sdist, sdist_node.url, junit, FILES)
    assert junit.exists(), proc.stdout + proc.stderr
    results = parse_junit(junit)
    problems, stale, verdict = judge(results, allow_gated_skips=True)
    report("sdist-live", results, verdict, proc)
    assert len(results) == EXPECTED_TEST_COUNT, f"collected {len(results)} tests:\n{proc.stdout[-3000:]}"
    passed = sum(r["status"] == "passed" for r in results.values())
    assert passed >= 29, f"only {passed} passed"
    if stale:
        print("out-of-scope tests that now pass (update sdist_expectations.py):", *stale, sep="\n  ")
    assert not problems, "\n".join(problems)


def test_dakera_py_v0123_class_through_version_shim(sdist, sdist_node, tmp_path):
    """The TestServer0123 class, with `/health` reporting 0.12.3 (everything else forwarded unchanged)."""
    junit = tmp_path / "junit.xml"
    with VersionShim(sdist_node.url, "0.12.3") as shim:
        proc = run_suite(sdist, shim.url, junit, [FILES[0], "-k", "TestServer0123"])
    assert junit.exists(), proc.stdout + proc.stderr
    results = {k: v for k, v in parse_junit(junit).items() if "::TestServer0123::" in k}
    problems, stale, verdict = judge(results, allow_gated_skips=False)
    report("sdist-v0123-shim", results, verdict, proc)
    assert len(results) == len(VERSION_GATED), proc.stdout[-3000:]
    if stale:
        print("out-of-scope tests that now pass (update sdist_expectations.py):", *stale, sep="\n  ")
    assert not problems, "\n".join(problems)
