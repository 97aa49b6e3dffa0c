// Package devserver is a stand-in MetaKraftwerk server for demos, tests and
// benchmarks. It speaks the documented protocol faithfully: password login at
// POST /authentication returning an HS256 JWT (header typ "access", claims
// sub, iat, exp, jti, aud, iss), Feathers-style error bodies, and the project
// list at GET /api/v1/projects that verifies its own tokens.
//
// It adds fault knobs (latency, 5xx, 429 with Retry-After, malformed answers,
// redirects, hangs) and login statistics, reachable in-process and over HTTP
// under the separate /_devserver/ prefix.
package devserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of the stand-in, matching MetaKraftwerk's documentation and
// FeathersJS's defaults.
const (
	DefaultTokenLifetime = 20 * time.Hour
	Issuer               = "feathers"
	Audience             = "https://yourdomain.com"
	// ControlPrefix is where the test-only control API lives.
	ControlPrefix = "/_devserver/"

	maxRequestBody = 64 << 10
	firstProjectID = 400
	// hostileElements makes ModeHostile's answer just under 1 MiB.
	hostileElements = (1<<20 - 64) / 2
)

// User is one MetaKraftwerk account of the stand-in.
type User struct {
	ID       int      `json:"id"`
	Email    string   `json:"email"`
	Password string   `json:"password"`
	Projects []string `json:"projects"`
}

// Config configures a Server.
type Config struct {
	Users []User
	// TokenLifetime is the exp − iat of issued tokens (default 20h).
	TokenLifetime time.Duration
	// SigningKey signs tokens (HS256); random when empty.
	SigningKey []byte
	// Logger receives one line per request, without secrets; nil discards.
	Logger *log.Logger
	// Now is the server's clock (default time.Now).
	Now func() time.Time
	// OnIssue, when set, is called with every access token issued (tests
	// use it to know every token that must never leak).
	OnIssue func(token string)
	// Paginate, when set, makes the project list answer in pages the way a
	// paginated Feathers service does.
	Paginate *Paginate
	// TLS, when set, makes Listen serve HTTPS with it.
	TLS *tls.Config
}

// Paginate is Feathers' paginate option: find answers with
// {"total","limit","skip","data"}, Default entries unless $limit asks for
// another number, and never more than Max (when Max is set).
type Paginate struct {
	Default int `json:"default"`
	Max     int `json:"max"`
}

// ParsePaginate reads "default[,max]", e.g. "10" or "10,50".
func ParsePaginate(v string) (*Paginate, error) {
	def, maxText, hasMax := strings.Cut(v, ",")
	p := &Paginate{}
	var err error
	if p.Default, err = strconv.Atoi(strings.TrimSpace(def)); err != nil || p.Default < 1 {
		return nil, fmt.Errorf("paginate %q: the default page size must be a positive number", v)
	}
	if hasMax {
		if p.Max, err = strconv.Atoi(strings.TrimSpace(maxText)); err != nil || p.Max < 1 {
			return nil, fmt.Errorf("paginate %q: max must be a positive number", v)
		}
	}
	return p, nil
}

// Mode makes successful logins answer in a broken way.
type Mode string

// Login answer modes.
const (
	ModeNormal   Mode = ""
	ModeGarbage  Mode = "garbage"  // 201 with a non-JSON body
	ModeNoToken  Mode = "no-token" // 201 JSON without accessToken
	ModeNotJWT   Mode = "not-jwt"  // accessToken is not a JWT
	ModeExpired  Mode = "expired"  // JWT whose exp is an hour ago
	ModeNoExp    Mode = "no-exp"   // JWT without exp
	ModeHuge     Mode = "huge"     // 201 with a 10 MiB body
	ModeRedirect Mode = "redirect" // 307 to RedirectTo
	ModeHang     Mode = "hang"     // accept, then never answer
	ModeEcho     Mode = "echo"     // 401 whose message quotes the request (Faults.Echo says how), as a careless gateway does
	// ModeFormRedirect answers 303 to /login?email=…&password=… on its own
	// host, as a form-login gateway in front of the API does.
	ModeFormRedirect Mode = "form-redirect"
	// ModeHostile answers 201 with 1 MiB of JSON shaped to cost a decoder
	// that builds generic values many times its size.
	ModeHostile Mode = "hostile"
)

