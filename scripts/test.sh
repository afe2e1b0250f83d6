#!/usr/bin/env bash
# `make test`: every check CI runs, in order, each timed:
#   install    scripts/install.sh (what is missing)
#   fmt        cargo fmt --all -- --check
#   build      cargo build --workspace --all-targets
#   clippy     cargo clippy --workspace --all-targets -- -D warnings
#   contracts  node devnet/compile.js --check (the committed contract artifacts match the sources)
#   scenarios  node devnet/ton-sandbox/generate.mjs --check (the committed TON scenarios equal a
#              fresh generation by the TON emulator)
#   dashboards scripts/check-dashboards.sh (promtool: alert rules, their unit tests, the example config)
#   tests      cargo nextest run (cargo test when nextest is absent) against real Postgres and anvil
#   smoke      tests/smoke_run.sh (make run, Ctrl-C, everything stopped)
# The tests find Postgres through CHAINSYNC_TEST_DATABASE_URL (a server URL without a database
# name) and anvil through CHAINSYNC_ANVIL (an absolute path); both are exported here.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PG_STARTED_PRIVATE=0
TIMINGS=()

finish() {
  local status=$? line
  if [[ $PG_STARTED_PRIVATE == 1 ]]; then stop_private_pg; fi
  if [[ ${#TIMINGS[@]} -gt 0 ]]; then
    echo "stage timings (wall seconds):"
    for line in "${TIMINGS[@]}"; do echo "  $line"; done
  fi
  exit "$status"
}
trap finish EXIT

# stage NAME CMD...: runs CMD, records its wall time, stops everything at the first failure.
stage() {
  local name=$1 started status=0
  shift
  say "== $name"
  started=$(date +%s)
  "$@" || status=$?
  TIMINGS+=("$(printf '%-10s %5ss%s' "$name" "$(($(date +%s) - started))" "$([[ $status == 0 ]] || echo '  FAILED')")")
  [[ $status == 0 ]] || die "stage '$name' failed (status $status)"
}

run_cargo_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --lib --bins --tests --no-tests=warn
  else
    cargo test --workspace --lib --bins --tests
  fi
}

stage install scripts/install.sh
stage fmt cargo fmt --all -- --check
stage build cargo build --workspace --all-targets
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage contracts node devnet/compile.js --check
stage scenarios node devnet/ton-sandbox/generate.mjs --check
stage dashboards scripts/check-dashboards.sh
ensure_postgres
export CHAINSYNC_TEST_DATABASE_URL=$PG_SERVER_URL
export CHAINSYNC_ANVIL=$ANVIL_BIN
stage tests run_cargo_tests
stage smoke tests/smoke_run.sh
say "all stages passed"
