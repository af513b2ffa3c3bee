#!/usr/bin/env bash
# The same workload over REST and over typed gRPC (`loci.v1.Memories`) through one fresh node,
# alternating runs (docs/performance.md, "gRPC against REST on one node"). Needs the release
# build: cargo build --release -p loci-node -p loci-benches --bin loci --bin loadgen
set -u
T=${CARGO_TARGET_DIR:-/var/tmp/loci-target}
BIN=$T/release/loci; LG=$T/release/loadgen
KEY=bench-root-key-0123456789abcdef
pkill -f "serve --data-dir /var/tmp/bench-grpc"; while pgrep -f "serve --data-dir /var/tmp/bench-grpc" >/dev/null; do sleep 0.5; done
rm -rf /var/tmp/bench-grpc
LOCI_ROOT_API_KEY=$KEY LOCI_RATE_LIMIT_ENABLED=false $BIN serve --data-dir /var/tmp/bench-grpc > /tmp/bench-node.log 2>&1 &
for i in $(seq 1 60); do curl -sf http://127.0.0.1:3300/health/ready >/dev/null && break; sleep 1; done
common="--url http://127.0.0.1:3300 --grpc-url http://127.0.0.1:50051 --key $KEY --namespaces 64 --vector-dim 384 --concurrency 8 --seconds 10"
$LG $common --prefill 200 --recall-percent 100 --seconds 3 > /dev/null 2>&1   # prefill + warm-up
run() { # op proto args...
  local op=$1 proto=$2; shift 2
  local flag=""; [ $proto = grpc ] && flag="--grpc"
  echo "== $op $proto"; $LG $common --prefill 0 $flag "$@" 2>&1 | grep -E "^(recall|store|store_batch) |memories stored|requests/s"
}
for round in 1 2 3; do for proto in rest grpc; do run recall $proto --recall-percent 100; done; done
for round in 1 2 3; do for proto in rest grpc; do run store $proto --recall-percent 0; done; done
for round in 1 2; do for proto in rest grpc; do run store_batch $proto --recall-percent 0 --batch 100; done; done
pkill -f "serve --data-dir /var/tmp/bench-grpc"
