# Sourced by vault-bin.sh, terraform-bin.sh, prometheus-bin.sh and
# golangci-lint-bin.sh: a binary built once into a cache directory outside
# the repository and reused later. Builders of one
# target serialise on a lock file, the binary is moved into place
# atomically, and the scratch directory is removed however the script ends.
# The caller sets TARGET and defines log().

# use_given NAME prints the binary the variable NAME gives and ends the
# script when it is set; one that is not an executable file is an error.
use_given() {
	local given=${!1:-}
	[[ -n $given ]] || return 0
	if [[ -x $given ]]; then
		printf '%s\n' "$given"
		exit 0
	fi
	log "$1=$given is not an executable file"
	exit 1
}

# use_cached CHECK prints $TARGET and ends the script when it is there and
# CHECK accepts it.
use_cached() {
	if [[ -x $TARGET ]] && "$1" "$TARGET"; then
		printf '%s\n' "$TARGET"
		exit 0
	fi
}

# lock_build WHAT CHECK takes the target's build lock, waiting for another
# builder if there is one, then uses what that builder made; it returns
# only when this script is to build. It also sets up the scratch directory
# $work, removed at exit (as is a background build whose pid is in $build).
lock_build() {
	command -v go >/dev/null || { log "go is required to build $1"; exit 1; }
	mkdir -p "$(dirname "$TARGET")"
	exec 9>"$TARGET.lock"
	if ! flock -n 9; then
		log "another build of $1 is running; waiting for it"
		flock 9
	fi
	use_cached "$2"
	trap cleanup EXIT
	work=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$TARGET")-build.XXXXXX")
}

# cleanup runs however the script ends. It must not fail: under set -e a
# failing command in an EXIT trap would end the trap early and replace the
# script's exit status.
work="" build=""
cleanup() {
	if [[ -n $build ]]; then kill "$build" 2>/dev/null || true; fi
	if [[ -n $work ]]; then
		chmod -R u+w "$work" 2>/dev/null || true
		rm -rf "$work" || true
	fi
	rm -f "$TARGET.tmp.$$" || true
}

# install_built FILE copies FILE next to $TARGET, then renames it: readers
# see no file or a whole one.
install_built() {
	cp "$1" "$TARGET.tmp.$$"
	mv -f "$TARGET.tmp.$$" "$TARGET"
}

# module_source MODULE@VERSION copies the module's source from the module
# proxy into $work/src, writable: the module cache is read-only, and the
# builders edit go.mod.
module_source() {
	local src
	src=$(GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n $src && -d $src ]] || { log "could not download $1"; return 1; }
	cp -R "$src/." "$work/src"
	chmod -R u+w "$work/src"
}

# go_build ARGS... runs `go build -trimpath ARGS...` in $work/src with the
# module's own go.mod, logging progress every minute.
go_build() {
	local start=$SECONDS rc=0
	(cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath "$@") >&2 &
	build=$!
	# Progress from the foreground: a background ticker's sleep would outlive
	# the script and hold its output open.
	local next=$((start + 60))
	while kill -0 "$build" 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)); then
			log "still compiling... $((SECONDS - start))s"
			next=$((next + 60))
		fi
	done
	wait "$build" || rc=$?
	build=""
	return "$rc"
}
