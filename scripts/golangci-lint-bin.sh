#!/usr/bin/env bash
# Prints the path of a `golangci-lint` binary on stdout (and nothing else
# there): $GOLANGCI_LINT_BIN if set, else golangci-lint
# $GOLANGCI_LINT_VERSION (default v2.15.0) built from the Go module proxy
# into the cache that vault-bin.sh uses (build-cache.sh), reused later.
# make lint runs it. Progress goes to stderr.
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
TARGET="$CACHE_ROOT/golangci-lint-$GOLANGCI_LINT_VERSION/golangci-lint"

log() { printf 'golangci-lint-bin: %s\n' "$*" >&2; }
# shellcheck source=build-cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/build-cache.sh"
# The whole answer, then a match: a pipe into grep could SIGPIPE the binary.
runs() {
	local out
	out=$("$1" version 2>&1) || return 1
	[[ $out == *"version ${GOLANGCI_LINT_VERSION#v}"* ]]
}

use_given GOLANGCI_LINT_BIN
use_cached runs
lock_build "golangci-lint $GOLANGCI_LINT_VERSION" runs

log "building golangci-lint $GOLANGCI_LINT_VERSION from the Go module proxy (a few minutes the first time; cached in $CACHE_ROOT)"
start=$SECONDS
GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
	-ldflags "-s -w -X main.version=${GOLANGCI_LINT_VERSION#v}" \
	"github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION" >&2
runs "$work/golangci-lint" || { log "the built binary does not run or reports another version"; exit 1; }
install_built "$work/golangci-lint"
log "built golangci-lint $GOLANGCI_LINT_VERSION in $((SECONDS - start))s"
printf '%s\n' "$TARGET"
