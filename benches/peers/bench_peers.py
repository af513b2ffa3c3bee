#!/usr/bin/env python3
"""Issue 13's side-by-side benchmark: one seeded multi-tenant workload against a real `loci`
release node and the local peers (Chroma server, LanceDB embedded, PostgreSQL + pgvector through
pgserver, Milvus Lite), each on its own data directory on the same disk, in one run.

Workload (defaults): 100 tenants x 500 memories, 384-dimension client vectors (no model), content
of 200 bytes; ingest in batches of 100 by 4 writers; then 2,000 top-10 vector queries by 8
concurrent clients, each query inside one tenant. Checked per system: recall@10 against the exact
answer (numpy), and that no query returns another tenant's memory. Printed: one table with each
system's figures and Loci's ratio to the best peer on each column; `--json` and `--plot` write
them for docs/performance.md.

`make bench-peers` runs it in the pinned venv under /var/tmp (scripts/bench-peers.sh).
"""

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests

ROOT_KEY = "bench-peers-root-key-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def wait_http(url, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


class LeanHttp:
    """The cheapest REST client Python has: one kept-alive `http.client` connection per client
    and orjson (numpy arrays serialised natively). `requests` costs about 1.1 ms of client CPU
    per call here (measured: 1.8 ms against 0.66 ms a query on one connection), which on a
    2-core machine shared with the server is what a threaded client measures."""

    def __init__(self, port, headers):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = {"Content-Type": "application/json", **headers}

    def post(self, path, body):
        import orjson
        self.conn.request("POST", path, body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"POST {path}: {r.status} {data[:200]!r}")
        return orjson.loads(data)


def vector_literal(q):
    """pgvector's text form of a vector (`[x,y,...]`), formatted by orjson: the same client cost
    as the lean REST clients' bodies (f-strings cost 140 us a vector here)."""
    import orjson
    return orjson.dumps(q, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class Workload:
    def __init__(self, tenants, per_tenant, dim, queries, seed):
        rng = np.random.default_rng(seed)
        self.tenants, self.per_tenant, self.dim = tenants, per_tenant, dim
        # Each tenant's memories lie around a few topic centres, so neighbours mean something.
        self.vectors = {}
        for t in range(tenants):
            centres = rng.standard_normal((8, dim)).astype(np.float32)
            pick = rng.integers(0, 8, per_tenant)
            v = centres[pick] + 0.6 * rng.standard_normal((per_tenant, dim)).astype(np.float32)
            self.vectors[t] = v / np.linalg.norm(v, axis=1, keepdims=True)
        self.contents = {t: [f"tenant {t} memory {i} " + "x" * 180 for i in range(per_tenant)] for t in range(tenants)}
        self.ids = {t: [f"t{t}-m{i}" for i in range(per_tenant)] for t in range(tenants)}
        self.queries = []
        for _ in range(queries):
            t = int(rng.integers(0, tenants))
            base = self.vectors[t][int(rng.integers(0, per_tenant))]
            q = base + 0.3 * rng.standard_normal(dim).astype(np.float32)
            self.queries.append((t, (q / np.linalg.norm(q)).astype(np.float32)))
        self.truth = []
        for t, q in self.queries:
            scores = self.vectors[t] @ q
            top = np.argsort(-scores)[:10]
            self.truth.append({self.ids[t][i] for i in top})

    def batches(self, size):
        for t in range(self.tenants):
            for s in range(0, self.per_tenant, size):
                yield t, s, min(s + size, self.per_tenant)


# ---------------------------------------------------------------------------- systems


class Loci:
    name = "Loci"
    server = True

    def __init__(self, wl, root, binary):
        self.wl, self.dir, self.binary = wl, os.path.join(root, type(self).__name__.lower()), binary
        self.port, self.id_map = free_port(), {}

    def start(self):
        env = dict(os.environ)
        env.update({
            "LOCI_ROOT_API_KEY": ROOT_KEY,
            "LOCI_RATE_LIMIT_ENABLED": "false",
            "LOCI_EMBEDDING_PROVIDER": "hash",
            "LOCI_LOG": "warn",
            "RUST_LOG": "warn",
        })
        args = [
            self.binary, "serve", "--data-dir", self.dir,
            "--http-addr", f"127.0.0.1:{self.port}",
            "--grpc-addr", f"127.0.0.1:{free_port()}",
            "--cluster-addr", f"127.0.0.1:{free_port()}",
            "--gossip-addr", f"127.0.0.1:{free_port()}",
        ]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(self.dir + ".log", "w"))
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(self.base + "/health/ready")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ROOT_KEY}"
        for t in range(self.wl.tenants):
            r = self.http.post(self.base + "/v1/namespaces", json={
                "name": f"tenant-{t}", "embedding": {"provider": "client", "dimension": self.wl.dim}})
            r.raise_for_status()

    def ingest(self, t, s, e):
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {ROOT_KEY}"
        mems = [{"id": self.wl.ids[t][i], "content": self.wl.contents[t][i],
                 "embedding": self.wl.vectors[t][i].tolist()} for i in range(s, e)]
        r = http.post(self.base + "/v1/memories/store/batch", json={"namespace": f"tenant-{t}", "memories": mems})
        r.raise_for_status()

    def query(self, t, q, http):
        r = http.post(self.base + "/v1/memory/search", json={
            "namespace": f"tenant-{t}", "embedding": q.tolist(), "top_k": 10, "routing": "vector"})
        r.raise_for_status()
        return [m.get("memory", m)["id"] for m in r.json()["memories"]]

    def client(self):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {ROOT_KEY}"
        return s

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class LociIds(Loci):
    """Loci answering through its vector API (`POST /v1/namespaces/{ns}/query`,
    `include_metadata: false`): ids and scores only, as the peers answer here."""

    name = "Loci (vector API, ids)"

    def query(self, t, q, http):
        r = http.post(self.base + f"/v1/namespaces/tenant-{t}/query",
                      json={"vector": q.tolist(), "top_k": 10, "include_metadata": False})
        r.raise_for_status()
        return [m["id"] for m in r.json()["results"]]


