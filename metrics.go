package metakraftwerk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// Metric label values, one place for the code and the tests.
const (
	sourceLogin  = "login"
	sourceShared = "shared"

	purposeCreds  = "creds"
	purposeVerify = "verify"

	outcomeSuccess  = "success"
	outcomeRejected = "rejected"
	outcomeError    = "error"
)

// loginBuckets span a fast login to a login that used its whole budget of
// retries (request_timeout × attempts).
var loginBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// engineMetrics are one mount's Prometheus instruments. Vault does not
// collect an external plugin's metrics, so each mount keeps its own
// registry and serves it at <mount>/metrics; nothing is global, so two
// mounts in one plugin process never mix their counts.
//
// The series are bounded whatever the number of roles: counts aggregate
// over roles, and only the roles that metrics_roles names get series of
// their own (the metakraftwerk_role_* families).
type engineMetrics struct {
	reg           *prometheus.Registry
	credsIssued   *prometheus.CounterVec
	logins        *prometheus.CounterVec
	loginDuration *prometheus.HistogramVec
	credsRefused  prometheus.Counter
	retries       prometheus.Counter
	roles         *prometheus.GaugeVec

	roleCredsIssued  *prometheus.CounterVec
	roleLogins       *prometheus.CounterVec
	roleCredsRefused *prometheus.CounterVec

	// named is the metrics_roles in force.
	named atomic.Pointer[roleMatcher]
}

// The states metakraftwerk_roles counts every stored role in, each role
// in exactly one: the first that holds, in this order.
const (
	stateRefused        = iota // a rejected login is remembered
	stateSharedExpiring        // the shared token is too short-lived to hand out again
	stateShared                // a shared token is held
	stateError                 // the last login failed
	stateOK                    // the last login succeeded
	stateNeverUsed             // no login since the plugin started or the role was written
	numRoleStates
)

var roleStateNames = [numRoleStates]string{"refused", "shared_token_expiring", "shared_token_held", "error", "ok", "never_used"}

