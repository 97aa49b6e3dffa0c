#!/usr/bin/env bash
# Prints the path of an `actionlint` binary on stdout (and nothing else
# there): $ACTIONLINT_BIN if set, else actionlint $ACTIONLINT_VERSION
# (default v1.7.12) built from the Go module proxy into the cache that
# vault-bin.sh uses (build-cache.sh), reused later. make lint runs it on
# the GitHub workflows. Progress goes to stderr.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
TARGET="$CACHE_ROOT/actionlint-$ACTIONLINT_VERSION/actionlint"

log() { printf 'actionlint-bin: %s\n' "$*" >&2; }
# shellcheck source=build-cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/build-cache.sh"
# The whole answer, then a match: a pipe into grep could SIGPIPE the binary.
runs() {
	local out
	out=$("$1" -version 2>&1) || return 1
	[[ $out == "${ACTIONLINT_VERSION#v}"* ]]
}

use_given ACTIONLINT_BIN
use_cached runs
lock_build "actionlint $ACTIONLINT_VERSION" runs

log "building actionlint $ACTIONLINT_VERSION from the Go module proxy (cached in $CACHE_ROOT)"
start=$SECONDS
GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
	-ldflags "-s -w -X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION#v}" \
	"github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
runs "$work/actionlint" || { log "the built binary does not run or reports another version"; exit 1; }
install_built "$work/actionlint"
log "built actionlint $ACTIONLINT_VERSION in $((SECONDS - start))s"
printf '%s\n' "$TARGET"
