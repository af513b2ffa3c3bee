#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (libFuzzer, -max_total_time), then
# print one line per target: run time, executions, executions per second, corpus growth, result.
# Usage: scripts/fuzz.sh [target ...]   (default: every target)
# The working corpus grows in FUZZ_CORPUS_DIR; the checked-in seeds in fuzz/corpus/<target>/ are
# read, never written. A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_CORPUS_DIR=${FUZZ_CORPUS_DIR:-/var/tmp/loci-fuzz-corpus}
# Sanitizer-coverage flags rebuild everything: never share the normal target dir.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/loci-fuzz-target}
# cargo-fuzz passes nightly-only flags; the stable compiler accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# RUSTFLAGS replaces the rustflags of .cargo/config.toml: keep its linker choice.
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=lld"
# No sanitizer: the code under test is safe Rust (unsafe_code = "deny"), so what the fuzzer
# looks for is a panic, an overflow (-a: debug assertions and overflow checks on) or a blow-up
# in time or memory; without ASan every target runs about twice as fast.
FLAGS=(--sanitizer none --debug-assertions --release)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
if ! cargo fuzz build "${FLAGS[@]}"; then
  echo "fuzz: build failed" >&2
  exit 1
fi

logs=$(mktemp -d)
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$FUZZ_CORPUS_DIR/$t" "corpus/$t"
  echo "fuzz: $t for ${FUZZ_SECONDS}s"
  cargo fuzz run "${FLAGS[@]}" "$t" "$FUZZ_CORPUS_DIR/$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    >"$logs/$t.log" 2>&1
  echo $? >"$logs/$t.rc"
done

printf '\n%-20s %8s %12s %10s %8s %8s  %s\n' target seconds executions exec/s corpus rss_mb result
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  rc=$(cat "$logs/$t.rc")
  stat() { grep -m1 "stat::$1:" "$log" | awk '{print $2}'; }
  runs=$(stat number_of_executed_units)
  eps=$(stat average_exec_per_sec)
  rss=$(stat peak_rss_mb)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | awk '{print $5}')
  units=$(find "$FUZZ_CORPUS_DIR/$t" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    result=clean
  else
    failed=1
    result="FAILED (rc $rc): $(grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | cut -c1-120) -> fuzz/artifacts/$t/"
  fi
  printf '%-20s %8s %12s %10s %8s %8s  %s\n' "$t" "${secs:-?}" "${runs:-?}" "${eps:-?}" "$units" "${rss:-?}" "$result"
done
echo "fuzz logs: $logs"
exit $failed
