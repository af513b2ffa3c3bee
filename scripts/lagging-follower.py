#!/usr/bin/env python3
"""The primary's memory while a follower lags (issue 15, item 2), measured on the rig.

Needs a running three-node rig with replication factor 3 (`make rig-up`). It creates a namespace
of client-supplied 4096-dimension vectors, pauses one follower of it (`docker pause`: the process
stops without dying, so its replication link stalls), writes batches through the primary while
the follower is away, then unpauses it and waits until the primary reports no replication lag
(`loci_replication_lag_entries_max` on its /metrics, zero three times in a row) and the follower
is `active` in the placement again. Throughout, it samples every node's resident memory (VmRSS of
the container's process, read from /proc on the host) and the primary's lag once a second, and
prints one table per phase: RSS at the start and end of the phase and its maximum, for the
primary, the follower that keeps up (what the writes alone cost) and the lagging one, and the
largest lag seen.

Which repair path is measured depends on the rig's failover delay: with the default
(LOCI_RIG_FAILOVER_AFTER_SECS=10) the paused follower is marked dead during the pause and gets a
full copy (in chunks) when it returns; with a delay longer than the pause
(LOCI_RIG_FAILOVER_AFTER_SECS=900) it stays active and catches up from the primary's
replication log (batches of at most 8 MiB).

    scripts/lagging-follower.py [--batches 120] [--batch 25] [--dim 4096]

Only the standard library; the root key is read from deploy/.env.
"""

import argparse
import json
import random
import subprocess
import sys
import threading
import time

import rigclient


