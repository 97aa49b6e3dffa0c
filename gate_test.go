package metakraftwerk

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
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

// heldMK is a server in front of the test's stand-in that holds every
// login until the test releases it, and counts the logins in flight.
type heldMK struct {
	env      *testEnv
	srv      *httptest.Server
	arrivals chan *heldLogin

	mu                  sync.Mutex
	inFlight, maxFlight int
	all                 []*heldLogin
}

// heldLogin is one login held at heldMK; release answers it from the
// stand-in.
type heldLogin struct {
	released chan struct{}
	release  func()
}

func (e *testEnv) holdLogins() *heldMK {
	e.t.Helper()
	h := &heldMK{env: e, arrivals: make(chan *heldLogin, 256)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/authentication" {
			l := &heldLogin{released: make(chan struct{})}
			l.release = sync.OnceFunc(func() { close(l.released) })
			h.mu.Lock()
			h.inFlight++
			h.maxFlight = max(h.maxFlight, h.inFlight)
			h.all = append(h.all, l)
			h.mu.Unlock()
			h.arrivals <- l
			<-l.released
			defer func() {
				h.mu.Lock()
				h.inFlight--
				h.mu.Unlock()
			}()
		}
		e.mk.Handler().ServeHTTP(w, r)
	}))
	e.t.Cleanup(h.srv.Close)
	// Before the server closes, which waits for its handlers.
	e.t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, l := range h.all {
			l.release()
		}
	})
	e.mustWrite("config", map[string]any{fieldBaseURL: h.srv.URL})
	return h
}

// next returns the next login to arrive.
func (h *heldMK) next() *heldLogin {
	h.env.t.Helper()
	select {
	case l := <-h.arrivals:
		return l
	case <-time.After(10 * time.Second):
		h.env.t.Fatal("no login arrived")
		return nil
	}
}

// none fails the test if a login arrived that the test did not take.
func (h *heldMK) none(when string) {
	h.env.t.Helper()
	select {
	case l := <-h.arrivals:
		l.release()
		h.env.t.Fatalf("%s: a login arrived", when)
	default:
	}
}

func (h *heldMK) max() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxFlight
}

// waitForSlotWaiters returns once n goroutines wait for a login of their
// role to end (loginSlots.acquire).
func waitForSlotWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 8<<20)
	for time.Now().Before(deadline) {
		got := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, " [select") && strings.Contains(g, "(*loginSlots).acquire(") {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d readers ever waited for a login slot", n)
}

// readAll runs n creds reads of role ci at once and returns their
// answers once all have ended.
func readAll(env *testEnv, n int) (wait func() []string) {
	answers := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
			if err == nil && resp != nil && !resp.IsError() {
				answers <- "token"
				return
			}
			answers <- fmt.Sprintf("%d %s", statusOf(resp, err), errorText(resp, err))
		}()
	}
	return func() []string {
		wg.Wait()
		close(answers)
		var out []string
		for a := range answers {
			out = append(out, a)
		}
		return out
	}
}

// busyRole stores role ci with max_concurrent_logins=limit, logs in once
// through h (so the role counts as confirmed), and then changes its
// password in MetaKraftwerk.
func busyRole(env *testEnv, h *heldMK, limit int) {
	env.t.Helper()
	env.createRole("ci", map[string]any{fieldMaxConcurrentLogins: limit, fieldVerify: false})
	done, result := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	h.next().release()
	<-done
	if resp, err := result(); err != nil || resp.IsError() {
		env.t.Fatalf("the first read: %q", errorText(resp, err))
	}
	env.mk.SetPassword(testEmail, "changed-in-metakraftwerk")
	env.secrets = append(env.secrets, "changed-in-metakraftwerk")
}

// Finding 4 of issue 34: a role whose last login succeeded moments ago let
// every reader log in on its own. Now 60 readers after a password change
// put exactly max_concurrent_logins logins in flight, the others wait, and
// once those are rejected no waiter logs in: 4 failed logins, no token,
// and the next read is refused without a login.
func TestGateBoundsABusyRole(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	busyRole(env, h, 4)
	before := env.mk.Stats().FailedLogins

	wait := readAll(env, 60)
	held := []*heldLogin{h.next(), h.next(), h.next(), h.next()}
	waitForSlotWaiters(t, 56)
	h.none("with 4 logins held and 56 readers waiting")
	for _, l := range held {
		l.release()
	}
	answers := wait()
	h.none("after the rejections")
	for _, a := range answers {
		if !strings.HasPrefix(a, `400 MetaKraftwerk rejected the login for role "ci": Invalid login`) {
			t.Errorf("a reader got %q", a)
		}
	}
	if n := env.mk.Stats().FailedLogins - before; n != 4 {
		t.Fatalf("60 readers after a password change cost %d failed logins, want 4", n)
	}
	if h.max() != 4 {
		t.Fatalf("%d logins were in flight at once, want 4", h.max())
	}
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if !strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("the next read: %q", errorText(resp, err))
	}
	h.none("the next read")
}

