#!/usr/bin/env bash
# Runs the e2e suite once per platform, then prints which platforms ran.
#
# Usage: scripts/e2e.sh [PLATFORM...]
#   vault      Vault v1.21.x (scripts/vault-bin.sh: $VAULT_BIN, vault on PATH, or built)
#   vault-lts  Vault v1.19.x, the long-term-support line ($VAULT_LTS_BIN, or built
#              from the module proxy; $VAULT_BIN and vault on PATH are ignored)
#   openbao    OpenBao (scripts/bao-bin.sh: $BAO_BIN or bao on PATH)
# Without arguments: vault, and openbao when a bao binary is found. Platforms
# named on the command line are required: a missing binary is a failure, and
# so is a server that reports another product or line than its platform's.
#
# On vault and openbao, the Terraform provider's acceptance suite
# (terraform-provider-mkvault) runs after the e2e suite, with Terraform
# (scripts/terraform-bin.sh); on vault once more with OpenTofu.
#
# Environment: PLUGIN_BIN and PLUGIN_VERSION (required), GO, E2E_TIMEOUT,
# E2E_RUN (a go test -run pattern), E2E_SUITES (e2e, provider, or both, the
# default), PROMETHEUS_BIN (else built by prometheus-bin.sh), TERRAFORM_BIN
# and TOFU_BIN (else found or built by terraform-bin.sh), RELEASE_DIR (the
# walkthrough's signed releases; else built here by docs/install.md's
# release-throwaway block, which runs make release).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
: "${PLUGIN_BIN:?PLUGIN_BIN is required}" "${PLUGIN_VERSION:?PLUGIN_VERSION is required}"
GO=${GO:-go}

required=1
platforms=("$@")
if ((${#platforms[@]} == 0)); then
	required=0
	platforms=(vault openbao)
fi

server_bin() {
	case $1 in
	vault) VAULT_LINE=1.21 "$here/vault-bin.sh" ;;
	vault-lts) VAULT_BIN=${VAULT_LTS_BIN:-} VAULT_BUILD_VERSION=v1.19.0 "$here/vault-bin.sh" ;;
	openbao) "$here/bao-bin.sh" ;;
	*) echo "e2e: unknown platform $1 (vault, vault-lts, openbao)" >&2; return 1 ;;
	esac
}

# What the first line of `<server> version` must start with on each platform.
expected_version() {
	case $1 in
	vault) echo "Vault v1.21." ;;
	vault-lts) echo "Vault v1.19." ;;
	openbao) echo "OpenBao v" ;;
	esac
}

suites=${E2E_SUITES:-e2e provider}

# The suite scrapes the engine's metrics with a real Prometheus.
if [[ $suites == *e2e* ]]; then
	if ! PROMETHEUS_BIN=$("$here/prometheus-bin.sh"); then
		echo "e2e: no Prometheus binary (see above)" >&2
		exit 1
	fi
	export PROMETHEUS_BIN
fi

# doc_block FILE NAME: the sh block of FILE marked <!-- walkthrough: NAME -->.
doc_block() {
	awk -v marker="<!-- walkthrough: $2 -->" '
		$0 == marker { found = 1; next }
		found && !inside && $0 == "```sh" { inside = 1; next }
		inside && $0 == "```" { exit }
		inside { print }' "$1"
}

# build_releases DIR: the docs walkthrough's releases, v0.3.0 and v0.3.1 of
# this source for this machine's platform, into DIR, built by running
# docs/install.md's throwaway-key block as written, but for the two
# versions (one key signs both) and with RELEASE_PLATFORMS narrowed.
# DIR/.walkthrough-ran records that the block ran, for the walkthrough's
# check that every marked block runs.
build_releases() {
	local block make_line='make release VERSION=v0.0.1 GPG_KEY_ID=$KEY'
	block=$(doc_block "$repo/docs/install.md" release-throwaway)
	if [[ $block != *"$make_line"* ]]; then
		echo "e2e: docs/install.md's release-throwaway block no longer says '$make_line', which e2e.sh substitutes" >&2
		return 1
	fi
	block=${block/"$make_line"/'make release VERSION=v0.3.0 GPG_KEY_ID=$KEY && make release VERSION=v0.3.1 GPG_KEY_ID=$KEY'}
	# gpg-agent lives under the block's GNUPGHOME: stop it, remove the keyring.
	block+=$'\ngpgconf --kill all\nrm -rf "$GNUPGHOME"\n'
	(cd "$repo" && env -u GNUPGHOME DIST="$1" GO="$GO" RELEASE_PLATFORMS="$("$GO" env GOOS)/$("$GO" env GOARCH)" \
		bash --noprofile --norc -euo pipefail -c "$block") || return 1
	echo release-throwaway >"$1/.walkthrough-ran"
}

