#!/usr/bin/env bash
# `make bench-evm`: the EVM backfill benchmark (benches/evm_backfill.rs) at 10k and 100k events,
# release build, against real anvil and PostgreSQL. Prints figures; asserts nothing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_postgres
export CHAINSYNC_TEST_DATABASE_URL=$PG_SERVER_URL
export CHAINSYNC_ANVIL=$ANVIL_BIN
cargo build --release --bin chainsync --bench evm_backfill
for events in 10000 100000; do
  say "== bench-evm: $events events"
  BENCH_EVENTS=$events cargo bench --bench evm_backfill 2>&1 | grep -v -e DEBUG -e '^chainsync log'
done
