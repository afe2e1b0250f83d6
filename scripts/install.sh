#!/usr/bin/env bash
# Installs what building, running and testing chainsync need, skipping whatever is already there;
# safe to run again. `make tools` runs every step; `scripts/install.sh STEP...` runs some.
#
# Steps, in order:
#   rust    checks for cargo (the toolchain comes from rustup, which this script does not install)
#   debian  Debian packages: pkg-config and libssl-dev to build, curl, and the Postgres client
#           (psql, pg_isready) to reach the database
#   node    Node.js and npm, for the devnet tooling
#   anvil   `npm ci --prefix devnet`: anvil and solc, pinned in devnet/package-lock.json
#   ton-sandbox `npm ci --prefix devnet/ton-sandbox`: the TON emulator that generates the TON
#           scenarios, pinned in devnet/ton-sandbox/package-lock.json
#
# A new tool gets a function `step_NAME` and a place in STEPS.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

STEPS=(rust debian node anvil ton-sandbox)

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# Installs the Debian packages given, with one `apt-get update` per run at most. Versions are
# those of the machine's Debian release: its archive keeps only the current point release of
# each package, so an exact version pin would stop installing after the next security update.
APT_UPDATED=0
apt_install() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
      die "missing Debian packages: $*; install them with: sudo apt-get install --no-install-recommends $*"
    fi
    sudo=(sudo -n)
  fi
  say "installing Debian packages: $*"
  if [[ $APT_UPDATED == 0 ]]; then
    "${sudo[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step_rust() {
  command -v cargo >/dev/null ||
    die "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
}

step_debian() {
  local missing=() pkg
  for pkg in pkg-config libssl-dev; do
    deb_installed "$pkg" || missing+=("$pkg")
  done
  command -v curl >/dev/null || missing+=(curl)
  if ! command -v psql >/dev/null || ! command -v pg_isready >/dev/null; then
    missing+=(postgresql-client)
  fi
  command -v ps >/dev/null || missing+=(procps)
  [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
}

step_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
}

step_anvil() {
  # npm ci replaces devnet/node_modules wholesale: run it when it is missing or older than the lock.
  if [[ ! -x $ANVIL_BIN || devnet/package-lock.json -nt devnet/node_modules/.package-lock.json ]]; then
    say "installing the devnet tooling: npm ci --prefix devnet"
    npm ci --prefix devnet --no-audit --no-fund --loglevel=error
  fi
  [[ -x $ANVIL_BIN ]] || die "npm ci did not install anvil at devnet/node_modules/.bin/anvil"
}

step_ton_sandbox() {
  local dir=devnet/ton-sandbox
  if [[ ! -d $dir/node_modules/@ton/sandbox || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    say "installing the TON emulator: npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
}

# The Debian package with initdb and pg_ctl, for the private cluster when no server is reachable.
step_postgres_server() {
  pg_bindir >/dev/null || apt_install postgresql
}

run_steps=("$@")
[[ ${#run_steps[@]} -gt 0 ]] || run_steps=("${STEPS[@]}")
for step in "${run_steps[@]}"; do
  declare -F "step_${step//-/_}" >/dev/null || die "unknown step '$step' (steps: ${STEPS[*]} postgres-server)"
  "step_${step//-/_}"
done
