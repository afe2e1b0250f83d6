#!/usr/bin/env bash
# The whole local stack in one terminal (`make run` builds, then runs this):
#   1. Postgres: DATABASE_URL's server, else 127.0.0.1:5432, else a private cluster in .local/pg;
#   2. database chainsync_devnet, dropped and created anew (the devnet chain is new on every run), migrated;
#   3. anvil on 127.0.0.1:8545, the test contracts, the traffic generator (logs in .local/devnet/);
#   4. the loopback TON liteserver on 127.0.0.1:46000 serving the recorded TON transactions;
#   5. chainsync run --config config/default.toml, logging to this terminal.
# Ctrl-C or SIGTERM stops everything it started (chainsync, traffic, anvil, and the private Postgres
# cluster if it started it) and waits for them. The PIDs it started are in .local/devnet/pids.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

CONFIG=config/default.toml
PG_STARTED_PRIVATE=0

shutdown() {
  local status=$?
  trap '' INT TERM HUP
  # The indexer first, so it does not log the chain's disappearance; Postgres last.
  stop_children 10 chainsync migrate deploy
  stop_children 5 traffic anvil ton-liteserver
  if [[ $PG_STARTED_PRIVATE == 1 ]]; then stop_private_pg; fi
  say "everything it started has stopped"
  exit "$status"
}
trap shutdown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

[[ -x $CHAINSYNC_BIN ]] || die "${CHAINSYNC_BIN#"$REPO_ROOT"/} is missing: run 'make run' (it builds first)"
require_free_port "$ANVIL_PORT" anvil
require_free_port "$TON_LITESERVER_PORT" "TON liteserver"
require_free_port "$API_PORT" "chainsync API"
require_free_port "$METRICS_PORT" "chainsync metrics"
mkdir -p "$DEVNET_DIR"
: >"$PIDS_FILE"

ensure_postgres
if [[ $PG_STARTED_PRIVATE == 1 ]]; then
  printf 'postgres %s\n' "$(private_pg_pid)" >>"$PIDS_FILE"
fi
database_url=$(pg_database_url "$PG_SERVER_URL" "$DEVNET_DATABASE")
say "creating database $DEVNET_DATABASE anew and migrating it"
pg_recreate_database "$DEVNET_DATABASE"
run_child migrate - "$CHAINSYNC_BIN" migrate --database-url "$database_url"

start_devnet
start_ton_liteserver

start_child chainsync - env DATABASE_URL="$database_url" "$CHAINSYNC_BIN" run --config "$CONFIG"
say "chainsync started with $CONFIG on database $DEVNET_DATABASE"
say "  API:     $API_URL"
say "  metrics: $METRICS_URL"
say "  logs:    chainsync here; anvil, deploy, traffic and ton-liteserver in .local/devnet/*.log"
say "Ctrl-C stops everything."

supervise_children
