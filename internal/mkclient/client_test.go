package mkclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http/httpproxy"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"2", 2 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBackoffHonoursAndCapsRetryAfter(t *testing.T) {
	resp := &http.Response{Header: http.Header{"Retry-After": {"3"}}}
	if got := backoff(time.Millisecond, time.Second, 0, resp); got != 3*time.Second {
		t.Errorf("Retry-After 3 gave %s", got)
	}
	resp.Header.Set("Retry-After", "86400")
	if got := backoff(time.Millisecond, time.Second, 0, resp); got != MaxRetryAfter {
		t.Errorf("Retry-After 1 day gave %s, want the %s cap", got, MaxRetryAfter)
	}
	resp.Header.Del("Retry-After")
	if a, b := backoff(100*time.Millisecond, time.Second, 0, resp), backoff(100*time.Millisecond, time.Second, 2, resp); a != 100*time.Millisecond || b != 400*time.Millisecond {
		t.Errorf("exponential backoff gave %s then %s", a, b)
	}
	if got := backoff(100*time.Millisecond, time.Second, 10, nil); got != time.Second {
		t.Errorf("backoff not capped: %s", got)
	}
}

func TestDecodeError(t *testing.T) {
	const secret = `s3<cr>"t`
	tests := []struct {
		body          string
		status        int
		name, message string
	}{
		{`{"name":"NotAuthenticated","message":"Invalid login","code":401,"className":"not-authenticated"}`, 401, "NotAuthenticated", "Invalid login"},
		{`{"message":"'email' is required"}`, 400, "", "'email' is required"},
		{`{"className":"bad-request","message":"'email' is required"}`, 400, "BadRequest", "'email' is required"},
		{`{"name":"Unavailable","message":"Service Unavailable"}`, 503, "Unavailable", "Service Unavailable"},
		// Free text is withheld, whatever it says.
		{`{"name":"NotAuthenticated","message":"Invalid login: {\"password\":\"s3<cr>\\\"t\"}"}`, 401, "NotAuthenticated", MessageWithheld},
		{`{"message":"Invalid login for ci@example.com"}`, 401, "", MessageWithheld},
		{`{"message":"line1\nline2"}`, 400, "", MessageWithheld},
		{`{"message":42}`, 400, "", MessageWithheld},
		{`{"message":[` + strings.Repeat(`1,`, 1000) + `1]}`, 400, "", MessageWithheld},
		{`{"message":"` + strings.Repeat("é", 3000) + `"}`, 400, "", MessageWithheld},
		// Unknown names are not quoted either.
		{`{"name":"s3<cr>\"t","message":"Invalid login"}`, 401, "", "Invalid login"},
		{`{"name":"LoginRedirect","className":"x","message":"Invalid login"}`, 401, "", "Invalid login"},
		// Without a message, the status text.
		{`{"name":"GeneralError"}`, 500, "GeneralError", "Internal Server Error"},
		{`{"message":null}`, 400, "", "Bad Request"},
		{`<html>nope</html>`, 502, "", "Bad Gateway"},
		{``, 599, "", "HTTP 599"},
	}
	for _, tt := range tests {
		name, msg := decodeError([]byte(tt.body), tt.status, secret)
		if name != tt.name || msg != tt.message {
			t.Errorf("decodeError(%.60q) = %q, %q; want %q, %q", tt.body, name, msg, tt.name, tt.message)
		}
	}
	// A password that is itself a known message is still cut out.
	if _, msg := decodeError([]byte(`{"message":"Invalid login"}`), 401, "Invalid login"); msg != redacted {
		t.Errorf("the secret as a known message: %q", msg)
	}
}