// Echo says how ModeEcho quotes the request in its 401's message.
type Echo string

// The encodings of ModeEcho: each is a way a gateway or an upstream
// library has been seen to re-encode what it received.
const (
	EchoRaw        Echo = ""            // the body as received
	EchoURL        Echo = "url"         // the body URL-encoded (QueryEscape)
	EchoHTML       Echo = "html"        // the body HTML-escaped
	EchoBase64     Echo = "base64"      // the password in standard base64
	EchoBase64Body Echo = "base64-body" // the whole body in standard base64
	EchoPrefix     Echo = "prefix"      // the first half of the password
	EchoTruncated  Echo = "truncated"   // the body cut in the middle of the password
	EchoNode       Echo = "node"        // the body escaped as Node's JSON.stringify does: U+2028, DEL and <>& left raw
)

// Echoes lists every Echo, for tests that try them all.
var Echoes = []Echo{EchoRaw, EchoURL, EchoHTML, EchoBase64, EchoBase64Body, EchoPrefix, EchoTruncated, EchoNode}

// Duration is a time.Duration that reads "50ms" or a number of milliseconds from JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		*d = Duration(v)
		return err
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\" or milliseconds: %w", err)
	}
	*d = Duration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Faults are the knobs that make the stand-in misbehave. They apply to
// logins only, except Latency which applies to every API request.
type Faults struct {
	// Latency is added before answering each login and API request.
	Latency Duration `json:"latency"`
	// FailRate is the fraction (0..1) of logins answered with FailStatus.
	FailRate float64 `json:"fail_rate"`
	// FailNext answers the next N logins with FailStatus.
	FailNext int `json:"fail_next"`
	// FailStatus is the status used by FailRate and FailNext (default 503).
	FailStatus int `json:"fail_status"`
	// RateLimitNext answers the next N logins with 429 and Retry-After.
	RateLimitNext int `json:"rate_limit_next"`
	// RetryAfter is the Retry-After value in seconds sent with 429 and 503 (default 1).
	RetryAfter int `json:"retry_after"`
	// Mode breaks successful logins in one of the documented ways.
	Mode Mode `json:"mode"`
	// RedirectTo is the base URL that ModeRedirect points at.
	RedirectTo string `json:"redirect_to"`
	// Echo is how ModeEcho quotes the request.
	Echo Echo `json:"echo"`
	// TokenLifetime, when set, overrides the configured lifetime.
	TokenLifetime Duration `json:"token_lifetime"`
}

// Stats counts what the stand-in has served.
type Stats struct {
	// LoginRequests counts every POST /authentication.
	LoginRequests int64 `json:"login_requests"`
	// Logins counts successful logins (tokens issued).
	Logins int64 `json:"logins"`
	// LoginsByUser counts successful logins per email.
	LoginsByUser map[string]int64 `json:"logins_by_user"`
	// FailedLogins counts logins rejected for bad credentials or input.
	FailedLogins int64 `json:"failed_logins"`
	// FaultsServed counts answers shaped by a fault knob.
	FaultsServed int64 `json:"faults_served"`
	// APIRequests counts /api/v1 requests.
	APIRequests int64 `json:"api_requests"`
	// Connections counts the TCP connections accepted (by Listen's server),
	// OpenConnections those not closed yet, and TLSHandshakes the TLS
	// handshakes completed on them.
	Connections     int64 `json:"connections"`
	OpenConnections int64 `json:"open_connections"`
	TLSHandshakes   int64 `json:"tls_handshakes"`
}

// Server is the stand-in. It is safe for concurrent use.
type Server struct {
	users    map[string]User // by email
	byID     map[string]User // by id as string
	projects []project
	key      []byte
	lifetime time.Duration
	paginate *Paginate
	logger   *log.Logger
	now      func() time.Time
	onIssue  func(string)

	mu     sync.Mutex
	faults Faults
	stats  Stats

	closing chan struct{}
	once    sync.Once
}

type project struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Deleted  bool   `json:"deleted"`
	Disabled bool   `json:"disabled"`
}

