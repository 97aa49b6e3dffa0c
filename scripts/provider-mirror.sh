#!/usr/bin/env bash
# provider-mirror.sh DIR vX.Y.Z writes into DIR the tree of the Terraform
# provider's own repository, the mirror the registries read
# (docs/development.md, "Releasing"): terraform-provider-mkvault/ as it is
# in this working tree (its go.mod, code, docs/, examples/, README.md,
# terraform-registry-manifest.json, scripts/release.sh and the release
# workflow in .github/), without its acceptance suite, which needs this
# repository; plus LICENSE and .go-version from the top of this
# repository. DIR's .git, if any, is kept and everything else replaced, so
# DIR can be a clone of the mirror that then commits the snapshot.
set -euo pipefail

die() { printf 'provider-mirror: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 2 && -n $1 && -n $2 ]] || die "usage: provider-mirror.sh DIR vX.Y.Z (make provider-mirror MIRROR_DIR=… VERSION=…)"
version=$2
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "VERSION $version is not vX.Y.Z"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo/terraform-provider-mkvault
dir=$(realpath -m "$1")
case $dir/ in "$repo"/*) die "DIR $dir is inside this repository; the mirror stands alone" ;; esac
mkdir -p "$dir"

find "$dir" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
# What git knows of (tracked, or new and not ignored): no build output.
(cd "$src" && git ls-files -z --cached --others --exclude-standard -- . ':(exclude)acceptance') |
	while IFS= read -r -d '' f; do
		[[ -e $src/$f ]] || continue # deleted in the working tree
		mkdir -p "$dir/$(dirname "$f")"
		cp -p "$src/$f" "$dir/$f"
	done
cp "$repo/LICENSE" "$repo/.go-version" "$dir/"
printf 'provider-mirror: wrote terraform-provider-mkvault %s (%s) into %s\n' "$version" \
	"$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo 'no commit')" "$dir" >&2
