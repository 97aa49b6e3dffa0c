//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentWatch records, every 100 ms, the token an Agent-rendered file holds
// and when it held it past its exp.
type agentWatch struct {
	mu      sync.Mutex
	renders []rendered // each new token, when first seen
	stale   []time.Time
}

type rendered struct {
	token    string
	iat, exp time.Time
	seen     time.Time
}

func (w *agentWatch) add(t *testing.T, token string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.renders); n > 0 && w.renders[n-1].token == token {
		if at.After(w.renders[n-1].exp) {
			w.stale = append(w.stale, at)
		}
		return
	}
	iat, exp := tokenTimes(t, token)
	w.renders = append(w.renders, rendered{token: token, iat: iat, exp: exp, seen: at})
}

func (w *agentWatch) snapshot() ([]rendered, []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]rendered(nil), w.renders...), append([]time.Time(nil), w.stale...)
}

// watchFile polls an Agent's rendered file until the test ends.
func watchFile(t *testing.T, dest string) *agentWatch {
	w := &agentWatch{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if data, err := os.ReadFile(dest); err == nil && jwtRe.Match(data) {
					w.add(t, strings.TrimSpace(string(data)), now)
				}
			}
		}
	}()
	return w
}

// execRenders is what an exec service started with, as renders.
func execRenders(t *testing.T, seen string) []rendered {
	tokens, started := servedTokens(seen)
	out := make([]rendered, len(tokens))
	for i, tok := range tokens {
		iat, exp := tokenTimes(t, tok)
		out[i] = rendered{token: tok, iat: iat, exp: exp, seen: started[i]}
	}
	return out
}

