package metakraftwerk

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestVerifyRolePasses(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldProjects: "DEMO_PROJECT", fieldReuseTokens: true})
	env.clock.Advance(time.Hour)
	resp := env.mustWrite("verify-role/ci", nil)
	now := env.clock.Now().Format(time.RFC3339)
	if resp.Data[fieldVerified] != true || resp.Data[fieldUserID] != "7" ||
		!reflect.DeepEqual(resp.Data[fieldMissingProjects], []string{}) || resp.Data[fieldVerifiedAt] != now {
		t.Fatalf("verify-role = %#v", resp.Data)
	}
	if d, err := time.ParseDuration(resp.Data[fieldUpstreamLatency].(string)); err != nil || d <= 0 {
		t.Errorf("upstream_latency %q", resp.Data[fieldUpstreamLatency])
	}
	role := env.mustRead("roles/ci").Data
	if role[fieldVerifiedAt] != now || role[fieldLastLoginAt] != now || role[fieldUpdatedAt] == now {
		t.Errorf("after verify-role the role reads verified_at=%v last_login_at=%v updated_at=%v", role[fieldVerifiedAt], role[fieldLastLoginAt], role[fieldUpdatedAt])
	}
	// Its token was nobody's: the next read logs in for itself.
	if role[fieldSharedTokenID] != "" {
		t.Errorf("verify-role's token is shared: %v", role[fieldSharedTokenID])
	}
	env.mustRead("creds/ci")
	m := env.scrape()
	m.expect(1, "metakraftwerk_creds_issued_total", "role=ci", "source=login")
	m.expect(2, "metakraftwerk_logins_total", "role=ci", "purpose=verify", "outcome=success")
	m.expect(2, "metakraftwerk_login_duration_seconds", "purpose=verify")
}

func TestVerifyRoleReportsMissingProjects(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldProjects: "DEMO_PROJECT,OPS_PROJECT", fieldVerify: false})
	resp := env.mustWrite("verify-role/ci", nil)
	missing, _ := resp.Data[fieldMissingProjects].([]string)
	if resp.Data[fieldVerified] != false || len(missing) != 1 || !strings.Contains(missing[0], "OPS_PROJECT") || resp.Data[fieldVerifiedAt] != "" {
		t.Fatalf("verify-role = %#v", resp.Data)
	}
	if got := env.mustRead("roles/ci").Data[fieldVerifiedAt]; got != "" {
		t.Errorf("a failed check stored verified_at %v", got)
	}
}

// A rejected login here is reported, not remembered: the next creds read
// tries again. A passing one ends a rejection that creds reads remember.
func TestVerifyRoleAndTheRejectionMemory(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("roles/wrong", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
	env.secrets = append(env.secrets, "not-the-password")
	resp, err := env.do(logical.UpdateOperation, "verify-role/wrong", nil)
	if statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), `MetaKraftwerk rejected the login for role "wrong"`) {
		t.Fatalf("verify-role of a wrong password: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	if got := env.mustRead("roles/wrong").Data; got[fieldLoginRefusedUntil] != "" || got[fieldLastError] != errorText(resp, err) {
		t.Errorf("after a rejected verify the role reads %#v", got)
	}
	if resp, err := env.do(logical.ReadOperation, "creds/wrong", nil); statusOf(resp, err) != 400 {
		t.Fatal(statusOf(resp, err))
	}
	m := env.scrape()
	m.expect(1, "metakraftwerk_logins_total", "role=wrong", "purpose=verify", "outcome=rejected")
	m.expect(1, "metakraftwerk_logins_total", "role=wrong", "purpose=creds", "outcome=rejected")
	m.absent("metakraftwerk_creds_refused_total", "role=wrong")

	// A creds read's rejection is remembered; a passing verify ends it.
	env.createRole("ci", nil)
	gate := env.gateLogins()
	_, release := gate.arm(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"name":"NotAuthenticated","message":"Invalid login","code":401}`, http.StatusUnauthorized)
	})
	release()
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatal(statusOf(resp, err))
	}
	if got := env.mustRead("roles/ci").Data[fieldLoginRefusedUntil]; got == "" {
		t.Fatal("the creds read's rejection is not remembered")
	}
	env.mustWrite("verify-role/ci", nil)
	if got := env.mustRead("roles/ci").Data[fieldLoginRefusedUntil]; got != "" {
		t.Errorf("login_refused_until %v after a passing verify", got)
	}
	env.mustRead("creds/ci")
}

func TestVerifyRoleErrors(t *testing.T) {
	env := newTestBackend(t)
	for path, want := range map[string]string{
		"verify-role/nope": `role "nope" not found`,
		"verify-role/-x":   "name: ",
	} {
		resp, err := env.do(logical.UpdateOperation, path, nil)
		if statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), want) {
			t.Errorf("%s: %d %q, want 400 %q", path, statusOf(resp, err), errorText(resp, err), want)
		}
	}
	env.createRole("ci", nil)
	env.mustWrite("config", map[string]any{fieldBaseURL: "http://127.0.0.1:1", fieldMaxRetries: 0})
	resp, err := env.do(logical.UpdateOperation, "verify-role/ci", nil)
	if statusOf(resp, err) != 502 {
		t.Errorf("verify-role with MetaKraftwerk down: %d %q", statusOf(resp, err), errorText(resp, err))
	}
}
