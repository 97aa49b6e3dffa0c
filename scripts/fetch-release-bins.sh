#!/usr/bin/env bash
# fetch-release-bins.sh DIR: the servers and CLIs `make test` runs, as a
# hosted CI runner gets them: each project's linux/amd64 release, checked
# against the SHA256SUMS the project publishes beside it, unpacked into
# DIR. It prints VAULT_BIN, VAULT_LTS_BIN, BAO_BIN, TERRAFORM_BIN, TOFU_BIN
# and PROMETHEUS_BIN as NAME=path lines, and appends them to $GITHUB_ENV
# when that is set, so the binary finders take them instead of building.
#
# The versions are the finders' and e2e.sh's own defaults, read from those
# scripts: one place says which versions are tested. Only
# .github/workflows/ci.yml runs this: it needs the internet, which the
# machines that run `make test` by hand may not have (they build instead).
set -euo pipefail

die() { printf 'fetch-release-bins: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: fetch-release-bins.sh DIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)

# default VAR FILE: the version FILE gives VAR by default (VAR:-vX.Y.Z).
default() {
	local v
	v=$(sed -n "s/.*\${$1:-v\([0-9][0-9.]*\)}.*/\1/p" "$2" | head -n1)
	[[ -n $v ]] || die "no default $1 in $2"
	printf '%s\n' "$v"
}
vault=$(default VAULT_BUILD_VERSION "$here/vault-bin.sh")
vault_lts=$(sed -n 's/.*vault-lts).*VAULT_BUILD_VERSION=v\([0-9][0-9.]*\).*/\1/p' "$here/e2e.sh")
[[ -n $vault_lts ]] || die "no vault-lts version in e2e.sh"
terraform=$(default TERRAFORM_BUILD_VERSION "$here/terraform-bin.sh")
tofu=$(default TOFU_BUILD_VERSION "$here/terraform-bin.sh")
# Prometheus 3.x's Go module versions are v0.3MM.P for release 3.MM.P.
prom_module=$(default PROMETHEUS_VERSION "$here/prometheus-bin.sh")
IFS=. read -r _ prom_minor prom_patch <<<"$prom_module"
prometheus=3.$((10#$prom_minor - 300)).$prom_patch
bao=${BAO_VERSION:-2.6.2}
# FETCH_VERSIONS_ONLY=1 prints the versions and fetches nothing.
if [[ ${FETCH_VERSIONS_ONLY:-} == 1 ]]; then
	printf 'vault %s\nvault-lts %s\nterraform %s\ntofu %s\nopenbao %s\nprometheus %s\n' "$vault" "$vault_lts" "$terraform" "$tofu" "$bao" "$prometheus"
	exit 0
fi

# fetch URL_DIR FILE SUMS_FILE: FILE from URL_DIR, checked against its line
# in SUMS_FILE (also from URL_DIR).
fetch() {
	local base=$1 file=$2 sums=$3
	curl -fsSL --retry 3 -o "$dir/$sums" "$base/$sums"
	curl -fsSL --retry 3 -o "$dir/$file" "$base/$file"
	local want
	want=$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1 }' "$dir/$sums")
	[[ $want =~ ^[0-9a-f]{64}$ ]] || die "$sums has no sha256 for $file"
	(cd "$dir" && printf '%s  %s\n' "$want" "$file" | sha256sum -c --quiet -) || die "$file does not match $sums"
	printf 'fetch-release-bins: %s matches %s\n' "$file" "$sums" >&2
}

# unzip_one ZIP NAME OUT: NAME from ZIP as the executable OUT.
unzip_one() {
	mkdir -p "$(dirname "$3")"
	unzip -p "$dir/$1" "$2" >"$3"
	chmod +x "$3"
}

out=()
hc=https://releases.hashicorp.com
for pair in "VAULT_BIN $vault" "VAULT_LTS_BIN $vault_lts"; do
	read -r var v <<<"$pair"
	fetch "$hc/vault/$v" "vault_${v}_linux_amd64.zip" "vault_${v}_SHA256SUMS"
	unzip_one "vault_${v}_linux_amd64.zip" vault "$dir/vault-$v/vault"
	out+=("$var=$dir/vault-$v/vault")
done
fetch "$hc/terraform/$terraform" "terraform_${terraform}_linux_amd64.zip" "terraform_${terraform}_SHA256SUMS"
unzip_one "terraform_${terraform}_linux_amd64.zip" terraform "$dir/terraform-$terraform/terraform"
out+=("TERRAFORM_BIN=$dir/terraform-$terraform/terraform")
fetch "https://github.com/opentofu/opentofu/releases/download/v$tofu" "tofu_${tofu}_linux_amd64.zip" "tofu_${tofu}_SHA256SUMS"
unzip_one "tofu_${tofu}_linux_amd64.zip" tofu "$dir/tofu-$tofu/tofu"
out+=("TOFU_BIN=$dir/tofu-$tofu/tofu")
# OpenBao names its archives bao_X.Y.Z_<os>_<arch> and, since 2.6.0, sums
# them all in one checksums.txt.
fetch "https://github.com/openbao/openbao/releases/download/v$bao" "bao_${bao}_linux_amd64.tar.gz" checksums.txt
mkdir -p "$dir/bao-$bao"
tar -xzf "$dir/bao_${bao}_linux_amd64.tar.gz" -C "$dir/bao-$bao" bao
out+=("BAO_BIN=$dir/bao-$bao/bao")
fetch "https://github.com/prometheus/prometheus/releases/download/v$prometheus" "prometheus-$prometheus.linux-amd64.tar.gz" sha256sums.txt
tar -xzf "$dir/prometheus-$prometheus.linux-amd64.tar.gz" -C "$dir" "prometheus-$prometheus.linux-amd64/prometheus"
out+=("PROMETHEUS_BIN=$dir/prometheus-$prometheus.linux-amd64/prometheus")

for line in "${out[@]}"; do
	"${line#*=}" --version >/dev/null 2>&1 || "${line#*=}" version >/dev/null 2>&1 || die "${line#*=} does not run"
	printf '%s\n' "$line"
	if [[ -n ${GITHUB_ENV:-} ]]; then printf '%s\n' "$line" >>"$GITHUB_ENV"; fi
done