// TestAgentOutage measures what docs/operations.md promises for a service
// behind Vault Agent while MetaKraftwerk is down, with the shipped Agent
// configurations (file template and exec), 60-second tokens and a 10 s
// expiry_leeway (a 50 s lease). Agent first asks again at a fraction of the
// lease; the headroom is the time from that first attempt to the token's
// exp, at least expiry_leeway + 5 % of the lease.
//
// A short outage, from before Agent's first attempt until 10 s before the
// tokens' exp: no rendered file and no service ever holds a token past its
// exp, and Agent renders a new token soon after MetaKraftwerk is back. A
// long outage, ending 10 s after the exp: the file holds the expired token
// meanwhile, which is what the service sees; the role's last_error, the
// error count in the metrics and Agent's own log show the outage; both
// Agents are still running and render a new token once it is back.
func TestAgentOutage(t *testing.T) {
	t.Parallel()
	const life, leeway = 60 * time.Second, 10 * time.Second
	lease := life - leeway
	s, dir, tokenFile := newAgentStackLife(t, "agent-outage-file", life, "10s")
	// A read fails at once while the stand-in is down.
	s.MustCLI("write", mount+"/config", "max_retries=0", "request_timeout=2s")
	dest := s.startFileAgent(dir, tokenFile)
	execDir := s.agentDir("agent-outage-exec")
	seen := s.startExecAgent(execDir, tokenFile)
	file := watchFile(t, dest)
	addr := strings.TrimPrefix(s.MK.URL, "http://")

	both := func(n int) (f, e rendered) {
		t.Helper()
		waitFor(t, 2*life, fmt.Sprintf("both Agents to hold token #%d", n), func() bool {
			r, _ := file.snapshot()
			return len(r) >= n && len(execRenders(t, seen)) >= n
		})
		r, _ := file.snapshot()
		return r[n-1], execRenders(t, seen)[n-1]
	}
	// firstFailure polls the role until a read has failed, and returns when.
	firstFailure := func(after time.Time) time.Time {
		t.Helper()
		var at time.Time
		waitFor(t, life, "Agent's first read during the outage", func() bool {
			f := fields(s.MustCLI("read", mount+"/roles/team-a-ci"))
			when, err := time.Parse(time.RFC3339Nano, f["last_error_at"])
			if err == nil && when.After(after) {
				at = when
				return true
			}
			return false
		})
		return at
	}
	outage := func(from, to time.Time, during func()) (down, up time.Time) {
		t.Helper()
		time.Sleep(time.Until(from))
		down = time.Now()
		_ = s.MK.Close()
		if during != nil {
			during()
		}
		time.Sleep(time.Until(to))
		s.StartMK(addr)
		return down, time.Now()
	}
	earliest := func(a, b time.Time) time.Time {
		if a.Before(b) {
			return a
		}
		return b
	}

	// The short outage.
	f1, e1 := both(1)
	iat, exp := earliest(f1.iat, e1.iat), earliest(f1.exp, e1.exp)
	var attempt time.Time
	down, up := outage(iat.Add(lease/2), exp.Add(-10*time.Second), func() { attempt = firstFailure(iat) })
	f2, e2 := both(2)
	stated := leeway + lease/20
	t.Logf("short outage %s (from %s to %s before exp): the first read failed %s after iat (%.0f %% of the lease), %s before exp; headroom stated ≥ %s",
		up.Sub(down).Round(time.Second), exp.Sub(down).Round(time.Second), exp.Sub(up).Round(time.Second),
		attempt.Sub(iat).Round(100*time.Millisecond), 100*attempt.Sub(iat).Seconds()/lease.Seconds(), exp.Sub(attempt).Round(100*time.Millisecond), stated)
	// The JWT's iat and exp are whole seconds, so the lease the engine gave
	// may be up to a second shorter than the configured 50 s.
	if seen := exp.Sub(attempt); seen < stated-time.Second {
		t.Errorf("Agent first asked %s before exp; operations.md promises at least %s", seen.Round(100*time.Millisecond), stated)
	}
	for _, r := range []struct {
		what       string
		old, fresh rendered
	}{{"the rendered file", f1, f2}, {"the exec service", e1, e2}} {
		if !r.fresh.seen.Before(r.old.exp) {
			t.Errorf("%s got its new token %s after the old one's exp", r.what, r.fresh.seen.Sub(r.old.exp).Round(100*time.Millisecond))
		}
		t.Logf("%s: new token %s after MetaKraftwerk was back, %s before the old one's exp", r.what,
			r.fresh.seen.Sub(up).Round(100*time.Millisecond), r.old.exp.Sub(r.fresh.seen).Round(100*time.Millisecond))
	}
	if _, stale := file.snapshot(); len(stale) > 0 {
		t.Errorf("the rendered file held a token past its exp during the short outage (%d polls)", len(stale))
	}

	// The long outage: down before the next attempt, back 10 s after exp.
	iat, exp = earliest(f2.iat, e2.iat), earliest(f2.exp, e2.exp)
	var during map[string]string
	var metrics string
	down, up = outage(iat.Add(lease/2), exp.Add(10*time.Second+(f2.exp.Sub(e2.exp)).Abs()), func() {
		firstFailure(iat)
		time.Sleep(time.Until(exp.Add(2 * time.Second)))
		during = fields(s.MustCLI("read", mount+"/roles/team-a-ci"))
		_, body, _ := get(t, s.Addr+"/v1/"+mount+"/metrics", s.Token)
		metrics = string(body)
	})
	if !strings.Contains(during["last_error"], "the connection to "+addr+" was refused") {
		t.Errorf("during the outage the role's last_error is %q", during["last_error"])
	}
	if !regexp.MustCompile(`metakraftwerk_logins_total\{[^}]*outcome="error"[^}]*\} [1-9]`).MatchString(metrics) {
		t.Error("during the outage the metrics count no failed login")
	}
	_, stale := file.snapshot()
	if len(stale) == 0 {
		t.Fatal("during the long outage the rendered file never held an expired token; the test did not outlast the headroom")
	}
	t.Logf("long outage: the rendered file held an expired token for %s; last_error during it: %q",
		stale[len(stale)-1].Sub(stale[0]).Round(100*time.Millisecond), during["last_error"])
	f3, e3 := both(3)
	for _, r := range []struct {
		what string
		r    rendered
	}{{"the rendered file", f3}, {"the exec service", e3}} {
		t.Logf("long outage %s: %s got a new token %s after MetaKraftwerk was back", up.Sub(down).Round(time.Second), r.what, r.r.seen.Sub(up).Round(100*time.Millisecond))
	}
	log, _ := os.ReadFile(dir + "/agent.log")
	if !strings.Contains(string(log), "502") {
		t.Error("Agent's log does not show the failed reads (502)")
	}
}
