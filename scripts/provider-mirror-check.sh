#!/usr/bin/env bash
# provider-mirror-check.sh vX.Y.Z: make test's proof that the provider
# stands alone. It writes the mirror's tree (provider-mirror.sh) into an
# empty directory outside this repository and, there, with no workspace and
# a read-only go.mod: the module verifies and is tidy, builds, vets and
# passes its unit tests; `tfplugindocs validate` passes; its release
# workflow passes actionlint; and its scripts/release.sh, signing with a
# throwaway RSA 4096 key, writes a zip whose binary is byte for byte the one
# this repository's build makes (PROVIDER_BUILD, from the Makefile), the
# manifest, and SHA256SUMS over both whose signature verifies.
set -euo pipefail
die() { printf 'provider-mirror-check: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: provider-mirror-check.sh vX.Y.Z"
[[ -n ${PROVIDER_BUILD:-} && -n ${TFPLUGINDOCS:-} ]] || die "PROVIDER_BUILD and TFPLUGINDOCS come from the Makefile: run make provider-mirror-check"
version=$1 v=${1#v}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/provider-mirror-check.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mirror=$work/terraform-provider-mkvault
step() { printf 'provider-mirror-check: %s\n' "$*"; }

"$repo/scripts/provider-mirror.sh" "$mirror" "$version"
cd "$mirror"
export GOWORK=off GOFLAGS=-mod=readonly
step "go mod verify, go mod tidy -diff"
go mod verify >/dev/null
go mod tidy -diff || die "the mirror's go.mod is not tidy"
if grep -n 'replace\|metakraftwerk/vault-plugin-secrets-metakraftwerk v' go.mod; then die "the mirror's go.mod replaces or requires the engine's module"; fi
step "go build, go vet, go test"
go build -o /dev/null .
go vet ./...
go test -count=1 ./...
step "tfplugindocs validate"
out=$(GOFLAGS='' go run "$TFPLUGINDOCS" validate --provider-name mkvault 2>&1) || { printf '%s\n' "$out"; die "tfplugindocs validate failed"; }
step "actionlint on the mirror's release workflow"
"$("$repo/scripts/actionlint-bin.sh")" -no-color .github/workflows/release.yml

step "scripts/release.sh $version for linux/amd64, signed with a throwaway RSA 4096 key"
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-gen-key 'Mirror check <check@example.invalid>' rsa4096 sign never 2>/dev/null
fpr=$(gpg --batch --list-secret-keys --with-colons 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
GPG_KEY_ID=$fpr PLATFORMS=linux/amd64 scripts/release.sh "$version" "$work/dist" 2>/dev/null
cd "$work/dist"
prefix=terraform-provider-mkvault_$v
listed=$(awk '{ print $2 }' "${prefix}_SHA256SUMS" | sort | tr '\n' ' ')
[[ $listed == "${prefix}_linux_amd64.zip ${prefix}_manifest.json " ]] || die "SHA256SUMS lists: $listed"
sha256sum --quiet -c "${prefix}_SHA256SUMS" || die "a file does not match SHA256SUMS"
gpg --batch --quiet --verify "${prefix}_SHA256SUMS.sig" "${prefix}_SHA256SUMS" 2>/dev/null || die "the signature does not verify"
cmp "${prefix}_manifest.json" "$mirror/terraform-registry-manifest.json" || die "the manifest is not terraform-registry-manifest.json"
[[ $(unzip -Z1 "${prefix}_linux_amd64.zip" | tr '\n' ' ') == "terraform-provider-mkvault_v$v LICENSE " ]] || die "the zip holds: $(unzip -Z1 "${prefix}_linux_amd64.zip")"
unzip -p "${prefix}_linux_amd64.zip" "terraform-provider-mkvault_v$v" >"$work/mirror-bin"
(cd "$repo/terraform-provider-mkvault" && export GOOS=linux GOARCH=amd64 && eval "$PROVIDER_BUILD -o \"$work/repo-bin\" .")
cmp -s "$work/mirror-bin" "$work/repo-bin" || die "the mirror's linux/amd64 binary differs from this repository's build"
step "passed: the mirror builds, vets, tests and validates alone; its release lists the manifest, verifies, and holds this repository's binary ($(sha256sum <"$work/repo-bin" | cut -c1-16)…)"
