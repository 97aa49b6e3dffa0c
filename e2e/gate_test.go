//go:build e2e

package e2e

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// TestGateBoundsABusyRole is finding 4 of issue 34, counted on a real
// server: a role with max_concurrent_logins=4 that logged in a moment ago,
// then 60 concurrent readers after its password changed in MetaKraftwerk
// (each login taking 200 ms there). They cost at most 4 failed logins and
// get no token; the next read is refused without a login, and so is one
// after a plugin reload, which reads the remembered rejection back from
// storage.
func TestGateBoundsABusyRole(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{Mount: "mk-gate"})
	s.CreateRole("busy", teamAEmail, teamAPassword, "max_concurrent_logins=4")
	api := s.API(s.Token)
	if err := s.readCredsOnce(api, "busy"); err != nil {
		t.Fatal(err)
	}
	const changed = "changed-in-MetaKraftwerk-5e6f7a"
	s.addSecret(changed)
	s.MK.SetPassword(teamAEmail, changed)
	s.MK.SetFaults(devserver.Faults{Latency: devserver.Duration(200 * time.Millisecond)})
	before := s.MK.Stats().FailedLogins

	var tokens, rejected atomic.Int64
	var wg sync.WaitGroup
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec, err := s.ReadCreds(api, "busy")
			switch {
			case err == nil && sec != nil && sec.Data["access_token"] != nil:
				tokens.Add(1)
			case err != nil && strings.Contains(err.Error(), "Invalid login"):
				rejected.Add(1)
			default:
				t.Errorf("a reader got %v", err)
			}
		}()
	}
	wg.Wait()
	failed := s.MK.Stats().FailedLogins - before
	t.Logf("60 concurrent readers of a busy role after a password change, max_concurrent_logins=4: %d failed logins, %d tokens, %d rejections",
		failed, tokens.Load(), rejected.Load())
	if failed < 1 || failed > 4 || tokens.Load() != 0 {
		t.Fatalf("%d failed logins and %d tokens; want 1 to 4, and none", failed, tokens.Load())
	}

	refused := func(when string) {
		t.Helper()
		_, err := s.ReadCreds(api, "busy")
		if err == nil || !strings.Contains(err.Error(), "last tried at") {
			t.Fatalf("%s: %v", when, err)
		}
		if n := s.MK.Stats().FailedLogins - before; n != failed {
			t.Fatalf("%s: %d failed logins, want %d", when, n, failed)
		}
	}
	refused("the next read")
	s.ReloadPlugin()
	refused("after a plugin reload")
	role := fields(s.MustCLI("read", s.mount()+"/roles/busy"))
	if role["login_refused_until"] == "" || !strings.Contains(role["last_error"], "Invalid login") {
		t.Fatalf("after a plugin reload the role reads %v", role)
	}
}

// TestGateWrittenPasswordStartsAfresh is finding A of the review, on a
// real server: the password changed in MetaKraftwerk, a read was rejected
// and remembered, the password was set back there. A write of the role's
// unchanged password (after a plugin reload, so the refusal comes from
// storage) logs in and ends the refusal: the next read gets a token.
func TestGateWrittenPasswordStartsAfresh(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{Mount: "mk-written"})
	s.CreateRole("w", teamAEmail, teamAPassword)
	api := s.API(s.Token)
	const changed = "changed-in-MetaKraftwerk-8c9d0e"
	s.addSecret(changed)
	s.MK.SetPassword(teamAEmail, changed)
	if _, err := s.ReadCreds(api, "w"); err == nil || !strings.Contains(err.Error(), "Invalid login") {
		t.Fatalf("read after the change upstream: %v", err)
	}
	s.MK.SetPassword(teamAEmail, teamAPassword)
	s.ReloadPlugin()
	if _, err := s.ReadCreds(api, "w"); err == nil || !strings.Contains(err.Error(), "last tried at") {
		t.Fatalf("read after the reload: %v", err)
	}
	before := s.MK.Stats().Logins
	s.MustCLI("write", s.mount()+"/roles/w", "password="+teamAPassword)
	if n := s.MK.Stats().Logins - before; n != 1 {
		t.Fatalf("the write of the unchanged password made %d logins, want 1", n)
	}
	if sec, err := s.ReadCreds(api, "w"); err != nil || sec == nil || sec.Data["access_token"] == nil {
		t.Fatalf("read after writing the unchanged password: %v", err)
	}
}