class Rig:
    def __init__(self, key):
        self.key = key

    def call(self, node, method, path, body=None, timeout=120):
        return rigclient.call(node, self.key, method, path, body, timeout)

    def json(self, node, method, path, body=None):
        status, raw = self.call(node, method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} on loci-{node}: {status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def rss_mib(container):
    """VmRSS of the container's main process, in MiB (None when it cannot be read)."""
    try:
        pid = subprocess.check_output(["docker", "inspect", "-f", "{{.State.Pid}}", container], text=True).strip()
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (subprocess.CalledProcessError, OSError, ValueError):
        return None
    return None


class Sampler(threading.Thread):
    """Samples every container's RSS and the primary's replication lag once a second, tagged
    with the current phase."""

    def __init__(self, rig, containers, primary_node):
        super().__init__(daemon=True)
        self.rig, self.containers, self.primary_node = rig, containers, primary_node
        self.phase = "baseline"
        self.samples = []  # (phase, container, MiB)
        self.lags = []  # (phase, entries)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for c in self.containers:
                v = rss_mib(c)
                if v is not None:
                    self.samples.append((self.phase, c, v))
            lag = lag_entries(self.rig, self.primary_node)
            if lag is not None:
                self.lags.append((self.phase, lag))
            self.stop.wait(1.0)


def lag_entries(rig, node):
    """`loci_replication_lag_entries_max` of a node (None when /metrics does not say)."""
    status, raw = rig.call(node, "GET", "/metrics", timeout=10)
    if status != 200:
        return None
    for line in raw.decode().splitlines():
        if line.startswith("loci_replication_lag_entries_max"):
            return float(line.rsplit(" ", 1)[1])
    return None


def unit_vector(rng, dim):
    v = [rng.uniform(-1, 1) for _ in range(dim)]
    n = sum(x * x for x in v) ** 0.5
    return [round(x / n, 6) for x in v]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=120, help="batch stores while the follower is paused")
    ap.add_argument("--batch", type=int, default=25, help="memories per batch")
    ap.add_argument("--dim", type=int, default=4096, help="vector dimension")
    ap.add_argument("--namespace", default="lag-4096")
    ap.add_argument("--catch-up-timeout", type=float, default=600)
    args = ap.parse_args()

    rig = Rig(rigclient.root_key("lagging-follower"))
    nodes = rig.json(1, "GET", "/admin/cluster/nodes")["nodes"]
    container_of = {n["node_id"]: n["address"].split(":")[0] for n in nodes}
    number_of = {nid: int(c.rsplit("-", 1)[1]) for nid, c in container_of.items()}

    rig.json(1, "POST", "/v1/namespaces", {"name": args.namespace, "embedding": {"provider": "client", "dimension": args.dim}})
    placement = rig.json(1, "GET", f"/v1/namespaces/{args.namespace}/placement")
    primary = placement["primary"]
    followers = [r["node_id"] for r in placement["replicas"] if r["node_id"] != primary]
    if placement["rf"] < 3 or len(followers) < 2:
        sys.exit(f"lagging-follower: needs rf 3 on three nodes, the placement is {placement}")
    lagging = followers[-1]
    p_c, f_c = container_of[primary], container_of[lagging]
    h_c = container_of[followers[0]]  # the follower that keeps up: what the writes alone cost
    p_num = number_of[primary]
    print(f"namespace {args.namespace} ({args.dim} dimensions): primary {p_c}, lagging follower {f_c}")

    sampler = Sampler(rig, [p_c, h_c, f_c], p_num)
    sampler.start()
    time.sleep(5)

    rng = random.Random(7)
    content = "lagging follower measurement"
    body_bytes = 0
    stored = 0
    sampler.phase = "follower paused, writes"
    subprocess.run(["docker", "pause", f_c], check=True, stdout=subprocess.DEVNULL)
    t0 = time.time()
    try:
        for b in range(args.batches):
            memories = [
                {"id": f"lag-{b}-{i}", "content": f"{content} {b} {i}", "embedding": unit_vector(rng, args.dim)}
                for i in range(args.batch)
            ]
            body = {"namespace": args.namespace, "memories": memories}
            body_bytes += len(json.dumps(body))
            status, raw = rig.call(p_num, "POST", "/v1/memories/store/batch", body)
            if status >= 300:
                print(f"batch {b}: {status} {raw[:200]!r}")
                continue
            stored += args.batch
        write_secs = time.time() - t0
        lag = lag_entries(rig, p_num)
        print(
            f"stored {stored} memories in {args.batches} batches ({body_bytes / 2**20:.0f} MiB of JSON) in {write_secs:.0f} s "
            f"with {f_c} paused; primary reports a lag of {lag} entries"
        )
        sampler.phase = "follower paused, idle"
        time.sleep(10)
    finally:
        subprocess.run(["docker", "unpause", f_c], check=True, stdout=subprocess.DEVNULL)
    sampler.phase = "catch-up"
    t1 = time.time()
    caught_up = None
    zeros = 0
    while time.time() - t1 < args.catch_up_timeout:
        time.sleep(1)
        # A link busy sending is left out of the gauge: only zero three times in a row counts.
        lag = lag_entries(rig, p_num)
        zeros = zeros + 1 if lag == 0 else 0
        status, raw = rig.call(1, "GET", f"/v1/namespaces/{args.namespace}/placement")
        if status != 200:
            continue
        place = json.loads(raw)
        states = {r["node_id"]: r["state"] for r in place["replicas"]}
        if zeros >= 3 and states.get(lagging) == "active" and place["primary"] == primary:
            caught_up = time.time() - t1 - 2
            break
    sampler.phase = "after"
    time.sleep(5)
    sampler.stop.set()
    sampler.join()

    print(f"catch-up: {'%.1f s' % caught_up if caught_up is not None else 'not within the timeout'}")
    print()
    print("| phase | container | RSS first MiB | RSS max MiB | RSS last MiB | largest lag (entries) |")
    print("|---|---|---|---|---|---|")
    phases = []
    for ph, _, _ in sampler.samples:
        if ph not in phases:
            phases.append(ph)
    for ph in phases:
        for c in (p_c, h_c, f_c):
            v = [m for p, cc, m in sampler.samples if p == ph and cc == c]
            lags = [lag for p, lag in sampler.lags if p == ph]
            lag = f"{max(lags):.0f}" if lags and c == p_c else ""
            if v:
                role = {p_c: " (primary)", h_c: " (follower in step)", f_c: " (lagging follower)"}[c]
                print(f"| {ph} | {c}{role} | {v[0]:.0f} | {max(v):.0f} | {v[-1]:.0f} | {lag} |")
    sys.exit(0 if caught_up is not None else 1)


if __name__ == "__main__":
    main()
