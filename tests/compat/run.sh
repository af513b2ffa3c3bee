#!/usr/bin/env bash
# dakera-py 0.14.1 compatibility suite against real `loci` processes.
#
#   tests/compat/run.sh [pytest args…]      e.g. tests/compat/run.sh -k multitenant -x
#
# Environment:
#   LOCI_BIN             the binary under test (default ${CARGO_TARGET_DIR:-/var/tmp/loci-target}/debug/loci)
#   LOCI_COMPAT_VENV     virtualenv (default /var/tmp/loci-compat-venv; created / updated from requirements.txt)
#   LOCI_COMPAT_CACHE    where the dakera sdist is downloaded and unpacked (default /var/tmp/loci-compat-cache)
#   LOCI_COMPAT_OUT      per-test results of the sdist suites (default /var/tmp/loci-compat-out)
#   LOCI_COMPAT_EMBEDDING_PROVIDER  embedder of the nodes (default hash; `auto` + LOCI_COMPAT_MODEL_DIR for MiniLM)
#   LOCI_COMPAT_KEEP=1   keep the nodes' data directories and logs (printed at the end)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${LOCI_COMPAT_VENV:-/var/tmp/loci-compat-venv}"
export LOCI_BIN="${LOCI_BIN:-${CARGO_TARGET_DIR:-/var/tmp/loci-target}/debug/loci}"

if [[ ! -x "$LOCI_BIN" ]]; then
  echo "run.sh: no loci binary at $LOCI_BIN (build it with 'make build' or set LOCI_BIN)" >&2
  exit 2
fi

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
stamp="$venv/.loci-compat-requirements"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

cd "$here"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest "$@"
