// Package mkclient is a small client for the parts of the MetaKraftwerk API
// that the Vault secrets engine needs: the password login and the project
// list. It is shaped like go-github: a Client with a base URL and an injected
// HTTP client, one method per endpoint taking a context, and typed errors that
// carry the upstream status and message but never a password or a token.
package mkclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	cleanhttp "github.com/hashicorp/go-cleanhttp"
	retryablehttp "github.com/hashicorp/go-retryablehttp"
)

const (
	// DefaultBaseURL is MetaKraftwerk's SaaS host.
	DefaultBaseURL = "https://app.metakraftwerk.com"
	// MaxBodyBytes bounds every response body the client reads.
	MaxBodyBytes = 1 << 20
	// DefaultRequestTimeout bounds one upstream attempt.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxRetries is how often a transient failure is retried.
	DefaultMaxRetries = 3
	// MaxRetryAfter caps how long a Retry-After header can make the client wait.
	MaxRetryAfter = time.Minute

	defaultRetryWaitMin = 250 * time.Millisecond
	defaultRetryWaitMax = 5 * time.Second
	userAgent           = "vault-plugin-secrets-metakraftwerk"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the MetaKraftwerk host root, without a trailing slash.
	BaseURL string
	// CACertPEM, when set, replaces the system roots for TLS verification.
	CACertPEM string
	// RequestTimeout bounds one attempt (connect, headers and body).
	RequestTimeout time.Duration
	// MaxRetries is how many times a transient failure is retried.
	MaxRetries int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between
	// attempts when the server sends no Retry-After. Zero means the default.
	RetryWaitMin, RetryWaitMax time.Duration
	// UserAgent is sent on every request; empty means the package default.
	UserAgent string
}

// Client talks to one MetaKraftwerk installation. It is safe for concurrent use.
type Client struct {
	baseURL   string
	userAgent string
	rc        *retryablehttp.Client
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrResponseTooLarge: the body exceeded MaxBodyBytes.
	ErrResponseTooLarge = errors.New("response body exceeds the 1 MiB limit")
	// ErrMalformedResponse: a success status with a body that cannot be used.
	ErrMalformedResponse = errors.New("malformed response")
	// ErrRedirect: the server answered with a redirect, which is never followed.
	ErrRedirect = errors.New("redirect refused")
)

// APIError is an answer from MetaKraftwerk with an unexpected status.
type APIError struct {
	// Op names the call: "login" or "list projects".
	Op         string
	StatusCode int
	// Message is the server's message (Feathers "message"), or the status text.
	Message string
	// Name is the Feathers error name when present, e.g. "NotAuthenticated".
	Name string
	// Location is set for redirects.
	Location string
	// Attempts is how many requests were made in total.
	Attempts int
}