func newEngineMetrics(store *memStore) *engineMetrics {
	m := &engineMetrics{
		reg: prometheus.NewRegistry(),
		credsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_creds_issued_total",
			Help: "Tokens handed out by creds reads, all roles: source=login from a login of their own, shared from the role's shared token.",
		}, []string{"source"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_logins_total",
			Help: "Logins sent to MetaKraftwerk, all roles, by purpose (creds reads, verify of a role) and outcome (success, rejected by MetaKraftwerk, error).",
		}, []string{"purpose", "outcome"}),
		loginDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "metakraftwerk_login_duration_seconds",
			Help:    "Time a login took upstream, retries included.",
			Buckets: loginBuckets,
		}, []string{"purpose"}),
		credsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metakraftwerk_creds_refused_total",
			Help: "Creds reads answered from a remembered rejected login, without contacting MetaKraftwerk, all roles.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metakraftwerk_upstream_retries_total",
			Help: "Upstream requests repeated after a transient failure (429, 5xx, connection errors).",
		}),
		roles: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "metakraftwerk_roles",
			Help: "Stored roles by state: refused (a rejected login is remembered), shared_token_expiring (the shared token has less than reuse_min_remaining left), " +
				"shared_token_held, error (the last login failed), ok (the last login succeeded), never_used (no login since the plugin started or the role was written).",
		}, []string{"state"}),
		roleCredsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_role_creds_issued_total",
			Help: "metakraftwerk_creds_issued_total of a role that metrics_roles names, counted while it is named.",
		}, []string{"role", "source"}),
		roleLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_role_logins_total",
			Help: "metakraftwerk_logins_total of a role that metrics_roles names, counted while it is named.",
		}, []string{"role", "purpose", "outcome"}),
		roleCredsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_role_creds_refused_total",
			Help: "metakraftwerk_creds_refused_total of a role that metrics_roles names, counted while it is named.",
		}, []string{"role"}),
	}
	// Every aggregate series exists from the start, so that an alert on
	// its increase sees the first one.
	for _, s := range roleStateNames {
		m.roles.WithLabelValues(s)
	}
	for _, src := range []string{sourceLogin, sourceShared} {
		m.credsIssued.WithLabelValues(src)
	}
	for _, p := range []string{purposeCreds, purposeVerify} {
		for _, o := range []string{outcomeSuccess, outcomeRejected, outcomeError} {
			m.logins.WithLabelValues(p, o)
		}
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "metakraftwerk_build_info",
		Help: "Always 1; the version label is the plugin's version.",
	}, []string{"version"})
	buildInfo.WithLabelValues(Version).Set(1)
	m.reg.MustRegister(m.credsIssued, m.logins, m.loginDuration, m.credsRefused, m.retries, m.roles, buildInfo,
		m.roleCredsIssued, m.roleLogins, m.roleCredsRefused,
		&sharedTokenCollector{store: store, named: m.isNamed},
		// go_gc_heap_live_bytes besides the defaults: the heap the last GC
		// kept, what the plugin really holds (docs/performance.md).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setNamed puts metrics_roles in force. Series of roles it no longer names
// go at the next scrape.
func (m *engineMetrics) setNamed(patterns []string) {
	if len(patterns) == 0 {
		m.named.Store(nil)
		return
	}
	m.named.Store(&roleMatcher{patterns: patterns})
}

func (m *engineMetrics) isNamed(role string) bool {
	return m.named.Load().match(role)
}

// login counts one finished login.
func (m *engineMetrics) login(role, purpose string, took time.Duration, err error) {
	outcome := loginOutcome(err)
	m.loginDuration.WithLabelValues(purpose).Observe(took.Seconds())
	m.logins.WithLabelValues(purpose, outcome).Inc()
	if m.isNamed(role) {
		m.roleLogins.WithLabelValues(role, purpose, outcome).Inc()
	}
}

// issued counts one token handed out by a creds read.
func (m *engineMetrics) issued(role, source string) {
	m.credsIssued.WithLabelValues(source).Inc()
	if m.isNamed(role) {
		m.roleCredsIssued.WithLabelValues(role, source).Inc()
	}
}

// refused counts one creds read answered from a remembered rejection.
func (m *engineMetrics) refused(role string) {
	m.credsRefused.Inc()
	if m.isNamed(role) {
		m.roleCredsRefused.WithLabelValues(role).Inc()
	}
}

// forget drops a role's series (the role was deleted, or is no longer
// named).
func (m *engineMetrics) forget(role string) {
	labels := prometheus.Labels{"role": role}
	m.roleCredsIssued.DeletePartialMatch(labels)
	m.roleLogins.DeletePartialMatch(labels)
	m.roleCredsRefused.DeletePartialMatch(labels)
}

// roleMatcher is metrics_roles: role names and path.Match patterns.
type roleMatcher struct {
	patterns []string
}

// match reports whether a pattern names the role; a nil matcher names none.
func (r *roleMatcher) match(role string) bool {
	if r == nil {
		return false
	}
	for _, p := range r.patterns {
		// Patterns were checked when the config was written.
		if ok, _ := path.Match(p, role); ok {
			return true
		}
	}
	return false
}

// The shared-token expiry gauges sharedTokenCollector reports.
var (
	sharedTokenSoonestExpiry = prometheus.NewDesc("metakraftwerk_shared_token_soonest_expiry_timestamp_seconds",
		"When the first of the roles' shared tokens (reuse_tokens) expires, as a Unix time; present only while a token is shared.",
		nil, nil)
	roleSharedTokenExpiry = prometheus.NewDesc("metakraftwerk_role_shared_token_expiry_timestamp_seconds",
		"When the shared token of a role that metrics_roles names expires, as a Unix time; present only while a token is shared.",
		[]string{"role"}, nil)
)

// sharedTokenCollector reads the shared tokens at scrape time, so the gauge
// can never outlive the token it describes.
type sharedTokenCollector struct {
	store *memStore
	named func(role string) bool
}

func (c *sharedTokenCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sharedTokenSoonestExpiry
	ch <- roleSharedTokenExpiry
}

func (c *sharedTokenCollector) Collect(ch chan<- prometheus.Metric) {
	var soonest time.Time
	type named struct {
		role string
		exp  time.Time
	}
	var roles []named
	c.store.eachSharedToken(func(role string, exp time.Time) {
		if soonest.IsZero() || exp.Before(soonest) {
			soonest = exp
		}
		if c.named(role) {
			roles = append(roles, named{role, exp})
		}
	})
	if !soonest.IsZero() {
		ch <- prometheus.MustNewConstMetric(sharedTokenSoonestExpiry, prometheus.GaugeValue, float64(soonest.Unix()))
	}
	for _, r := range roles {
		ch <- prometheus.MustNewConstMetric(roleSharedTokenExpiry, prometheus.GaugeValue, float64(r.exp.Unix()), r.role)
	}
}

func pathMetrics(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "read",
			OperationSuffix: "metrics",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathMetricsRead,
				Responses: map[int][]framework.Response{
					200: {{Description: "The Prometheus text exposition format.", MediaType: metricsContentType}},
				},
				// The counters and the shared tokens live on the active node.
				ForwardPerformanceStandby: true,
			},
		},
		HelpSynopsis:    pathMetricsHelpSyn,
		HelpDescription: pathMetricsHelpDesc,
	}}
}