class LociLean(Loci):
    """Loci's vector API (ids only) through the lean REST client (`LeanHttp`) for ingest and
    queries alike."""

    name = "Loci (vector API, lean client)"

    def ingest(self, t, s, e):
        http = LeanHttp(self.port, {"Authorization": f"Bearer {ROOT_KEY}"})
        mems = [{"id": self.wl.ids[t][i], "content": self.wl.contents[t][i], "embedding": self.wl.vectors[t][i]}
                for i in range(s, e)]
        http.post("/v1/memories/store/batch", {"namespace": f"tenant-{t}", "memories": mems})

    def client(self):
        return LeanHttp(self.port, {"Authorization": f"Bearer {ROOT_KEY}"})

    def query(self, t, q, http):
        r = http.post(f"/v1/namespaces/tenant-{t}/query", {"vector": q, "top_k": 10, "include_metadata": False})
        return [m["id"] for m in r["results"]]


class Chroma:
    name = "Chroma (server)"
    server = True

    def __init__(self, wl, root):
        self.wl, self.dir, self.port = wl, os.path.join(root, "chroma"), free_port()

    def start(self):
        exe = os.path.join(os.path.dirname(sys.executable), "chroma")
        self.proc = subprocess.Popen([exe, "run", "--path", self.dir, "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/api/v2/heartbeat")
        import chromadb
        c = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        for t in range(self.wl.tenants):
            c.get_or_create_collection(f"tenant-{t}", metadata={"hnsw:space": "cosine"})

    def client(self):
        import chromadb
        c = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        return {t: c.get_collection(f"tenant-{t}") for t in range(self.wl.tenants)}

    def ingest(self, t, s, e):
        import chromadb
        col = chromadb.HttpClient(host="127.0.0.1", port=self.port).get_collection(f"tenant-{t}")
        col.add(ids=self.wl.ids[t][s:e], embeddings=self.wl.vectors[t][s:e], documents=self.wl.contents[t][s:e])

    def query(self, t, q, cols):
        r = cols[t].query(query_embeddings=[q], n_results=10, include=[])
        return r["ids"][0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


class ChromaLean(Chroma):
    """Chroma's own REST route for a query (`/api/v2/.../collections/{id}/query`, what its
    HttpClient calls) through the lean client, ids only: the same client cost as
    `LociLean`."""

    name = "Chroma (server, lean client)"

    def client(self):
        import chromadb
        c = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        ids = {t: str(c.get_collection(f"tenant-{t}").id) for t in range(self.wl.tenants)}
        return LeanHttp(self.port, {}), ids

    def query(self, t, q, client):
        http, ids = client
        r = http.post(f"/api/v2/tenants/default_tenant/databases/default_database/collections/{ids[t]}/query",
                      {"query_embeddings": [q], "n_results": 10, "include": []})
        return r["ids"][0]


class Lance:
    name = "LanceDB (embedded)"

    def __init__(self, wl, root):
        self.wl, self.dir = wl, os.path.join(root, "lance")

    def start(self):
        import lancedb
        import pyarrow as pa
        self.db = lancedb.connect(self.dir)
        schema = pa.schema([("id", pa.string()), ("tenant", pa.int32()), ("content", pa.string()),
                            ("vector", pa.list_(pa.float32(), self.wl.dim))])
        self.table = self.db.create_table("memories", schema=schema, mode="overwrite")
        import threading
        self.lock = threading.Lock()

    def ingest(self, t, s, e):
        rows = [{"id": self.wl.ids[t][i], "tenant": t, "content": self.wl.contents[t][i],
                 "vector": self.wl.vectors[t][i]} for i in range(s, e)]
        with self.lock:  # one writer at a time: concurrent appends to one table conflict
            self.table.add(rows)

    def prepare(self):
        # A scalar index on the tenant column, so a tenant's prefilter does not read every row.
        self.table.create_scalar_index("tenant")

    def client(self):
        return self.db.open_table("memories")

    def query(self, t, q, table):
        r = table.search(q).metric("cosine").where(f"tenant = {t}", prefilter=True).limit(10).select(["id", "_distance"]).to_list()
        return [x["id"] for x in r]

    def stop(self):
        pass


class Pg:
    name = "PostgreSQL + pgvector (RLS)"
    server = True

    def __init__(self, wl, root):
        self.wl, self.dir = wl, os.path.join(root, "pg")

    def start(self):
        import pgserver
        import psycopg2
        self.srv = pgserver.get_server(self.dir, cleanup_mode="stop")
        self.uri = self.srv.get_uri()
        con = psycopg2.connect(self.uri)
        con.autocommit = True
        cur = con.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        cur.execute(f"CREATE TABLE mem (tenant int NOT NULL, id text NOT NULL, content text, "
                    f"v vector({self.wl.dim})) PARTITION BY LIST (tenant)")
        for t in range(self.wl.tenants):
            cur.execute(f"CREATE TABLE mem_{t} PARTITION OF mem FOR VALUES IN ({t})")
            cur.execute(f"CREATE INDEX ON mem_{t} USING hnsw (v vector_cosine_ops)")
        cur.execute("ALTER TABLE mem ENABLE ROW LEVEL SECURITY")
        cur.execute("CREATE POLICY tenant_only ON mem USING (tenant = current_setting('app.tenant')::int)")
        cur.execute("DO $$ BEGIN CREATE ROLE app LOGIN PASSWORD 'app'; EXCEPTION WHEN duplicate_object THEN END $$")
        cur.execute("GRANT SELECT, INSERT ON mem TO app")
        for t in range(self.wl.tenants):
            cur.execute(f"GRANT SELECT, INSERT ON mem_{t} TO app")
        con.close()

    def _app(self):
        import psycopg2
        con = psycopg2.connect(self.uri)
        # Row-level security applies to a role that is not the table's owner.
        con.cursor().execute("SET ROLE app")
        con.commit()
        return con

    def ingest(self, t, s, e):
        from psycopg2.extras import execute_values
        con = self._app()
        cur = con.cursor()
        cur.execute("SELECT set_config('app.tenant', %s, false)", (str(t),))
        execute_values(cur, "INSERT INTO mem (tenant, id, content, v) VALUES %s",
                       [(t, self.wl.ids[t][i], self.wl.contents[t][i],
                         vector_literal(self.wl.vectors[t][i])) for i in range(s, e)])
        con.commit()
        con.close()

    def client(self):
        return self._app()

    def query(self, t, q, con):
        cur = con.cursor()
        cur.execute("SELECT set_config('app.tenant', %s, false)", (str(t),))
        cur.execute("SELECT id FROM mem WHERE tenant = %s ORDER BY v <=> %s::vector LIMIT 10", (t, vector_literal(q)))
        rows = [r[0] for r in cur.fetchall()]
        con.commit()
        return rows

    def stop(self):
        self.srv.cleanup()


class Milvus:
    name = "Milvus Lite (partition key)"

    def __init__(self, wl, root):
        self.wl, self.dir = wl, os.path.join(root, "milvus")

    def start(self):
        from pymilvus import DataType, MilvusClient
        os.makedirs(self.dir, exist_ok=True)
        self.uri = os.path.join(self.dir, "milvus.db")
        c = MilvusClient(self.uri)
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("tenant", DataType.INT64, is_partition_key=True)
        schema.add_field("content", DataType.VARCHAR, max_length=512)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=self.wl.dim)
        idx = c.prepare_index_params()
        idx.add_index("v", index_type="AUTOINDEX", metric_type="COSINE")
        c.create_collection("mem", schema=schema, index_params=idx)
        self.c = c
        import threading
        self.lock = threading.Lock()

    def ingest(self, t, s, e):
        rows = [{"id": self.wl.ids[t][i], "tenant": t, "content": self.wl.contents[t][i],
                 "v": self.wl.vectors[t][i].tolist()} for i in range(s, e)]
        with self.lock:  # Milvus Lite is one local process behind one client
            self.c.insert("mem", rows)

    def client(self):
        self.c.load_collection("mem")
        return self.c

    def query(self, t, q, c):
        with self.lock:
            r = c.search("mem", data=[q.tolist()], limit=10, filter=f"tenant == {t}", output_fields=["id"])
        return [h["id"] for h in r[0]]

    def stop(self):
        self.c.close()


class Leaky:
    """A deliberately broken system for the checks themselves: exact search, but in the next
    tenant's memories. `--systems leaky` must report cross-tenant results and a low recall, and
    exit 1 (run it after changing the checks)."""

    name = "leaky (self-check)"

    def __init__(self, wl, root):
        self.wl, self.dir = wl, os.path.join(root, "leaky")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)

    def ingest(self, t, s, e):
        pass

    def client(self):
        return None

    def query(self, t, q, _):
        other = (t + 1) % self.wl.tenants
        top = np.argsort(-(self.wl.vectors[other] @ q))[:10]
        return [self.wl.ids[other][i] for i in top]

    def stop(self):
        pass