func (e *APIError) Error() string {
	if e.Location != "" {
		return fmt.Sprintf("MetaKraftwerk answered the %s request with HTTP %d and a redirect to %q; redirects are not followed so that credentials are never sent elsewhere (check base_url)",
			e.Op, e.StatusCode, e.Location)
	}
	s := fmt.Sprintf("MetaKraftwerk answered the %s request with HTTP %d: %s", e.Op, e.StatusCode, e.Message)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// Is lets errors.Is(err, ErrRedirect) match redirect answers.
func (e *APIError) Is(target error) bool {
	return target == ErrRedirect && e.Location != ""
}

// Rejected reports whether MetaKraftwerk refused the request itself (bad
// credentials, a missing field, no permission) rather than failing to serve
// it. Such requests are never retried and are the caller's mistake.
func (e *APIError) Rejected() bool {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// TransportError is a failure to get any answer: connection refused, timeout,
// TLS verification failure, or the caller's deadline while waiting to retry.
type TransportError struct {
	Op       string
	Attempts int
	// LastStatus is the status of the last answer, if a retryable answer
	// (429, 5xx) came before the final failure.
	LastStatus int
	// Deadline is set when the caller's context ended the call, rather
	// than the per-attempt timeout or the network.
	Deadline bool
	Err      error
}

func (e *TransportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "could not reach MetaKraftwerk for the %s request", e.Op)
	if e.Attempts > 0 {
		fmt.Fprintf(&b, " (%d attempt", e.Attempts)
		if e.Attempts > 1 {
			b.WriteString("s")
		}
		if e.LastStatus != 0 {
			fmt.Fprintf(&b, ", last answer HTTP %d", e.LastStatus)
		}
		b.WriteString(")")
	}
	if e.Deadline {
		if errors.Is(e.Err, context.Canceled) {
			b.WriteString(": the Vault request was cancelled")
		} else {
			b.WriteString(": the Vault request's deadline was reached")
		}
		return b.String()
	}
	fmt.Fprintf(&b, ": %s", describeTransportErr(e.Err))
	return b.String()
}

func (e *TransportError) Unwrap() error { return e.Err }

func describeTransportErr(err error) string {
	if problem := tlsProblem(err); problem != "" {
		return problem + ": " + err.Error()
	}
	if isTimeout(err) {
		return "timed out (request_timeout): " + err.Error()
	}
	return err.Error()
}

// tlsProblem names a TLS verification failure, or returns "" when err is
// not one. Such failures are never retried: asking again will not help.
func tlsProblem(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		return "TLS certificate signed by an unknown authority (set ca_cert to trust a private CA)"
	case errors.As(err, &hostErr):
		return "TLS certificate does not match the host name in base_url"
	case errors.As(err, &invalid):
		return "TLS certificate is invalid"
	case errors.As(err, &verifyErr):
		return "TLS certificate verification failed"
	case errors.As(err, &recordErr):
		return "the server did not answer with TLS (is base_url http rather than https?)"
	}
	return ""
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// New builds a Client from cfg. It fails only on an unusable CA bundle.
func New(cfg Config) (*Client, error) {
	transport := cleanhttp.DefaultPooledTransport() // keeps http.ProxyFromEnvironment
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.TrimSpace(cfg.CACertPEM) != "" {
		pool, err := ParseCAPool(cfg.CACertPEM)
		if err != nil {
			return nil, err
		}
		tlsConfig.RootCAs = pool
	}
	transport.TLSClientConfig = tlsConfig

	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	httpClient := &http.Client{
		Transport: transport,
		Timeout:   timeout,
		// Never follow a redirect: the login POST carries a password and
		// the project call a bearer token; neither may go anywhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	retries := cfg.MaxRetries
	if retries < 0 {
		retries = 0
	}
	waitMin, waitMax := cfg.RetryWaitMin, cfg.RetryWaitMax
	if waitMin <= 0 {
		waitMin = defaultRetryWaitMin
	}
	if waitMax <= 0 {
		waitMax = defaultRetryWaitMax
	}
	rc := &retryablehttp.Client{
		HTTPClient:      httpClient,
		Logger:          nil, // the engine logs what matters itself, without URLs or bodies
		RetryWaitMin:    waitMin,
		RetryWaitMax:    waitMax,
		RetryMax:        retries,
		CheckRetry:      checkRetry,
		Backoff:         backoff,
		ErrorHandler:    retryablehttp.PassthroughErrorHandler,
		RequestLogHook:  countAttempt,
		ResponseLogHook: recordStatus,
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = userAgent
	}
	return &Client{baseURL: strings.TrimRight(cfg.BaseURL, "/"), userAgent: ua, rc: rc}, nil
}

// ParseCAPool parses a PEM bundle that must contain at least one certificate
// and nothing but certificates.
func ParseCAPool(pemText string) (*x509.CertPool, error) {
	certs, err := ParsePEMCertificates([]byte(pemText))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.rc.HTTPClient.CloseIdleConnections() }

// callStats follows one logical call across its retried attempts.
type callStats struct {
	attempts   atomic.Int32
	lastStatus atomic.Int32
}

type statsKey struct{}

func countAttempt(_ retryablehttp.Logger, req *http.Request, _ int) {
	if s, ok := req.Context().Value(statsKey{}).(*callStats); ok {
		s.attempts.Add(1)
	}
}

func recordStatus(_ retryablehttp.Logger, resp *http.Response) {
	if resp == nil || resp.Request == nil {
		return
	}
	if s, ok := resp.Request.Context().Value(statsKey{}).(*callStats); ok {
		s.lastStatus.Store(int32(resp.StatusCode))
	}
}

// retryableStatus lists the answers worth another attempt: rate limiting and
// the server errors a proxy or a restarting server produces. A password login
// has no side effect on the server, so repeating it is safe.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return false, ctxErr
	}
	if err != nil {
		return tlsProblem(err) == "", nil
	}
	return retryableStatus(resp.StatusCode), nil
}

