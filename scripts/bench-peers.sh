#!/usr/bin/env bash
# `make bench-peers`: issue 13's side-by-side benchmark (benches/peers/bench_peers.py) against a
# release `loci` node and the local peers, in a pinned venv under /var/tmp. Extra arguments go to
# the harness (e.g. `--systems loci,pgvector --tenants 10`). Writes the table to stdout and
# /var/tmp/loci-bench-peers.json, the plot to /var/tmp/loci-bench-peers.png.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=/var/tmp/loci-target}"
export CARGO_TARGET_DIR
VENV=${BENCH_VENV:-/var/tmp/loci-bench-venv}
PINS=(chromadb==1.5.9 lancedb==0.40.0 pgserver==0.1.4 pymilvus==3.0.2 milvus-lite==3.2.2
      psycopg2-binary numpy requests matplotlib orjson==3.13.0)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# Installs only what is missing (pip is a no-op when the pins are satisfied).
"$VENV/bin/pip" install -q "${PINS[@]}"
# The same package set as `make loadgen`, so the two share one release build of the dependencies.
cargo build --release -p loci-node -p loci-benches --bins
exec "$VENV/bin/python" benches/peers/bench_peers.py \
  --loci-bin "$CARGO_TARGET_DIR/release/loci" \
  --json /var/tmp/loci-bench-peers.json --plot /var/tmp/loci-bench-peers.png "$@"
