package metakraftwerk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
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
type engineMetrics struct {
	reg           *prometheus.Registry
	credsIssued   *prometheus.CounterVec
	logins        *prometheus.CounterVec
	loginDuration *prometheus.HistogramVec
	credsRefused  *prometheus.CounterVec
	retries       prometheus.Counter
}

func newEngineMetrics(sharedTokens func() map[string]time.Time) *engineMetrics {
	m := &engineMetrics{
		reg: prometheus.NewRegistry(),
		credsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_creds_issued_total",
			Help: "Tokens handed out by creds reads: source=login from a login of their own, shared from the role's shared token.",
		}, []string{"role", "source"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_logins_total",
			Help: "Logins sent to MetaKraftwerk, by purpose (creds reads, verify of a role) and outcome (success, rejected by MetaKraftwerk, error).",
		}, []string{"role", "purpose", "outcome"}),
		loginDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "metakraftwerk_login_duration_seconds",
			Help:    "Time a login took upstream, retries included.",
			Buckets: loginBuckets,
		}, []string{"purpose"}),
		credsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metakraftwerk_creds_refused_total",
			Help: "Creds reads answered from a remembered rejected login, without contacting MetaKraftwerk.",
		}, []string{"role"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metakraftwerk_upstream_retries_total",
			Help: "Upstream requests repeated after a transient failure (429, 5xx, connection errors).",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "metakraftwerk_build_info",
		Help: "Always 1; the version label is the plugin's version.",
	}, []string{"version"})
	buildInfo.WithLabelValues(Version).Set(1)
	m.reg.MustRegister(m.credsIssued, m.logins, m.loginDuration, m.credsRefused, m.retries, buildInfo,
		&sharedTokenCollector{tokens: sharedTokens},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// login counts one finished login.
func (m *engineMetrics) login(role, purpose string, took time.Duration, err error) {
	m.loginDuration.WithLabelValues(purpose).Observe(took.Seconds())
	m.logins.WithLabelValues(role, purpose, loginOutcome(err)).Inc()
}

// forget drops a role's series (the role was deleted).
func (m *engineMetrics) forget(role string) {
	labels := prometheus.Labels{"role": role}
	m.credsIssued.DeletePartialMatch(labels)
	m.logins.DeletePartialMatch(labels)
	m.credsRefused.DeletePartialMatch(labels)
}

// sharedTokenExpiry describes the gauge sharedTokenCollector reports.
var sharedTokenExpiry = prometheus.NewDesc("metakraftwerk_shared_token_expiry_timestamp_seconds",
	"When the role's shared token (reuse_tokens) expires, as a Unix time; present only while a token is shared.",
	[]string{"role"}, nil)

// sharedTokenCollector reads the shared tokens at scrape time, so the gauge
// can never outlive the token it describes.
type sharedTokenCollector struct {
	tokens func() map[string]time.Time
}

func (c *sharedTokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sharedTokenExpiry }

func (c *sharedTokenCollector) Collect(ch chan<- prometheus.Metric) {
	for role, exp := range c.tokens() {
		ch <- prometheus.MustNewConstMetric(sharedTokenExpiry, prometheus.GaugeValue, float64(exp.Unix()), role)
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
	// A role deleted elsewhere (another active node before a failover)
	// must not keep its series here.
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
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

// gather collects the metrics, first dropping the series of every role not
// in names. It gathers once, and again only when it dropped something.
func (m *engineMetrics) gather(names []string) ([]*dto.MetricFamily, error) {
	families, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	gone := map[string]bool{}
	for _, mf := range families {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "role" && !keep[l.GetValue()] {
					gone[l.GetValue()] = true
				}
			}
		}
	}
	if len(gone) == 0 {
		return families, nil
	}
	for role := range gone {
		m.forget(role)
	}
	return m.reg.Gather()
}

const pathMetricsHelpSyn = `Prometheus metrics of this mount.`

const pathMetricsHelpDesc = `
Answers GET with the mount's metrics in the Prometheus text exposition
format: tokens issued per role and source, logins per role, purpose and
outcome, login latency, reads refused from a remembered rejection, upstream
retries, the expiry of shared tokens, and the build version. Scrape it with a
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