// metricsFormat is Prometheus's text exposition format, version 0.0.4.
var (
	metricsFormat      = expfmt.NewFormat(expfmt.TypeTextPlain)
	metricsContentType = string(metricsFormat)
)

func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := effectiveConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	b.metrics.setNamed(cfg.MetricsRoles)
	// The role-state counts cover the stored roles, and a role deleted
	// elsewhere (another active node before a failover) must not keep its
	// series here.
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	counts := b.store.countStates(names, cfg, b.now())
	for i, n := range counts {
		b.metrics.roles.WithLabelValues(roleStateNames[i]).Set(float64(n))
	}
	families, err := b.metrics.gather(names)
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, metricsFormat)
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("encoding metrics: %w", err)
		}
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: metricsContentType,
		logical.HTTPRawBody:     buf.Bytes(),
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}

// gather collects the metrics, first dropping the series of every role
// that is not in names or that metrics_roles no longer names. It gathers
// once, and again only when it dropped something.
func (m *engineMetrics) gather(names []string) ([]*dto.MetricFamily, error) {
	families, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	// Only named roles carry a role label, so this set stays small.
	labelled := map[string]bool{}
	for _, mf := range families {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "role" {
					labelled[l.GetValue()] = false
				}
			}
		}
	}
	if len(labelled) == 0 {
		return families, nil
	}
	for _, n := range names {
		if _, ok := labelled[n]; ok {
			labelled[n] = true
		}
	}
	dropped := false
	for role, stored := range labelled {
		if !stored || !m.isNamed(role) {
			m.forget(role)
			dropped = true
		}
	}
	if !dropped {
		return families, nil
	}
	return m.reg.Gather()
}

const pathMetricsHelpSyn = `Prometheus metrics of this mount.`

const pathMetricsHelpDesc = `
Answers GET with the mount's metrics in the Prometheus text exposition
format: tokens issued per source, logins per purpose and outcome, login
latency, reads refused from a remembered rejection, upstream retries, the
roles per state, the soonest expiry of a shared token, and the build
version; and the same per role for the roles metrics_roles names. Scrape it with a
Vault token whose policy grants read on <mount>/metrics. Standbys forward it
to the active node, which holds the counts; they start at zero when the
plugin starts.
`

// loginOutcome sorts a login's result into the outcome label.
func loginOutcome(err error) string {
	var apiErr *mkclient.APIError
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.As(err, &apiErr) && apiErr.Rejected():
		return outcomeRejected
	}
	return outcomeError
}
