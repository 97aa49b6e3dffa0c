package metakraftwerk

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// The doors of the rejection memory: each way a caller can make the engine
// log in with a role's stored login costs at most one failed login per
// rejected_login_backoff, however often it is used.

// wrongRole stores role "ci" with a password MetaKraftwerk rejects.
func wrongRole(env *testEnv, extra map[string]any) {
	env.t.Helper()
	data := map[string]any{fieldEmail: testEmail, fieldPassword: "changed-upstream", fieldVerify: false}
	for k, v := range extra {
		data[k] = v
	}
	env.mustWrite("roles/ci", data)
	env.secrets = append(env.secrets, "changed-upstream")
}

// A token with only rotate-role and verify-role: ten rounds of rotate then
// verify cost one failed login, and ten rounds with retry_now one more.
func TestGateRotateThenVerify(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	before := env.mk.Stats().FailedLogins
	for i := range 10 {
		env.mustWrite("rotate-role/ci", nil)
		resp, err := env.do(logical.UpdateOperation, "verify-role/ci", nil)
		if want := map[bool]int{true: 400, false: 429}[i == 0]; statusOf(resp, err) != want {
			t.Fatalf("round %d: status %d, want %d (%q)", i, statusOf(resp, err), want, errorText(resp, err))
		}
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("10 rounds of rotate + verify cost %d failed logins, want 1", n)
	}
	for i := range 10 {
		env.mustWrite("rotate-role/ci", nil)
		resp, err := env.do(logical.UpdateOperation, "verify-role/ci", map[string]any{fieldRetryNow: true})
		if want := map[bool]int{true: 400, false: 429}[i == 0]; statusOf(resp, err) != want {
			t.Fatalf("retry_now round %d: status %d, want %d (%q)", i, statusOf(resp, err), want, errorText(resp, err))
		}
		if i > 0 && !strings.Contains(errorText(resp, err), "the early retry (retry_now) was rejected too") {
			t.Fatalf("retry_now round %d: %q", i, errorText(resp, err))
		}
	}
	if n := env.mk.Stats().FailedLogins - before; n != 2 {
		t.Fatalf("10 rounds of rotate + verify retry_now cost %d failed logins in all, want 2", n)
	}
	// After the window, an early retry is allowed again: one per window.
	env.clock.Advance(defaultRejectedLoginBackoff)
	env.do(logical.UpdateOperation, "verify-role/ci", nil)
	env.do(logical.UpdateOperation, "verify-role/ci", map[string]any{fieldRetryNow: true})
	env.do(logical.UpdateOperation, "verify-role/ci", map[string]any{fieldRetryNow: true})
	if n := env.mk.Stats().FailedLogins - before; n != 4 {
		t.Fatalf("the next window cost %d failed logins in all, want 4", n)
	}
}

// A verifying write that keeps the stored login (only projects change)
// logs in at the gate: the first records its failure in the role's status,
// the next four are refused from the memory.
func TestGateWritesThatKeepTheLogin(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	before := env.mk.Stats().FailedLogins
	for i := range 5 {
		resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "DEMO_PROJECT"})
		msg := errorText(resp, err)
		if statusOf(resp, err) != 400 || !strings.HasPrefix(msg, `verify: MetaKraftwerk rejected the login for role "ci": Invalid login`) {
			t.Fatalf("write %d: %d %q", i, statusOf(resp, err), msg)
		}
		if i > 0 && !strings.Contains(msg, "last tried at") {
			t.Fatalf("write %d logged in again: %q", i, msg)
		}
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("5 project writes cost %d failed logins, want 1", n)
	}
	status := env.mustRead("roles/ci").Data
	if status[fieldLoginRefusedUntil] == "" || !strings.Contains(status[fieldLastError].(string), "Invalid login") {
		t.Fatalf("the write's failure is not in the role's status: %#v", status)
	}
	// Nor do creds reads, writes that keep the login without verifying,
	// or a config write that keeps base_url forget it.
	env.mustWrite("roles/ci", map[string]any{fieldDescription: "still wrong", fieldVerify: false})
	env.mustWrite("config", map[string]any{fieldRequestTimeout: "10s"})
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); !strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("forgotten: %q", errorText(resp, err))
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d failed logins, want 1", n)
	}
	// A write whose new password is rejected stores nothing and does not
	// touch the memory of the stored login.
	if resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldPassword: "another-wrong-one"}); statusOf(resp, err) != 400 {
		t.Fatalf("a wrong new password: %d", statusOf(resp, err))
	}
	env.secrets = append(env.secrets, "another-wrong-one")
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); !strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("a failed write of a new password made the memory forget: %q", errorText(resp, err))
	}
	// A new login starts afresh: the right password works at once.
	env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
	env.mustRead("creds/ci")
}

