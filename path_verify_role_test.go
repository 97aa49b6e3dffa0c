package metakraftwerk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
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
	m.expect(1, "metakraftwerk_creds_issued_total", "source=login")
	m.expect(2, "metakraftwerk_logins_total", "purpose=verify", "outcome=success")
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

// A rejected login here is remembered like a creds read's; while it is,
// verify-role answers 429 without logging in. retry_now lets one login
// through, so that an operator who fixed the account upstream can check at
// once.
func TestVerifyRoleAndTheRejectionMemory(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("roles/wrong", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
	env.secrets = append(env.secrets, "not-the-password")
	resp, err := env.do(logical.UpdateOperation, "verify-role/wrong", nil)
	rejected := errorText(resp, err)
	if statusOf(resp, err) != 400 || !strings.Contains(rejected, `MetaKraftwerk rejected the login for role "wrong": Invalid login`) {
		t.Fatalf("verify-role of a wrong password: %d %q", statusOf(resp, err), rejected)
	}
	if got := env.mustRead("roles/wrong").Data; got[fieldLoginRefusedUntil] == "" || got[fieldLastError] != rejected {
		t.Errorf("after a rejected verify the role reads %#v", got)
	}
	// Remembered: neither a creds read nor another verify logs in.
	failed := env.mk.Stats().FailedLogins
	if resp, err := env.do(logical.ReadOperation, "creds/wrong", nil); statusOf(resp, err) != 400 {
		t.Fatal(statusOf(resp, err))
	}
	resp, err = env.do(logical.UpdateOperation, "verify-role/wrong", nil)
	env.clock.Advance(time.Minute)
	assertTooManyRequests(t, resp, err, "wrong", 300)
	if n := env.mk.Stats().FailedLogins - failed; n != 0 {
		t.Fatalf("%d failed logins while the rejection was remembered", n)
	}
	m := env.scrape()
	m.expect(1, "metakraftwerk_logins_total", "purpose=verify", "outcome=rejected")
	m.expect(0, "metakraftwerk_logins_total", "purpose=creds", "outcome=rejected")
	m.expect(1, "metakraftwerk_creds_refused_total")

	// A creds read's rejection stops verify-role too, and rotate-role does
	// not change that; after the account is fixed upstream, verify-role
	// with retry_now passes.
	env.createRole("ci", nil)
	gate := env.gateLogins()
	_, release := gate.arm(rejectLogin)
	release()
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatal(statusOf(resp, err))
	}
	resp, err = env.do(logical.UpdateOperation, "verify-role/ci", nil)
	assertTooManyRequests(t, resp, err, "ci", 300)
	env.mustWrite("rotate-role/ci", nil)
	resp, err = env.do(logical.UpdateOperation, "verify-role/ci", nil)
	assertTooManyRequests(t, resp, err, "ci", 300)
	if got := env.mustWrite("verify-role/ci", map[string]any{fieldRetryNow: true}).Data[fieldVerified]; got != true {
		t.Fatalf("verify with retry_now: %v", got)
	}
	if got := env.mustRead("roles/ci").Data[fieldLoginRefusedUntil]; got != "" {
		t.Errorf("login_refused_until %v after a passing verify", got)
	}
	env.mustRead("creds/ci")
}

// assertTooManyRequests checks verify-role's 429: the status, Retry-After,
// retry_after, and a message that says what to do.
func assertTooManyRequests(t *testing.T, resp *logical.Response, err error, role string, retryAfter int64) {
	t.Helper()
	if err != nil || resp == nil || resp.Data[logical.HTTPStatusCode] != http.StatusTooManyRequests {
		t.Fatalf("want a 429, got %v %v", respErr(resp), err)
	}
	var body struct {
		Errors []string
		Data   struct {
			RetryAfter int64 `json:"retry_after"`
		}
	}
	if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &body); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("write verify-role/%s with retry_now=true to try once now", role)
	if len(body.Errors) != 1 || !strings.Contains(body.Errors[0], want) || !strings.Contains(body.Errors[0], "MetaKraftwerk rejected the login") {
		t.Errorf("429 errors %q lack %q", body.Errors, want)
	}
	if body.Data.RetryAfter != retryAfter || resp.Headers["Retry-After"][0] != strconv.FormatInt(retryAfter, 10) {
		t.Errorf("retry_after %d, Retry-After %v; want %d", body.Data.RetryAfter, resp.Headers["Retry-After"], retryAfter)
	}
}

// Twenty verify-role calls on a rejected role, one after another and
// twenty at once, cost one failed login between them.
func TestVerifyRoleNeverHammersARejectedLogin(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			env := newTestBackend(t)
			env.mustWrite("roles/wrong", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
			env.secrets = append(env.secrets, "not-the-password")
			statuses := make([]int, 20)
			var wg sync.WaitGroup
			for i := range statuses {
				call := func() {
					defer wg.Done()
					resp, err := env.do(logical.UpdateOperation, "verify-role/wrong", nil)
					if resp != nil && resp.Data[logical.HTTPStatusCode] != nil {
						statuses[i] = resp.Data[logical.HTTPStatusCode].(int)
					} else {
						statuses[i] = statusOf(resp, err)
					}
				}
				wg.Add(1)
				if concurrent {
					go call()
				} else {
					call()
				}
			}
			wg.Wait()
			if n := env.mk.Stats().FailedLogins; n != 1 {
				t.Fatalf("%d failed logins for 20 verify-role calls (statuses %v)", n, statuses)
			}
			for _, s := range statuses {
				if s != 400 && s != 429 {
					t.Fatalf("statuses %v", statuses)
				}
			}
		})
	}
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

// A check that MetaKraftwerk does not answer in time ends before the
// request's own deadline, with a 504 that says so, not with the request
// cancelled underneath it: for verify-role and for a role write.
func TestVerifyAnswersBeforeTheRequestDeadline(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustWrite("config", map[string]any{fieldRequestTimeout: "30s"})
	env.mk.SetFaults(devserver.Faults{Mode: devserver.ModeHang})
	for _, req := range []*logical.Request{
		{Operation: logical.UpdateOperation, Path: "verify-role/ci"},
		{Operation: logical.UpdateOperation, Path: "roles/ci", Data: map[string]any{fieldProjects: "DEMO_PROJECT"}},
		{Operation: logical.CreateOperation, Path: "roles/new", Data: map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}},
	} {
		req.Storage = env.storage
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		resp, err := env.b.HandleRequest(ctx, req)
		took := time.Since(start)
		cancel()
		env.record(resp, err)
		if msg := errorText(resp, err); statusOf(resp, err) != 504 || took >= time.Second ||
			!budgetIn(msg, 850*time.Millisecond, 900*time.Millisecond) {
			t.Errorf("%s: %d after %s: %q", req.Path, statusOf(resp, err), took, msg)
		}
	}
	if role, _ := getRole(context.Background(), env.storage, "new"); role != nil {
		t.Error("a role whose check timed out was stored")
	}
}
