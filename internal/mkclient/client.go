// Package mkclient is a small client for the parts of the MetaKraftwerk API
// that the Vault secrets engine needs: the password login and the project
// list. It is shaped like go-github: a Client with a base URL and an injected
// HTTP client, one method per endpoint taking a context, typed results, and
// typed errors that carry the upstream status and message but never a
// password or a token.
package mkclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	// MaxProjects bounds how many projects Projects reads across all pages.
	MaxProjects = 10000
	// MaxListingBytes bounds the bytes Projects reads across all pages; a
	// listing stops with ErrTooManyProjects once it has read this much.
	MaxListingBytes = 8 << 20

	// smallBodyBytes is what a response body may have without holding one
	// of the client's large-body slots; MetaKraftwerk's answers are far
	// smaller.
	smallBodyBytes = 64 << 10
	// largeBodies bounds the bodies over smallBodyBytes that the client
	// reads and decodes at once, so that a hostile upstream answering many
	// concurrent requests with 1 MiB bodies cannot make it hold them all.
	largeBodies = 4

	// maxIdleConns is how many idle connections to MetaKraftwerk the client
	// keeps for reuse (they close after 90s idle).
	maxIdleConns = 64

	// maxHeaderBytes bounds the response headers; MetaKraftwerk sends a few
	// hundred bytes.
	maxHeaderBytes = 64 << 10
	// projectPageLimit is the page size asked for after the first page;
	// the server caps it at its own paginate.max.
	projectPageLimit = 100
	// maxProjectPages bounds the requests of one project listing, whatever
	// page size the server chooses.
	maxProjectPages = MaxProjects / 10

	userAgent = "vault-plugin-secrets-metakraftwerk"
)

// The backoff between attempts grows from RetryWaitMin to RetryWaitMax
// (exported for the config's field description).
const (
	RetryWaitMin = 250 * time.Millisecond
	RetryWaitMax = 5 * time.Second
)

// Config configures a Client.
type Config struct {
	// BaseURL is the MetaKraftwerk host root, as ValidateBaseURL returns it.
	BaseURL string
	// CACertPEM, when set, replaces the system roots for TLS verification.
	CACertPEM string
	// RequestTimeout bounds one attempt (connect, headers and body).
	RequestTimeout time.Duration
	// MaxRetries is how many times a transient failure is retried.
	MaxRetries int
	// UserAgent is sent on every request; empty means the package default.
	UserAgent string
	// OnRetry, when set, is called before every attempt after the first.
	OnRetry func()
}

// Client talks to one MetaKraftwerk installation. It is safe for concurrent use.
type Client struct {
	baseURL string
	// host is the configured host (and port), the only host an error names.
	host      string
	userAgent string
	rc        *retryablehttp.Client
	wire      *wire
	// large holds a token for each body over smallBodyBytes being read or
	// decoded.
	large chan struct{}
}

// New builds a Client from cfg. It fails on a base URL that ValidateBaseURL
// refuses and on an unusable CA bundle, naming the field; whatever spelling
// cfg.BaseURL has, the client uses its normalised form.
func New(cfg Config) (*Client, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, &FieldError{Field: "base_url", Err: err}
	}
	transport := cleanhttp.DefaultPooledTransport() // keeps http.ProxyFromEnvironment
	transport.MaxResponseHeaderBytes = maxHeaderBytes
	// Keep a connection for each concurrent login: the pooled transport
	// keeps GOMAXPROCS+1, so 32 concurrent readers closed and reopened
	// (and, over https, handshook) a connection for most logins.
	transport.MaxIdleConnsPerHost = maxIdleConns
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.TrimSpace(cfg.CACertPEM) != "" {
		pool, err := ParseCAPool(cfg.CACertPEM)
		if err != nil {
			return nil, &FieldError{Field: "ca_cert", Err: err}
		}
		tlsConfig.RootCAs = pool
	}
	transport.TLSClientConfig = tlsConfig
	w := newWire(transport)

	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	httpClient := &http.Client{
		Transport: w,
		Timeout:   timeout,
		// Never follow a redirect: the login POST carries a password and
		// the project call a bearer token; neither may go anywhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	rc := &retryablehttp.Client{
		HTTPClient:   httpClient,
		Logger:       nil, // the engine logs what matters itself, without URLs or bodies
		RetryWaitMin: RetryWaitMin,
		RetryWaitMax: RetryWaitMax,
		RetryMax:     max(cfg.MaxRetries, 0),
		CheckRetry:   checkRetry,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, retry int) {
			if retry > 0 && cfg.OnRetry != nil {
				cfg.OnRetry()
			}
		},
		ResponseLogHook: recordStatus,
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = userAgent
	}
	return &Client{baseURL: strings.TrimRight(base.String(), "/"), host: base.Host, userAgent: ua, rc: rc, wire: w,
		large: make(chan struct{}, largeBodies)}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.rc.HTTPClient.CloseIdleConnections() }