// backoff waits as long as a Retry-After header asks (capped at
// MaxRetryAfter), else exponentially between the client's bounds.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, MaxRetryAfter)
		}
	}
	return retryablehttp.DefaultBackoff(minWait, maxWait, attempt, nil)
}

// do sends one logical request with retries and returns the final answer's
// status, headers and (bounded) body.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, header http.Header) (*http.Response, []byte, int, error) {
	stats := &callStats{}
	ctx = context.WithValue(ctx, statsKey{}, stats)
	var rawBody any
	if body != nil {
		rawBody = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.baseURL+path, rawBody)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("building the %s request: %w", op, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.rc.Do(req)
	attempts := int(stats.attempts.Load())
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, nil, attempts, &TransportError{Op: op, Attempts: attempts, LastStatus: int(stats.lastStatus.Load()),
			Deadline: ctx.Err() != nil, Err: err}
	}
	defer resp.Body.Close()
	data, err := readLimited(resp.Body)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			return nil, nil, attempts, fmt.Errorf("%s response from MetaKraftwerk (HTTP %d): %w", op, resp.StatusCode, err)
		}
		return nil, nil, attempts, &TransportError{Op: op, Attempts: attempts, Err: fmt.Errorf("reading the response body: %w", err)}
	}
	return resp, data, attempts, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBodyBytes {
		return nil, ErrResponseTooLarge
	}
	return data, nil
}

func (c *Client) apiError(op string, resp *http.Response, body []byte, attempts int) *APIError {
	e := &APIError{Op: op, StatusCode: resp.StatusCode, Attempts: attempts}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Location = resp.Header.Get("Location")
		if e.Location == "" {
			e.Location = "(no Location header)"
		}
	}
	e.Name, e.Message = DecodeErrorBody(body, resp.StatusCode)
	return e
}

// LoginResult is a successful password login.
type LoginResult struct {
	AccessToken string
	UserID      string
	Email       string
	// Attempts is how many HTTP requests the login took (1 without retries).
	Attempts int
}

// Login performs POST {base_url}/authentication with the local strategy.
// Redirects are refused; 400/401/403 are never retried.
func (c *Client) Login(ctx context.Context, email, password string) (*LoginResult, error) {
	const op = "login"
	payload, err := json.Marshal(map[string]string{"strategy": "local", "email": email, "password": password})
	if err != nil {
		return nil, fmt.Errorf("encoding the login request: %w", err)
	}
	resp, body, attempts, err := c.do(ctx, op, http.MethodPost, "/authentication", payload,
		http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, c.apiError(op, resp, body, attempts)
	}
	res, err := DecodeLoginResponse(body)
	if err != nil {
		return nil, err
	}
	res.Attempts = attempts
	return res, nil
}

// Project is one entry of GET /api/v1/projects.
type Project struct {
	ID       string
	Name     string
	Deleted  bool
	Disabled bool
}

// Projects lists the projects the token's user can access.
func (c *Client) Projects(ctx context.Context, accessToken string) ([]Project, error) {
	const op = "list projects"
	resp, body, attempts, err := c.do(ctx, op, http.MethodGet, "/api/v1/projects", nil,
		http.Header{"Authorization": {"Bearer " + accessToken}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.apiError(op, resp, body, attempts)
	}
	return DecodeProjects(body)
}

// ValidateBaseURL checks and normalises a base URL: absolute, http(s), https
// unless the host is loopback, no credentials, query or fragment. The
// returned URL has no trailing slash.
func ValidateBaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("is not a valid URL: %v", trimURLErr(err))
	}
	switch {
	case !u.IsAbs() || u.Host == "":
		return "", errors.New("must be an absolute URL such as https://app.metakraftwerk.com")
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("scheme %q is not supported; use https", u.Scheme)
	case u.User != nil:
		return "", errors.New("must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery:
		return "", errors.New("must not contain a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", errors.New("must not contain a fragment")
	case u.Port() != "" && !validPort(u.Port()):
		return "", fmt.Errorf("port %q is not valid", u.Port())
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		return "", fmt.Errorf("must use https; http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1), not %q", u.Hostname())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func trimURLErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func validPort(p string) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for _, r := range p {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	return n > 0 && n <= 65535
}
