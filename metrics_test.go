package metakraftwerk

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"runtime"
	"slices"
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
// is 1 rejected login and 2 refused reads. By default they are counted over
// all roles and no series carries a role; metrics_roles adds the same
// counts per named role.
func TestMetricsCountExactly(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("metrics_roles=%v", named), func(t *testing.T) {
			env := newTestBackend(t)
			if named {
				env.mustWrite("config", map[string]any{fieldMetricsRoles: "shared,wr*"})
			}
			env.createRole("shared", map[string]any{fieldReuseTokens: true})
			env.mustWrite("roles/wrong", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
			env.secrets = append(env.secrets, "not-the-password")
			env.createRole("idle", nil)

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
			m.expect(1, "metakraftwerk_creds_issued_total", "source=login")
			m.expect(4, "metakraftwerk_creds_issued_total", "source=shared")
			m.expect(1, "metakraftwerk_logins_total", "purpose=creds", "outcome=success")
			m.expect(1, "metakraftwerk_logins_total", "purpose=creds", "outcome=rejected")
			m.expect(2, "metakraftwerk_creds_refused_total")
			// The role writes' verify is a login too.
			m.expect(2, "metakraftwerk_logins_total", "purpose=verify", "outcome=success")
			m.expect(2, "metakraftwerk_login_duration_seconds", "purpose=creds")
			m.expect(1, "metakraftwerk_build_info", "version="+Version)
			m.expect(0, "metakraftwerk_upstream_retries_total")
			m.expect(1, "metakraftwerk_roles", "state=refused")
			m.expect(1, "metakraftwerk_roles", "state=shared_token_held")
			m.expect(0, "metakraftwerk_roles", "state=shared_token_expiring")
			// A write's verify is not a login of the stored role.
			m.expect(0, "metakraftwerk_roles", "state=ok")
			m.expect(1, "metakraftwerk_roles", "state=never_used")
			m.expect(0, "metakraftwerk_roles", "state=error")
			exp, ok := m.value("metakraftwerk_shared_token_soonest_expiry_timestamp_seconds")
			if !ok || formatTime(timeFromUnix(exp)) != expiresAt {
				t.Errorf("soonest shared token expiry %v (present %v), want %s", exp, ok, expiresAt)
			}
			if !named {
				m.noRoleLabel()
			} else {
				m.expect(1, "metakraftwerk_role_creds_issued_total", "role=shared", "source=login")
				m.expect(4, "metakraftwerk_role_creds_issued_total", "role=shared", "source=shared")
				m.expect(1, "metakraftwerk_role_logins_total", "role=shared", "purpose=creds", "outcome=success")
				m.expect(1, "metakraftwerk_role_logins_total", "role=wrong", "purpose=creds", "outcome=rejected")
				m.expect(2, "metakraftwerk_role_creds_refused_total", "role=wrong")
				m.absent("metakraftwerk_role_creds_issued_total", "role=wrong", "source=login")
				m.expect(1, "metakraftwerk_role_logins_total", "role=shared", "purpose=verify", "outcome=success")
				exp, ok := m.value("metakraftwerk_role_shared_token_expiry_timestamp_seconds", "role=shared")
				if !ok || formatTime(timeFromUnix(exp)) != expiresAt {
					t.Errorf("shared token expiry gauge %v (present %v), want %s", exp, ok, expiresAt)
				}
				m.absent("metakraftwerk_role_shared_token_expiry_timestamp_seconds", "role=wrong")
				if got := m.labelledRoles(); !reflect.DeepEqual(got, []string{"shared", "wrong"}) {
					t.Errorf("roles with series of their own: %v", got)
				}
			}

			// Rotation retires the shared token, and its gauges with it;
			// deleting a role drops all its series.
			env.mustWrite("rotate-role/shared", nil)
			if _, err := env.do(logical.DeleteOperation, "roles/wrong", nil); err != nil {
				t.Fatal(err)
			}
			m = env.scrape()
			m.absent("metakraftwerk_shared_token_soonest_expiry_timestamp_seconds")
			m.absent("metakraftwerk_role_shared_token_expiry_timestamp_seconds", "role=shared")
			m.absent("metakraftwerk_role_logins_total", "role=wrong", "purpose=creds", "outcome=rejected")
			m.absent("metakraftwerk_role_creds_refused_total", "role=wrong")
			m.expect(0, "metakraftwerk_roles", "state=refused")
			m.expect(4, "metakraftwerk_creds_issued_total", "source=shared")
			if named {
				m.expect(4, "metakraftwerk_role_creds_issued_total", "role=shared", "source=shared")
			}
		})
	}
}

