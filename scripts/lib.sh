# shellcheck shell=bash disable=SC2034 # the scripts that source this file use its variables
# Helpers shared by the scripts in this directory: paths, messages, Postgres discovery and the
# bookkeeping of background processes. Source it (after `set -euo pipefail`); it does nothing on
# its own.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_DIR="$REPO_ROOT/.local"
DEVNET_DIR="$LOCAL_DIR/devnet"
PG_DIR="$LOCAL_DIR/pg"
PIDS_FILE="$DEVNET_DIR/pids"

# The binary `make run` builds; CHAINSYNC_BIN points elsewhere (a release build, say).
CHAINSYNC_BIN=${CHAINSYNC_BIN:-"${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/chainsync"}
ANVIL_BIN="$REPO_ROOT/devnet/node_modules/.bin/anvil"

# These ports match config/default.toml; change them there and here together.
ANVIL_PORT=8545
TON_LITESERVER_PORT=46000
API_PORT=8080
METRICS_PORT=9100
ANVIL_URL="http://127.0.0.1:$ANVIL_PORT"
API_URL="http://127.0.0.1:$API_PORT"
METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"

# The Postgres server on this machine's standard port, tried when DATABASE_URL is not set.
LOCAL_PG_PORT=5432
# The first port tried for the private cluster in .local/pg.
PRIVATE_PG_FIRST_PORT=55432
DEVNET_DATABASE=chainsync_devnet

SCRIPT_NAME=$(basename "$0" .sh)

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fails with a clear message when 127.0.0.1:PORT is taken; WHAT names who needs it.
require_free_port() {
  if port_in_use "$1"; then
    die "127.0.0.1:$1 ($2) is already taken, perhaps by an earlier run; stop that process and retry ('ss -ltnp \"sport = :$1\"' shows it)"
  fi
}

# True while PID runs (a zombie that nobody has reaped yet counts as gone).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# Prints the last lines of a log file, indented, to explain a failure.
show_log_tail() {
  [[ -s $1 ]] || return 0
  say "last lines of ${1#"$REPO_ROOT"/}:"
  tail -n 20 "$1" | sed 's/^/    /' >&2
}

# Answers the JSON-RPC call eth_blockNumber at URL.
rpc_block_number() {
  curl -sf -m 2 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' "$1"
}

# ---------------------------------------------------------------------------------------------
# Postgres