// A base_url change is another server: its verdicts start afresh. Deleting
// the role forgets it too.
func TestGateBaseURLChangeStartsAfresh(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	env.do(logical.ReadOperation, "creds/ci", nil)
	url := env.mk.URL
	env.mustWrite("config", map[string]any{fieldBaseURL: strings.Replace(url, "127.0.0.1", "localhost", 1)})
	before := env.mk.Stats().FailedLogins
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("remembered across a base_url change: %q", errorText(resp, err))
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d failed logins after the base_url change, want 1", n)
	}
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
		t.Fatal(err)
	}
	wrongRole(env, nil)
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("remembered across a delete: %q", errorText(resp, err))
	}
}

// 20 creds reads and 20 verify-role calls at once share one login: the
// first is held at MetaKraftwerk until all forty wait at the gate, then
// rejected. One failed login; every caller gets the rejection.
func TestGateCoalescesCredsAndVerify(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateLogins()
	wrongRole(env, nil)
	reached, release := gate.arm(nil)
	before := env.mk.Stats().FailedLogins
	const each = 20
	type answer struct {
		path   string
		status int
		msg    string
	}
	answers := make(chan answer, 2*each)
	var wg sync.WaitGroup
	for i := range 2 * each {
		op, path := logical.Operation(logical.ReadOperation), "creds/ci"
		if i%2 == 1 {
			op, path = logical.UpdateOperation, "verify-role/ci"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(op, path, nil)
			answers <- answer{path, statusOf(resp, err), errorText(resp, err)}
		}()
	}
	<-reached
	waitForWaiters(t, 2*each)
	release()
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.status != 400 || !strings.Contains(a.msg, `MetaKraftwerk rejected the login for role "ci": Invalid login`) {
			t.Errorf("%s: %d %q", a.path, a.status, a.msg)
		}
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d creds reads and %d checks at once cost %d failed logins, want 1", each, each, n)
	}
	// Afterwards both paths refuse without a login.
	env.clock.Advance(time.Second)
	if resp, err := env.do(logical.UpdateOperation, "verify-role/ci", nil); statusOf(resp, err) != 429 {
		t.Fatalf("verify-role after: %d", statusOf(resp, err))
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d failed logins, want 1", n)
	}
}

// A login in flight at the old base_url when config changes serves only
// the readers that began before: a reader after the change logs in at the
// new server, even while the old login is still held.
func TestGateFlightsDoNotCrossAConfigChange(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateLogins() // the old base_url: the gated front of the stand-in
	env.createRole("ci", map[string]any{fieldReuseTokens: true, fieldVerify: false})
	newMK, err := devserver.Listen("127.0.0.1:0", devserver.Config{Users: []devserver.User{{ID: 7, Email: testEmail, Password: testPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	defer newMK.Close()
	reached, release := gate.arm(nil)
	old, oldResult := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	<-reached
	env.mustWrite("config", map[string]any{fieldBaseURL: newMK.URL})
	after, afterResult := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	select {
	case <-after:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader after the change waits for the login held at the old base_url")
	}
	resp, err := afterResult()
	if err != nil || resp.IsError() {
		t.Fatalf("the reader after the change: %q", errorText(resp, err))
	}
	tok := resp.Data[fieldAccessToken].(string)
	if status, err := devserver.TokenStatus(newMK.URL, tok); err != nil || status != 200 {
		t.Fatalf("the reader after the change got a token the new server does not accept (%d, %v)", status, err)
	}
	release()
	<-old
	if resp, err := oldResult(); err != nil || resp.IsError() {
		t.Fatalf("the held reader: %q", errorText(resp, err))
	}
}