// A redirect names the configured host only, whatever the Location says:
// a host the upstream chose is upstream text, and a hostile one spells
// the password there (as sent, lower-cased, hex).
func TestRedirectTarget(t *testing.T) {
	from, _ := url.Parse("https://mk.example.com/authentication")
	for loc, want := range map[string]RedirectTarget{
		"https://sso.example.com/login?email=ci%40example.com&password=p%40ss": RedirectElsewhere,
		"/login?email=ci%40example.com&password=p%40ss":                        "https://mk.example.com",
		"https://MK.Example.COM:443/x":                                         "https://mk.example.com",
		"http://mk.example.com/x":                                              "http://mk.example.com",
		"https://mk.example.com:8443/x":                                        RedirectElsewhere,
		"https://ci:p%40ss@sso.example.com:8443/x":                             RedirectElsewhere,
		"https://pa55word.mk.example.com/":                                     RedirectElsewhere,
		"https://7061353577307264.example/":                                    RedirectElsewhere,
		"ftp://mk.example.com/":                                                RedirectUnusable,
		"":                                                                     RedirectUnusable,
		"http://[::1":                                                          RedirectUnusable,
	} {
		if got := redirectTarget(loc, from, "mk.example.com"); got != want {
			t.Errorf("redirectTarget(%q) = %q, want %q", loc, got, want)
		}
	}
	if got := redirectTarget("https://[::1]:8200/x", nil, "[::1]:8200"); got != "https://[::1]:8200" {
		t.Errorf("IPv6 host: %q", got)
	}
}

