#!/usr/bin/env python3
"""A cluster under the hardening issue's attacks keeps serving other tenants and committing
catalogue changes (issue 15, "show the figures"), measured on the rig.

Needs a running three-node rig (`make rig-up`). Started with the rate limits lifted
(LOCI_RIG_RATE_LIMIT_RPS=1000000 LOCI_RIG_RATE_LIMIT_BURST=1000000), the limiter is not what
stops the attacker: the bounds must. Two phases of --seconds each, the same victim load in
both, the attackers only in the second:

- victim: tenant `victim-*` with its own write key, --victims clients storing and recalling
  (client vectors of 64 dimensions, no model) through every node in turn;
- operator: mints a key, checks it authenticates on another node, deletes it, again and again
  (three catalogue commits and a read per round);
- attackers: tenant `attacker-*` with its own admin key, one client per attack: 9.5 MB namespace
  metadata, oversized policy strings, importance over 100,000 ids, recall with top_k 10,000 of
  full content over a namespace of large memories, batch stores of 4096-dimension vectors,
  namespace creation past the operator's quota, and a session id of the victim's claimed in the
  attacker's namespace.

It prints a table per phase (victim and operator throughput, p50/p99, errors), the attackers'
answers by status, and checks that nothing of the attacker's reached the victim (every recalled
memory is the victim's; the victim's namespaces hold exactly what it stored; its session kept
its agent). Exit 1 on a leak or when the operator's rounds stopped.

    scripts/rig-attack.py [--seconds 40] [--victims 4] [--victim-rps 0]

With the rig's own rate limits on (20 requests/s a key, burst 10), pace the victim under them
(--victim-rps 15 --operator-rounds 4): then the limiter also stands between the attacker and
the victim.
"""

import argparse
import json
import random
import sys
import threading
import time

from rigclient import call, root_key

NODES = [1, 2, 3]
DIM = 64


def must(status_body, what):
    status, raw = status_body
    if not 200 <= status < 300:
        sys.exit(f"rig-attack: {what}: {status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def vec(rng, dim=DIM):
    v = [rng.uniform(-1, 1) for _ in range(dim)]
    n = sum(x * x for x in v) ** 0.5
    return [round(x / n, 6) for x in v]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}  # (phase, op) -> [ms]
        self.err = {}  # (phase, op) -> {status: n}

    def record(self, phase, op, ms, status, ok):
        with self.lock:
            if ok:
                self.lat.setdefault((phase, op), []).append(ms)
            else:
                d = self.err.setdefault((phase, op), {})
                d[status] = d.get(status, 0) + 1


