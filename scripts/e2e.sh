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
# Environment: PLUGIN_BIN and PLUGIN_VERSION (required), GO, E2E_TIMEOUT,
# E2E_RUN (a go test -run pattern), PROMETHEUS_BIN (else built by
# prometheus-bin.sh).
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

# The suite scrapes the engine's metrics with a real Prometheus.
if ! PROMETHEUS_BIN=$("$here/prometheus-bin.sh"); then
	echo "e2e: no Prometheus binary (see above)" >&2
	exit 1
fi
export PROMETHEUS_BIN

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
	reported=$("$bin" version 2>/dev/null | head -n1) || reported=""
	name=$(awk '{sub(/,$/, "", $2); print $1, $2}' <<<"$reported")
	want=$(expected_version "$p")
	if [[ $reported != "$want"* ]]; then
		summary+=("$p: FAILED, $bin reports \"${reported:-nothing}\", not $want…")
		failed=1
		continue
	fi
	printf '\n== e2e on %s (%s)\n' "$name" "$bin"
	start=$SECONDS
	if (cd "$repo" && SERVER_BIN=$bin "$GO" test -tags e2e -count=1 -timeout "${E2E_TIMEOUT:-25m}" -v ${E2E_RUN:+-run "$E2E_RUN"} ./e2e/...); then
		summary+=("$p: passed on $name in $((SECONDS - start))s")
	else
		summary+=("$p: FAILED on $name after $((SECONDS - start))s")
		failed=1
	fi
done

printf '\n== e2e platforms\n'
printf '  %s\n' "${summary[@]}"
exit "$failed"