// callStats follows one logical call across its retried attempts.
type callStats struct {
	attempts   atomic.Int32
	lastStatus atomic.Int64
}

type statsKey struct{}

func recordStatus(_ retryablehttp.Logger, resp *http.Response) {
	if resp == nil || resp.Request == nil {
		return
	}
	if s, ok := resp.Request.Context().Value(statsKey{}).(*callStats); ok {
		s.lastStatus.Store(int64(resp.StatusCode))
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
		if status := proxyStatus(err); status != 0 {
			// A proxy's own refusal (403, 407) stays; its 5xx may pass.
			return status >= 500, nil
		}
		return classify(err).Retryable(), nil
	}
	return retryableStatus(resp.StatusCode), nil
}

// backoff waits as long as a Retry-After header asks (capped at
// MaxRetryAfter), else exponentially between the client's bounds.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, MaxRetryAfter)
		}
	}
	return retryablehttp.DefaultBackoff(minWait, maxWait, attempt, nil)
}

// answer is the final answer to one logical request.
type answer struct {
	resp     *http.Response
	body     []byte
	attempts int
}

// do sends one logical request with retries and hands the final answer's
// status, headers and (bounded) body to handle, which decodes what it
// needs; the body is not kept after handle returns.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, header http.Header, handle func(answer) error) error {
	stats := &callStats{}
	ctx = context.WithValue(ctx, statsKey{}, stats)
	var rawBody any
	if body != nil {
		rawBody = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.baseURL+path, rawBody)
	if err != nil {
		return fmt.Errorf("%w (%s)", ErrRequest, op)
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
			_ = resp.Body.Close()
		}
		return newTransportError(ctx, op, c.host, attempts, int(stats.lastStatus.Load()), err)
	}
	defer resp.Body.Close()
	data, release, err := c.readBody(ctx, resp.Body)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			return fmt.Errorf("%s response from MetaKraftwerk (HTTP %d): %w", op, resp.StatusCode, err)
		}
		return newTransportError(ctx, op, c.host, attempts, 0, err)
	}
	defer release()
	return handle(answer{resp: resp, body: data, attempts: attempts})
}

// readBody reads a body of at most MaxBodyBytes. Past smallBodyBytes it
// reads on only while holding one of the client's large-body slots, which
// the caller gives back with release once it has decoded the body.
func (c *Client) readBody(ctx context.Context, r io.Reader) (data []byte, release func(), err error) {
	release = func() {}
	buf := bytes.NewBuffer(make([]byte, 0, 2048))
	n, err := buf.ReadFrom(io.LimitReader(r, smallBodyBytes+1))
	if err != nil || n <= smallBodyBytes {
		return buf.Bytes(), release, err
	}
	select {
	case c.large <- struct{}{}:
	case <-ctx.Done():
		return nil, release, ctx.Err()
	}
	release = func() { <-c.large }
	buf.Grow(MaxBodyBytes + 1 - buf.Len())
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(MaxBodyBytes+1-buf.Len()))); err != nil {
		release()
		return nil, func() {}, err
	}
	if buf.Len() > MaxBodyBytes {
		release()
		return nil, func() {}, ErrResponseTooLarge
	}
	return buf.Bytes(), release, nil
}

// apiError describes an unexpected answer. secret is what the request
// carried (the password, the bearer token); the error quotes only what is
// known (decodeError, redirectTarget), and drops a known text that holds
// secret too.
func (c *Client) apiError(op string, a answer, secret string) *APIError {
	e := &APIError{Op: op, StatusCode: a.resp.StatusCode, Attempts: a.attempts}
	e.Name, e.Message = decodeError(a.body, a.resp.StatusCode, secret)
	if a.resp.StatusCode >= 300 && a.resp.StatusCode < 400 {
		var from *url.URL
		if a.resp.Request != nil {
			from = a.resp.Request.URL
		}
		e.Redirect = redirectTarget(a.resp.Header.Get("Location"), from, c.host)
	}
	return e
}

// LoginResult is a successful password login.
type LoginResult struct {
	AccessToken string
	// UserID is the login answer's user id, else the token's sub claim
	// (ProjectID).
	UserID string
	Claims Claims
	// Attempts is how many HTTP requests the login took (1 without retries).
	Attempts int
}