// Config writes during a burst start no login beyond the bound: readers
// after a config write that keeps base_url wait for the same slots, and
// join the gate's flight in the air.
func TestGateConfigWritesDuringABurst(t *testing.T) {
	t.Run("busy role", func(t *testing.T) {
		env := newTestBackend(t)
		h := env.holdLogins()
		busyRole(env, h, 2)
		before := env.mk.Stats().FailedLogins
		first := readAll(env, 4)
		held := []*heldLogin{h.next(), h.next()}
		waitForSlotWaiters(t, 2)
		env.mustWrite("config", map[string]any{fieldRequestTimeout: "7s"})
		env.mustWrite("config", map[string]any{fieldMaxRetries: 1})
		// The writes cleared the role's status, so these four meet at the
		// gate: its flight waits for a slot, the others for the flight.
		second := readAll(env, 4)
		waitForWaiters(t, 4)
		waitForSlotWaiters(t, 3)
		h.none("after two config writes")
		for _, l := range held {
			l.release()
		}
		for _, a := range append(first(), second()...) {
			if !strings.HasPrefix(a, "400 ") {
				t.Errorf("a reader got %q", a)
			}
		}
		if n := env.mk.Stats().FailedLogins - before; n != 2 || h.max() != 2 {
			t.Fatalf("%d failed logins, %d at once; want 2 and 2", n, h.max())
		}
	})
	t.Run("unconfirmed role", func(t *testing.T) {
		env := newTestBackend(t)
		h := env.holdLogins()
		wrongRole(env, nil)
		before := env.mk.Stats().FailedLogins
		first := readAll(env, 3)
		held := h.next()
		waitForWaiters(t, 3)
		env.mustWrite("config", map[string]any{fieldRequestTimeout: "7s"})
		second := readAll(env, 3)
		waitForWaiters(t, 6)
		h.none("after a config write")
		held.release()
		for _, a := range append(first(), second()...) {
			if !strings.HasPrefix(a, "400 ") {
				t.Errorf("a reader got %q", a)
			}
		}
		if n := env.mk.Stats().FailedLogins - before; n != 1 {
			t.Fatalf("%d failed logins, want 1", n)
		}
	})
}

// After a flight of an unconfirmed role succeeds, its waiters log in on
// their own: at most max_concurrent_logins at once.
func TestGateBoundsTheWaitersOfAFlight(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	env.createRole("ci", map[string]any{fieldMaxConcurrentLogins: 3, fieldVerify: false})
	wait := readAll(env, 10)
	flight := h.next()
	waitForWaiters(t, 10)
	flight.release()
	held := []*heldLogin{h.next(), h.next(), h.next()}
	waitForSlotWaiters(t, 6)
	h.none("with 3 logins held")
	for _, l := range held {
		l.release()
	}
	for range 6 {
		h.next().release()
	}
	for _, a := range wait() {
		if a != "token" {
			t.Errorf("a reader got %q", a)
		}
	}
	if h.max() != 3 {
		t.Fatalf("%d logins in flight at once, want 3", h.max())
	}
}