def pct(v, p):
    if not v:
        return 0.0
    v = sorted(v)
    return v[round((len(v) - 1) * p)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--victims", type=int, default=4)
    ap.add_argument("--operator-rounds", type=float, default=0, help="operator rounds a second (0: as fast as it can; each is 3 requests with the root key)")
    ap.add_argument("--victim-rps", type=float, default=0, help="the victim's total request rate (0: as fast as it can); keep it under the rig's per-key limit when that is on")
    args = ap.parse_args()
    root = root_key("rig-attack")
    run = f"{int(time.time())}"

    # Tenants, keys, quota.
    victim = must(call(1, root, "POST", "/admin/keys", {"name": f"victim-{run}", "scope": "write", "namespaces": ["victim-*"]}), "victim key")["key"]
    attacker = must(call(1, root, "POST", "/admin/keys", {"name": f"attacker-{run}", "scope": "admin", "namespaces": ["attacker-*"]}), "attacker key")["key"]
    must(call(1, root, "PUT", "/admin/quotas", {"pattern": f"attacker-{run}-*", "max_namespaces": 12}), "quota")
    vns = [f"victim-{run}-{i}" for i in range(4)]
    for ns in vns:
        must(call(1, victim, "POST", "/v1/namespaces", {"name": ns, "embedding": {"provider": "client", "dimension": DIM}}), "victim namespace")
    must(call(1, victim, "POST", "/v1/sessions/start", {"namespace": vns[0], "agent_id": "victim-agent", "id": f"shared-{run}"}), "victim session")
    ans = f"attacker-{run}"
    must(call(1, attacker, "POST", "/v1/namespaces", {"name": f"{ans}-big", "dimension": DIM, "embedding": {"provider": "client", "dimension": DIM}}), "attacker namespace")
    must(call(1, attacker, "POST", "/v1/namespaces", {"name": f"{ans}-4096", "embedding": {"provider": "client", "dimension": 4096}}), "attacker 4096 namespace")
    rng = random.Random(3)
    big = "x" * 60_000
    for b in range(8):  # 8 x 50 memories of 60 KB: 24 MB of content for top_k 10,000
        mems = [{"content": f"attacker {b} {i} {big}", "embedding": vec(rng)} for i in range(50)]
        must(call(1, attacker, "POST", "/v1/memories/store/batch", {"namespace": f"{ans}-big", "memories": mems}), "attacker prefill")
    print(f"set up: victim namespaces {vns[0]}…, attacker prefix {ans}-*")

    stats = Stats()
    phase = ["baseline"]
    stop = threading.Event()
    victim_ids = {ns: set() for ns in vns}
    uncertain = {ns: set() for ns in vns}  # a 503 after applying, or no answer: maybe stored
    leaks = []
    ids_lock = threading.Lock()

    def victim_client(w):
        r = random.Random(100 + w)
        k = w
        gap = args.victims / args.victim_rps if args.victim_rps > 0 else 0
        next_at = time.time()
        while not stop.is_set():
            if gap:
                next_at += gap
                time.sleep(max(0.0, next_at - time.time()))
            node = NODES[k % 3]
            k += 1
            ns = vns[r.randrange(len(vns))]
            t = time.time()
            if r.random() < 0.5:
                mid = f"v-{w}-{k}"
                s, raw = call(node, victim, "POST", "/v1/memory/store", {"namespace": ns, "id": mid, "content": f"victim {w} {k}", "embedding": vec(r)})
                ok = 200 <= s < 300
                with ids_lock:
                    (victim_ids if ok else uncertain)[ns].add(mid)
                stats.record(phase[0], "victim store", (time.time() - t) * 1000, s, ok)
            else:
                s, raw = call(node, victim, "POST", "/v1/memory/recall", {"namespace": ns, "embedding": vec(r), "top_k": 10})
                ok = s == 200
                if ok:
                    for m in json.loads(raw).get("memories", []):
                        c = (m.get("memory") or m).get("content", "")
                        if not c.startswith("victim"):
                            leaks.append(c[:80])
                stats.record(phase[0], "victim recall", (time.time() - t) * 1000, s, ok)

    def operator():
        k = 0
        gap = 1 / args.operator_rounds if args.operator_rounds > 0 else 0
        next_at = time.time()
        while not stop.is_set():
            if gap:
                next_at += gap
                time.sleep(max(0.0, next_at - time.time()))
            k += 1
            t = time.time()
            s, raw = call(NODES[k % 3], root, "POST", "/admin/keys", {"name": f"op-{run}-{k}", "scope": "read", "namespace": vns[0]})
            if s != 201 and s != 200:
                stats.record(phase[0], "catalogue round", 0, s, False)
                continue
            minted = json.loads(raw)
            s2, _ = call(NODES[(k + 1) % 3], minted["key"], "GET", f"/v1/namespaces/{vns[0]}")
            s3, _ = call(NODES[(k + 2) % 3], root, "DELETE", f"/admin/keys/{minted['key_id']}")
            ok = s2 == 200 and s3 == 200
            stats.record(phase[0], "catalogue round", (time.time() - t) * 1000, (s2, s3), ok)

    attacker_answers = {}
    a_lock = threading.Lock()

    def attack(name, make):
        k = 0
        while not stop.is_set():
            if phase[0] != "under attack":
                time.sleep(0.1)
                continue
            k += 1
            method, path, raw = make(k)
            s, answer = call(NODES[k % 3], attacker, method, path, timeout=120, raw_body=raw)
            code = ""
            if s >= 300:
                try:
                    code = " " + json.loads(answer).get("code", "")
                except (ValueError, AttributeError):
                    pass
            with a_lock:
                d = attacker_answers.setdefault(name, {})
                d[f"{s}{code}"] = d.get(f"{s}{code}", 0) + 1

    # Every attack body is encoded once: the client's own work must not be what slows the victim.
    enc = lambda body: json.dumps(body).encode()
    huge_meta = enc({"dimension": DIM, "metadata": {"blob": "m" * 9_500_000}})
    long_policy = enc({"episodic_decay": "s" * 100_000})
    many_ids = enc({"namespace": f"{ans}-big", "importance": 0.9, "memory_ids": [f"m{i}" for i in range(100_000)]})
    top_k = enc({"namespace": f"{ans}-big", "embedding": vec(rng), "top_k": 10_000})
    wide = enc({"namespace": f"{ans}-4096", "memories": [{"content": "a", "embedding": vec(rng, 4096)} for _ in range(25)]})
    claim = enc({"namespace": f"{ans}-big", "agent_id": "mallory", "id": f"shared-{run}"})
    attacks = {
        "9.5 MB namespace metadata": lambda k: ("PUT", f"/v1/namespaces/{ans}-meta-{k % 3}", huge_meta),
        "oversized policy strings": lambda k: ("PUT", f"/v1/namespaces/{ans}-big/memory_policy", long_policy),
        "importance over 100,000 ids": lambda k: ("POST", "/v1/memory/importance", many_ids),
        "recall top_k 10,000 (24 MB)": lambda k: ("POST", "/v1/memory/recall", top_k),
        "4096-d batch stores": lambda k: ("POST", "/v1/memories/store/batch", wide),
        "namespaces past the quota": lambda k: ("POST", "/v1/namespaces", enc({"name": f"{ans}-flood-{k}", "dimension": 8})),
        "victim's session id": lambda k: ("POST", "/v1/sessions/start", claim),
    }
    threads = [threading.Thread(target=victim_client, args=(w,), daemon=True) for w in range(args.victims)]
    threads.append(threading.Thread(target=operator, daemon=True))
    threads += [threading.Thread(target=attack, args=(n, f), daemon=True) for n, f in attacks.items()]
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    phase[0] = "under attack"
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join(timeout=180)

    print()
    print(f"| phase | operation | ok | per s | p50 ms | p99 ms | failed (status: count) |")
    print("|---|---|---|---|---|---|---|")
    for ph in ("baseline", "under attack"):
        for op in ("victim store", "victim recall", "catalogue round"):
            v = stats.lat.get((ph, op), [])
            e = stats.err.get((ph, op), {})
            print(f"| {ph} | {op} | {len(v)} | {len(v) / args.seconds:.1f} | {pct(v, 0.5):.1f} | {pct(v, 0.99):.1f} | {e or '—'} |")
    print()
    print("| attack | answers (status: count) |")
    print("|---|---|")
    for n in attacks:
        print(f"| {n} | {attacker_answers.get(n, {})} |")

    # Nothing of the attacker's in the victim's namespaces; the victim's session kept its agent.
    problems = list(leaks)
    for ns, ids in victim_ids.items():
        info = must(call(2, victim, "GET", f"/v1/namespaces/{ns}"), "victim namespace")
        count = info.get("memory_count", info.get("vector_count"))
        maybe = len(uncertain[ns] - ids)
        if not len(ids) <= count <= len(ids) + maybe:
            problems.append(f"{ns} holds {count} memories, the victim stored {len(ids)} (+{maybe} uncertain)")
    s, raw = call(3, victim, "GET", f"/v1/sessions/shared-{run}")
    if s != 200 or json.loads(raw).get("agent_id") != "victim-agent":
        problems.append(f"the victim's session is not its own any more: {s} {raw[:200]!r}")
    rounds = len(stats.lat.get(("under attack", "catalogue round"), []))
    if rounds == 0:
        problems.append("no catalogue round completed under attack")
    print()
    if problems:
        print("VIOLATIONS:")
        for p in problems:
            print(f"  {p}")
        sys.exit(1)
    print("no leak: every recalled memory was the victim's, its namespaces hold exactly what it stored, its session kept its agent")


if __name__ == "__main__":
    main()