// New builds a Server from cfg.
func New(cfg Config) (*Server, error) {
	s := &Server{
		users:    map[string]User{},
		byID:     map[string]User{},
		key:      cfg.SigningKey,
		lifetime: cfg.TokenLifetime,
		paginate: cfg.Paginate,
		logger:   cfg.Logger,
		now:      cfg.Now,
		onIssue:  cfg.OnIssue,
		closing:  make(chan struct{}),
		stats:    Stats{LoginsByUser: map[string]int64{}},
	}
	if s.lifetime <= 0 {
		s.lifetime = DefaultTokenLifetime
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = log.New(io.Discard, "", 0)
	}
	if len(s.key) == 0 {
		s.key = make([]byte, 32)
		if _, err := rand.Read(s.key); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for i, u := range cfg.Users {
		if u.Email == "" || u.Password == "" {
			return nil, fmt.Errorf("user %d: email and password are required", i+1)
		}
		if u.ID == 0 {
			u.ID = i + 1
		}
		if _, dup := s.users[u.Email]; dup {
			return nil, fmt.Errorf("user %q is defined twice", u.Email)
		}
		s.users[u.Email] = u
		s.byID[strconv.Itoa(u.ID)] = u
		for _, p := range u.Projects {
			if !seen[p] {
				seen[p] = true
				s.projects = append(s.projects, project{ID: firstProjectID + len(s.projects), Name: p})
			}
		}
	}
	return s, nil
}

// SetFaults replaces the fault knobs.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Faults returns the current fault knobs.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.LoginsByUser = make(map[string]int64, len(s.stats.LoginsByUser))
	for k, v := range s.stats.LoginsByUser {
		out.LoginsByUser[k] = v
	}
	return out
}

// SetPassword changes a user's password, as an administrator does in
// MetaKraftwerk; it reports whether the user exists.
func (s *Server) SetPassword(email, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[email]
	if ok {
		u.Password = password
		s.users[email] = u
		s.byID[strconv.Itoa(u.ID)] = u
	}
	return ok
}

// Reset clears the counters and the fault knobs.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = Faults{}
	s.stats = Stats{LoginsByUser: map[string]int64{}, OpenConnections: s.stats.OpenConnections}
}

// Close releases requests that are hanging because of ModeHang.
func (s *Server) Close() { s.once.Do(func() { close(s.closing) }) }

// Handler returns the HTTP handler of the stand-in.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/authentication", s.handleAuthentication)
	mux.HandleFunc("GET /api/v1/projects", s.handleProjects)
	mux.HandleFunc("GET /api/v1/projects/{id}", s.handleProject)
	mux.HandleFunc("GET "+ControlPrefix+"stats", s.handleStats)
	mux.HandleFunc("GET "+ControlPrefix+"faults", s.handleGetFaults)
	mux.HandleFunc("POST "+ControlPrefix+"faults", s.handleSetFaults)
	mux.HandleFunc("POST "+ControlPrefix+"reset", s.handleReset)
	mux.HandleFunc("POST "+ControlPrefix+"password", s.handleSetPassword)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Page not found: %s", r.URL.Path))
	})
	return s.logRequests(mux)
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		// Path only: no query, no headers, no body, so no credential or token.
		s.logger.Printf("%s %s %d %s", r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Microsecond))
	})
}