// The rejection memory's until is kept in storage, under an HMAC of the
// login: a new backend on the same storage (a plugin reload, a new active
// node) refuses without a login until it ends; the role read shows the
// refusal with its cause; the password is nowhere in what is stored.
func TestGateRejectionSurvivesANewBackend(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	before := env.mk.Stats().FailedLogins
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatalf("first read: %q", errorText(resp, err))
	}
	for _, key := range []string{loginMemoryPrefix + "ci", loginMemorySaltKey} {
		entry, err := env.storage.Get(context.Background(), key)
		if err != nil || entry == nil {
			t.Fatalf("%s not stored (%v)", key, err)
		}
		if strings.Contains(string(entry.Value), "changed-upstream") || strings.Contains(string(entry.Value), base64.StdEncoding.EncodeToString([]byte("changed-upstream"))) {
			t.Fatalf("%s holds the password", key)
		}
	}

	reload := func() {
		b, _, _ := setupBackendOn(t, env.clock.Now, env.storage)
		env.b = b
	}
	reload()
	status := env.mustRead("roles/ci").Data
	if status[fieldLoginRefusedUntil] == "" || !strings.Contains(status[fieldLastError].(string), "Invalid login") || status[fieldLastErrorAt] == "" {
		t.Fatalf("after a reload the role read shows %v", status)
	}
	reload()
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if msg := errorText(resp, err); !strings.HasPrefix(msg, `MetaKraftwerk rejected the login for role "ci": Invalid login (last tried at`) {
		t.Fatalf("after a reload: %q", msg)
	}
	reload()
	if resp, err := env.do(logical.UpdateOperation, "verify-role/ci", nil); statusOf(resp, err) != 429 {
		t.Fatalf("verify-role after a reload: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d failed logins across three reloads, want 1", n)
	}

	// When it ends, the next reader logs in.
	env.clock.Advance(defaultRejectedLoginBackoff)
	reload()
	env.do(logical.ReadOperation, "creds/ci", nil)
	if n := env.mk.Stats().FailedLogins - before; n != 2 {
		t.Fatalf("%d failed logins after the backoff, want 2", n)
	}
	// A new password forgets it, in storage too.
	env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
	if entry, _ := env.storage.Get(context.Background(), loginMemoryPrefix+"ci"); entry != nil {
		t.Fatal("the stored rejection outlived a new password")
	}
	reload()
	env.mustRead("creds/ci")

	// So does deleting the role.
	env.mustWrite("roles/ci", map[string]any{fieldPassword: "changed-upstream", fieldVerify: false})
	env.do(logical.ReadOperation, "creds/ci", nil)
	if entry, _ := env.storage.Get(context.Background(), loginMemoryPrefix+"ci"); entry == nil {
		t.Fatal("not stored")
	}
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
		t.Fatal(err)
	}
	if entry, _ := env.storage.Get(context.Background(), loginMemoryPrefix+"ci"); entry != nil {
		t.Fatal("the stored rejection outlived the role")
	}
}

// A stored rejection is about one login at one server: another password,
// or another base_url, does not match it.
func TestGateStoredRejectionIsAboutItsLogin(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	env.do(logical.ReadOperation, "creds/ci", nil)
	// The role's password changes underneath (as replication would write
	// it): the stored entry no longer matches.
	role, err := getRole(context.Background(), env.storage, "ci")
	if err != nil {
		t.Fatal(err)
	}
	role.Password = testPassword
	if err := putRole(context.Background(), env.storage, "ci", role); err != nil {
		t.Fatal(err)
	}
	b, _, _ := setupBackendOn(t, env.clock.Now, env.storage)
	env.b = b
	env.mustRead("creds/ci")
}

// The role read shows a remembered refusal with its cause, also after a
// config write cleared the runtime status (finding 8 of issue 34).
func TestRoleReadShowsTheRefusalsCause(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	env.do(logical.ReadOperation, "creds/ci", nil)
	env.mustWrite("config", map[string]any{fieldRequestTimeout: "7s"})
	env.mustWrite("roles/ci", map[string]any{fieldDescription: "keeps the login", fieldVerify: false})
	status := env.mustRead("roles/ci").Data
	if status[fieldLoginRefusedUntil] == "" || !strings.Contains(status[fieldLastError].(string), "Invalid login") || status[fieldLastErrorAt] == "" {
		t.Fatalf("the role read shows %v", status)
	}
}

// A reader waiting for a login slot waits within its upstream budget
// (max_upstream_time, or here its request's deadline): it gets the
// engine's 504, and sends no login.
func TestGateSlotWaitIsBounded(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	busyRole(env, h, 1)
	first, _ := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	held := h.next()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/ci", Storage: env.storage})
	env.record(resp, err)
	if statusOf(resp, err) != 504 || !strings.Contains(errorText(resp, err), "did not answer within") {
		t.Fatalf("a reader waiting for the slot: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	h.none("while the slot was taken")
	held.release()
	<-first
}

// refusingMemoryStorage fails every write of the stored rejection memory.
type refusingMemoryStorage struct{ logical.Storage }

func (s refusingMemoryStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, loginMemoryPrefix) {
		return errors.New("injected: storage refused the write")
	}
	return s.Storage.Put(ctx, e)
}

// When storage refuses the memory, the process still remembers the
// rejection, and the server log says what will be forgotten.
func TestGateStoredRejectionWriteFails(t *testing.T) {
	env := newTestBackend(t)
	env.reqStorage = refusingMemoryStorage{env.storage}
	wrongRole(env, nil)
	before := env.mk.Stats().FailedLogins
	env.do(logical.ReadOperation, "creds/ci", nil)
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); !strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("the second read: %q", errorText(resp, err))
	}
	if n := env.mk.Stats().FailedLogins - before; n != 1 {
		t.Fatalf("%d failed logins, want 1", n)
	}
	if !strings.Contains(env.logs.String(), "could not store the rejection memory of a role") {
		t.Fatalf("the log does not say so:\n%s", env.logs.String())
	}
}

