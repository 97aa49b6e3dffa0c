#!/usr/bin/env bash
# Prints the path of a `prometheus` binary on stdout (and nothing else there):
# $PROMETHEUS_BIN if set, else Prometheus $PROMETHEUS_VERSION (default
# v0.316.0, the module version of Prometheus 3.x) built from the Go module
# proxy into the cache that vault-bin.sh uses, reused later. The e2e suite
# scrapes the engine's metrics with it. Builds serialise on a lock file and
# the binary is moved into place atomically. Progress goes to stderr.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
TARGET="$CACHE_ROOT/prometheus-$PROMETHEUS_VERSION/prometheus"

log() { printf 'prometheus-bin: %s\n' "$*" >&2; }
runs() { "$1" --version >/dev/null 2>&1; }

if [[ -n ${PROMETHEUS_BIN:-} ]]; then
	if [[ -x $PROMETHEUS_BIN ]]; then
		printf '%s\n' "$PROMETHEUS_BIN"
		exit 0
	fi
	log "PROMETHEUS_BIN=$PROMETHEUS_BIN is not an executable file"
	exit 1
fi
if [[ -x $TARGET ]] && runs "$TARGET"; then
	printf '%s\n' "$TARGET"
	exit 0
fi

command -v go >/dev/null || { log "go is required to build Prometheus"; exit 1; }
mkdir -p "$(dirname "$TARGET")"
exec 9>"$TARGET.lock"
if ! flock -n 9; then
	log "another build of Prometheus $PROMETHEUS_VERSION is running; waiting for it"
	flock 9
fi
if [[ -x $TARGET ]] && runs "$TARGET"; then
	printf '%s\n' "$TARGET"
	exit 0
fi

work=""
cleanup() {
	if [[ -n $work ]]; then
		chmod -R u+w "$work" 2>/dev/null || true
		rm -rf "$work" || true
	fi
	rm -f "$TARGET.tmp.$$" || true
}
trap cleanup EXIT
work=$(mktemp -d "${TMPDIR:-/tmp}/prometheus-build.XXXXXX")

log "building Prometheus $PROMETHEUS_VERSION from the Go module proxy (several minutes the first time; cached in $CACHE_ROOT)"
start=$SECONDS
GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
	"github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" >&2
runs "$work/prometheus" || { log "the built binary does not run"; exit 1; }
cp "$work/prometheus" "$TARGET.tmp.$$"
mv -f "$TARGET.tmp.$$" "$TARGET"
log "built $("$TARGET" --version | head -n1) in $((SECONDS - start))s"
printf '%s\n' "$TARGET"