# ---------------------------------------------------------------------------- the run


# What a forked query process works on (inherited, never pickled).
_FORKED = None


def _share(share):
    system, wl = _FORKED
    c = system.client()
    out = []
    for i in share:
        t, q = wl.queries[i]
        t0 = time.perf_counter()
        ids = system.query(t, q, c)
        out.append((i, time.perf_counter() - t0, ids))
    return out


def measure(system, wl, writers, clients, processes=False):
    system.start()
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(writers) as ex:
        list(ex.map(lambda b: system.ingest(*b), list(wl.batches(100))))
    # Indexes a system builds after loading count as ingest.
    if hasattr(system, "prepare"):
        system.prepare()
    ingest_s = time.perf_counter() - started
    n = wl.tenants * wl.per_tenant
    # Warm-up: one query per tenant, not measured.
    warm = system.client()
    for t in range(wl.tenants):
        system.query(t, wl.vectors[t][0], warm)
    lat = [0.0] * len(wl.queries)
    got = [None] * len(wl.queries)
    shares = [list(range(k, len(wl.queries), clients)) for k in range(clients)]

    def run(share):
        c = system.client()
        for i in share:
            t, q = wl.queries[i]
            t0 = time.perf_counter()
            got[i] = system.query(t, q, c)
            lat[i] = time.perf_counter() - t0

    started = time.perf_counter()
    if processes and getattr(system, "server", False):
        # One client process each (no shared interpreter lock between the clients); only for
        # the systems behind a server, which a forked client reaches over its own connection.
        import multiprocessing as mp
        global _FORKED
        _FORKED = (system, wl)
        with mp.get_context("fork").Pool(clients) as pool:
            for part in pool.map(_share, shares):
                for i, dt, ids in part:
                    lat[i], got[i] = dt, ids
    else:
        with cf.ThreadPoolExecutor(clients) as ex:
            list(ex.map(run, shares))
    query_s = time.perf_counter() - started
    recall = float(np.mean([len(set(g[:10]) & truth) / 10 for g, truth in zip(got, wl.truth)]))
    foreign = sum(1 for (t, _), g in zip(wl.queries, got) for i in g if not i.startswith(f"t{t}-"))
    system.stop()
    lat_ms = np.array(lat) * 1000
    return {
        "system": system.name,
        "ingest_per_s": n / ingest_s,
        "qps": len(wl.queries) / query_s,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "recall_at_10": recall,
        "cross_tenant_results": foreign,
        "disk_mb": dir_bytes(system.dir) / 1e6,
    }