// testJWT signs claims the way MetaKraftwerk does (HS256, typ access).
func testJWT(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["typ"] = "access"
	s, err := tok.SignedString([]byte("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testJWTHeader builds a token from a raw header and claims.
func testJWTHeader(t *testing.T, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + ".c2ln"
}

func TestDecodeLoginResponse(t *testing.T) {
	exp := time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)
	tok := testJWT(t, jwt.MapClaims{"exp": exp.Unix(), "jti": "id-1", "sub": "12"})
	res, err := decodeLoginResponse([]byte(`{"accessToken":"` + tok + `","authentication":{"strategy":"local","payload":{"x":1}},"user":{"id":12,"email":"ci@example.com","extra":true}}`))
	if err != nil || res.AccessToken != tok || res.UserID != "12" {
		t.Fatalf("got %+v, %v", res, err)
	}
	if want := (Claims{ExpiresAt: exp, HasExp: true, ID: "id-1", Subject: "12"}); res.Claims != want {
		t.Fatalf("claims %+v, want %+v", res.Claims, want)
	}
	res, err = decodeLoginResponse([]byte(`{"accessToken":"` + tok + `","user":{"id":"u-12"}}`))
	if err != nil || res.UserID != "u-12" {
		t.Fatalf("string id: %+v, %v", res, err)
	}
	// Without a user in the answer, the user id comes from sub.
	res, err = decodeLoginResponse([]byte(`{"accessToken":"` + tok + `"}`))
	if err != nil || res.UserID != "12" {
		t.Fatalf("no user: %+v, %v", res, err)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{}`, `{"accessToken":""}`, `{"accessToken":7}`, `{"authentication":{"accessToken":"a.b.c"}}`,
		`{"accessToken":[` + strings.Repeat(`"x",`, 1000) + `"x"]}`} {
		if _, err := decodeLoginResponse([]byte(bad)); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%q: err = %v, want ErrMalformedResponse", bad, err)
		}
	}
}

func TestParseClaims(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes: a byte cut would split a rune
	tests := []struct {
		name  string
		token string
		want  Claims
		err   string
	}{
		{"no exp", testJWT(t, jwt.MapClaims{"jti": "j"}), Claims{ID: "j"}, ""},
		// Ids are kept whole: Login projects them (ProjectID), never cuts.
		{"claims kept whole", testJWT(t, jwt.MapClaims{"jti": long, "sub": "a\u0000b"}),
			Claims{ID: long, Subject: "a\x00b"}, ""},
		{"signature with a terminal escape", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln\x1b]52;c;eA==\x07", Claims{}, "malformed"},
		{"signature with a newline", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln\n::warning::x", Claims{}, "malformed"},
		{"signature with a bidi override", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln\u202e", Claims{}, "malformed"},
		{"empty signature", "eyJhbGciOiJIUzI1NiJ9.e30.", Claims{}, "malformed"},
		{"padded segment", "eyJhbGciOiJIUzI1NiJ9.e30=.c2ln", Claims{}, "malformed"},
		{"signature not base64url", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnx", Claims{}, "malformed"},
		{"signature in the standard alphabet", "eyJhbGciOiJIUzI1NiJ9.e30.c2+/", Claims{}, "malformed"},
		{"header not an object", "WzFd.e30.c2ln", Claims{}, "malformed"},
		{"exp not a number", testJWT(t, jwt.MapClaims{"exp": "soon"}), Claims{}, "exp claim is not a number"},
		{"exp beyond 9999", testJWT(t, jwt.MapClaims{"exp": 1e300}), Claims{}, "outside the years 1970 to 9999"},
		{"negative exp", testJWT(t, jwt.MapClaims{"exp": -5}), Claims{}, "outside the years 1970 to 9999"},
		{"not three segments", "opaque-token", Claims{}, "malformed"},
		{"claims not an object", "eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln", Claims{}, "malformed"},
		{"no alg", testJWTHeader(t, `{"typ":"access"}`, `{"exp":1800000000}`), Claims{}, "unsupported header"},
		{"longer than 16 KiB", testJWT(t, jwt.MapClaims{"pad": strings.Repeat("x", 16<<10)}), Claims{}, "longer than 16 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClaims(tt.token)
			if tt.err != "" {
				if !errors.Is(err, ErrNotAJWT) || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), tt.token) {
					t.Fatalf("err = %v, want ErrNotAJWT with %q and without the token", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestDecodeProjects(t *testing.T) {
	page, err := decodeProjects([]byte(`[{"id":402,"name":"DEMO_PROJECT","deleted":false,"disabled":true},{"id":1},{"name":"B"}]`), nil)
	ps := page.projects
	if err != nil || page.paged || page.entries != 3 || len(ps) != 2 || ps[0].ID != "402" || !ps[0].Disabled || ps[1].Name != "B" {
		t.Fatalf("got %+v, %v", page, err)
	}
	page, err = decodeProjects([]byte(`{"total":12,"limit":10,"skip":10,"data":[{"id":1,"name":"P"},{"id":2}]}`), nil)
	if err != nil || !page.paged || page.total != 12 || page.skip != 10 || page.entries != 2 || len(page.projects) != 1 {
		t.Fatalf("paged: %+v, %v", page, err)
	}
	// A page without a total cannot be followed: it is the whole list.
	page, err = decodeProjects([]byte(`{"data":[{"id":1,"name":"P"}]}`), nil)
	if err != nil || page.paged || len(page.projects) != 1 {
		t.Fatalf("data without total: %+v, %v", page, err)
	}
	// Only what keep accepts is kept; every entry counts for $skip.
	page, err = decodeProjects([]byte(`[{"name":"A"},{"name":"B","deleted":true},{"name":"C"}]`), func(n string) bool { return n != "A" })
	if err != nil || page.entries != 3 || len(page.projects) != 2 || !page.projects[0].Deleted || page.projects[1].Name != "C" {
		t.Fatalf("keep: %+v, %v", page, err)
	}
	// Fields of another type are skipped: a flag is set only by true.
	page, err = decodeProjects([]byte(`[{"name":"A","deleted":"yes","disabled":[true]},{"name":7},{"name":{"x":1}}]`), nil)
	if err != nil || page.entries != 3 || len(page.projects) != 1 || page.projects[0].Deleted || page.projects[0].Disabled {
		t.Fatalf("odd types: %+v, %v", page, err)
	}
	for _, bad := range []string{`{"x":1}`, `{"total":1,"data":{}}`, `7`, `[{"name":"A"}`, `[1,2]`, `{"data":[}`} {
		if _, err := decodeProjects([]byte(bad), nil); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestValidateBaseURL(t *testing.T) {
	good := map[string]string{
		"https://app.metakraftwerk.com":      "https://app.metakraftwerk.com",
		"https://app.metakraftwerk.com/":     "https://app.metakraftwerk.com",
		" https://mk.example.com:8443/mk/  ": "https://mk.example.com:8443/mk",
		"http://localhost:8787":              "http://localhost:8787",
		"http://127.0.0.2":                   "http://127.0.0.2",
		"http://[::1]:80/":                   "http://[::1]:80",
		"https://App.MetaKraftwerk.COM/Base": "https://app.metakraftwerk.com/Base",
		// Loopback spellings that Go's proxy logic would not recognise.
		"http://LOCALHOST:8787":      "http://localhost:8787",
		"http://localhost.:8787/mk/": "http://localhost:8787/mk",
		"http://LocalHost.":          "http://localhost",
		"http://127.0.0.1.:8787":     "http://127.0.0.1:8787",
		"http://[0:0:0:0:0:0:0:1]":   "http://[0:0:0:0:0:0:0:1]",
	}
	for in, want := range good {
		if got, err := ValidateBaseURL(in); err != nil || got != want {
			t.Errorf("ValidateBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "   ", "mk.example.com", "/relative", "ftp://x.example.com", "http://example.com",
		"http://192.168.1.1", "http://[::2]", "https://user:pw@x.example.com", "https://x.example.com?q=1",
		"https://x.example.com/?", "https://x.example.com#f", "https://x.example.com:0", "https://x.example.com:abc",
		"http://localhost.example.com", "http://localhost..", "http://127.1", "http://0x7f.0.0.1", "https://%zz",
		// Stray brackets: only a whole IPv6 literal may be bracketed.
		"http://::1]:1", "http://127.0.0.1]:8080", "http://[127.0.0.1]:1", "http://[::1]]:1", "http://[[::1]:1",
		"https://[x.example.com]", "http://[::1]x:1", "http://[::1"} {
		if got, err := ValidateBaseURL(bad); err == nil {
			t.Errorf("ValidateBaseURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestReadBody(t *testing.T) {
	c, _ := New(Config{BaseURL: "http://127.0.0.1:1"})
	for _, size := range []int{0, 100, smallBodyBytes, smallBodyBytes + 1, MaxBodyBytes} {
		got, release, err := c.readBody(context.Background(), strings.NewReader(strings.Repeat("x", size)))
		if err != nil || len(got) != size {
			t.Fatalf("%d bytes: read %d, %v", size, len(got), err)
		}
		release()
	}
	if _, _, err := c.readBody(context.Background(), strings.NewReader(strings.Repeat("x", MaxBodyBytes+1))); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("1 MiB + 1: %v", err)
	}
	if len(c.large) != 0 {
		t.Fatalf("%d large-body slots still held", len(c.large))
	}
}

// At most largeBodies bodies over smallBodyBytes are held at once: the
// next reader waits for a slot (and gives up with its request) instead of
// reading its body too.
func TestLargeBodiesAreBounded(t *testing.T) {
	c, _ := New(Config{BaseURL: "http://127.0.0.1:1"})
	var releases []func()
	for range largeBodies {
		_, release, err := c.readBody(context.Background(), strings.NewReader(strings.Repeat("x", smallBodyBytes+1)))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	// A small body never waits.
	if _, _, err := c.readBody(context.Background(), strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &countingReader{r: strings.NewReader(strings.Repeat("x", MaxBodyBytes))}
	done := make(chan error)
	go func() { _, _, err := c.readBody(ctx, r); done <- err }()
	waitFor(t, func() bool { return r.n.Load() > smallBodyBytes })
	select {
	case err := <-done:
		t.Fatalf("a fifth large body was read while four were held: %v", err)
	default:
	}
	if n := r.n.Load(); n > smallBodyBytes+1+32<<10 {
		t.Fatalf("read %d bytes without a slot", n)
	}
	releases[0]()
	if err := <-done; err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	// A reader waiting for a slot gives up with its request.
	r = &countingReader{r: strings.NewReader(strings.Repeat("x", MaxBodyBytes))}
	go func() { _, _, err := c.readBody(ctx, r); done <- err }()
	waitFor(t, func() bool { return r.n.Load() > smallBodyBytes })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v", err)
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached")
}

func TestLoginSendsDocumentedRequest(t *testing.T) {
	var got struct {
		method, path, contentType, body string
	}
	tok := testJWT(t, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		got.method, got.path, got.contentType, got.body = r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b[:n])
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"accessToken":"` + tok + `","user":{"id":1,"email":"a@b.c"}}`))
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Login(context.Background(), "a@b.c", `p"w`)
	if err != nil || res.AccessToken != tok || res.Attempts != 1 {
		t.Fatalf("login: %+v %v", res, err)
	}
	if got.method != "POST" || got.path != "/authentication" || got.contentType != "application/json" ||
		got.body != `{"email":"a@b.c","password":"p\"w","strategy":"local"}` {
		t.Fatalf("request = %+v", got)
	}
}

func TestProjectsSendsBearer(t *testing.T) {
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`[{"id":1,"name":"P"}]`))
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	ps, err := c.Projects(context.Background(), "tok", []string{"P"})
	if err != nil || len(ps) != 1 || auth.Load() != "Bearer tok" {
		t.Fatalf("projects %+v %v auth %v", ps, err, auth.Load())
	}
}

func TestDeadlineWhileWaitingToRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL, MaxRetries: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Login(ctx, "a@b.c", "pw")
	var te *TransportError
	if !errors.As(err, &te) || !te.Deadline || te.LastStatus != 429 || te.Attempts != 1 {
		t.Fatalf("err = %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "last answer HTTP 429") || !strings.Contains(msg, "deadline") {
		t.Fatalf("message %q", msg)
	}
}

func TestParseCAPoolRejectsGarbage(t *testing.T) {
	if _, err := ParseCAPool(""); err == nil {
		t.Error("empty bundle accepted")
	}
	if _, err := ParseCAPool("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\ntrailing"); err == nil {
		t.Error("garbage accepted")
	}
}

// Every loopback spelling ValidateBaseURL accepts for plain http comes out
// in a form that Go's proxy logic sends directly, never through HTTP_PROXY.
func TestLoopbackSpellingsBypassTheProxy(t *testing.T) {
	for _, raw := range []string{"http://LOCALHOST:8787", "http://localhost.:8787", "http://LocalHost.",
		"http://127.0.0.1.:8787", "http://127.9.9.9:1/x", "http://[::1]:9000", "http://[0:0:0:0:0:0:0:1]"} {
		norm, err := ValidateBaseURL(raw)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		for _, u := range []string{raw, norm} {
			parsed, _ := url.Parse(u + "/authentication")
			p, err := testProxy(parsed)
			if u == norm && (err != nil || p != nil) {
				t.Errorf("%q (from %q) goes through the proxy %v (%v)", u, raw, p, err)
			}
		}
	}
	// The check above is meaningful: Go does proxy these spellings as written.
	parsed, _ := url.Parse("http://LOCALHOST:8787/authentication")
	if p, _ := testProxy(parsed); p == nil {
		t.Fatal("Go no longer proxies http://LOCALHOST; the normalisation may be unnecessary")
	}
}

// With HTTP_PROXY in the environment, a client built for a normalised
// loopback URL talks to the server directly; the proxy sees nothing.
func TestLoginToLoopbackNeverUsesTheProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"accessToken":%q}`, testJWT(t, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}))
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	base, err := ValidateBaseURL("http://LOCALHOST.:" + port)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := New(Config{BaseURL: base, MaxRetries: 0})
	// What http.ProxyFromEnvironment does with HTTP_PROXY set (it reads
	// the environment only once per process, so a test cannot set it).
	proxyFunc := (&httpproxy.Config{HTTPProxy: proxy.URL}).ProxyFunc()
	c.wire.t.Proxy = func(r *http.Request) (*url.URL, error) { return proxyFunc(r.URL) }
	if _, err := c.Login(context.Background(), "a@b.c", "pw"); err != nil {
		t.Fatalf("login: %v", err)
	}
	if n := proxied.Load(); n != 0 {
		t.Fatalf("the proxy received %d requests", n)
	}
	// The same client pointed at the spelling as typed would have used it.
	c.baseURL = "http://LOCALHOST:" + port
	_, _ = c.Login(context.Background(), "a@b.c", "pw")
	if proxied.Load() == 0 {
		t.Fatal("the proxy stand-in is not consulted; the test proves nothing")
	}
}

// An https base_url pointing at a plain-HTTP server is a configuration
// error: one attempt, and the hint says so.
func TestHTTPSToPlainHTTPServer(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c, _ := New(Config{BaseURL: strings.Replace(srv.URL, "http://", "https://", 1), MaxRetries: 3})
	start := time.Now()
	_, err := c.Login(context.Background(), "a@b.c", "pw")
	var te *TransportError
	if !errors.As(err, &te) || te.Attempts != 1 {
		t.Fatalf("err = %v, want one attempt", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "did not answer with TLS") || !strings.Contains(msg, "plain http") {
		t.Fatalf("message %q lacks the hint", msg)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s: retried", time.Since(start))
	}
}

// A redirect's target is reported as scheme and host only, however long
// or revealing its path and query; a header beyond the header limit ends
// the request without reading it all.
func TestRedirectLocationBounded(t *testing.T) {
	for _, size := range []int{60 << 10, 2 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "https://elsewhere.example.com/login?password=pw&pad="+strings.Repeat("a", size))
				w.WriteHeader(http.StatusTemporaryRedirect)
			}))
			defer srv.Close()
			c, _ := New(Config{BaseURL: srv.URL, MaxRetries: 0})
			_, err := c.Login(context.Background(), "a@b.c", "pw")
			if err == nil || len(err.Error()) > 1000 {
				t.Fatalf("error of %d bytes", len(fmt.Sprint(err)))
			}
			if size < maxHeaderBytes && (!errors.Is(err, ErrRedirect) || !strings.Contains(err.Error(), "a redirect to another host (path and query not shown)")) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "aaa") || strings.Contains(err.Error(), "password=") {
				t.Fatalf("err quotes the path or query: %v", err)
			}
		})
	}
}

// feathersProjects serves n projects the way a paginated Feathers service
// does: a page of `def` by default, $limit capped at `maxLimit`.
func feathersProjects(t *testing.T, n, def, maxLimit int, requests *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		limit, skip := def, 0
		if v := q.Get("$limit"); v != "" {
			limit, _ = strconv.Atoi(v)
		}
		if v := q.Get("$skip"); v != "" {
			skip, _ = strconv.Atoi(v)
		}
		limit = min(limit, maxLimit)
		var data []string
		for i := skip; i < min(skip+limit, n); i++ {
			data = append(data, fmt.Sprintf(`{"id":%d,"name":"P%d"}`, i, i))
		}
		_, _ = fmt.Fprintf(w, `{"total":%d,"limit":%d,"skip":%d,"data":[%s]}`, n, limit, skip, strings.Join(data, ","))
	}))
}

func TestProjectsFollowsPages(t *testing.T) {
	tests := []struct {
		n, def, maxLimit int
		requests         int64
	}{
		{5, 10, 50, 1},     // fits the first page
		{10, 10, 50, 1},    // exactly one page
		{11, 10, 50, 2},    // P10 is on page 2
		{123, 10, 50, 4},   // 10 + 50 + 50 + 13
		{250, 10, 1000, 4}, // 10 + 100 + 100 + 40: we ask for 100
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d projects, page %d, max %d", tt.n, tt.def, tt.maxLimit), func(t *testing.T) {
			var requests atomic.Int64
			srv := feathersProjects(t, tt.n, tt.def, tt.maxLimit, &requests)
			defer srv.Close()
			c, _ := New(Config{BaseURL: srv.URL})
			var names []string
			for i := range tt.n {
				names = append(names, fmt.Sprintf("P%d", i))
			}
			ps, err := c.Projects(context.Background(), "tok", names)
			if err != nil || len(ps) != tt.n {
				t.Fatalf("%d projects, %v", len(ps), err)
			}
			for i, p := range ps {
				if p.Name != fmt.Sprintf("P%d", i) {
					t.Fatalf("project %d is %q", i, p.Name)
				}
			}
			if got := requests.Load(); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
		})
	}
}

func TestProjectsPaginationBounds(t *testing.T) {
	var requests atomic.Int64
	srv := feathersProjects(t, MaxProjects+1, 10, 50, &requests)
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	if _, err := c.Projects(context.Background(), "tok", nil); !errors.Is(err, ErrTooManyProjects) || requests.Load() != 1 {
		t.Fatalf("over the bound: %v after %d requests", err, requests.Load())
	}

	// A server that ignores $skip would serve page 1 forever.
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"total":30,"limit":10,"skip":0,"data":[{"id":1,"name":"A"},{"id":2,"name":"B"}]}`))
	}))
	defer stuck.Close()
	c, _ = New(Config{BaseURL: stuck.URL})
	if _, err := c.Projects(context.Background(), "tok", nil); !errors.Is(err, ErrMalformedResponse) || !strings.Contains(err.Error(), "from 2 on") {
		t.Fatalf("stuck pagination: %v", err)
	}
}