// A role that metrics_roles stops naming loses its series at the next
// scrape; the aggregates keep counting it.
func TestMetricsRolesUnnamed(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldMetricsRoles: "ci"})
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	env.scrape().expect(1, "metakraftwerk_role_creds_issued_total", "role=ci", "source=login")
	env.mustWrite("config", map[string]any{fieldMetricsRoles: ""})
	env.mustRead("creds/ci")
	m := env.scrape()
	m.noRoleLabel()
	m.expect(2, "metakraftwerk_creds_issued_total", "source=login")
	if got := env.mustRead("config").Data[fieldMetricsRoles]; !reflect.DeepEqual(got, []string{}) {
		t.Errorf("metrics_roles reads %#v", got)
	}
}

// metrics_roles refuses what is not a role name or a glob pattern.
func TestMetricsRolesRefusesBadPatterns(t *testing.T) {
	env := newTestBackend(t)
	for _, bad := range []string{"team-[a", "a/b", strings.Repeat("x", maxRoleNameLen+1), "bad\u0007"} {
		resp, err := env.do(logical.UpdateOperation, "config", map[string]any{fieldMetricsRoles: bad})
		if statusOf(resp, err) != 400 || !strings.Contains(resp.Error().Error(), fieldMetricsRoles) {
			t.Errorf("metrics_roles=%q: %d %v", bad, statusOf(resp, err), resp)
		}
	}
	many := make([]string, maxMetricsRoles+1)
	for i := range many {
		many[i] = fmt.Sprintf("r%d", i)
	}
	if resp, err := env.do(logical.UpdateOperation, "config", map[string]any{fieldMetricsRoles: many}); statusOf(resp, err) != 400 {
		t.Errorf("%d metrics_roles: %d", len(many), statusOf(resp, err))
	}
	if got := env.mustRead("config").Data[fieldMetricsRoles]; !reflect.DeepEqual(got, []string{}) {
		t.Errorf("a refused write stored metrics_roles %#v", got)
	}
}

// noRoleLabel fails if any series carries a role label.
func (s scraped) noRoleLabel() {
	s.t.Helper()
	if got := s.labelledRoles(); len(got) > 0 {
		s.t.Errorf("series with a role label for %v, want none by default", got)
	}
}

// labelledRoles is every role label value of the scrape, sorted.
func (s scraped) labelledRoles() []string {
	seen := map[string]bool{}
	for _, mf := range s.fams {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
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
	m.expect(1, "metakraftwerk_creds_issued_total", "source=login")
	m.expect(readers-1, "metakraftwerk_creds_issued_total", "source=shared")
	m.expect(1, "metakraftwerk_logins_total", "purpose=creds", "outcome=success")
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
	m.expect(1, "metakraftwerk_logins_total", "purpose=creds", "outcome=success")
	m.expect(1, "metakraftwerk_logins_total", "purpose=creds", "outcome=error")
	m.expect(1, "metakraftwerk_roles", "state=error")
}

// Two mounts never share counts: each backend has its own registry.
func TestMetricsArePerMount(t *testing.T) {
	a, b := newTestBackend(t), newTestBackend(t)
	a.createRole("ci", nil)
	b.createRole("ci", nil)
	a.mustRead("creds/ci")
	a.scrape().expect(1, "metakraftwerk_creds_issued_total", "source=login")
	b.scrape().expect(0, "metakraftwerk_creds_issued_total", "source=login")
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
	m := newEngineMetrics(newMemStore())
	for b.Loop() {
		m.login("team-a-ci", purposeCreds, 40*time.Millisecond, nil)
		m.issued("team-a-ci", sourceLogin)
	}
}

func BenchmarkMetricsOfASharedRead(b *testing.B) {
	m := newEngineMetrics(newMemStore())
	for b.Loop() {
		m.issued("team-a-ci", sourceShared)
	}
}

// A role gone from storage without this node's delete (a failover, a
// replicated delete) loses its series at the next scrape.
func TestMetricsDropRolesGoneFromStorage(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldMetricsRoles: "ci"})
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	env.scrape().expect(1, "metakraftwerk_role_creds_issued_total", "role=ci", "source=login")
	if err := env.storage.Delete(context.Background(), roleStoragePrefix+"ci"); err != nil {
		t.Fatal(err)
	}
	m := env.scrape()
	m.absent("metakraftwerk_role_creds_issued_total", "role=ci", "source=login")
	m.expect(1, "metakraftwerk_creds_issued_total", "source=login")
	m.expect(1, "metakraftwerk_build_info", "version="+Version)
}

