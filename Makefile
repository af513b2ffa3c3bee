# Loci — the two commands a newcomer needs: `make run` and `make test`.
# Build artefacts live outside the clone so RocksDB's C++ is compiled once per machine.
CARGO_TARGET_DIR ?= /var/tmp/loci-target
export CARGO_TARGET_DIR
DATA_DIR ?= ./data
LOCI := $(CARGO_TARGET_DIR)/debug/loci

.PHONY: run test deps build fmt lint bench clean-data

deps:
	@./scripts/ensure-deps.sh

build: deps
	cargo build -p loci-node

## Start one node with the embedded defaults (REST :3300, gRPC :50051).
run: build
	@echo "Starting Loci. Data: $(DATA_DIR). Root API key: $(DATA_DIR)/root.key (unless LOCI_ROOT_API_KEY is set)."
	$(LOCI) serve --data-dir $(DATA_DIR)

## The whole test suite.
test: deps
	cargo nextest run --workspace --profile ci

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets

bench:
	cargo bench -p loci-benches

clean-data:
	rm -rf $(DATA_DIR)
