#!/usr/bin/env bash
# Scale-out on the docker-compose rig: write and recall throughput of 1, 3 and 5 nodes, with
# replication factor 1 and 3, every node given the same CPU quota. For each configuration the
# rig is re-created empty, `loadgen` (release) prefills the namespaces through loci-1, then runs
# a store-only and a recall-only phase with its clients spread over every node's published
# port. Prints one table (markdown) at the end; the raw loadgen output goes to $OUT_DIR.
#
#   scripts/rig-scale.sh            # the images (loci:dev from the release binary) must exist
#
# Knobs: CPUS (per node, default 0.3), SECONDS_EACH (20), CLIENTS (16), NAMESPACES (30),
# PREFILL (50), NODE_COUNTS ("1 3 5"), RFS ("1 3"), VECTOR_DIM (0: the nodes embed with the built-in
# model; e.g. 384: client-supplied vectors, no model anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."

CPUS=${CPUS:-0.3}
SECONDS_EACH=${SECONDS_EACH:-20}
CLIENTS=${CLIENTS:-16}
NAMESPACES=${NAMESPACES:-30}
PREFILL=${PREFILL:-50}
NODE_COUNTS=${NODE_COUNTS:-"1 3 5"}
VECTOR_DIM=${VECTOR_DIM:-0}
RFS=${RFS:-"1 3"}
OUT_DIR=${OUT_DIR:-/var/tmp/rig-scale}
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-/var/tmp/loci-target}/release/loadgen}
[ -x "$LOADGEN" ] || { echo "rig-scale: $LOADGEN is missing (cargo build --release -p loci-benches --bin loadgen)" >&2; exit 2; }
mkdir -p "$OUT_DIR"

# per_s FILE OP: the "per s" column of OP's row in a loadgen report.
per_s() { awk -v op="$2" '$1 == op {print $3}' "$1" | tail -1; }
p99() { awk -v op="$2" '$1 == op {print $6}' "$1" | tail -1; }
failed() { awk -v op="$2" '$1 == op {for (i = 8; i <= NF; i++) printf "%s", $i; print ""}' "$1" | tail -1; }

rows=()
for n in $NODE_COUNTS; do
    for rf in $RFS; do
        [ "$rf" -le "$n" ] || continue
        echo "== $n node(s), rf $rf, $CPUS CPU each"
        deploy/rig.sh down -v >/dev/null 2>&1 || true
        LOCI_RIG_CPUS=$CPUS LOCI_RIG_REPLICATION_FACTOR=$rf LOCI_RIG_RATE_LIMIT_RPS=1000000 LOCI_RIG_RATE_LIMIT_BURST=1000000 \
            deploy/rig.sh up "$n"
        key=$(grep '^LOCI_ROOT_API_KEY=' deploy/.env | cut -d= -f2-)
        urls=$(seq 1 "$n" | sed 's|^|http://127.0.0.1:330|' | paste -sd, -)
        common=(--url "$urls" --key "$key" --concurrency "$CLIENTS" --namespaces "$NAMESPACES" --seconds "$SECONDS_EACH" --vector-dim "$VECTOR_DIM")
        w="$OUT_DIR/n$n-rf$rf-d$VECTOR_DIM-store.txt"
        r="$OUT_DIR/n$n-rf$rf-d$VECTOR_DIM-recall.txt"
        "$LOADGEN" "${common[@]}" --prefill "$PREFILL" --recall-percent 0 | tee "$w"
        "$LOADGEN" "${common[@]}" --prefill 0 --recall-percent 100 | tee "$r"
        rows+=("| $n | $rf | $(per_s "$w" store) | $(p99 "$w" store) | $(per_s "$r" recall) | $(p99 "$r" recall) | $(failed "$w" store) $(failed "$r" recall) |")
    done
done
deploy/rig.sh down -v >/dev/null 2>&1 || true

echo
echo "| nodes | rf | stores/s | store p99 ms | recalls/s | recall p99 ms | failed (status: count) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
