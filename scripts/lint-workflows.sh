#!/usr/bin/env bash
# lint-workflows.sh [WORKFLOW...]: make lint's check of the GitHub workflows
# (by default this repository's .github/workflows and the provider mirror's
# release workflow). Each must pass actionlint (scripts/actionlint-bin.sh;
# it runs shellcheck on `run:` scripts when shellcheck is installed), pin
# every action to a full commit SHA with the version in a comment, and set
# top-level `permissions:`. Then testdata/workflows/broken.yml must fail
# all three, or the check itself is broken.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
actionlint=$(scripts/actionlint-bin.sh)

# check FILE...: the findings, one a line, on stdout; status 1 if any.
check() {
	local f found=0
	"$actionlint" -no-color -oneline "$@" || found=1
	for f in "$@"; do
		# uses: owner/repo[/path]@<40 hex> # vX.Y.Z, or a local ./ workflow.
		if grep -nE '^[[:space:]]*(-[[:space:]]+)?uses:' "$f" |
			grep -vE 'uses:[[:space:]]+(\./[^[:space:]]+|[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}[[:space:]]+#[[:space:]]*v[0-9][^[:space:]]*)[[:space:]]*$' |
			sed "s|^|$f:|; s|\$|  <- not pinned to a commit SHA with its version in a comment|"; then
			found=1
		fi
		if ! grep -qE '^permissions:' "$f"; then
			echo "$f: no top-level permissions: (the least the workflow needs)"
			found=1
		fi
	done
	return "$found"
}

workflows=("$@")
if ((${#workflows[@]} == 0)); then
	workflows=(.github/workflows/*.yml terraform-provider-mkvault/.github/workflows/*.yml)
fi
if ! check "${workflows[@]}"; then
	echo "lint-workflows: the workflows above have faults" >&2
	exit 1
fi
echo "lint-workflows: ${#workflows[@]} workflows pass actionlint $("$actionlint" -version | head -n1), are pinned and set permissions"

broken=testdata/workflows/broken.yml
out=$(check "$broken") && { echo "lint-workflows: $broken passed; the check is broken" >&2; exit 1; }
wants=('property "no_such_thing" is not defined' 'float number literal' 'not pinned to a commit SHA' 'no top-level permissions')
if command -v shellcheck >/dev/null; then
	wants+=(SC2086)
else
	echo "lint-workflows: shellcheck is not installed, so run: scripts were not checked (CI's runners have it)"
fi
for want in "${wants[@]}"; do
	if [[ $out != *"$want"* ]]; then
		printf 'lint-workflows: %s failed, but not for %q:\n%s\n' "$broken" "$want" "$out" >&2
		exit 1
	fi
done
echo "lint-workflows: $broken is refused for each of its faults"
