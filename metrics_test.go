package metakraftwerk

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// scrape reads <mount>/metrics the way Vault serves it and parses it with
// Prometheus's own text parser.
func (e *testEnv) scrape() scraped {
	e.t.Helper()
	resp := e.mustRead("metrics")
	if ct := resp.Data[logical.HTTPContentType]; ct != "text/plain; version=0.0.4; charset=utf-8" {
		e.t.Fatalf("content type %q", ct)
	}
	if code := resp.Data[logical.HTTPStatusCode]; code != http.StatusOK {
		e.t.Fatalf("status %v", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(resp.Data[logical.HTTPRawBody].([]byte))))
	if err != nil {
		e.t.Fatalf("parsing the exposition: %v", err)
	}
	return scraped{t: e.t, fams: fams}
}

type scraped struct {
	t    *testing.T
	fams map[string]*dto.MetricFamily
}

// value is the counter or gauge of the series with exactly these labels
// (name=value pairs), and whether it exists.
func (s scraped) value(name string, labels ...string) (float64, bool) {
	s.t.Helper()
	mf := s.fams[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// expect fails unless the series exists with value want.
func (s scraped) expect(want float64, name string, labels ...string) {
	s.t.Helper()
	if got, ok := s.value(name, labels...); !ok || got != want {
		s.t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

func (s scraped) absent(name string, labels ...string) {
	s.t.Helper()
	if got, ok := s.value(name, labels...); ok {
		s.t.Errorf("%s%v = %v, want no such series", name, labels, got)
	}
}

// The counts the issue names, exactly: 5 sequential reads of a fresh
// reuse_tokens role are 1 login and 4 shared; a wrong password read 3 times
// is 1 rejected login and 2 refused reads.
func TestMetricsCountExactly(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("shared", map[string]any{fieldReuseTokens: true})
	env.mustWrite("roles/wrong", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
	env.secrets = append(env.secrets, "not-the-password")

	var expiresAt string
	for range 5 {
		expiresAt = env.mustRead("creds/shared").Data[fieldExpiresAt].(string)
	}
	for range 3 {
		if resp, err := env.do(logical.ReadOperation, "creds/wrong", nil); statusOf(resp, err) != 400 {
			t.Fatalf("wrong password read: %d", statusOf(resp, err))
		}
	}

	m := env.scrape()
	m.expect(1, "metakraftwerk_creds_issued_total", "role=shared", "source=login")
	m.expect(4, "metakraftwerk_creds_issued_total", "role=shared", "source=shared")
	m.expect(1, "metakraftwerk_logins_total", "role=shared", "purpose=creds", "outcome=success")
	m.expect(1, "metakraftwerk_logins_total", "role=wrong", "purpose=creds", "outcome=rejected")
	m.expect(2, "metakraftwerk_creds_refused_total", "role=wrong")
	m.absent("metakraftwerk_creds_issued_total", "role=wrong", "source=login")
	// The role write's verify is a login too.
	m.expect(1, "metakraftwerk_logins_total", "role=shared", "purpose=verify", "outcome=success")
	m.expect(2, "metakraftwerk_login_duration_seconds", "purpose=creds")
	m.expect(1, "metakraftwerk_build_info", "version="+Version)
	m.expect(0, "metakraftwerk_upstream_retries_total")
	exp, ok := m.value("metakraftwerk_shared_token_expiry_timestamp_seconds", "role=shared")
	if !ok || formatTime(timeFromUnix(exp)) != expiresAt {
		t.Errorf("shared token expiry gauge %v (present %v), want %s", exp, ok, expiresAt)
	}
	m.absent("metakraftwerk_shared_token_expiry_timestamp_seconds", "role=wrong")

	// Rotation retires the shared token, and its gauge with it; deleting a
	// role drops all its series.
	env.mustWrite("rotate-role/shared", nil)
	if _, err := env.do(logical.DeleteOperation, "roles/wrong", nil); err != nil {
		t.Fatal(err)
	}
	m = env.scrape()
	m.absent("metakraftwerk_shared_token_expiry_timestamp_seconds", "role=shared")
	m.absent("metakraftwerk_logins_total", "role=wrong", "purpose=creds", "outcome=rejected")
	m.absent("metakraftwerk_creds_refused_total", "role=wrong")
	m.expect(4, "metakraftwerk_creds_issued_total", "role=shared", "source=shared")
}

// Readers that wait on one shared login: one counts the login, the others
// count the token as shared.
func TestMetricsCountASharedLoginOnce(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	gate := env.gateLogins()
	reached, release := gate.arm(nil)
	const readers = 4
	var wg sync.WaitGroup
	first, result := env.doAsync(logical.ReadOperation, "creds/ci", nil)
	<-reached
	for range readers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env.mustRead("creds/ci")
		}()
	}
	waitForWaiters(t, readers)
	release()
	<-first
	if _, err := result(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	m := env.scrape()
	m.expect(1, "metakraftwerk_creds_issued_total", "role=ci", "source=login")
	m.expect(readers-1, "metakraftwerk_creds_issued_total", "role=ci", "source=shared")
	m.expect(1, "metakraftwerk_logins_total", "role=ci", "purpose=creds", "outcome=success")
}

// Transient upstream failures that were retried count once per retry;
// a login that failed after them counts as an error.
func TestMetricsCountRetriesAndErrors(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldMaxRetries: 2})
	env.createRole("ci", nil)
	env.mk.SetFaults(devserver.Faults{FailNext: 2, FailStatus: 503})
	env.mustRead("creds/ci")
	env.mk.SetFaults(devserver.Faults{FailNext: 3, FailStatus: 500})
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 502 {
		t.Fatalf("status %d, want 502", statusOf(resp, err))
	}
	m := env.scrape()
	m.expect(4, "metakraftwerk_upstream_retries_total")
	m.expect(1, "metakraftwerk_logins_total", "role=ci", "purpose=creds", "outcome=success")
	m.expect(1, "metakraftwerk_logins_total", "role=ci", "purpose=creds", "outcome=error")
}

// Two mounts never share counts: each backend has its own registry.
func TestMetricsArePerMount(t *testing.T) {
	a, b := newTestBackend(t), newTestBackend(t)
	a.createRole("ci", nil)
	b.createRole("ci", nil)
	a.mustRead("creds/ci")
	a.scrape().expect(1, "metakraftwerk_creds_issued_total", "role=ci", "source=login")
	b.scrape().absent("metakraftwerk_creds_issued_total", "role=ci", "source=login")
}

func timeFromUnix(sec float64) time.Time { return time.Unix(int64(sec), 0) }

// waitForWaiters returns once n readers of the role's shared login are
// waiting for its outcome (seen in their stacks, not guessed from time).
func waitForWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4<<20)
	for time.Now().Before(deadline) {
		got := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, " [select") && strings.Contains(g, "(*backend).passGate(") {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d readers ever waited on the shared login", n)
}

// BenchmarkMetricsOfAFreshRead is what the metrics add to a fresh creds
// read inside the plugin: a login counted and timed, a token counted. make
// bench reports the plugin's whole CPU time per read beside it.
func BenchmarkMetricsOfAFreshRead(b *testing.B) {
	m := newEngineMetrics(func() map[string]time.Time { return nil })
	for b.Loop() {
		m.login("team-a-ci", purposeCreds, 40*time.Millisecond, nil)
		m.credsIssued.WithLabelValues("team-a-ci", sourceLogin).Inc()
	}
}

func BenchmarkMetricsOfASharedRead(b *testing.B) {
	m := newEngineMetrics(func() map[string]time.Time { return nil })
	for b.Loop() {
		m.credsIssued.WithLabelValues("team-a-ci", sourceShared).Inc()
	}
}

// A role gone from storage without this node's delete (a failover, a
// replicated delete) loses its series at the next scrape.
func TestMetricsDropRolesGoneFromStorage(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	env.scrape().expect(1, "metakraftwerk_creds_issued_total", "role=ci", "source=login")
	if err := env.storage.Delete(context.Background(), roleStoragePrefix+"ci"); err != nil {
		t.Fatal(err)
	}
	m := env.scrape()
	m.absent("metakraftwerk_creds_issued_total", "role=ci", "source=login")
	m.expect(1, "metakraftwerk_build_info", "version="+Version)
}