// Only the named projects are kept, so a listing's memory does not grow
// with what the server sends.
func TestProjectsKeepsOnlyNamed(t *testing.T) {
	var requests atomic.Int64
	srv := feathersProjects(t, 25, 10, 10, &requests)
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	ps, err := c.Projects(context.Background(), "tok", []string{"P3", "P24", "NOPE"})
	if err != nil || len(ps) != 2 || ps[0].Name != "P3" || ps[1].Name != "P24" || requests.Load() != 3 {
		t.Fatalf("%+v %v after %d requests", ps, err, requests.Load())
	}
}

// A server that answers every page with one project named by ~1 MiB makes
// the listing stop at MaxListingBytes instead of reading 1,000 pages.
func TestProjectsListingBytesBound(t *testing.T) {
	var requests atomic.Int64
	srv := hugeNamePages(&requests)
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	_, err := c.Projects(context.Background(), "tok", []string{"DEMO_PROJECT"})
	if !errors.Is(err, ErrTooManyProjects) || !strings.Contains(err.Error(), "larger than the 8 MiB") {
		t.Fatalf("got %v", err)
	}
	if n := requests.Load(); n > MaxListingBytes/(MaxBodyBytes-1024)+1 {
		t.Fatalf("%d pages read", n)
	}
}

// hugeNamePages serves a paginated project list of 1,000 projects, one per
// page, each named by almost 1 MiB: the malicious server of a listing bound.
func hugeNamePages(requests *atomic.Int64) *httptest.Server {
	name := strings.Repeat("n", MaxBodyBytes-1024)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		skip, _ := strconv.Atoi(r.URL.Query().Get("$skip"))
		_, _ = fmt.Fprintf(w, `{"total":1000,"limit":1,"skip":%d,"data":[{"id":%d,"name":%q}]}`, skip, skip, name)
	}))
}

