#!/usr/bin/env bash
# Prints the path of an OpenBao `bao` binary on stdout: $BAO_BIN if set,
# else `bao` on PATH. OpenBao is not served by the Go module proxy, so unlike
# Vault it is not built here; install a release (https://openbao.org/downloads/).
set -euo pipefail
if [[ -n ${BAO_BIN:-} ]]; then
	if [[ -x $BAO_BIN ]]; then
		printf '%s\n' "$BAO_BIN"
		exit 0
	fi
	echo "bao-bin: BAO_BIN=$BAO_BIN is not an executable file" >&2
	exit 1
fi
if on_path=$(command -v bao 2>/dev/null); then
	printf '%s\n' "$on_path"
	exit 0
fi
echo "bao-bin: no OpenBao binary: set BAO_BIN or put bao on PATH (releases: https://openbao.org/downloads/)" >&2
exit 1
