#!/usr/bin/env bash
# `make db`: makes sure a Postgres server runs (DATABASE_URL's, else 127.0.0.1:5432, else the
# private cluster in .local/pg, which it then leaves running), creates database chainsync_devnet
# if it is missing and applies the migrations. Prints the DATABASE_URL to use.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ -x $CHAINSYNC_BIN ]] || die "${CHAINSYNC_BIN#"$REPO_ROOT"/} is missing: run 'make build'"
ensure_postgres
if [[ $PG_STARTED_PRIVATE == 1 ]]; then
  say "the private cluster keeps running; 'make clean-local' stops it"
fi
pg_create_database "$DEVNET_DATABASE"
database_url=$(pg_database_url "$PG_SERVER_URL" "$DEVNET_DATABASE")
"$CHAINSYNC_BIN" migrate --database-url "$database_url"
say "database ready: DATABASE_URL=$(redact_url "$database_url")"