// feathersError is the FeathersJS error body.
type feathersError struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Code      int    `json:"code"`
	ClassName string `json:"className"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// feathersClasses are FeathersJS's error name and className by status.
var feathersClasses = map[int][2]string{
	400: {"BadRequest", "bad-request"}, 401: {"NotAuthenticated", "not-authenticated"}, 403: {"Forbidden", "forbidden"},
	404: {"NotFound", "not-found"}, 405: {"MethodNotAllowed", "method-not-allowed"}, 422: {"Unprocessable", "unprocessable"},
	429: {"TooManyRequests", "too-many-requests"}, 500: {"GeneralError", "general-error"}, 501: {"NotImplemented", "not-implemented"},
	502: {"BadGateway", "bad-gateway"}, 503: {"Unavailable", "unavailable"}, 504: {"Timeout", "timeout"},
}

// writeError answers a FeathersJS error of status with message.
func writeError(w http.ResponseWriter, status int, message string) {
	c, ok := feathersClasses[status]
	if !ok {
		c = feathersClasses[500]
	}
	writeJSON(w, status, feathersError{Name: c[0], Message: message, Code: status, ClassName: c[1]})
}

// wait sleeps for d, or until the request or the server ends.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// loginFault decides, under the lock, which fault (if any) shapes this login.
func (s *Server) loginFault() (f Faults, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.LoginRequests++
	f = s.faults
	failStatus := f.FailStatus
	if failStatus == 0 {
		failStatus = http.StatusServiceUnavailable
	}
	switch {
	case s.faults.RateLimitNext > 0:
		s.faults.RateLimitNext--
		status = http.StatusTooManyRequests
	case s.faults.FailNext > 0:
		s.faults.FailNext--
		status = failStatus
	case f.FailRate > 0 && mrand.Float64() < f.FailRate: //nolint:gosec // G404: a simulated fault rate, not a secret
		status = failStatus
	}
	if status != 0 || f.Mode != ModeNormal {
		s.stats.FaultsServed++
	}
	return f, status
}

func (s *Server) handleAuthentication(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		// As on FeathersJS: re-verifies the token and does NOT invalidate it.
		if _, ok := s.verifyBearer(r); !ok {
			writeError(w, http.StatusUnauthorized, "Not authenticated")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"accessToken": bearer(r)})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method `%s` is not supported by this endpoint.", r.Method))
		return
	}
	f, failStatus := s.loginFault()
	if !s.wait(r.Context(), time.Duration(f.Latency)) {
		return
	}
	if f.Mode == ModeHang {
		s.wait(r.Context(), 24*time.Hour)
		return
	}
	retryAfter := f.RetryAfter
	if retryAfter <= 0 {
		retryAfter = 1
	}
	switch failStatus {
	case 0:
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeError(w, failStatus, "Too many requests")
		return
	default:
		if failStatus == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		writeError(w, failStatus, http.StatusText(failStatus))
		return
	}
	if f.Mode == ModeRedirect {
		http.Redirect(w, r, strings.TrimRight(f.RedirectTo, "/")+"/authentication", http.StatusTemporaryRedirect)
		return
	}
	switch f.Mode {
	case ModeEcho:
		raw, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		s.countFailure()
		if f.Echo == EchoNode {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprintf(w, `{"name":"NotAuthenticated","message":"Invalid login: %s","code":401,"className":"not-authenticated"}`, nodeEscape(string(raw)))
			return
		}
		writeError(w, http.StatusUnauthorized, "Invalid login: "+echo(f.Echo, raw))
		return
	case ModeFormRedirect:
		var body struct{ Email, Password string }
		_ = json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body)
		q := url.Values{"email": {body.Email}, "password": {body.Password}}
		w.Header().Set("Location", "/login?"+q.Encode())
		w.WriteHeader(http.StatusSeeOther)
		return
	}

	var body struct {
		Strategy *string `json:"strategy"`
		Email    *string `json:"email"`
		Password *string `json:"password"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body); err != nil {
		s.countFailure()
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return
	}
	for _, field := range []struct {
		name string
		v    *string
	}{{"strategy", body.Strategy}, {"email", body.Email}, {"password", body.Password}} {
		if field.v == nil || *field.v == "" {
			s.countFailure()
			writeError(w, http.StatusBadRequest, fmt.Sprintf("'%s' is required", field.name))
			return
		}
	}
	if *body.Strategy != "local" {
		s.countFailure()
		writeError(w, http.StatusUnauthorized, "Invalid authentication information (strategy not allowed in authStrategies)")
		return
	}
	s.mu.Lock()
	user, ok := s.users[*body.Email]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(user.Password), []byte(*body.Password)) != 1 {
		s.countFailure()
		writeError(w, http.StatusUnauthorized, "Invalid login")
		return
	}
	s.answerLogin(w, user, f)
}

// echo is the request body as f quotes it back.
func echo(f Echo, raw []byte) string {
	var login struct{ Password string }
	_ = json.Unmarshal(raw, &login)
	switch f {
	case EchoURL:
		return url.QueryEscape(string(raw))
	case EchoHTML:
		return html.EscapeString(string(raw))
	case EchoBase64:
		return base64.StdEncoding.EncodeToString([]byte(login.Password))
	case EchoBase64Body:
		return base64.StdEncoding.EncodeToString(raw)
	case EchoPrefix:
		return "password starts " + login.Password[:len(login.Password)/2]
	case EchoTruncated:
		if i := bytes.Index(raw, []byte(`"password":"`)); i >= 0 {
			return string(raw[:i+len(`"password":"`)+len(login.Password)/2])
		}
	}
	return string(raw)
}

