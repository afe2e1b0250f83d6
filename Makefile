# The commands a newcomer types. `make help` lists them; the work happens in scripts/.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Benchmarks, one target each; `make bench` runs every one listed here.
BENCHES := bench-evm bench-ton

.PHONY: help run test lint fmt build contracts contracts-check devnet db bench bench-evm bench-ton tools clean-local \
	ton-scenarios-install ton-scenarios ton-scenarios-check

help: ## List the targets
	@echo "Usage: make TARGET"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  %-16s %s\n", $$1, $$2 }'

run: tools ## Run the local stack: Postgres, anvil + contracts + traffic, chainsync (Ctrl-C stops it all)
	cargo build --bin chainsync
	scripts/run.sh

test: ## Run every check CI runs: fmt, build, clippy, contracts, tests, smoke test (timed)
	scripts/test.sh

lint: ## Check formatting and run clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

build: tools ## Build the workspace
	cargo build --workspace

contracts: tools ## Compile the test contracts (devnet/compile.js)
	node devnet/compile.js

contracts-check: tools ## Check the committed contract artifacts against their sources
	node devnet/compile.js --check

ton-scenarios-install: ## Install the pinned TON emulator packages (devnet/ton-sandbox)
	npm ci --prefix devnet/ton-sandbox

ton-scenarios: ton-scenarios-install ## Regenerate the TON scenarios (tests/fixtures/ton/sandbox) with @ton/sandbox
	node devnet/ton-sandbox/generate.mjs

ton-scenarios-check: ton-scenarios-install ## Check the committed TON scenarios against the generator
	node devnet/ton-sandbox/generate.mjs --check

devnet: tools ## Run only the devnet: anvil on :8545, the test contracts and the traffic generator
	cargo build --bin chainsync
	scripts/devnet.sh

db: tools ## Make sure Postgres runs, create database chainsync_devnet if missing, migrate it
	cargo build --bin chainsync
	scripts/db.sh

bench-evm: tools ## Backfill 10k and 100k devnet events; compare with bare eth_getLogs and bare inserts
	scripts/bench-evm.sh

bench-ton: ## Poll 200 vs 10k TON accounts: CPU and liteserver requests per block, deposit latency
	scripts/bench-ton.sh

bench: $(BENCHES) ## Run the benchmarks
	@echo "bench: $(words $(BENCHES)) benchmark(s) defined$(if $(BENCHES),: $(BENCHES))"

tools: ## Install what is missing (Debian packages, Node.js, anvil); see scripts/install.sh
	scripts/install.sh

clean-local: ## Stop the private Postgres cluster and delete .local/ (devnet state, logs)
	source scripts/lib.sh && SCRIPT_NAME=clean-local && stop_private_pg
	rm -rf .local