// Finding A of the review: writing the role's unchanged password answered
// Success without a login and kept the remembered rejection (also across
// a reload), and so told a correct guess from a wrong one. A write that
// names email or password is a written login: it logs in (verify on) and
// forgets the memory, in storage too, whether or not it equals the stored.
func TestGateWriteOfTheStoredLoginStartsAfresh(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mk.SetPassword(testEmail, "changed-upstream")
	env.secrets = append(env.secrets, "changed-upstream")
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatalf("read after the upstream change: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	env.mk.SetPassword(testEmail, testPassword)
	reload := func() {
		b, _, _ := setupBackendOn(t, env.clock.Now, env.storage)
		env.b = b
	}
	reload()
	before := env.mk.Stats()
	env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
	if n := env.mk.Stats().Logins - before.Logins; n != 1 {
		t.Fatalf("the write of the unchanged password made %d logins, want 1", n)
	}
	if entry, _ := env.storage.Get(context.Background(), loginMemoryPrefix+"ci"); entry != nil {
		t.Fatal("the stored rejection outlived a write of the password")
	}
	env.mustRead("creds/ci")
	reload()
	env.mustRead("creds/ci")

	// Without verify the write forgets it too, also after a reload.
	env.mk.SetPassword(testEmail, "changed-upstream")
	env.mustWrite("rotate-role/ci", nil) // no login: the role is not confirmed any more
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
		t.Fatalf("read after the second upstream change: %d", statusOf(resp, err))
	}
	env.mk.SetPassword(testEmail, testPassword)
	reload()
	env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword, fieldVerify: false})
	reload()
	env.mustRead("creds/ci")

	// No oracle: the stored password and a wrong guess both log in once.
	for _, pw := range []string{testPassword, "a-wrong-guess"} {
		before := env.mk.Stats().LoginRequests
		resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldPassword: pw})
		if n := env.mk.Stats().LoginRequests - before; n != 1 {
			t.Fatalf("a write of a password made %d logins, want 1 (%d %q)", n, statusOf(resp, err), errorText(resp, err))
		}
	}
	env.secrets = append(env.secrets, "a-wrong-guess")
	// A write that sends no password and no new email (the email as
	// stored: Terraform sends it with every update) keeps the memory as it
	// was, and logs in not at all.
	env.mk.SetPassword(testEmail, "changed-upstream")
	env.mustWrite("rotate-role/ci", nil)
	env.do(logical.ReadOperation, "creds/ci", nil)
	env.mk.SetPassword(testEmail, testPassword)
	logins := env.mk.Stats().LoginRequests
	env.mustWrite("roles/ci", map[string]any{fieldDescription: "kept", fieldEmail: testEmail})
	if n := env.mk.Stats().LoginRequests - logins; n != 0 {
		t.Fatalf("a write of the description and the stored email made %d logins", n)
	}
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); !strings.Contains(errorText(resp, err), "last tried at") {
		t.Fatalf("a write of the description forgot the rejection: %q", errorText(resp, err))
	}
	env.assertNoLeaks()
}

// Finding C of the review: role writes that change only the email each
// logged in past the gate, as many at once as there were writers. Now a
// verifying write of a new login takes one of the role's login slots: 12
// writes of 12 spellings of the email put max_concurrent_logins=2 logins
// in flight at once, beside no more than the role's readers.
func TestGateBoundsVerifyingWritesOfNewLogins(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	env.createRole("ci", map[string]any{fieldMaxConcurrentLogins: 2, fieldVerify: false})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldEmail: fmt.Sprintf("ci+%d@example.com", i)})
		}()
	}
	held := []*heldLogin{h.next(), h.next()}
	waitForSlotWaiters(t, 10)
	h.none("with 2 write logins held and 10 writes waiting")
	for _, l := range held {
		l.release()
	}
	for range 10 {
		h.next().release()
	}
	wg.Wait()
	if h.max() != 2 {
		t.Fatalf("%d logins of role writes were in flight at once, want 2", h.max())
	}
}

