#!/usr/bin/env bash
# The devnet alone (`make devnet`): anvil on 127.0.0.1:8545 with one-second blocks, the test
# contracts (addresses in .local/devnet/deployment.json) and the traffic generator; no Postgres,
# no chainsync. Logs go to .local/devnet/*.log. Ctrl-C or SIGTERM stops it all.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

shutdown() {
  local status=$?
  trap '' INT TERM HUP
  stop_children 5 deploy traffic anvil
  say "the devnet has stopped"
  exit "$status"
}
trap shutdown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$DEVNET_DIR"
: >"$PIDS_FILE"

start_devnet
say "devnet running: RPC $ANVIL_URL, contracts in .local/devnet/deployment.json, logs in .local/devnet/*.log"
say "Ctrl-C stops it."

supervise_children