// nodeEscape escapes s for a JSON string as Node's JSON.stringify does:
// only the quote, the backslash and C0 controls; DEL, U+2028, U+2029 and
// <>& stay as they are.
func nodeEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (s *Server) countFailure() {
	s.mu.Lock()
	s.stats.FailedLogins++
	s.mu.Unlock()
}

func (s *Server) answerLogin(w http.ResponseWriter, user User, f Faults) {
	switch f.Mode {
	case ModeGarbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "<html><body>502 upstream hiccup</body></html>")
		return
	case ModeHostile:
		// An accessToken of half a million tiny array elements: 1 MiB here,
		// over 10 MiB once decoded into generic values.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"accessToken":[`+strings.Repeat("0,", hostileElements)+`0],"user":{"id":1}}`)
		return
	case ModeHuge:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"padding":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 160; i++ { // 10 MiB
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `"}`)
		return
	}

	lifetime := s.lifetime
	if f.TokenLifetime > 0 {
		lifetime = time.Duration(f.TokenLifetime)
	}
	now := s.now()
	claims := jwt.MapClaims{
		"sub": strconv.Itoa(user.ID),
		"iat": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
		"jti": newUUID(),
		"aud": Audience,
		"iss": Issuer,
	}
	switch f.Mode {
	case ModeExpired:
		claims["iat"] = now.Add(-lifetime - time.Hour).Unix()
		claims["exp"] = now.Add(-time.Hour).Unix()
	case ModeNoExp:
		delete(claims, "exp")
	}
	token := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	token.Header["typ"] = "access"
	signed, err := token.SignedString(s.key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot sign token")
		return
	}
	if f.Mode == ModeNotJWT {
		signed = "opaque-" + newUUID()
	}

	if s.onIssue != nil {
		s.onIssue(signed)
	}
	s.mu.Lock()
	s.stats.Logins++
	s.stats.LoginsByUser[user.Email]++
	s.mu.Unlock()

	resp := map[string]any{
		"accessToken":    signed,
		"authentication": map[string]any{"strategy": "local", "accessToken": signed},
		"user":           map[string]any{"id": user.ID, "email": user.Email},
	}
	if f.Mode == ModeNoToken {
		delete(resp, "accessToken")
		resp["authentication"] = map[string]any{"strategy": "local"}
	}
	writeJSON(w, http.StatusCreated, resp)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// verifyBearer checks the request's token: signature, exp and user.
func (s *Server) verifyBearer(r *http.Request) (User, bool) {
	raw := bearer(r)
	if raw == "" {
		return User{}, false
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now),
		jwt.WithAudience(Audience), jwt.WithIssuer(Issuer))
	if err != nil {
		return User{}, false
	}
	sub, _ := claims.GetSubject()
	s.mu.Lock()
	u, ok := s.byID[sub]
	s.mu.Unlock()
	return u, ok
}

func (s *Server) apiAuth(w http.ResponseWriter, r *http.Request) (User, bool) {
	s.mu.Lock()
	s.stats.APIRequests++
	latency := time.Duration(s.faults.Latency)
	s.mu.Unlock()
	if !s.wait(r.Context(), latency) {
		return User{}, false
	}
	u, ok := s.verifyBearer(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "Not authenticated")
	}
	return u, ok
}

func (s *Server) userProjects(u User) []project {
	out := []project{}
	for _, p := range s.projects {
		for _, name := range u.Projects {
			if p.Name == name {
				out = append(out, p)
			}
		}
	}
	return out
}

func (s *Server) handleProjects(w http.ResponseWriter, r *http.Request) {
	u, ok := s.apiAuth(w, r)
	if !ok {
		return
	}
	out := s.userProjects(u)
	q := r.URL.Query()
	if name := q.Get("name"); name != "" {
		filtered := []project{}
		for _, p := range out {
			if p.Name == name {
				filtered = append(filtered, p)
			}
		}
		out = filtered
	}
	if s.paginate == nil {
		writeJSON(w, http.StatusOK, out)
		return
	}
	// As Feathers: $limit (default paginate.default, capped at
	// paginate.max) and $skip select the page; total counts all matches.
	limit, skip := s.paginate.Default, 0
	if v, err := strconv.Atoi(q.Get("$limit")); err == nil && v >= 0 {
		limit = v
	}
	if s.paginate.Max > 0 {
		limit = min(limit, s.paginate.Max)
	}
	if v, err := strconv.Atoi(q.Get("$skip")); err == nil && v >= 0 {
		skip = v
	}
	data := out[min(skip, len(out)):min(skip+limit, len(out))]
	writeJSON(w, http.StatusOK, map[string]any{"total": len(out), "limit": limit, "skip": skip, "data": data})
}

