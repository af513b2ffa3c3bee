#!/usr/bin/env bash
# The seed conformance suite: every example of /work/shared/seeds (copies quoted in the tests'
# docstrings as `seed FILE:LINE`) replayed against real `loci` processes.
#
#   tests/seeds/run.sh [pytest args…]
#
# Shares the compatibility suite's harness and virtualenv (tests/compat/run.sh creates it, with
# dakera==0.14.1); LOCI_BIN and the other LOCI_COMPAT_* variables mean the same here.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${LOCI_COMPAT_VENV:-/var/tmp/loci-compat-venv}"
export LOCI_COMPAT_VENV="$venv"
# Create or refresh the shared virtualenv (and check LOCI_BIN) through the compat runner.
"$here/../compat/run.sh" --version >/dev/null

cd "$here"
export PYTHONDONTWRITEBYTECODE=1
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "tests/seeds/run.sh: pytest collected no tests (exit 5); the seed suite must always run tests" >&2
  exit 1
fi
exit $rc