# URL without its database name: postgres://u@h:p/db?x=y -> postgres://u@h:p?x=y
pg_server_url() {
  local url=$1 scheme rest query=""
  scheme=${url%%://*}
  rest=${url#*://}
  if [[ $rest == *\?* ]]; then
    query="?${rest#*\?}"
    rest=${rest%%\?*}
  fi
  printf '%s://%s%s' "$scheme" "${rest%%/*}" "$query"
}

# A server URL (from pg_server_url) with database DB.
pg_database_url() {
  local server=$1 db=$2
  if [[ $server == *\?* ]]; then
    printf '%s/%s?%s' "${server%%\?*}" "$db" "${server#*\?}"
  else
    printf '%s/%s' "$server" "$db"
  fi
}

# The directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else PATH.
pg_bindir() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [[ -n $dir && -x $dir/initdb ]]; then
    printf '%s' "$dir"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
  else
    return 1
  fi
}

# initdb and pg_ctl refuse to run as root: as root, run them as the `postgres` user.
as_pg_owner() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

private_pg_running() {
  [[ -f $PG_DIR/data/PG_VERSION ]] || return 1
  as_pg_owner "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

# Initialises (once) and starts the private cluster in .local/pg on the first free port from
# PRIVATE_PG_FIRST_PORT, with trust authentication for the `postgres` user on 127.0.0.1.
start_private_pg() {
  local bindir port
  if ! bindir=$(pg_bindir); then
    say "no Postgres server answers and initdb is missing: installing it for a private cluster"
    "$REPO_ROOT/scripts/install.sh" postgres-server
    bindir=$(pg_bindir) || die "no initdb found: set DATABASE_URL or start Postgres on 127.0.0.1:5432"
  fi
  mkdir -p "$PG_DIR/socket"
  if [[ $EUID -eq 0 ]]; then
    getent passwd postgres >/dev/null || die "the private cluster runs as user 'postgres', which does not exist: set DATABASE_URL instead"
    chown -R postgres: "$PG_DIR"
    runuser -u postgres -- test -w "$PG_DIR" ||
      die "user 'postgres' cannot write ${PG_DIR} (a parent directory is closed to it): set DATABASE_URL instead"
  fi
  if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
    say "initialising a private Postgres cluster in .local/pg"
    as_pg_owner "$bindir/initdb" -D "$PG_DIR/data" --username=postgres --auth=trust \
      --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 ||
      {
        show_log_tail "$PG_DIR/initdb.log"
        die "initdb failed"
      }
  fi
  port=$PRIVATE_PG_FIRST_PORT
  while port_in_use "$port"; do port=$((port + 1)); done
  say "starting the private Postgres cluster on 127.0.0.1:$port (log: .local/pg/postgres.log)"
  as_pg_owner "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$PG_DIR/socket'" \
    start >/dev/null ||
    {
      show_log_tail "$PG_DIR/postgres.log"
      die "the private Postgres cluster did not start"
    }
}

# Stops the private cluster if it runs; waits until it has.
stop_private_pg() {
  private_pg_running || return 0
  say "stopping the private Postgres cluster"
  as_pg_owner "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null
}

# The running postmaster's PID and port, from lines 1 and 4 of its lock file.
private_pg_pid() { sed -n 1p "$PG_DIR/data/postmaster.pid"; }
private_pg_port() { sed -n 4p "$PG_DIR/data/postmaster.pid"; }

# Finds a Postgres server and sets PG_SERVER_URL (no database name) and PG_STARTED_PRIVATE
# (1 when this call started the private cluster, which the caller then stops). In order:
# DATABASE_URL; Postgres on 127.0.0.1:5432; the private cluster in .local/pg, started if needed.
ensure_postgres() {
  PG_STARTED_PRIVATE=0
  if [[ -n ${DATABASE_URL:-} ]]; then
    PG_SERVER_URL=$(pg_server_url "$DATABASE_URL")
    say "using the Postgres server of DATABASE_URL ($(redact_url "$PG_SERVER_URL"))"
  elif pg_isready -q -h 127.0.0.1 -p "$LOCAL_PG_PORT" -t 3; then
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$LOCAL_PG_PORT"
    say "using Postgres on 127.0.0.1:$LOCAL_PG_PORT"
  else
    if ! private_pg_running; then
      start_private_pg
      PG_STARTED_PRIVATE=1
    fi
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$(private_pg_port)"
    say "using the private Postgres cluster on ${PG_SERVER_URL#*@}"
  fi
  psql "$(pg_database_url "$PG_SERVER_URL" postgres)" -qAt -c 'select 1' >/dev/null ||
    die "cannot connect to Postgres at $(redact_url "$PG_SERVER_URL")"
}

# The URL with any password replaced by ***, for messages.
redact_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Runs one SQL statement against the `postgres` database of the server.
pg_admin_sql() {
  PGOPTIONS="-c client_min_messages=warning" \
    psql "$(pg_database_url "$PG_SERVER_URL" postgres)" -qAt -v ON_ERROR_STOP=1 -c "$1" >/dev/null
}

# Creates database DB unless it exists.
pg_create_database() {
  local db=$1 exists
  exists=$(psql "$(pg_database_url "$PG_SERVER_URL" postgres)" -qAt -v ON_ERROR_STOP=1 \
    -c "select 1 from pg_database where datname = '$db'")
  [[ $exists == 1 ]] || pg_admin_sql "create database \"$db\""
}

# Drops database DB (closing its connections) and creates it empty.
pg_recreate_database() {
  pg_admin_sql "drop database if exists \"$1\" with (force)"
  pg_admin_sql "create database \"$1\""
}

# ---------------------------------------------------------------------------------------------
# Background processes
#
# Each one is started in a session of its own, so a Ctrl-C at the terminal reaches only the
# script, which then stops them in a fixed order (indexer first, chain last) instead of all of
# them at once. Their PIDs go to .local/devnet/pids, one "name pid" per line.

declare -A CHILD_NAMES=()

# start_child NAME LOG CMD...: starts CMD in the background; LOG "-" keeps the terminal.
start_child() {
  local name=$1 log=$2 pid
  shift 2
  if [[ $log == - ]]; then
    setsid "$@" &
  else
    setsid "$@" >>"$log" 2>&1 &
  fi
  pid=$!
  CHILD_NAMES[$pid]=$name
  printf '%s %s\n' "$name" "$pid" >>"$PIDS_FILE"
}

# run_child NAME LOG CMD...: like start_child, then waits for CMD and returns its status. Unlike a
# command in the foreground, the wait lets a signal reach the script's traps at once.
run_child() {
  local name=$1 pid status=0
  start_child "$@"
  pid=$(child_pid "$name")
  wait "$pid" || status=$?
  unset "CHILD_NAMES[$pid]"
  return "$status"
}

# The PID of the running child called NAME, if any.
child_pid() {
  local pid
  for pid in "${!CHILD_NAMES[@]}"; do
    [[ ${CHILD_NAMES[$pid]} == "$1" ]] && printf '%s' "$pid" && return 0
  done
  return 1
}

# stop_children GRACE NAME...: SIGTERM to the named children, SIGKILL to any still running after
# GRACE seconds; reaps them.
stop_children() {
  local grace=$1 name pid pids=() deadline
  shift
  for name in "$@"; do
    pid=$(child_pid "$name") || continue
    pids+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  [[ ${#pids[@]} -gt 0 ]] || return 0
  deadline=$((SECONDS + grace))
  for pid in "${pids[@]}"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      say "${CHILD_NAMES[$pid]} did not stop within ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "CHILD_NAMES[$pid]"
  done
}

# Waits until CMD... succeeds, for at most SECONDS; fails early if child NAME exits.
# wait_for NAME SECONDS CMD...
wait_for() {
  local name=$1 deadline=$((SECONDS + $2)) pid
  shift 2
  pid=$(child_pid "$name")
  until "$@"; do
    alive "$pid" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# The devnet

# Traffic generator settings; the same seed replays the same traffic on a new chain.
TRAFFIC_SEED=${TRAFFIC_SEED:-42}
TRAFFIC_RATE=${TRAFFIC_RATE:-2}

# Starts anvil on 127.0.0.1:8545 with one-second blocks, deploys the test contracts to
# .local/devnet/deployment.json and starts the traffic generator. Logs go to .local/devnet/.
start_devnet() {
  [[ -x $ANVIL_BIN ]] || die "anvil is not installed (devnet/node_modules): run 'make tools'"
  [[ -x $CHAINSYNC_BIN ]] || die "${CHAINSYNC_BIN#"$REPO_ROOT"/} is missing: run 'make build'"
  require_free_port "$ANVIL_PORT" anvil
  : >"$DEVNET_DIR/anvil.log"
  # --prune-history keeps recent states in memory only: without it anvil spills old states to
  # ~/.foundry/anvil/tmp, which a long run (or one that is killed) leaves behind and grows.
  start_child anvil "$DEVNET_DIR/anvil.log" \
    "$ANVIL_BIN" --host 127.0.0.1 --port "$ANVIL_PORT" --block-time 1 --prune-history 1024
  if ! wait_for anvil 30 rpc_block_number "$ANVIL_URL" >/dev/null; then
    show_log_tail "$DEVNET_DIR/anvil.log"
    die "anvil did not answer on $ANVIL_URL within 30 s"
  fi
  say "anvil answers on $ANVIL_URL; deploying the test contracts"
  : >"$DEVNET_DIR/deploy.log"
  if ! run_child deploy "$DEVNET_DIR/deploy.log" "$CHAINSYNC_BIN" devnet deploy \
    --rpc-url "$ANVIL_URL" --out "$DEVNET_DIR/deployment.json"; then
    show_log_tail "$DEVNET_DIR/deploy.log"
    die "deploying the test contracts failed"
  fi
  : >"$DEVNET_DIR/traffic.log"
  start_child traffic "$DEVNET_DIR/traffic.log" \
    "$CHAINSYNC_BIN" devnet traffic --rpc-url "$ANVIL_URL" \
    --deployment "$DEVNET_DIR/deployment.json" --seed "$TRAFFIC_SEED" --rate "$TRAFFIC_RATE"
  say "traffic generator started (seed $TRAFFIC_SEED, rate $TRAFFIC_RATE)"
}

# Starts the loopback TON liteserver on 127.0.0.1:46000 (the devnet TON source of
# config/default.toml): the recorded mainnet chain and the @ton/sandbox scenarios, one masterchain
# block per second. Logs go to .local/devnet/ton-liteserver.log.
start_ton_liteserver() {
  require_free_port "$TON_LITESERVER_PORT" "TON liteserver"
  : >"$DEVNET_DIR/ton-liteserver.log"
  start_child ton-liteserver "$DEVNET_DIR/ton-liteserver.log" \
    "$CHAINSYNC_BIN" devnet ton-liteserver --listen "127.0.0.1:$TON_LITESERVER_PORT" \
    --fixtures tests/fixtures/ton --block-interval 1s --steps-per-block 1
  if ! wait_for ton-liteserver 30 port_in_use "$TON_LITESERVER_PORT"; then
    show_log_tail "$DEVNET_DIR/ton-liteserver.log"
    die "the TON liteserver did not listen on 127.0.0.1:$TON_LITESERVER_PORT within 30 s"
  fi
  say "TON liteserver listens on 127.0.0.1:$TON_LITESERVER_PORT"
}

# Waits for the children to exit. An exit of the traffic generator is reported and tolerated;
# any other child's exit ends the wait, with that child's exit status.
supervise_children() {
  local pid status name
  while [[ ${#CHILD_NAMES[@]} -gt 0 ]]; do
    status=0 pid=""
    wait -n -p pid "${!CHILD_NAMES[@]}" || status=$?
    if [[ -z $pid ]]; then
      say "lost track of the background processes (wait status $status)"
      return 1
    fi
    name=${CHILD_NAMES[$pid]}
    unset "CHILD_NAMES[$pid]"
    if [[ $name == traffic ]]; then
      say "warning: the traffic generator exited (status $status); the chain keeps running without it"
      show_log_tail "$DEVNET_DIR/traffic.log"
      continue
    fi
    if [[ $name == anvil ]]; then show_log_tail "$DEVNET_DIR/anvil.log"; fi
    say "$name exited (status $status); stopping the rest"
    return "$status"
  done
}
