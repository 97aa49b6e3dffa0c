#!/usr/bin/env bash
# release.sh vX.Y.Z OUT writes the provider's release into OUT in the layout
# the Terraform and OpenTofu registries read from a GitHub release:
#   terraform-provider-mkvault_X.Y.Z_<os>_<arch>.zip   (the binary, LICENSE)
#   terraform-provider-mkvault_X.Y.Z_manifest.json      (terraform-registry-manifest.json)
#   terraform-provider-mkvault_X.Y.Z_SHA256SUMS         (over all of the above)
#   terraform-provider-mkvault_X.Y.Z_SHA256SUMS.sig     (when GPG_KEY_ID is set)
# The registries verify the signature with the namespace's key, which must
# be RSA or DSA (not ECC); ours is RSA 4096. PLATFORMS (os/arch, space
# separated) defaults to the six the registries get.
#
# The build is the one the source repository's `make release` runs, so the
# same tag and Go toolchain give the same binaries there and here.
set -euo pipefail

die() { printf 'release.sh: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 2 ]] || die "usage: release.sh vX.Y.Z OUT"
version=$1 out=$2
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "version $version is not vX.Y.Z"
v=${version#v}
name=terraform-provider-mkvault
prefix=${name}_$v
platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/${prefix}_"*
work=$(mktemp -d "${TMPDIR:-/tmp}/$name-release.XXXXXX")
trap 'rm -rf "$work"' EXIT

for p in $platforms; do
	os=${p%/*} arch=${p#*/} ext=""
	[[ $os == windows ]] && ext=.exe
	dir=$work/${os}_$arch
	mkdir -p "$dir"
	(cd "$root" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$v" -o "$dir/${name}_v$v$ext" .)
	cp "$root/LICENSE" "$dir/LICENSE"
	# Fixed times and no extra fields: the zip depends only on its files.
	touch -d '1980-01-01T00:00:00Z' "$dir/${name}_v$v$ext" "$dir/LICENSE"
	(cd "$dir" && TZ=UTC zip -q -X "$out/${prefix}_${os}_$arch.zip" "${name}_v$v$ext" LICENSE)
done
cp "$root/terraform-registry-manifest.json" "$out/${prefix}_manifest.json"
(cd "$out" && sha256sum -- "${prefix}"_*.zip "${prefix}_manifest.json" >"${prefix}_SHA256SUMS")
if [[ -n ${GPG_KEY_ID:-} ]]; then
	gpg --batch --yes --local-user "$GPG_KEY_ID" --detach-sign --output "$out/${prefix}_SHA256SUMS.sig" "$out/${prefix}_SHA256SUMS"
fi
printf '%s\n' "$out/${prefix}_"* >&2