// The series budget: 10,000 roles read (half with reuse_tokens, every
// twentieth rejected) give a default scrape of at most 300 metakraftwerk_
// series and 64 KiB in all; metrics_roles naming two of them labels
// exactly those two.
var budgetRoles = 10000

func TestMetricsSeriesBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 logins")
	}
	roles := budgetRoles
	env := newTestBackend(t)
	env.secrets = append(env.secrets, "not-the-password")
	ctx := context.Background()
	for i := range roles {
		r := &roleEntry{Email: testEmail, Password: testPassword, ReuseTokens: i%2 == 0, ReuseMinRemaining: defaultReuseMinRemaining}
		if i%20 == 1 {
			r.Password = "not-the-password"
		}
		if err := putRole(ctx, env.storage, fmt.Sprintf("team-%05d", i), r); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		for i := range roles {
			// Past env.do: its leak check of every answer would dominate.
			resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation,
				Path: fmt.Sprintf("creds/team-%05d", i), Storage: env.storage})
			if want := map[bool]int{true: 400, false: 200}[i%20 == 1]; statusOf(resp, err) != want {
				t.Fatalf("read %d: %d, want %d", i, statusOf(resp, err), want)
			}
		}
	}
	readAll()

	raw := func() (int, int) {
		body := env.mustRead("metrics").Data[logical.HTTPRawBody].([]byte)
		series := 0
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "metakraftwerk_") {
				series++
			}
		}
		return series, len(body)
	}
	series, size := raw()
	t.Logf("default scrape after %d roles read: %d metakraftwerk_ series, %d bytes", roles, series, size)
	if series > 300 || size > 64<<10 {
		t.Errorf("default scrape: %d metakraftwerk_ series and %d bytes, budget 300 and %d", series, size, 64<<10)
	}
	m := env.scrape()
	m.noRoleLabel()
	m.expect(float64(roles/20), "metakraftwerk_roles", "state=refused")
	m.expect(float64(roles/2), "metakraftwerk_roles", "state=shared_token_held")
	m.expect(float64(roles/2-roles/20), "metakraftwerk_roles", "state=ok")
	m.expect(float64(roles-roles/20), "metakraftwerk_creds_issued_total", "source=login")

	env.mustWrite("config", map[string]any{fieldMetricsRoles: "team-00000,team-00001"})
	readAll()
	series, size = raw()
	t.Logf("with two roles named: %d metakraftwerk_ series, %d bytes", series, size)
	m = env.scrape()
	if got := m.labelledRoles(); !reflect.DeepEqual(got, []string{"team-00000", "team-00001"}) {
		t.Errorf("roles with series of their own: %v", got)
	}
	m.expect(1, "metakraftwerk_role_creds_issued_total", "role=team-00000", "source=login")
	// Its rejection is remembered across the config write.
	m.expect(1, "metakraftwerk_role_creds_refused_total", "role=team-00001")
}

// A shared token with less than reuse_min_remaining left is counted as
// expiring: the next read of its role logs in.
func TestMetricsRoleStateSharedTokenExpiring(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true, fieldReuseMinRemaining: "1h"})
	exp, err := time.Parse(time.RFC3339, env.mustRead("creds/ci").Data[fieldExpiresAt].(string))
	if err != nil {
		t.Fatal(err)
	}
	m := env.scrape()
	m.expect(1, "metakraftwerk_roles", "state=shared_token_held")
	m.expect(0, "metakraftwerk_roles", "state=shared_token_expiring")
	env.clock.Advance(exp.Sub(env.clock.Now()) - 59*time.Minute)
	m = env.scrape()
	m.expect(0, "metakraftwerk_roles", "state=shared_token_held")
	m.expect(1, "metakraftwerk_roles", "state=shared_token_expiring")
}
