#!/usr/bin/env bash
# Brings the local stack up or down, everything on loopback:
#   - the stand-in MetaKraftwerk (bin/metakraftwerk-devserver) with the users of users.json,
#   - a Vault (or OpenBao) dev server with a plugin directory,
#   - the plugin registered by sha256 with -version, mounted at $MOUNT/
#     with -plugin-version, configured to use the stand-in,
#   - roles team-a-ci and team-b-ci, policies team-a and team-b (for $MOUNT).
# users.json also has the README's user (ci-bot@example.com, TEAM_A) and
# the Terraform example's, so that their commands paste against it; the
# env file it prints keeps MOUNT, sets V (the README's version, without
# the v) and the README's MK_PASSWORD, and on OpenBao puts a `vault` that
# runs bao first on PATH, so that the README's blocks paste as written.
# A password changes while it runs with
# POST $METAKRAFTWERK_URL/_devserver/password.
#
# Usage: bootstrap/stack.sh up|down|status
# Environment:
#   METAKRAFTWERK_STACK_DIR  state directory (default: <repo>/.stack)
#   VAULT_PORT               Vault's port (default: a free one; the next port must be free too)
#   MK_PORT                  the stand-in's port (default: a free one)
#   MK_TOKEN_LIFETIME        lifetime of the stand-in's tokens (default 20h)
#   VERSION                  plugin version to register (default v0.0.0-dev, as `make build` without a tag)
#   MOUNT                    the engine's mount path (default metakraftwerk), as the README's MOUNT
#   PLATFORM                 vault (default; scripts/vault-bin.sh) or openbao (scripts/bao-bin.sh)
#   METAKRAFTWERK_STACK_ERROR_FILE  where to append the reason the stack failed (the demo quotes it)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
STATE=${METAKRAFTWERK_STACK_DIR:-$repo/.stack}
VERSION=${VERSION:-v0.0.0-dev}
MOUNT=${MOUNT:-metakraftwerk}
MOUNT=${MOUNT%/}
PLUGIN=vault-plugin-secrets-metakraftwerk
ROOT_TOKEN=root # a dev server's root token; never use a dev server for real secrets
PLATFORM=${PLATFORM:-vault}

say() { printf '  %s\n' "$*" >&2; }
die() {
	printf 'stack: %s\n' "$*" >&2
	if [[ -n ${METAKRAFTWERK_STACK_ERROR_FILE:-} ]]; then printf '%s\n' "$*" >>"$METAKRAFTWERK_STACK_ERROR_FILE"; fi
	exit 1
}

case $PLATFORM in
vault) SERVER_SCRIPT=vault-bin.sh ;;
openbao) SERVER_SCRIPT=bao-bin.sh ;;
*) die "PLATFORM=$PLATFORM is not supported; use vault or openbao" ;;
esac

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_vault_port() {
	local p
	for _ in $(seq 1 200); do
		p=$(((RANDOM % 12000) + 20000)) # below the ephemeral range, where port-0 listeners land
		if port_free "$p" && port_free "$((p + 1))"; then
			echo "$p"
			return
		fi
	done
	die "no free loopback port pair found"
}

alive() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# user_password EMAIL: the password of EMAIL in users.json (one user per line).
user_password() {
	sed -n "s/.*\"email\": *\"$1\", *\"password\": *\"\([^\"]*\)\".*/\1/p" "$here/users.json"
}