# The docs walkthrough (e2e/walkthrough_test.go) installs, upgrades and
# rolls back real releases, and installs the released Terraform provider.
if [[ $suites == *e2e* ]]; then
	if [[ -z ${RELEASE_DIR:-} ]]; then
		RELEASE_DIR=$(mktemp -d)
		trap 'rm -rf "$RELEASE_DIR"' EXIT
		printf '\n== releases v0.3.0 and v0.3.1 for the docs walkthrough\n'
		start=$SECONDS
		if ! build_releases "$RELEASE_DIR" >"$RELEASE_DIR.log" 2>&1; then
			tail -n 40 "$RELEASE_DIR.log" >&2
			echo "e2e: building the walkthrough's releases failed (above)" >&2
			exit 1
		fi
		rm -f "$RELEASE_DIR.log"
		echo "built in $((SECONDS - start))s"
	fi
	export RELEASE_DIR
	if [[ -z ${TERRAFORM_BIN:-} ]] && TERRAFORM_BIN=$("$here/terraform-bin.sh" terraform); then
		export TERRAFORM_BIN
	fi
fi

# provider_legs PLATFORM: the CLIs the provider suite runs with there.
provider_legs() {
	case $1 in
	vault) echo "terraform opentofu" ;;
	openbao) echo "terraform" ;;
	esac
}

# run_provider PLATFORM SERVER CLI: the provider's acceptance suite.
run_provider() {
	local tf host=""
	if ! tf=$("$here/terraform-bin.sh" "$3"); then
		summary+=("$1 provider ($3): FAILED, no $3 binary (see above)")
		failed=1
		return
	fi
	local cli
	# The whole answer first: a reader that stops early can SIGPIPE the CLI.
	cli=$(TF_CLI_CONFIG_FILE=/dev/null "$tf" version 2>/dev/null) || cli=""
	cli=$(awk '/^(Terraform|OpenTofu) v/ { print $1, $2; exit }' <<<"$cli")
	# OpenTofu's default registry is its own; the suite's provider address follows it.
	if [[ $cli == OpenTofu* ]]; then host=registry.opentofu.org; fi
	printf '\n== provider acceptance suite on %s with %s (%s)\n' "$name" "$cli" "$tf"
	local start=$SECONDS
	if (cd "$repo/terraform-provider-mkvault/acceptance" && export SERVER_BIN=$2 TF_ACC_TERRAFORM_PATH=$tf && { [[ -z $host ]] || export TF_ACC_PROVIDER_HOST=$host; } &&
		"$GO" test -tags acceptance -count=1 -timeout "${E2E_TIMEOUT:-25m}" -v ${E2E_RUN:+-run "$E2E_RUN"} ./...); then
		summary+=("$1 provider: passed on $name with $cli in $((SECONDS - start))s")
	else
		summary+=("$1 provider: FAILED on $name with $cli after $((SECONDS - start))s")
		failed=1
	fi
}

summary=() failed=0
for p in "${platforms[@]}"; do
	if ! bin=$(server_bin "$p"); then
		if ((required)) || [[ $p == vault ]]; then
			summary+=("$p: FAILED, no server binary (see above)")
			failed=1
		else
			summary+=("$p: not run, no bao binary (set BAO_BIN or put bao on PATH)")
		fi
		continue
	fi
	reported=$("$bin" version 2>/dev/null) || reported=""
	reported=${reported%%$'\n'*}
	name=$(awk '{sub(/,$/, "", $2); print $1, $2}' <<<"$reported")
	want=$(expected_version "$p")
	if [[ $reported != "$want"* ]]; then
		summary+=("$p: FAILED, $bin reports \"${reported:-nothing}\", not $want…")
		failed=1
		continue
	fi
	if [[ $suites == *e2e* ]]; then
		printf '\n== e2e on %s (%s)\n' "$name" "$bin"
		start=$SECONDS
		if (cd "$repo" && SERVER_BIN=$bin "$GO" test -tags e2e -count=1 -timeout "${E2E_TIMEOUT:-25m}" -v ${E2E_RUN:+-run "$E2E_RUN"} ./e2e/...); then
			summary+=("$p: passed on $name in $((SECONDS - start))s")
		else
			summary+=("$p: FAILED on $name after $((SECONDS - start))s")
			failed=1
		fi
	fi
	if [[ $suites == *provider* ]]; then
		for cli in $(provider_legs "$p"); do
			run_provider "$p" "$bin" "$cli"
		done
	fi
done

printf '\n== e2e platforms\n'
printf '  %s\n' "${summary[@]}"
exit "$failed"
