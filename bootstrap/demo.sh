#!/usr/bin/env bash
# The guided tour behind `make demo`: brings up the local stack on loopback,
# shows what a platform team, a CI job and a service see, and tears
# everything down again, also on Ctrl-C or failure. A failure names the step
# and the reason. PLATFORM=openbao runs it on OpenBao.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# A stack of its own, so that a `make up` stack keeps running untouched.
export METAKRAFTWERK_STACK_DIR=${METAKRAFTWERK_STACK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/metakraftwerk-demo.XXXXXX")}
STATE=$METAKRAFTWERK_STACK_DIR
# The stack writes why it failed here (STATE itself is recreated by it).
export METAKRAFTWERK_STACK_ERROR_FILE
METAKRAFTWERK_STACK_ERROR_FILE=$(mktemp "${TMPDIR:-/tmp}/metakraftwerk-demo-error.XXXXXX")

if [[ -t 1 ]]; then bold=$'\e[1m'; dim=$'\e[2m'; red=$'\e[31m'; green=$'\e[32m'; off=$'\e[0m'; else bold= dim= red= green= off=; fi

# current_step and reason say, when the tour fails, where and why.
current_step="" reason=""
on_error() {
	local rc=$?
	[[ -n $reason ]] || reason="\`$BASH_COMMAND\` exited with status $rc"
}
trap on_error ERR

finish() {
	local rc=$?
	trap - EXIT ERR
	trap "" INT TERM # finish tearing down even if interrupted again
	if ((rc != 0 && rc != 130)); then
		for log in "$STATE"/vault.log "$STATE"/devserver.log "$STATE"/agent/agent.log; do
			[[ -s $log ]] || continue
			printf '\n%s-- last lines of %s%s\n' "$dim" "${log#"$STATE"/}" "$off" >&2
			tail -n 15 "$log" | abbreviate >&2
		done
	fi
	printf '\n%s== Tear down: stopping the server, the plugin, Agent and the stand-in%s\n' "$bold" "$off"
	"$here/stack.sh" down || true
	rm -f "$METAKRAFTWERK_STACK_ERROR_FILE"
	if ((rc == 0)); then
		printf '\n%sDemo finished.%s Try it yourself: make up, then follow the printed exports.\n' "$green" "$off"
	elif ((rc == 130)); then
		printf '\n%sDemo interrupted%s during step %s.\n' "$red" "$off" "${current_step:-0/6}" >&2
	else
		printf '\n%sDemo failed at step %s%s\n  why: %s\n' "$red" "${current_step:-0/6 (before the first step)}" "$off" "${reason:-exit status $rc}" >&2
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

step() {
	current_step=$*
	printf '\n%s== %s%s\n' "$bold" "$*" "$off"
}
explain() { printf '%s%s%s\n' "$dim" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$off"; }
# abbreviate hides all but the start of every JWT in what is shown.
abbreviate() { sed -E 's/(eyJ[A-Za-z0-9_-]{10})[A-Za-z0-9_.-]*/\1…(abbreviated)/g'; }
# json_field FILE KEY: a string field of the CLI's pretty-printed JSON.
json_field() { sed -n "s/^ *\"$2\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p" "$1" | head -n1; }
fail() {
	reason=$*
	printf '%sunexpected: %s%s\n' "$red" "$*" "$off" >&2
	exit 1
}

step "1/6 Bring up the stack (stand-in MetaKraftwerk + ${PLATFORM:-vault} dev server, loopback only)"
explain "The plugin is registered by sha256 with a version and mounted at ${MOUNT:-metakraftwerk}/;"
explain "each role's MetaKraftwerk login is verified once when the role is written."
"$here/stack.sh" up >/dev/null || fail "the stack did not come up: $(tail -n 1 "$METAKRAFTWERK_STACK_ERROR_FILE")"
# shellcheck disable=SC1091
source "$STATE/env"
cli=$METAKRAFTWERK_CLI
name=$(basename "$cli") # vault or bao, as shown to the reader
explain "Server at $VAULT_ADDR, stand-in MetaKraftwerk at $METAKRAFTWERK_URL"
show "$name read $MOUNT/roles/team-a-ci"
"$cli" read "$MOUNT/roles/team-a-ci"
explain "The password is write-only: a read shows password_set, never the password."

step "2/6 A CI job asks for a MetaKraftwerk token"
show "$name read -format=json $MOUNT/creds/team-a-ci"
"$cli" read -format=json "$MOUNT/creds/team-a-ci" >"$STATE/creds.json"
abbreviate <"$STATE/creds.json"
token=$(json_field "$STATE/creds.json" access_token)
lease=$(json_field "$STATE/creds.json" lease_id)
[[ -n $token && -n $lease ]] || fail "no token or lease in the creds response"
explain "The lease is not renewable and ends expiry_leeway (1m) before the JWT's exp."
explain "CI jobs take just the token: $name read -field=access_token $MOUNT/creds/team-a-ci"

step "3/6 The token works against MetaKraftwerk's API"
show "curl -H 'Authorization: Bearer <token>' $METAKRAFTWERK_URL/api/v1/projects"
projects=$(curl -fsS -H "Authorization: Bearer $token" "$METAKRAFTWERK_URL/api/v1/projects")
printf '%s\n' "$projects"
[[ $projects == *TEAM_A_PROJECT* ]] || fail "the token did not list team A's project"

step "4/6 One policy per team: a team-a token cannot mint team-b's tokens"
team_a=$("$cli" token create -policy=team-a -ttl=15m -field=token)
show "VAULT_TOKEN=<team-a token> $name read -field=token_type $MOUNT/creds/team-a-ci"
VAULT_TOKEN=$team_a "$cli" read -field=token_type "$MOUNT/creds/team-a-ci"
echo
show "VAULT_TOKEN=<team-a token> $name read $MOUNT/creds/team-b-ci"
if VAULT_TOKEN=$team_a "$cli" read "$MOUNT/creds/team-b-ci" >/dev/null 2>"$STATE/denied.txt"; then
	fail "team-a read team-b's role"
fi
grep -E 'Code: 403|permission denied' "$STATE/denied.txt" || fail "expected a 403, got: $(head -c 300 "$STATE/denied.txt")"
explain "Denied, as bootstrap/policies/team-a.hcl intends."

step "5/6 Agent renders the token into a file for a service"
mkdir -p "$STATE/agent"
printf '%s' "$team_a" >"$STATE/agent/vault-token"
chmod 600 "$STATE/agent/vault-token"
sed -e "s|@STATE_DIR@|$STATE/agent|" -e "s|@VAULT_ADDR@|$VAULT_ADDR|" \
	-e "s|@TOKEN_FILE@|$STATE/agent/vault-token|" -e "s|@TEMPLATE@|$here/agent/token.ctmpl|" \
	-e "s|@DESTINATION@|$STATE/agent/metakraftwerk-token|" "$here/agent/agent.hcl.tmpl" >"$STATE/agent/agent.hcl"
show "$name agent -config=agent.hcl -exit-after-auth   (template: bootstrap/agent/token.ctmpl)"
timeout 60 "$cli" agent -config="$STATE/agent/agent.hcl" -exit-after-auth >"$STATE/agent/agent.log" 2>&1 ||
	fail "the agent failed; see $STATE/agent/agent.log"
[[ -s $STATE/agent/metakraftwerk-token ]] || fail "the agent rendered nothing"
show "ls -l metakraftwerk-token; cat metakraftwerk-token"
ls -l "$STATE/agent/metakraftwerk-token" | awk '{print $1, $NF}'
abbreviate <"$STATE/agent/metakraftwerk-token"
echo
explain "Run without -exit-after-auth, Agent fetches a fresh token before each lease ends and re-renders the file."

step "6/6 Revoke the lease"
show "$name lease revoke $lease"
"$cli" lease revoke "$lease"
explain "Revocation always succeeds and contacts nothing: MetaKraftwerk has no API to invalidate a token,"
explain "so the JWT itself stays usable until it expires. Keep leases (and expiry_leeway) short where that matters."
