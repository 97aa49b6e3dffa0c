#!/usr/bin/env bash
# Prints the path of a Terraform-compatible CLI with write-only arguments
# (Terraform or OpenTofu 1.11 or later) on stdout, and nothing else there.
#
# Usage: scripts/terraform-bin.sh [terraform|opentofu]
#
# terraform (the default):
#   1. $TERRAFORM_BIN, if set (must be executable);
#   2. `terraform` on PATH, if it is at least v1.11;
#   3. Terraform $TERRAFORM_BUILD_VERSION (default v1.11.4) built from the Go
#      module proxy into the cache vault-bin.sh uses, reused later;
#   4. if that build fails: OpenTofu, as below.
# opentofu:
#   1. $TOFU_BIN, if set; 2. `tofu` on PATH, if it is at least v1.11;
#   3. OpenTofu $TOFU_BUILD_VERSION (default v1.12.6) built the same way.
#
# Builds serialise on a lock file and install atomically (build-cache.sh).
# Progress goes to stderr.
set -euo pipefail

product=${1:-terraform}
TERRAFORM_VERSION="${TERRAFORM_BUILD_VERSION:-v1.11.4}"
# Terraform's nested modules (remote-state backends, internal/legacy) are
# not in its module zip; the proxy serves them at the tag's commit.
TERRAFORM_NESTED_VERSION="${TERRAFORM_NESTED_VERSION:-v0.0.0-20250409131005-35645b8fca68}"
TOFU_VERSION="${TOFU_BUILD_VERSION:-v1.12.6}"
CACHE_ROOT="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-metakraftwerk}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'terraform-bin: %s\n' "$*" >&2; }
# shellcheck source=build-cache.sh
. "$here/build-cache.sh"

# at_least_1_11 BINARY: the binary reports Terraform or OpenTofu v1.11+.
at_least_1_11() {
	local out
	# Read the whole answer before matching: a reader that stops at the first
	# line can kill the CLI with SIGPIPE, and pipefail then fails a good
	# binary. A missing CLI configuration prints a warning before the version.
	out=$(TF_CLI_CONFIG_FILE=/dev/null "$1" version 2>/dev/null) || return 1
	out=$(awk '/^(Terraform|OpenTofu) v/ { print; exit }' <<<"$out")
	[[ $out =~ (Terraform|OpenTofu)\ v([0-9]+)\.([0-9]+) ]] || return 1
	((BASH_REMATCH[2] > 1 || (BASH_REMATCH[2] == 1 && BASH_REMATCH[3] >= 11)))
}

# from_path NAME: print NAME's path and exit when it is on PATH and new enough.
from_path() {
	local on_path
	if on_path=$(command -v "$1" 2>/dev/null) && at_least_1_11 "$on_path"; then
		printf '%s\n' "$on_path"
		exit 0
	fi
}

build_terraform() {
	TARGET="$CACHE_ROOT/terraform-$TERRAFORM_VERSION/terraform"
	use_cached at_least_1_11
	lock_build "Terraform $TERRAFORM_VERSION" at_least_1_11
	log "building Terraform $TERRAFORM_VERSION from the Go module proxy (several minutes the first time; cached in $CACHE_ROOT)"
	module_source "github.com/hashicorp/terraform@$TERRAFORM_VERSION" || return 1
	local nested
	nested=$(sed -n 's#^replace \(github.com/hashicorp/terraform/internal/[^ ]*\) => \./.*#\1#p' "$work/src/go.mod")
	for m in $nested; do
		(cd "$work/src" && go mod edit -dropreplace="$m" -require="$m@$TERRAFORM_NESTED_VERSION")
	done
	# A godebug setting a newer Go no longer knows makes go.mod unreadable.
	(cd "$work/src" && go mod edit -dropgodebug=tlskyber)
	# A release build: no "-dev" in its version.
	go_build -ldflags "-s -w -X github.com/hashicorp/terraform/version.dev=no" -o "$work/terraform" . || return 1
	at_least_1_11 "$work/terraform" || { log "the built terraform does not run"; return 1; }
	install_built "$work/terraform"
	log "built $(TF_CLI_CONFIG_FILE=/dev/null "$TARGET" version | head -n1)"
	printf '%s\n' "$TARGET"
}

build_opentofu() {
	TARGET="$CACHE_ROOT/tofu-$TOFU_VERSION/tofu"
	use_cached at_least_1_11
	lock_build "OpenTofu $TOFU_VERSION" at_least_1_11
	log "building OpenTofu $TOFU_VERSION from the Go module proxy (several minutes the first time; cached in $CACHE_ROOT)"
	module_source "github.com/opentofu/opentofu@$TOFU_VERSION" || return 1
	go_build -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$work/tofu" ./cmd/tofu || return 1
	at_least_1_11 "$work/tofu" || { log "the built tofu does not run"; return 1; }
	install_built "$work/tofu"
	log "built $(TF_CLI_CONFIG_FILE=/dev/null "$TARGET" version | head -n1)"
	printf '%s\n' "$TARGET"
}

case $product in
terraform)
	use_given TERRAFORM_BIN
	from_path terraform
	if (build_terraform); then exit 0; fi
	log "Terraform $TERRAFORM_VERSION did not build; trying OpenTofu $TOFU_VERSION"
	from_path tofu
	build_opentofu
	;;
opentofu)
	use_given TOFU_BIN
	from_path tofu
	build_opentofu
	;;
*)
	log "unknown product $product (terraform or opentofu)"
	exit 1
	;;
esac
