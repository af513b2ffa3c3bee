"""Start and stop real `loci` processes for the compatibility suite.

Nodes listen on free loopback ports (port 0 for REST/gRPC; gossip ports are picked up front
when a cluster needs to know them), write a ready file, and are polled on `/health/ready`.
Every process started here is stopped by its own pid: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT_KEY = "compat-root-key-0123456789abcdef"
ENCRYPTION_KEY = "6c6f63692d636f6d7061742d7465737473206f6e6c792d6e6f742d7365637265"
CLUSTER_SECRET = "compat-cluster-secret-0123456789"


def loci_bin() -> str:
    """The binary under test: $LOCI_BIN, else ${CARGO_TARGET_DIR:-/var/tmp/loci-target}/debug/loci."""
    explicit = os.environ.get("LOCI_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or "/var/tmp/loci-target"
    return str(Path(target) / "debug" / "loci")


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


class LociNode:
    """One `loci serve` process with its own data directory."""

    def __init__(self, name: str, base_dir: Path, env: dict[str, str | None] | None = None, args: list[str] | None = None,
                 gossip_port: int | None = None):
        self.name = name
        self.dir = base_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env_extra = dict(env or {})
        self.args_extra = list(args or [])
        self.gossip_port = gossip_port
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.log_path = self.dir / "loci.log"

    @property
    def url(self) -> str:
        return f"http://{self.info['http_addr']}"

    @property
    def node_id(self) -> int:
        return int(self.info["node_id"])

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> "LociNode":
        ready = self.dir / "ready.json"
        if ready.exists():
            ready.unlink()
        gossip = f"127.0.0.1:{self.gossip_port}" if self.gossip_port else "127.0.0.1:0"
        cmd = [
            loci_bin(), "serve",
            "--data-dir", str(self.dir / "data"),
            "--http-addr", "127.0.0.1:0",
            "--grpc-addr", "127.0.0.1:0",
            "--cluster-addr", "127.0.0.1:0",
            "--gossip-addr", gossip,
            "--ready-file", str(ready),
            *self.args_extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCI_", "DAKERA_"))}
        env.update({
            "LOCI_ROOT_API_KEY": ROOT_KEY,
            "LOCI_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "LOCI_EMBEDDING_PROVIDER": os.environ.get("LOCI_COMPAT_EMBEDDING_PROVIDER", "hash"),
            "LOCI_LOG": os.environ.get("LOCI_COMPAT_LOG", "warn"),
            "LOCI_SWEEP_INTERVAL_SECS": "1",
            # Generous per-key budget: the suites drive the node hard; the 429 tests use their own node.
            "LOCI_RATE_LIMIT_RPS": "100000",
            "LOCI_RATE_LIMIT_BURST": "100000",
        })
        model_dir = os.environ.get("LOCI_COMPAT_MODEL_DIR")
        if model_dir:
            env["LOCI_EMBEDDING_MODEL_DIR"] = model_dir
        env.update(self.env_extra)
        # An extra value of None unsets the variable (e.g. to test a Dakera alias name).
        env = {k: v for k, v in env.items() if v is not None}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"loci node {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"loci node {self.name} wrote no ready file in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        while http_status(self.url + "/health/ready") != 200:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"loci node {self.name} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"loci node {self.name} not ready in time:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


class LociCluster:
    """`n` nodes that bootstrap together (`--bootstrap-expect n`, each seeded with every gossip address)."""

    def __init__(self, base_dir: Path, n: int = 3, env: dict[str, str] | None = None):
        ports = [free_udp_port() for _ in range(n)]
        seeds = ",".join(f"127.0.0.1:{p}" for p in ports)
        common = {
            "LOCI_CLUSTER_SECRET": CLUSTER_SECRET,
            "LOCI_JOIN": seeds,
            "LOCI_BOOTSTRAP_EXPECT": str(n),
            "LOCI_FAILOVER_AFTER_SECS": "3",
            **(env or {}),
        }
        self.nodes = [
            LociNode(f"node{i + 1}", base_dir, env={**common, "LOCI_NODE_ID": str(i + 1)}, gossip_port=ports[i])
            for i in range(n)
        ]

    def start(self, timeout: float = 90.0) -> "LociCluster":
        try:
            for n in self.nodes:
                n.start(wait_ready=False, timeout=timeout)
            for n in self.nodes:
                n.wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def make_base_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_dir(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
