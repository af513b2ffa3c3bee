#!/usr/bin/env bash
# The published Rust client (dakera-client 0.12.3) and CLI (dakera-cli 0.8.2) against a live Loci
# node: our own client tests (REST and gRPC), the client's own tests/integration_test.rs and
# tests/grpc_auth_test.rs copied verbatim from the crate, and a scripted CLI session. Builds the
# client and installs the CLI once into /var/tmp.
#
# Environment: LOCI_BIN (the binary under test), LOCI_COMPAT_RUST_TARGET (cargo target dir),
# LOCI_COMPAT_CLI_ROOT (where `cargo install` puts the CLI).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOCI_BIN="${LOCI_BIN:-${CARGO_TARGET_DIR:-/var/tmp/loci-target}/debug/loci}"
target="${LOCI_COMPAT_RUST_TARGET:-/var/tmp/loci-compat-rust/target}"
cli_root="${LOCI_COMPAT_CLI_ROOT:-/var/tmp/loci-compat-cli}"
key="dk-compat-root-key-$(date +%s%N)"

# 1. The client exactly as published, and its own integration suite, unmodified.
cargo fetch --manifest-path "$here/Cargo.toml" >/dev/null
crate="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/dakera-client-0.12.3 | head -1)"
cp "$crate/tests/integration_test.rs" "$here/tests/upstream_integration_test.rs"
cp "$crate/tests/grpc_auth_test.rs" "$here/tests/upstream_grpc_auth_test.rs"
CARGO_TARGET_DIR="$target" cargo test --manifest-path "$here/Cargo.toml" --no-run -q

# 2. The CLI.
if ! "$cli_root/bin/dk" --version 2>/dev/null | grep -q "0.8.2"; then
  CARGO_TARGET_DIR="$target-cli" cargo install --locked --root "$cli_root" dakera-cli --version 0.8.2
fi

# 3. A node.
work="$(mktemp -d)"
cleanup() {
  [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
LOCI_ROOT_API_KEY="$key" \
LOCI_ENCRYPTION_KEY="$(printf 'ab%.0s' {1..32})" \
LOCI_EMBEDDING_PROVIDER=hash \
LOCI_RATE_LIMIT_RPS=100000 LOCI_RATE_LIMIT_BURST=100000 \
LOCI_BACKUP_DIR="$work/backups" \
  "$LOCI_BIN" serve --data-dir "$work/data" --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --cluster-addr 127.0.0.1:0 \
  --gossip-addr 127.0.0.1:0 --ready-file "$work/ready.json" >"$work/loci.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [[ -f "$work/ready.json" ]] && break; sleep 0.1; done
http="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_addr"])' "$work/ready.json")"
url="http://$http"
grpc="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_addr"])' "$work/ready.json")"
for _ in $(seq 1 300); do curl -fs "$url/health/ready" >/dev/null && break; sleep 0.1; done
export DAKERA_TEST_URL="$url" DAKERA_API_KEY="$key" DAKERA_TEST_GRPC_URL="http://$grpc"

# 4. Our client tests, then theirs.
CARGO_TARGET_DIR="$target" cargo test --manifest-path "$here/Cargo.toml" -q --test client
# The gRPC client (feature `grpc`): our scripted session against the node, then the client's own
# tests/grpc_auth_test.rs, verbatim (it runs its own stand-in server).
CARGO_TARGET_DIR="$target" cargo test --manifest-path "$here/Cargo.toml" -q --test grpc
CARGO_TARGET_DIR="$target" cargo test --manifest-path "$here/Cargo.toml" -q --test upstream_grpc_auth_test
set +e
CARGO_TARGET_DIR="$target" cargo test --manifest-path "$here/Cargo.toml" --test upstream_integration_test \
  >"$work/upstream.txt" 2>&1
set -e
python3 "$here/check_results.py" "$work/upstream.txt" "$here/expectations.txt"

# 5. The CLI.
python3 "$here/cli_check.py" "$cli_root/bin/dk" "$url"