up() {
	if alive vault || alive devserver; then
		die "a stack is already running in $STATE; run 'make down' first"
	fi
	[[ -x $repo/bin/$PLUGIN && -x $repo/bin/metakraftwerk-devserver ]] || die "run 'make build' first"
	local server
	server=$("$repo/scripts/$SERVER_SCRIPT") || die "no $PLATFORM binary: scripts/$SERVER_SCRIPT failed (its message is above)"
	rm -rf "$STATE"
	mkdir -p "$STATE/plugins" "$STATE/home" "$STATE/tmp"
	chmod 700 "$STATE"
	cp "$repo/bin/$PLUGIN" "$STATE/plugins/$PLUGIN"

	say "starting the stand-in MetaKraftwerk on loopback"
	"$repo/bin/metakraftwerk-devserver" -listen "127.0.0.1:${MK_PORT:-0}" -addr-file "$STATE/mk.addr" \
		-users-file "$here/users.json" -token-lifetime "${MK_TOKEN_LIFETIME:-20h}" >"$STATE/devserver.log" 2>&1 &
	echo $! >"$STATE/devserver.pid"
	for _ in $(seq 1 100); do [[ -s $STATE/mk.addr ]] && break; sleep 0.1; done
	[[ -s $STATE/mk.addr ]] || die "the stand-in did not start; see $STATE/devserver.log"
	local mk_url="http://$(cat "$STATE/mk.addr")"

	local port=${VAULT_PORT:-$(pick_vault_port)}
	say "starting a dev server on 127.0.0.1:$port ($("$server" version | head -n1))"
	sed "s|@PLUGIN_DIR@|$STATE/plugins|" "$here/vault-dev.hcl.tmpl" >"$STATE/vault.hcl"
	# setsid: the server and its plugin processes get their own process
	# group, so that 'down' stops all of them. TMPDIR keeps go-plugin's
	# sockets in the state directory, which 'down' removes.
	HOME=$STATE/home TMPDIR=$STATE/tmp setsid "$server" server -dev -dev-root-token-id="$ROOT_TOKEN" \
		-dev-listen-address="127.0.0.1:$port" -config="$STATE/vault.hcl" >"$STATE/vault.log" 2>&1 &
	echo $! >"$STATE/vault.pid"
	export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN=$ROOT_TOKEN
	for _ in $(seq 1 300); do
		curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break
		alive vault || die "the $PLATFORM server exited at start; see $STATE/vault.log"
		sleep 0.2
	done
	curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null || die "the $PLATFORM server did not become healthy within 60s; see $STATE/vault.log"

	local sha
	sha=$(sha256sum "$STATE/plugins/$PLUGIN" | cut -d' ' -f1)
	say "registering the plugin by sha256 ${sha:0:12}… as $VERSION and mounting it at $MOUNT/"
	"$server" plugin register -sha256="$sha" -version="$VERSION" -command="$PLUGIN" secret metakraftwerk >/dev/null
	"$server" secrets enable -path="$MOUNT" -plugin-version="$VERSION" \
		-description="MetaKraftwerk access tokens" metakraftwerk >/dev/null
	"$server" write "$MOUNT/config" base_url="$mk_url" >/dev/null

	say "creating roles team-a-ci and team-b-ci (each logs in once to verify) and policies team-a, team-b"
	# Passwords go in on stdin (password=-), never on a command line.
	printf %s "$(user_password team-a-ci@example.com)" | "$server" write "$MOUNT/roles/team-a-ci" \
		email=team-a-ci@example.com password=- projects=TEAM_A_PROJECT description="CI of team A" >/dev/null
	printf %s "$(user_password team-b-ci@example.com)" | "$server" write "$MOUNT/roles/team-b-ci" \
		email=team-b-ci@example.com password=- projects=TEAM_B_PROJECT description="CI of team B" >/dev/null
	# The policy files are written for metakraftwerk/; their own comment's sed
	# puts the mount in.
	for team in team-a team-b; do
		sed "s|^path \"metakraftwerk/|path \"$MOUNT/|" "$here/policies/$team.hcl" | "$server" policy write "$team" - >/dev/null
	done

	# OpenBao's CLI takes the same commands as Vault's: a `vault` that runs
	# bao lets the README's blocks, written for vault, paste unchanged.
	local path_dir
	path_dir=$(dirname "$server")
	if [[ $PLATFORM == openbao ]]; then
		mkdir -p "$STATE/bin"
		printf '#!/bin/sh\n# The stack runs OpenBao: vault commands run as bao.\nexec %q "$@"\n' "$server" >"$STATE/bin/vault"
		chmod 755 "$STATE/bin/vault"
		path_dir=$STATE/bin:$path_dir
	fi

	cat >"$STATE/env" <<-ENV
		export VAULT_ADDR=$VAULT_ADDR
		export VAULT_TOKEN=$ROOT_TOKEN
		export METAKRAFTWERK_URL=$mk_url
		export METAKRAFTWERK_CLI=$server
		export MOUNT=$MOUNT
		export V=${VERSION#v}
		export MK_PASSWORD="\$(jq -r '.[] | select(.email == "ci-bot@example.com") | .password' $here/users.json)"
		export PATH="$path_dir:\$PATH"
	ENV
	say "stack is up (state and logs in $STATE)"
}

stop_pid() {
	local name=$1 group=$2 pid
	[[ -f $STATE/$name.pid ]] || return 0
	pid=$(cat "$STATE/$name.pid")
	if kill -0 "$pid" 2>/dev/null; then
		if [[ $group == group ]]; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$STATE/$name.pid"
}

down() {
	[[ -d $STATE ]] || { say "no stack in $STATE"; return 0; }
	stop_pid agent single
	stop_pid vault group
	stop_pid devserver single
	rm -rf "$STATE"
	say "stack stopped and $STATE removed"
}

status() {
	for p in devserver vault agent; do
		if alive "$p"; then say "$p: running (pid $(cat "$STATE/$p.pid"))"; else say "$p: not running"; fi
	done
	[[ -f $STATE/env ]] && cat "$STATE/env"
}

case ${1:-} in
up)
	up
	printf '\nUse it from this shell with:\n\n'
	sed 's/^/  /' "$STATE/env"
	# shellcheck disable=SC2016 # the command is shown for the reader's shell
	printf '\n  vault read "$MOUNT/creds/team-a-ci"\n\nThe plugin is registered as %s and mounted at %s/; the README'"'"'s set-up (its role and policies) comes next.\nStop it with: make down\n' "$VERSION" "$MOUNT"
	;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