// Claims is what the client reads from an access token. The signature is
// not verified: the HS256 key is MetaKraftwerk's own secret.
type Claims struct {
	// ExpiresAt is the exp claim; zero when HasExp is false.
	ExpiresAt time.Time
	HasExp    bool
	// ID is the jti claim, when present (ProjectID, after Login).
	ID string
	// Subject is the sub claim (the MetaKraftwerk user id), when present
	// (ProjectID, after Login).
	Subject string
}

// loginRequest is the documented body of POST /authentication.
type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Strategy string `json:"strategy"`
}

// Login performs POST {base_url}/authentication with the local strategy.
// Redirects are refused; 400/401/403 are never retried.
func (c *Client) Login(ctx context.Context, email, password string) (*LoginResult, error) {
	const op = "login"
	payload, err := json.Marshal(loginRequest{Email: email, Password: password, Strategy: "local"}) //nolint:gosec // G117: the login request must carry the password, over TLS, to MetaKraftwerk only
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrRequest, op)
	}
	var res *LoginResult
	err = c.do(ctx, op, http.MethodPost, "/authentication", payload, http.Header{"Content-Type": {"application/json"}},
		func(a answer) error {
			if a.resp.StatusCode != http.StatusCreated && a.resp.StatusCode != http.StatusOK {
				return c.apiError(op, a, password)
			}
			r, err := decodeLoginResponse(a.body)
			if err != nil {
				return err
			}
			// Every reader of the role gets the token as it came: one that
			// carries the password would hand it to them.
			if tokenCarries(r.AccessToken, password) {
				return fmt.Errorf("%w (it carries the login's password in its header or claims)", ErrNotAJWT)
			}
			// The ids are upstream text that readers, logs and Terraform
			// state see: each leaves through the projection, whole or not
			// at all.
			r.UserID = ProjectID(UserID, r.UserID, password)
			r.Claims.ID = ProjectID(TokenID, r.Claims.ID, password)
			r.Claims.Subject = ProjectID(UserID, r.Claims.Subject, password)
			r.Attempts = a.attempts
			res = r
			return nil
		})
	return res, err
}

// Project is one entry of GET /api/v1/projects.
type Project struct {
	ID       string
	Name     string
	Deleted  bool
	Disabled bool
}

// Projects lists the projects the token's user can access that are named in
// names, in the order the server lists them. A plain array is the whole
// list. A Feathers page ({"total","limit","skip","data"}) is followed with
// $skip and $limit until total is reached, for at most MaxProjects projects
// and MaxListingBytes of answers. Only one page and the named projects are
// held at a time, whatever the server sends.
func (c *Client) Projects(ctx context.Context, accessToken string, names []string) ([]Project, error) {
	wanted := make(map[string]bool, len(names))
	for _, n := range names {
		wanted[n] = true
	}
	// The first request asks for the server's default: a server without
	// pagination would truncate its plain array to an explicit $limit.
	query, skip, read := "", 0, 0
	var kept []Project
	for range maxProjectPages {
		page, size, err := c.projectPage(ctx, accessToken, query, func(name string) bool { return wanted[name] })
		if err != nil {
			return nil, err
		}
		read += size
		if page.paged && page.skip != skip {
			return nil, fmt.Errorf("%w: asked for the projects from %d on, got a page from %d", ErrMalformedResponse, skip, page.skip)
		}
		kept = append(kept, page.projects...)
		if !page.paged {
			return kept, nil
		}
		if page.total > MaxProjects {
			return nil, fmt.Errorf("%w: MetaKraftwerk lists %d projects for this login, more than the %d the check reads", ErrTooManyProjects, page.total, MaxProjects)
		}
		skip += page.entries
		if page.entries == 0 || skip >= page.total {
			return kept, nil
		}
		if read >= MaxListingBytes {
			return nil, fmt.Errorf("%w: the project list is larger than the %d MiB the check reads", ErrTooManyProjects, MaxListingBytes>>20)
		}
		query = "?" + url.Values{"$skip": {strconv.Itoa(skip)}, "$limit": {strconv.Itoa(projectPageLimit)}}.Encode()
	}
	return nil, fmt.Errorf("%w: the project list did not end within %d pages", ErrTooManyProjects, maxProjectPages)
}

// projectPage reads one page, keeping the projects keep accepts, and
// reports its size in bytes.
func (c *Client) projectPage(ctx context.Context, accessToken, query string, keep func(string) bool) (projectPage, int, error) {
	const op = "list projects"
	var page projectPage
	var size int
	err := c.do(ctx, op, http.MethodGet, "/api/v1/projects"+query, nil, http.Header{"Authorization": {"Bearer " + accessToken}},
		func(a answer) error {
			if a.resp.StatusCode != http.StatusOK {
				return c.apiError(op, a, accessToken)
			}
			var err error
			page, err = decodeProjects(a.body, keep)
			size = len(a.body)
			return err
		})
	return page, size, err
}