func (s *Server) handleProject(w http.ResponseWriter, r *http.Request) {
	u, ok := s.apiAuth(w, r)
	if !ok {
		return
	}
	for _, p := range s.userProjects(u) {
		if strconv.Itoa(p.ID) == r.PathValue("id") {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("No record found for id '%s'", r.PathValue("id")))
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, "invalid faults: "+err.Error())
		return
	}
	if err := f.validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, f)
}

func (f Faults) validate() error {
	switch f.Echo {
	case EchoRaw, EchoURL, EchoHTML, EchoBase64, EchoBase64Body, EchoPrefix, EchoTruncated, EchoNode:
	default:
		return fmt.Errorf("unknown echo %q", f.Echo)
	}
	switch f.Mode {
	case ModeNormal, ModeGarbage, ModeNoToken, ModeNotJWT, ModeExpired, ModeNoExp, ModeHuge, ModeHang, ModeEcho, ModeFormRedirect, ModeHostile:
	case ModeRedirect:
		if f.RedirectTo == "" {
			return errors.New("mode redirect needs redirect_to")
		}
	default:
		return fmt.Errorf("unknown mode %q", f.Mode)
	}
	if f.FailRate < 0 || f.FailRate > 1 {
		return errors.New("fail_rate must be between 0 and 1")
	}
	if f.FailStatus != 0 && (f.FailStatus < 400 || f.FailStatus > 599) {
		return errors.New("fail_status must be a 4xx or 5xx status")
	}
	return nil
}

// handleSetPassword changes a user's password while the stand-in runs, as
// an administrator does in MetaKraftwerk: {"email": "…", "password": "…"}.
// Tokens already issued stay valid: they are checked by signature and exp
// only, as MetaKraftwerk's are.
func (s *Server) handleSetPassword(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Email == "" || body.Password == "" {
		writeError(w, http.StatusBadRequest, `want {"email": "…", "password": "…"}, both non-empty`)
		return
	}
	if !s.SetPassword(body.Email, body.Password) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("No user %q", body.Email))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"email": body.Email, "status": "password changed"})
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	writeJSON(w, http.StatusOK, map[string]string{"status": "reset"})
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// TokenStatus asks the project list of the MetaKraftwerk at baseURL with
// token and returns the HTTP status: 200 for a token it accepts, 401 for
// one it does not (wrong signer, expired).
func TokenStatus(baseURL, token string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, baseURL+"/api/v1/projects", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Running is a stand-in serving on a listener.
type Running struct {
	*Server
	URL      string
	listener net.Listener
	http     *http.Server
}

// Listen starts serving on addr ("127.0.0.1:0" picks a free loopback port),
// over TLS when cfg.TLS is set.
func Listen(addr string, cfg Config) (*Running, error) {
	srv, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg.TLS != nil {
		ln, scheme = tls.NewListener(ln, srv.countHandshakes(cfg.TLS)), "https"
	}
	r := &Running{Server: srv, URL: scheme + "://" + ln.Addr().String(), listener: ln,
		http: &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ConnState: srv.countConn}}
	go func() { _ = r.http.Serve(ln) }()
	return r, nil
}

// countConn counts accepted and open connections.
func (s *Server) countConn(_ net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.stats.Connections++
		s.stats.OpenConnections++
	case http.StateClosed, http.StateHijacked:
		s.stats.OpenConnections--
	}
}

// countHandshakes returns a copy of cfg that counts every TLS handshake,
// full or resumed.
func (s *Server) countHandshakes(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		s.mu.Lock()
		s.stats.TLSHandshakes++
		s.mu.Unlock()
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
	return cfg
}

// Addr is the listening address.
func (r *Running) Addr() string { return r.listener.Addr().String() }

// Close stops the server and releases hanging requests.
func (r *Running) Close() error {
	r.Server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.http.Shutdown(ctx); err != nil {
		return r.http.Close()
	}
	return nil
}
