#!/usr/bin/env bash
# `make bench-ton`: the TON polling benchmark (benches/ton_poll.rs) with 200 and 10,000 watched
# accounts in one run, release build, against the loopback liteserver and real PostgreSQL.
# Prints figures; asserts nothing about speed, but fails when the deposits never all arrive.
# BENCH_TON_* variables (see the benchmark's header) change the settings.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
# No anvil or Node.js here: only the toolchain, the build packages and the Postgres client.
scripts/install.sh rust debian
ensure_postgres
export CHAINSYNC_TEST_DATABASE_URL=$PG_SERVER_URL
cargo build --release --bin chainsync --bench ton_poll
say "== bench-ton: ${BENCH_TON_ACCOUNTS:-200,10000} watched accounts (several minutes)"
cargo bench --bench ton_poll 2>&1 | grep -v -e DEBUG -e '^chainsync log'
