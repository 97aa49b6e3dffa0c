#!/usr/bin/env bash
# Prints the path of a usable `vault` binary on stdout (and nothing else there).
#
# Order of preference:
#   1. $VAULT_BIN, if set (must be executable);
#   2. `vault` on PATH, if it is at least v1.19 (the oldest the engine supports) and, when VAULT_LINE is set
#      (e.g. 1.21), of that line (skipped when VAULT_BUILD_VERSION asks for
#      a specific version);
#   3. Vault $VAULT_BUILD_VERSION (default v1.21.0) built from the Go module
#      proxy into a cache directory outside the repository, reused later.
#
# The build is idempotent and safe to run in parallel with itself: builders
# serialise on a lock file, the binary is moved into place atomically, and
# the scratch directory is removed however the script ends. Progress
# messages go to stderr.
set -euo pipefail

VAULT_VERSION="${VAULT_BUILD_VERSION:-v1.21.0}"
MIN_MAJOR=1
MIN_MINOR=19
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
TARGET="$CACHE_ROOT/vault-$VAULT_VERSION/vault"

log() { printf 'vault-bin: %s\n' "$*" >&2; }
# shellcheck source=build-cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/build-cache.sh"

version_ok() {
	# $1: path to a vault binary. True when it reports v1.19 or newer.
	local out major minor
	# The whole answer, then its first line: `| head -n1` could SIGPIPE the
	# CLI and pipefail would fail a good binary.
	out=$("$1" version 2>/dev/null) || return 1
	out=${out%%$'\n'*}
	if [[ $out =~ Vault\ v([0-9]+)\.([0-9]+) ]]; then
		major=${BASH_REMATCH[1]}
		minor=${BASH_REMATCH[2]}
		((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR)))
		return
	fi
	return 1
}

if [[ -n ${VAULT_BIN:-} ]]; then
	if [[ -x $VAULT_BIN ]]; then
		printf '%s\n' "$VAULT_BIN"
		exit 0
	fi
	log "VAULT_BIN=$VAULT_BIN is not an executable file"
	exit 1
fi

on_line() {
	[[ -z ${VAULT_LINE:-} ]] || [[ $("$1" version 2>/dev/null) == "Vault v${VAULT_LINE}."* ]]
}

if [[ -z ${VAULT_BUILD_VERSION:-} ]] && on_path=$(command -v vault 2>/dev/null) && version_ok "$on_path" && on_line "$on_path"; then
	printf '%s\n' "$on_path"
	exit 0
fi

use_cached version_ok
lock_build "Vault $VAULT_VERSION" version_ok

log "building Vault $VAULT_VERSION from the Go module proxy"
log "the first build takes 13-31 minutes on 2 cores with empty Go caches (13 on an idle machine, longer beside other builds), about a minute with warm ones; the result is cached in $CACHE_ROOT"
module_source "github.com/hashicorp/vault@$VAULT_VERSION"
cd "$work/src"
# The module zip does not contain Vault's nested api/ and sdk/ modules, so the
# replace directives pointing at them must go; the released modules are used instead.
sed -i -E '/^replace github\.com\/hashicorp\/vault\/(api|sdk)[^ ]* => \.\//d' go.mod

log "downloading Vault's dependencies"
GOFLAGS=-mod=mod go mod download >&2
log "compiling (progress is quiet; please wait)"
start=$SECONDS
go_build -ldflags "-s -w" -o "$work/vault" .

version_ok "$work/vault" || { log "the built binary does not run"; exit 1; }
install_built "$work/vault"
log "built $("$TARGET" version | head -n1) in $((SECONDS - start))s"
printf '%s\n' "$TARGET"
