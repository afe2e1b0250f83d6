#!/usr/bin/env bash
# Smoke test of `make run`, as a newcomer would use it: start it, wait until the devnet chain
# answers eth_blockNumber, chainsync serves /metrics and has indexed both the EVM devnet and the
# TON liteserver, press Ctrl-C, and check that every process it started is gone 15 s later.
#
# Needs the ports of config/default.toml (8545, 46000, 8080, 9100) free. `make test` runs it last.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
SCRIPT_NAME=smoke

READY_DEADLINE=120
STOP_DEADLINE=15
RUN_LOG="$LOCAL_DIR/smoke/make-run.log"

run_pid=""
finished=0

fail() {
  say "FAILED: $*"
  if [[ -n $run_pid ]]; then show_log_tail "$RUN_LOG"; fi
  echo "smoke: 0 passed, 1 failed"
  exit 1
}

# On failure, leave nothing running: make's process group, then whatever run.sh recorded.
clean_up() {
  local name pid
  if [[ $finished == 1 ]]; then return 0; fi
  if [[ -n $run_pid ]]; then kill -KILL -- "-$run_pid" 2>/dev/null || true; fi
  if [[ -f $PIDS_FILE ]]; then
    while read -r name pid; do
      if [[ $name == postgres ]]; then
        stop_private_pg || true
      else
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$PIDS_FILE"
  fi
}
trap clean_up EXIT

# The PID run.sh recorded for NAME.
recorded_pid() { awk -v name="$1" '$1 == name { print $2 }' "$PIDS_FILE" 2>/dev/null; }

# True when /metrics answers with chainsync's own series.
serves_metrics() {
  local body
  body=$(curl -sf -m 2 "$METRICS_URL") && [[ $body == *$'\n'chainsync_build_info* ]]
}

for port in "$ANVIL_PORT" "$TON_LITESERVER_PORT" "$API_PORT" "$METRICS_PORT"; do
  if port_in_use "$port"; then fail "127.0.0.1:$port is already taken before the test started"; fi
done

say "building (make run then finds the binary up to date)"
cargo build --quiet --bin chainsync || fail "cargo build failed"

mkdir -p "$(dirname "$RUN_LOG")"
rm -f "$PIDS_FILE"
# `make run` in a process group of its own, as a terminal runs a foreground job. SIGINT is reset
# to its default first: a shell ignores it in background jobs, and the children would inherit that.
perl -e '$SIG{INT} = "DEFAULT"; setpgrp(0, 0); exec @ARGV or die "exec: $!\n"' \
  make --no-print-directory run </dev/null >"$RUN_LOG" 2>&1 &
run_pid=$!
say "started make run (pid $run_pid, output in ${RUN_LOG#"$REPO_ROOT"/})"

deadline=$((SECONDS + READY_DEADLINE))
until rpc_block_number "$ANVIL_URL" >/dev/null; do
  alive "$run_pid" || fail "make run exited before anvil answered (its output is below)"
  ((SECONDS < deadline)) || fail "anvil did not answer on $ANVIL_URL within ${READY_DEADLINE}s"
  sleep 0.5
done
say "anvil answers eth_blockNumber"

until chainsync_pid=$(recorded_pid chainsync) && [[ -n $chainsync_pid ]]; do
  alive "$run_pid" || fail "make run exited before it started chainsync"
  ((SECONDS < deadline)) || fail "chainsync was not started within ${READY_DEADLINE}s"
  sleep 0.5
done
until serves_metrics; do
  alive "$chainsync_pid" || fail "chainsync exited before $METRICS_URL answered"
  ((SECONDS < deadline)) || fail "$METRICS_URL did not serve chainsync_build_info within ${READY_DEADLINE}s"
  sleep 0.5
done
say "chainsync serves its metrics"

# The value of the metric line starting with $1 (0 when absent).
metric_value() {
  curl -sf -m 2 "$METRICS_URL" | awk -v prefix="$1" 'index($0, prefix) == 1 { print $2; found = 1 } END { if (!found) print 0 }'
}
for chain in devnet ton-devnet; do
  until [[ $(metric_value "chainsync_indexed_block{chain=\"$chain\"}") != 0 ]]; do
    alive "$chainsync_pid" || fail "chainsync exited before it indexed $chain"
    ((SECONDS < deadline)) || fail "chainsync did not index $chain within ${READY_DEADLINE}s"
    sleep 0.5
  done
  say "chainsync indexes $chain (indexed block $(metric_value "chainsync_indexed_block{chain=\"$chain\"}"))"
done

declare -A started=()
while read -r name pid; do started[$name]=$pid; done <"$PIDS_FILE"
for name in anvil traffic ton-liteserver chainsync; do
  [[ -n ${started[$name]:-} ]] || fail "$PIDS_FILE does not record $name"
done

say "sending SIGINT to make run's process group (Ctrl-C)"
kill -INT -- "-$run_pid"
stop_deadline=$((SECONDS + STOP_DEADLINE))
for name in "${!started[@]}" make; do
  pid=${started[$name]:-$run_pid}
  while alive "$pid"; do
    ((SECONDS < stop_deadline)) || fail "$name (pid $pid) still runs ${STOP_DEADLINE}s after SIGINT"
    sleep 0.2
  done
done
wait "$run_pid" 2>/dev/null || true
finished=1
say "all ${#started[@]} processes it started have exited: ${!started[*]}"
echo "smoke: 1 passed, 0 failed"
