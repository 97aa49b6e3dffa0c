package metakraftwerk

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRotateRoleRetiresTheSharedToken(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	old, oldResp := readToken(t, env, "ci")

	before := env.mk.Stats()
	resp := env.mustWrite("rotate-role/ci", nil)
	if after := env.mk.Stats(); after.LoginRequests != before.LoginRequests || after.APIRequests != before.APIRequests {
		t.Fatal("rotate contacted MetaKraftwerk")
	}
	if resp == nil || resp.Data[fieldRetired] != true || resp.Data[fieldTokenID] != oldResp.Data[fieldTokenID] ||
		resp.Data[fieldExpiresAt] != oldResp.Data[fieldExpiresAt] {
		t.Fatalf("rotate answered %v", respErr(resp))
	}
	if !strings.Contains(env.logs.String(), "role rotated") {
		t.Error("rotate is not logged")
	}
	// Nothing to retire now: still a success, and it says so.
	if resp := env.mustWrite("rotate-role/ci", nil); resp.Data[fieldRetired] != false || resp.Data[fieldTokenID] != nil {
		t.Fatalf("second rotate answered %v", resp.Data)
	}

	if tok, _ := readToken(t, env, "ci"); tok == old {
		t.Fatal("the retired token was handed out again")
	}
}

// rotate-role retires the shared token and nothing else: a remembered
// rejection stays, so rotating cannot buy another failed login.
func TestRotateRoleKeepsARejection(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: "changed-upstream", fieldVerify: false})
	env.secrets = append(env.secrets, "changed-upstream")
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatal("want a rejection")
	}
	before := env.mk.Stats().LoginRequests
	env.mustWrite("rotate-role/ci", nil)
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), "last tried") {
		t.Fatalf("after rotate: %q", errorText(resp, err))
	}
	if env.mk.Stats().LoginRequests != before {
		t.Fatal("after rotate the next read logged in again")
	}
}

func TestRotateRoleBadInput(t *testing.T) {
	env := newTestBackend(t)
	for path, want := range map[string]string{
		"rotate-role/nope":    `role "nope" not found`,
		"rotate-role/a b":     fieldName + `: "a b" is not a valid role name`,
		"rotate-role/-x":      fieldName + `:`,
		"rotate-role/x/extra": fieldName + `:`,
	} {
		resp, err := env.do(logical.UpdateOperation, path, nil)
		if statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), want) {
			t.Errorf("%s: %d %q", path, statusOf(resp, err), errorText(resp, err))
		}
	}
	// A storage failure is Vault's 500, not a "not found".
	env.createRole("ci", nil)
	env.storage.Underlying().FailGet(true)
	defer env.storage.Underlying().FailGet(false)
	if _, err := env.do(logical.UpdateOperation, "rotate-role/ci", nil); err == nil {
		t.Fatal("want an error when storage fails")
	}
}