// A token whose header or claims hold the password would hand it to every
// reader of the role: it is refused as not a JWT, in any letter case and
// as JSON escapes it, and a token that does not hold it is handed out.
func TestLoginRefusesATokenCarryingThePassword(t *testing.T) {
	const pw = `Hunter2"Secret`
	exp := time.Now().Add(time.Hour).Unix()
	for name, c := range map[string]struct {
		token  string
		refuse bool
	}{
		"a claim":       {testJWT(t, jwt.MapClaims{"exp": exp, "pw": pw}), true},
		"upper-cased":   {testJWT(t, jwt.MapClaims{"exp": exp, "x": strings.ToUpper(pw)}), true},
		"in the header": {testJWTHeader(t, `{"alg":"HS256","typ":"JWT","kid":"Hunter2\"Secret"}`, fmt.Sprintf(`{"exp":%d}`, exp)), true},
		"no password":   {testJWT(t, jwt.MapClaims{"exp": exp, "sub": "1"}), false},
		"a part of it":  {testJWT(t, jwt.MapClaims{"exp": exp, "x": "Hunter2"}), false},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(`{"accessToken":"` + c.token + `","user":{"id":1}}`))
			}))
			defer srv.Close()
			cl, err := New(Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Login(context.Background(), "a@b.c", pw)
			if c.refuse != errors.Is(err, ErrNotAJWT) {
				t.Fatalf("refused = %v, want %v (%v)", err != nil, c.refuse, err)
			}
			if c.refuse && !strings.Contains(err.Error(), "it carries the login's password in its header or claims") {
				t.Fatalf("error = %v", err)
			}
		})
	}
}
