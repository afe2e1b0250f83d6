#!/usr/bin/env bash
# Checks the observability artefacts in dashboards/ with promtool:
#   promtool check rules   dashboards/prometheus/alerts.yml       (syntax, templates)
#   promtool test rules    dashboards/prometheus/alerts_test.yml  (each alert fires and stays quiet)
#   promtool check config  dashboards/prometheus/prometheus.yml   (the example scrape config)
# promtool comes from Debian's `prometheus` package, installed here when missing. The metric
# names the rules and dashboards use are checked against a live binary by tests/observability.rs.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PROMETHEUS_DIR=dashboards/prometheus

install_promtool() {
  local sudo=() candidate
  if [[ $EUID -ne 0 ]]; then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
      die "promtool is missing; install it with: sudo apt-get install --no-install-recommends prometheus"
    fi
    sudo=(sudo -n)
  fi
  say "promtool is missing: installing Debian's prometheus package"
  "${sudo[@]}" apt-get update -qq
  # Install exactly the archive's candidate, so the version used is the one printed below. The
  # archive keeps one point release per package, so the pin is read here rather than written down.
  candidate=$(apt-cache policy prometheus | awk '/Candidate:/ { print $2 }')
  [[ -n $candidate && $candidate != "(none)" ]] || die "no installable 'prometheus' package in the configured Debian archives"
  # The package's post-install script would start a Prometheus server; policy-rc.d forbids
  # starting services for the length of this install only.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    created_policy=1
  fi
  local status=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "prometheus=$candidate" >/dev/null || status=$?
  if [[ $created_policy == 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
  [[ $status == 0 ]] || die "apt-get install prometheus=$candidate failed (status $status)"
}

command -v promtool >/dev/null || install_promtool
say "using $(promtool --version 2>&1 | head -n 1)"

say "promtool check rules $PROMETHEUS_DIR/alerts.yml"
promtool check rules "$PROMETHEUS_DIR/alerts.yml"
say "promtool test rules $PROMETHEUS_DIR/alerts_test.yml"
promtool test rules "$PROMETHEUS_DIR/alerts_test.yml"
say "promtool check config $PROMETHEUS_DIR/prometheus.yml"
promtool check config "$PROMETHEUS_DIR/prometheus.yml"
say "dashboards/ checks passed"
