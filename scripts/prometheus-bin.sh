#!/usr/bin/env bash
# Prints the path of a `prometheus` binary on stdout (and nothing else there):
# $PROMETHEUS_BIN if set, else Prometheus $PROMETHEUS_VERSION (default
# v0.316.0, the module version of Prometheus 3.x) built from the Go module
# proxy into the cache that vault-bin.sh uses (build-cache.sh), reused
# later. The e2e suite scrapes the engine's metrics with it. Progress goes
# to stderr.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
TARGET="$CACHE_ROOT/prometheus-$PROMETHEUS_VERSION/prometheus"

log() { printf 'prometheus-bin: %s\n' "$*" >&2; }
# shellcheck source=build-cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/build-cache.sh"
runs() { "$1" --version >/dev/null 2>&1; }

use_given PROMETHEUS_BIN
use_cached runs
lock_build "Prometheus $PROMETHEUS_VERSION" runs

log "building Prometheus $PROMETHEUS_VERSION from the Go module proxy (several minutes the first time; cached in $CACHE_ROOT)"
start=$SECONDS
GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
	"github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" >&2
runs "$work/prometheus" || { log "the built binary does not run"; exit 1; }
install_built "$work/prometheus"
log "built $("$TARGET" --version | head -n1) in $((SECONDS - start))s"
printf '%s\n' "$TARGET"