def table(rows):
    cols = [("ingest_per_s", "ingest/s", True), ("qps", "QPS", True), ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False), ("recall_at_10", "recall@10", True), ("disk_mb", "disk MB", False)]
    out = ["| system | " + " | ".join(c[1] for c in cols) + " | cross-tenant |",
           "|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        out.append(f"| {r['system']} | " + " | ".join(
            f"{r[k]:,.3f}" if k == "recall_at_10" else (f"{r[k]:,.1f}" if k.endswith("ms") or k == "disk_mb" else f"{r[k]:,.0f}")
            for k, _, _ in cols) + f" | {r['cross_tenant_results']} |")
    ours = ("Loci", LociIds.name, LociLean.name, Leaky.name)
    peers = [r for r in rows if r["system"] not in ours]
    for loci in (r for r in rows if r["system"] in ours[:3]):
        if not peers:
            break
        ratios = []
        for k, _, higher in cols:
            best = max(p[k] for p in peers) if higher else min(p[k] for p in peers)
            ratios.append(f"{loci[k] / best:.2f}x" if best else "-")
        out.append(f"| **{loci['system']} / best peer** | " + " | ".join(ratios) + " | |")
    return "\n".join(out)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["system"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(names, [r["qps"] for r in rows], color="#3b7dd8")
    a.set_title("vector queries per second (8 clients)")
    b.bar(names, [r["p99_ms"] for r in rows], color="#d8703b")
    b.set_title("p99 latency, ms")
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=25)
        for lbl in ax.get_xticklabels():
            lbl.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loci-bin", required=True)
    ap.add_argument("--systems", default="loci,chroma,lancedb,pgvector,milvus")
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--per-tenant", type=int, default=500)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--dir", default=None, help="where the data directories go (default: a fresh one under /var/tmp)")
    ap.add_argument("--processes", action="store_true",
                    help="query clients are processes, not threads (server systems only)")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    a = ap.parse_args()
    root = a.dir or tempfile.mkdtemp(prefix="loci-bench-peers-", dir="/var/tmp")
    wl = Workload(a.tenants, a.per_tenant, a.dim, a.queries, a.seed)
    make = {"loci": lambda: Loci(wl, root, a.loci_bin), "loci-ids": lambda: LociIds(wl, root, a.loci_bin),
            "loci-lean": lambda: LociLean(wl, root, a.loci_bin),
            "chroma": lambda: Chroma(wl, root), "chroma-lean": lambda: ChromaLean(wl, root),
            "lancedb": lambda: Lance(wl, root), "pgvector": lambda: Pg(wl, root), "milvus": lambda: Milvus(wl, root),
            "leaky": lambda: Leaky(wl, root)}
    rows = []
    for name in a.systems.split(","):
        print(f"== {name}", flush=True)
        system = make[name.strip()]()
        r = measure(system, wl, a.writers, a.clients, a.processes)
        r["clients"] = "processes" if a.processes and getattr(system, "server", False) else "threads"
        print(json.dumps(r), flush=True)
        rows.append(r)
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"workload": vars(a), "results": rows}, f, indent=1)
    if a.plot:
        plot(rows, a.plot)
    if not a.dir:
        shutil.rmtree(root, ignore_errors=True)
    bad = [r["system"] for r in rows if r["cross_tenant_results"]]
    if bad:
        print(f"cross-tenant results from: {', '.join(bad)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