// Finding B of the review: lowering rejected_login_backoff, or setting it
// to 0 ("turns it off"), left a remembered rejection in force until its
// old until. Now the write shortens what is remembered, in the process and
// in storage (so also for a role this process has not read yet); raising
// it does not lengthen it.
func TestGateBackoffWriteAppliesToRememberedRejections(t *testing.T) {
	env := newTestBackend(t)
	wrongRole(env, nil)
	before := env.mk.Stats().FailedLogins
	failed := func() int64 { return env.mk.Stats().FailedLogins - before }
	env.do(logical.ReadOperation, "creds/ci", nil)
	storedUntil := func() time.Time {
		entry, err := env.storage.Get(context.Background(), loginMemoryPrefix+"ci")
		if err != nil || entry == nil {
			return time.Time{}
		}
		var sr storedRejection
		if err := entry.DecodeJSON(&sr); err != nil {
			t.Fatal(err)
		}
		return sr.Until
	}
	tried := env.clock.Now()
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: "10m"})
	if got := storedUntil(); !got.Equal(tried.Add(defaultRejectedLoginBackoff)) {
		t.Fatalf("raising the backoff moved the stored until to %s", got)
	}
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: "1m"})
	if got := storedUntil(); !got.Equal(tried.Add(time.Minute)) {
		t.Fatalf("lowering the backoff left the stored until at %s, want %s", got, tried.Add(time.Minute))
	}
	env.clock.Advance(59 * time.Second)
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); !strings.Contains(errorText(resp, err), "last tried at") || failed() != 1 {
		t.Fatalf("within the new backoff: %q, %d failed logins", errorText(resp, err), failed())
	}
	env.clock.Advance(time.Second)
	env.do(logical.ReadOperation, "creds/ci", nil)
	if failed() != 2 {
		t.Fatalf("after the lowered backoff: %d failed logins, want 2", failed())
	}

	// 0 forgets it, also for a process that has not read it yet.
	if storedUntil().IsZero() {
		t.Fatal("the second rejection was not stored")
	}
	b, _, _ := setupBackendOn(t, env.clock.Now, env.storage)
	env.b = b
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: 0})
	if !storedUntil().IsZero() {
		t.Fatal("rejected_login_backoff=0 left the stored rejection")
	}
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); strings.Contains(errorText(resp, err), "last tried at") || failed() != 3 {
		t.Fatalf("with the backoff off: %q, %d failed logins", errorText(resp, err), failed())
	}
	// And in the process that holds it.
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: "5m"})
	env.do(logical.ReadOperation, "creds/ci", nil)
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: 0})
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); strings.Contains(errorText(resp, err), "last tried at") || failed() != 5 {
		t.Fatalf("with the backoff off: %q, %d failed logins", errorText(resp, err), failed())
	}
}

// Finding D of the review: the bound is per role. Three roles sharing one
// MetaKraftwerk login, 20 readers each after its password changed, cost
// 3 × max_concurrent_logins = 12 failed logins, as docs/concepts.md says.
func TestGateBoundIsPerRole(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	roles := []string{"a", "b", "c"}
	for _, name := range roles {
		env.createRole(name, map[string]any{fieldMaxConcurrentLogins: 4, fieldVerify: false})
		done, _ := env.doAsync(logical.ReadOperation, "creds/"+name, nil)
		h.next().release()
		<-done
	}
	env.mk.SetPassword(testEmail, "changed-in-metakraftwerk")
	env.secrets = append(env.secrets, "changed-in-metakraftwerk")
	before := env.mk.Stats().FailedLogins
	var wg sync.WaitGroup
	for _, name := range roles {
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				env.do(logical.ReadOperation, "creds/"+name, nil)
			}()
		}
	}
	var held []*heldLogin
	for range 12 {
		held = append(held, h.next())
	}
	waitForSlotWaiters(t, 48)
	h.none("with 12 logins held")
	for _, l := range held {
		l.release()
	}
	wg.Wait()
	if n := env.mk.Stats().FailedLogins - before; n != 12 {
		t.Fatalf("3 roles sharing a login, 20 readers each: %d failed logins, want 12", n)
	}
}

// A config write of rejected_login_backoff while a login is in flight
// holds for that login's rejection too: with 0 it is not remembered.
func TestGateBackoffWriteDuringALogin(t *testing.T) {
	env := newTestBackend(t)
	h := env.holdLogins()
	wrongRole(env, nil)
	done, _ := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	l := h.next()
	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: 0})
	l.release()
	<-done
	next, result := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	select {
	case l := <-h.arrivals:
		l.release()
		<-next
	case <-next:
		resp, err := result()
		t.Fatalf("the read after rejected_login_backoff=0 was refused without a login: %q", errorText(resp, err))
	}
	if entry, _ := env.storage.Get(context.Background(), loginMemoryPrefix+"ci"); entry != nil {
		t.Fatal("a rejection was stored with the backoff off")
	}
}
