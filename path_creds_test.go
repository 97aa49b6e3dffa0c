package metakraftwerk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

func TestCredsResponse(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("team-a-ci", nil)
	resp := env.mustRead("creds/team-a-ci")

	tok, _ := resp.Data[fieldAccessToken].(string)
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatalf("access_token is not a JWT: %v", err)
	}
	// The token works against the stand-in's API.
	req, _ := http.NewRequest(http.MethodGet, env.mk.URL+"/api/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	apiResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if apiResp.StatusCode != http.StatusOK {
		t.Fatalf("token does not work upstream: HTTP %d", apiResp.StatusCode)
	}
	apiResp.Body.Close()

	exp, _ := claims.GetExpirationTime()
	want := map[string]any{
		fieldTokenType: "Bearer",
		fieldExpiresAt: exp.UTC().Format(time.RFC3339),
		fieldUserID:    "7",
		fieldEmail:     testEmail,
		fieldRole:      "team-a-ci",
		fieldTokenID:   claims["jti"],
	}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("%s = %#v, want %#v", k, resp.Data[k], v)
		}
	}
	if resp.Secret == nil || resp.Secret.Renewable {
		t.Fatalf("want a non-renewable lease, got %#v", resp.Secret)
	}
	if resp.Secret.InternalData["secret_type"] != secretAccessTokenType {
		t.Errorf("secret type = %v", resp.Secret.InternalData["secret_type"])
	}
	if _, ok := resp.Secret.InternalData[fieldAccessToken]; ok {
		t.Error("the token must not be stored in the lease's internal data")
	}
	// One debug line per issuance with the facts the engine owns; the
	// user and token ids are the upstream's text and stay out of the log.
	logs := env.logs.String()
	for _, s := range []string{"issued access token", "role=team-a-ci", "upstream_latency=", "lease_ttl="} {
		if !strings.Contains(logs, s) {
			t.Errorf("issuance log lacks %q:\n%s", s, logs)
		}
	}
	for _, s := range []string{"user_id", claims["jti"].(string)} {
		if strings.Contains(logs, s) {
			t.Errorf("issuance log holds %q:\n%s", s, logs)
		}
	}
}

func TestCredsAcceptsPOST(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp, err := env.do(logical.UpdateOperation, "creds/ci", nil)
	if err != nil || resp == nil || resp.IsError() || resp.Data[fieldAccessToken] == "" || resp.Secret == nil {
		t.Fatalf("POST creds: %q (a lease: %v)", errorText(resp, err), resp != nil && resp.Secret != nil)
	}
}

func TestCredsUnknownRole(t *testing.T) {
	env := newTestBackend(t)
	resp, err := env.do(logical.ReadOperation, "creds/nope", nil)
	if err != nil || errorText(resp, err) != `role "nope" not found` {
		t.Fatalf("got %q (err %v)", errorText(resp, err), err)
	}
	resp, err = env.do(logical.ReadOperation, "creds/a/b", nil)
	if !strings.Contains(errorText(resp, err), fieldName) || statusOf(resp, err) != 400 {
		t.Fatalf("got %q", errorText(resp, err))
	}
}

// upstreamCase is one misbehaviour of MetaKraftwerk and what the reader sees.
type upstreamCase struct {
	name    string
	faults  devserver.Faults
	status  int
	message string
}

var upstreamFailures = []upstreamCase{
	{"bad credentials", devserver.Faults{}, 400, `MetaKraftwerk rejected the login for role "ci": Invalid login`},
	{"400 from upstream", devserver.Faults{FailNext: 1, FailStatus: 400}, 400, `MetaKraftwerk rejected the login for role "ci" (HTTP 400 BadRequest): Bad Request`},
	{"403 from upstream", devserver.Faults{FailNext: 1, FailStatus: 403}, 400, `(HTTP 403 Forbidden): Forbidden`},
	{"404: base_url points at the wrong place", devserver.Faults{FailNext: 1, FailStatus: 404}, 400, `(HTTP 404 NotFound for role "ci"): Not Found; check base_url`},
	{"503 beyond retries", devserver.Faults{FailNext: 10, FailStatus: 503}, 502, "HTTP 503 Unavailable: Service Unavailable (after 3 attempts)"},
	{"500 beyond retries", devserver.Faults{FailNext: 10, FailStatus: 500}, 502, "HTTP 500 GeneralError: Internal Server Error"},
	{"501 is not retried", devserver.Faults{FailNext: 10, FailStatus: 501}, 502, "HTTP 501 NotImplemented: Not Implemented"},
	{"non-JSON body", devserver.Faults{Mode: devserver.ModeGarbage}, 502, "malformed response: the login answer is not a JSON object"},
	{"no accessToken", devserver.Faults{Mode: devserver.ModeNoToken}, 502, "the login answer has no accessToken"},
	{"accessToken not a JWT", devserver.Faults{Mode: devserver.ModeNotJWT}, 502, "is not a JWT"},
	{"expired JWT", devserver.Faults{Mode: devserver.ModeExpired}, 502, "already expired"},
	{"10 MiB body", devserver.Faults{Mode: devserver.ModeHuge}, 502, "exceeds the 1 MiB limit"},
	{"hang beyond request_timeout", devserver.Faults{Mode: devserver.ModeHang}, 502, "no answer within request_timeout"},
	{"upstream echoes the request", devserver.Faults{Mode: devserver.ModeEcho}, 400, `MetaKraftwerk rejected the login for role "ci": (message withheld)`},
	{"form-login redirect", devserver.Faults{Mode: devserver.ModeFormRedirect}, 502, "HTTP 303 and a redirect to http://127.0.0.1:"},
	{"redirect to another host", devserver.Faults{Mode: devserver.ModeRedirect, RedirectTo: "https://sso.example.com/login"}, 502, "HTTP 307 and a redirect to another host (path and query not shown)"},
}

// read sets up role "ci", makes the stand-in misbehave so, and reads its creds.
func (tt upstreamCase) read(t *testing.T) (*testEnv, *logical.Response, error) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldRequestTimeout: "1s", fieldMaxRetries: 2})
	if tt.name == "bad credentials" {
		env.mustWrite("roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
		env.secrets = append(env.secrets, "not-the-password")
	} else {
		env.createRole("ci", nil)
	}
	env.mk.SetFaults(tt.faults)
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	return env, resp, err
}

func TestCredsUpstreamFailures(t *testing.T) {
	for _, tt := range upstreamFailures {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			env, resp, err := tt.read(t)
			elapsed := time.Since(start)
			if got := statusOf(resp, err); got != tt.status {
				t.Errorf("status %d, want %d (%q)", got, tt.status, errorText(resp, err))
			}
			if msg := errorText(resp, err); !strings.Contains(msg, tt.message) || !strings.Contains(msg, `"ci"`) {
				t.Errorf("error %q lacks %q or the role name", msg, tt.message)
			}
			if resp != nil && resp.Secret != nil {
				t.Error("a failed read returned a lease")
			}
			if elapsed > 10*time.Second {
				t.Errorf("took %s", elapsed)
			}
			// The engine stays healthy: the next normal read succeeds.
			env.mk.SetFaults(devserver.Faults{})
			switch {
			case tt.name == "bad credentials": // the fix: the right password
				env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
			case tt.faults.Mode == devserver.ModeEcho: // a 401 of the stored login: wait it out
				env.clock.Advance(defaultRejectedLoginBackoff)
			}
			env.mustRead("creds/ci")
		})
	}
}

// An upstream that quotes the request back, in whatever encoding, never
// carries the password into what readers, writers and the log see: the
// creds error, the role's last_error, verify-role's error, a role write's
// error, and the plugin's trace log. Free upstream text is withheld.
func TestUpstreamEchoNeverQuotesThePassword(t *testing.T) {
	// A password as a new user picks it, and one with the characters JSON
	// encoders disagree on.
	passwords := []string{"pw@ 1/&=<>-Zq8mT4vK", "pw-\u2028-\x7f-é-<&>-Lr5nW2"}
	type variant struct {
		name   string
		faults devserver.Faults
		status int // of a creds read
	}
	var variants []variant
	for _, e := range devserver.Echoes {
		variants = append(variants, variant{"echo " + string(e), devserver.Faults{Mode: devserver.ModeEcho, Echo: e}, 400})
	}
	variants = append(variants, variant{"form-login redirect", devserver.Faults{Mode: devserver.ModeFormRedirect}, 502})
	for _, password := range passwords {
		for _, v := range variants {
			t.Run(fmt.Sprintf("%s/%d bytes", v.name, len(password)), func(t *testing.T) {
				env := newTestBackend(t)
				env.secrets = append(env.secrets, password, loginBody(testEmail, password))
				env.mk.SetFaults(v.faults)
				var texts []string
				resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: password})
				texts = append(texts, errorText(resp, err))
				env.mustWrite("roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: password, fieldVerify: false})
				resp, err = env.do(logical.ReadOperation, "creds/ci", nil)
				if statusOf(resp, err) != v.status {
					t.Errorf("creds read: %d %q", statusOf(resp, err), errorText(resp, err))
				}
				texts = append(texts, errorText(resp, err), env.mustRead("roles/ci").Data[fieldLastError].(string))
				env.b.store.evict("ci") // forget a rejection, so that verify-role logs in
				resp, err = env.do(logical.UpdateOperation, "verify-role/ci", nil)
				texts = append(texts, errorText(resp, err))
				for i, text := range texts {
					if !strings.Contains(text, mkclient.MessageWithheld) && !strings.Contains(text, "(path and query not shown)") {
						t.Errorf("answer %d does not say what it withheld: %q", i, text)
					}
				}
				// assertNoLeaks scans every answer and the log for every
				// spelling of the password and of the request body.
			})
		}
	}
}

// loginBody is the body of a login request as the client sends it.
func loginBody(email, password string) string {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password, "strategy": "local"})
	return string(b)
}

func TestCredsRetriesTransientFailures(t *testing.T) {
	for _, status := range []int{429, 500, 502, 503, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			env := newTestBackend(t)
			env.createRole("ci", nil)
			env.mk.SetFaults(devserver.Faults{FailNext: 2, FailStatus: status, RateLimitNext: 0, RetryAfter: 1})
			if status == 429 {
				env.mk.SetFaults(devserver.Faults{RateLimitNext: 2, RetryAfter: 1})
			}
			before := env.mk.Stats().LoginRequests
			start := time.Now()
			env.mustRead("creds/ci")
			if n := env.mk.Stats().LoginRequests - before; n != 3 {
				t.Errorf("%d login requests, want 3 (2 failures + success)", n)
			}
			// 429 and 503 carry Retry-After: 1, which must be honoured twice.
			if (status == 429 || status == 503) && time.Since(start) < 2*time.Second {
				t.Errorf("Retry-After not honoured: took %s", time.Since(start))
			}
		})
	}
}

func TestCredsNoRetryForRejections(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	// 401 last: it is remembered, and the login is not tried again.
	for _, status := range []int{400, 403, 401} {
		env.mk.SetFaults(devserver.Faults{FailNext: 5, FailStatus: status})
		before := env.mk.Stats().LoginRequests
		env.do(logical.ReadOperation, "creds/ci", nil)
		if n := env.mk.Stats().LoginRequests - before; n != 1 {
			t.Errorf("HTTP %d was sent %d times, want once", status, n)
		}
	}
}

func TestCredsMaxRetriesZero(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
	env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 502})
	before := env.mk.Stats().LoginRequests
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if statusOf(resp, err) != 502 || env.mk.Stats().LoginRequests-before != 1 {
		t.Fatalf("status %d after %d requests", statusOf(resp, err), env.mk.Stats().LoginRequests-before)
	}
}

func TestCredsConnectionRefused(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	url := env.mk.URL
	_ = env.mk.Close()
	env.mustWrite("config", map[string]any{fieldBaseURL: url, fieldMaxRetries: 1})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	msg := errorText(resp, err)
	host := strings.TrimPrefix(url, "http://")
	if statusOf(resp, err) != 502 || !strings.Contains(msg, "(2 attempts): the connection to "+host+" was refused") {
		t.Fatalf("status %d, %q", statusOf(resp, err), msg)
	}
}

func TestCredsRedirectRefused(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	defer other.Close()
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mk.SetFaults(devserver.Faults{Mode: devserver.ModeRedirect, RedirectTo: other.URL})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	msg := errorText(resp, err)
	if statusOf(resp, err) != 502 || !strings.Contains(msg, "redirect to another host (path and query not shown)") {
		t.Fatalf("status %d, %q", statusOf(resp, err), msg)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests; credentials were re-sent", n)
	}
}

func TestCredsTLS(t *testing.T) {
	mk, err := devserver.New(devserver.Config{Users: []devserver.User{{ID: 7, Email: testEmail, Password: testPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mk.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	caPEM := certPEM(srv.Certificate().Raw)

	env := newTestBackend(t)
	env.createRole("ci", nil)
	// httptest's certificate is for 127.0.0.1 and example.com.
	tlsURL := strings.Replace(srv.URL, "http://", "https://", 1)

	env.mustWrite("config", map[string]any{fieldBaseURL: tlsURL})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if msg := errorText(resp, err); statusOf(resp, err) != 502 || !strings.Contains(msg, "unknown authority") || !strings.Contains(msg, "1 attempt") {
		t.Fatalf("unknown CA: status %d, %q", statusOf(resp, err), msg)
	}

	env.mustWrite("config", map[string]any{fieldCACert: caPEM})
	env.mustRead("creds/ci")

	// Same CA, but a name the certificate does not carry.
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	env.mustWrite("config", map[string]any{fieldBaseURL: "https://localhost:" + port})
	resp, err = env.do(logical.ReadOperation, "creds/ci", nil)
	if msg := errorText(resp, err); statusOf(resp, err) != 502 || !strings.Contains(msg, "the TLS certificate presented is not valid for localhost:"+port+", the host in base_url") {
		t.Fatalf("name mismatch: status %d, %q", statusOf(resp, err), msg)
	}
}

func TestCredsConcurrentReads(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	before := env.mk.Stats().Logins
	const n = 40
	var wg sync.WaitGroup
	tokens := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
			if err != nil || resp == nil || resp.IsError() {
				errs[i] = err
				return
			}
			tokens[i] = resp.Data[fieldAccessToken].(string)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil || tokens[i] == "" {
			t.Fatalf("read %d failed: %v", i, errs[i])
		}
		seen[tokens[i]] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct tokens for %d reads without reuse", len(seen), n)
	}
	if got := env.mk.Stats().Logins - before; got != n {
		t.Errorf("%d logins for %d reads without reuse", got, n)
	}
}

func TestCredsRequestContextCancelled(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mk.SetFaults(devserver.Faults{Mode: devserver.ModeHang})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/ci", Storage: env.storage})
	env.record(resp, err)
	// The engine answers before the request's deadline, naming the wait.
	if msg := errorText(resp, err); statusOf(resp, err) != 504 || time.Since(start) > 200*time.Millisecond ||
		!budgetIn(msg, 170*time.Millisecond, 180*time.Millisecond) || !strings.Contains(msg, `for role "ci"`) {
		t.Fatalf("status %d after %s: %q", statusOf(resp, err), time.Since(start), msg)
	}
}

func devserverFaultsMode(m string) devserver.Faults { return devserver.Faults{Mode: devserver.Mode(m)} }

func readToken(t *testing.T, env *testEnv, role string) (string, *logical.Response) {
	t.Helper()
	resp := env.mustRead("creds/" + role)
	return resp.Data[fieldAccessToken].(string), resp
}

func TestReuseOffLogsInEveryRead(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	before := env.mk.Stats().Logins
	a, _ := readToken(t, env, "ci")
	b, _ := readToken(t, env, "ci")
	if a == b || env.mk.Stats().Logins-before != 2 {
		t.Fatalf("reuse off: same token %v, logins %d", a == b, env.mk.Stats().Logins-before)
	}
}

func TestReuseReturnsCurrentTokenWithShorterLeases(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true, fieldReuseMinRemaining: "1h"})
	before := env.mk.Stats().Logins
	a, first := readToken(t, env, "ci")
	env.clock.Advance(2 * time.Hour)
	b, second := readToken(t, env, "ci")
	if a != b {
		t.Fatal("reuse on: a second read got a different token")
	}
	if n := env.mk.Stats().Logins - before; n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	if second.Secret.TTL != first.Secret.TTL-2*time.Hour {
		t.Fatalf("later reader's lease %s, want %s", second.Secret.TTL, first.Secret.TTL-2*time.Hour)
	}
	if second.Data[fieldTokenID] != first.Data[fieldTokenID] || second.Data[fieldExpiresAt] != first.Data[fieldExpiresAt] {
		t.Fatal("reused token reports different id or expiry")
	}
	// A fresh login is logged at debug level; a reused hand-out, the hot
	// path, is not.
	if n := strings.Count(env.logs.String(), "issued access token"); n != 1 {
		t.Errorf("%d issuance log lines for one login and one reuse, want 1", n)
	}

	// With less than reuse_min_remaining left, the next read logs in anew.
	env.clock.Advance(17*time.Hour + time.Second) // 59m59s left
	env.mkClock.Advance(19 * time.Hour)
	c, third := readToken(t, env, "ci")
	if c == a || env.mk.Stats().Logins-before != 2 {
		t.Fatal("a token below reuse_min_remaining was handed out again")
	}
	if third.Secret.TTL <= second.Secret.TTL {
		t.Fatalf("fresh token lease %s not longer than the old %s", third.Secret.TTL, second.Secret.TTL)
	}
}

func TestReuseCoalescesConcurrentLogins(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("shared", map[string]any{fieldReuseTokens: true})
	env.createRole("solo", nil)
	// Slow logins make the readers pile up behind the first one.
	env.mk.SetFaults(devserver.Faults{Latency: devserver.Duration(100 * time.Millisecond)})
	before := env.mk.Stats().LoginsByUser[testEmail]

	const n = 200
	var wg sync.WaitGroup
	tokens := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(logical.ReadOperation, "creds/shared", nil)
			if err != nil || resp.IsError() {
				t.Errorf("read: %v %v", err, respErr(resp))
				return
			}
			tokens <- resp.Data[fieldAccessToken].(string)
		}()
	}
	wg.Wait()
	close(tokens)
	distinct := map[string]bool{}
	for tok := range tokens {
		distinct[tok] = true
	}
	if got := env.mk.Stats().LoginsByUser[testEmail] - before; got != 1 || len(distinct) != 1 {
		t.Fatalf("%d concurrent reads made %d logins and saw %d tokens; want 1 and 1", n, got, len(distinct))
	}
}

func TestReuseEvictions(t *testing.T) {
	type step func(env *testEnv, resp *logical.Response)
	tests := []struct {
		name  string
		evict step
	}{
		{"role update", func(env *testEnv, _ *logical.Response) {
			env.mustWrite("roles/ci", map[string]any{fieldDescription: "changed"})
		}},
		{"config change", func(env *testEnv, _ *logical.Response) {
			env.mustWrite("config", map[string]any{fieldMaxRetries: 2})
		}},
		{"invalidate role", func(env *testEnv, _ *logical.Response) {
			env.b.invalidate(context.Background(), "roles/ci")
		}},
		{"invalidate config", func(env *testEnv, _ *logical.Response) {
			env.b.invalidate(context.Background(), "config")
		}},
		{"clean", func(env *testEnv, _ *logical.Response) {
			env.b.Cleanup(context.Background())
		}},
		{"rotate-role", func(env *testEnv, _ *logical.Response) {
			env.mustWrite("rotate-role/ci", nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.createRole("ci", map[string]any{fieldReuseTokens: true})
			a, resp := readToken(t, env, "ci")
			if again, _ := readToken(t, env, "ci"); again != a {
				t.Fatal("not reused before eviction")
			}
			tt.evict(env, resp)
			if b, _ := readToken(t, env, "ci"); b == a {
				t.Fatalf("token still reused after %s", tt.name)
			}
		})
	}
	t.Run("role delete", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		a, _ := readToken(t, env, "ci")
		if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
			t.Fatal(err)
		}
		if resp, _ := env.do(logical.ReadOperation, "creds/ci", nil); resp == nil || !resp.IsError() {
			t.Fatal("creds of a deleted role still served")
		}
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		if b, _ := readToken(t, env, "ci"); b == a {
			t.Fatal("a deleted role's token was handed out for the new role")
		}
	})
	t.Run("revoking leases keeps the shared token", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		_, old := readToken(t, env, "ci")
		env.mustWrite("roles/ci", map[string]any{fieldDescription: "new"}) // evicts
		cur, curResp := readToken(t, env, "ci")
		// Vault revokes a lease whenever it ends, e.g. when the reader's
		// Vault token expires: neither an older lease nor the current
		// token's own lease may retire the shared token.
		for _, sec := range []*logical.Secret{old.Secret, curResp.Secret} {
			if _, err := env.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.RevokeOperation, Storage: env.storage, Secret: sec,
			}); err != nil {
				t.Fatal(err)
			}
		}
		before := env.mk.Stats().Logins
		if again, _ := readToken(t, env, "ci"); again != cur || env.mk.Stats().Logins != before {
			t.Fatal("revoking leases retired the shared token")
		}
	})
}

// A failed shared login is not cached and each waiter sees the error.
func TestReuseFailedLoginNotCached(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
	env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 502})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if statusOf(resp, err) != 502 {
		t.Fatalf("status %d", statusOf(resp, err))
	}
	env.mustRead("creds/ci")
}

// A waiter whose own request ends stops waiting; the shared login goes on
// and its token serves the next reader.
func TestReuseWaiterCancelled(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mk.SetFaults(devserver.Faults{Latency: devserver.Duration(300 * time.Millisecond)})
	before := env.mk.Stats().Logins
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/ci", Storage: env.storage})
	env.record(resp, err)
	if msg := errorText(resp, err); statusOf(resp, err) != 504 || !budgetIn(msg, 40*time.Millisecond, 45*time.Millisecond) ||
		!strings.Contains(msg, `for role "ci" (max_upstream_time, or the request's own deadline); the login goes on and serves the next reader`) {
		t.Fatalf("status %d: %q", statusOf(resp, err), msg)
	}
	time.Sleep(400 * time.Millisecond)
	env.mustRead("creds/ci")
	if n := env.mk.Stats().Logins - before; n != 1 {
		t.Fatalf("%d logins; the abandoned shared login should have served the next read", n)
	}
}

// The creds path keeps decoded roles in memory; every change reaches it.
func TestCredsRoleCacheFollowsChanges(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci") // cached now

	// Served from memory: a storage outage does not stop creds.
	env.storage.Underlying().FailGet(true)
	env.mustRead("creds/ci")
	env.storage.Underlying().FailGet(false)

	// A write through the API is seen at once.
	before := env.mk.Stats().LoginsByUser[otherEmail]
	env.mustWrite("roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword})
	env.mustRead("creds/ci")
	if got := env.mk.Stats().LoginsByUser[otherEmail] - before; got != 2 { // verify + creds
		t.Fatalf("%d logins as the new user, want 2", got)
	}

	// A write that reaches storage underneath (replication, another node)
	// is seen after Vault's Invalidate.
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+"ci", &roleEntry{Email: testEmail, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	env.b.invalidate(context.Background(), roleStoragePrefix+"ci")
	before = env.mk.Stats().LoginsByUser[testEmail]
	env.mustRead("creds/ci")
	if got := env.mk.Stats().LoginsByUser[testEmail] - before; got != 1 {
		t.Fatalf("after Invalidate the old login was used (%d logins as the stored user)", got)
	}

	// A deleted role is gone for creds at once.
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
		t.Fatal(err)
	}
	if resp, _ := env.do(logical.ReadOperation, "creds/ci", nil); resp == nil || !resp.IsError() {
		t.Fatal("creds served for a deleted role")
	}
}

// readAsync starts a creds read and returns its answer on a channel.
func readAsync(env *testEnv, role string) <-chan *logical.Response {
	done := make(chan *logical.Response, 1)
	go func() {
		resp, err := env.do(logical.ReadOperation, "creds/"+role, nil)
		if err != nil {
			env.t.Errorf("read: %v", err)
		}
		done <- resp
	}()
	return done
}

// writeWhileHeld starts a creds read, waits until it is held at reached,
// makes the write, releases the reader and checks that the held read (which
// began before the write) still succeeded.
func writeWhileHeld(env *testEnv, reached <-chan struct{}, release func(), path string, data map[string]any) {
	env.t.Helper()
	done := readAsync(env, "ci")
	<-reached
	env.mustWrite(path, data)
	release()
	if resp := <-done; resp == nil || resp.IsError() {
		env.t.Fatalf("the held read failed: %v", respErr(resp))
	}
}

// assertThreeReadsAs checks that three reads all carry the login of email.
func assertThreeReadsAs(t *testing.T, env *testEnv, role, email string) {
	t.Helper()
	for i := range 3 {
		resp := env.mustRead("creds/" + role)
		if got := resp.Data[fieldEmail]; got != email {
			t.Fatalf("read %d after the write carries the login of %v, want %s", i+1, got, email)
		}
	}
}

// A reader holding the old role (read from storage before a role write)
// must not leave a token of the old login behind for later readers.
func TestCredsRoleChangeWhileReaderHoldsOldRole(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true}) // not in memory: the write evicted it
	gate := env.gateStorage()
	reached, release := gate.arm(roleStoragePrefix + "ci") // the reader will hold the role of testEmail
	defer release()
	writeWhileHeld(env, reached, release, "roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword})
	assertThreeReadsAs(t, env, "ci", otherEmail)
}

// The same with the role in memory and the reader held inside the login
// itself, at MetaKraftwerk.
func TestCredsRoleChangeDuringLogin(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateLogins()
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustRead("creds/ci") // role and token in memory
	// The token falls below reuse_min_remaining: the next read logs in
	// with the role it holds in memory.
	env.clock.Advance(19*time.Hour + 30*time.Minute)
	env.mkClock.Advance(19*time.Hour + 30*time.Minute)
	if state, _ := env.b.store.get("ci"); state.role == nil || state.token == nil {
		t.Fatal("role or token not in memory; the reader would not be held where the test means")
	}
	reached, release := gate.arm(nil) // the next login, testEmail's, is held at MetaKraftwerk
	writeWhileHeld(env, reached, release, "roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword, fieldVerify: false})
	assertThreeReadsAs(t, env, "ci", otherEmail)
}

// A reader holding the old configuration (read from storage before a
// base_url change) must not leave a token of the old server behind.
func TestCredsConfigChangeWhileReaderHoldsOldConfig(t *testing.T) {
	env := newTestBackend(t)
	newMK, err := devserver.Listen("127.0.0.1:0", devserver.Config{Users: []devserver.User{
		{ID: 7, Email: testEmail, Password: testPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	defer newMK.Close()
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustWrite("config", map[string]any{fieldMaxRetries: 1}) // no client in memory
	gate := env.gateStorage()
	reached, release := gate.arm(configStorageKey) // the reader will hold the old base_url
	defer release()
	writeWhileHeld(env, reached, release, "config", map[string]any{fieldBaseURL: newMK.URL})
	for i := range 3 {
		tok, _ := readToken(t, env, "ci")
		atNew, errNew := devserver.TokenStatus(newMK.URL, tok)
		atOld, errOld := devserver.TokenStatus(env.mk.URL, tok)
		if errNew != nil || errOld != nil || atNew != http.StatusOK || atOld != http.StatusUnauthorized {
			t.Fatalf("read %d after the write carries a token of the old server (%v %v)", i+1, errNew, errOld)
		}
	}
}

// A fresh token too short to be shared is handed to its reader (if a lease
// fits) but never kept.
func TestCredsShortTokenNotShared(t *testing.T) {
	env := newTestBackend(t, withTokenLifetime(30*time.Minute)) // below the 1h reuse_min_remaining
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	before := env.mk.Stats().Logins
	a, _ := readToken(t, env, "ci")
	b, _ := readToken(t, env, "ci")
	if a == b || env.mk.Stats().Logins-before != 2 {
		t.Fatal("a token below reuse_min_remaining was shared")
	}
	if state, _ := env.b.store.get("ci"); state.token != nil {
		t.Fatal("a token below reuse_min_remaining was kept")
	}
}

// readConcurrently makes n creds reads at once and returns their answers.
func readConcurrently(env *testEnv, role string, n int) []*logical.Response {
	out := make([]*logical.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := env.do(logical.ReadOperation, "creds/"+role, nil)
			if err != nil {
				env.t.Errorf("read %d: %v", i, err)
			}
			out[i] = resp
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// A wrong password (changed in MetaKraftwerk, not in Vault) costs one
// rejected login for a burst of readers, and is remembered: later readers
// get the same 400 saying when it was tried, until the window ends or the
// role is written.
func TestRejectedLoginRemembered(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse_tokens=%v", reuse), func(t *testing.T) {
			env := newTestBackend(t)
			env.mk.SetFaults(devserver.Faults{Latency: devserver.Duration(50 * time.Millisecond)})
			env.mustWrite("roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: "changed-upstream", fieldVerify: false, fieldReuseTokens: reuse})
			env.secrets = append(env.secrets, "changed-upstream")
			before := env.mk.Stats().FailedLogins

			for i, resp := range readConcurrently(env, "ci", 50) {
				if msg := errorText(resp, nil); statusOf(resp, nil) != 400 || !strings.Contains(msg, `MetaKraftwerk rejected the login for role "ci": Invalid login`) {
					t.Fatalf("reader %d: %d %q", i, statusOf(resp, nil), msg)
				}
			}
			if n := env.mk.Stats().FailedLogins - before; n != 1 {
				t.Fatalf("50 concurrent readers made %d rejected logins, want 1", n)
			}

			// Later readers: the same 400, when it was tried, no attempt.
			env.clock.Advance(4 * time.Minute)
			resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
			msg := errorText(resp, err)
			if statusOf(resp, err) != 400 || !strings.Contains(msg, `MetaKraftwerk rejected the login for role "ci": Invalid login`) ||
				!strings.Contains(msg, "last tried at "+env.clock.Now().Add(-4*time.Minute).Format(time.RFC3339)) {
				t.Fatalf("remembered: %d %q", statusOf(resp, err), msg)
			}
			if n := env.mk.Stats().FailedLogins - before; n != 1 {
				t.Fatalf("a remembered rejection was tried again (%d)", n)
			}

			// After rejected_login_backoff (5m) one reader tries again.
			env.clock.Advance(time.Minute + time.Second)
			readConcurrently(env, "ci", 20)
			if n := env.mk.Stats().FailedLogins - before; n != 2 {
				t.Fatalf("after the window: %d rejected logins, want 2", n)
			}

			// A role write clears it at once.
			env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
			env.mustRead("creds/ci")
		})
	}
}

// A role whose password worked an hour ago is probed again by one reader
// first: a burst after a quiet spell makes one attempt, not one each.
func TestRejectedLoginAfterQuietSpell(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	env.clock.Advance(time.Hour)
	env.mkClock.Advance(time.Hour)
	env.mk.SetFaults(devserver.Faults{FailNext: 1000, FailStatus: 401, Latency: devserver.Duration(50 * time.Millisecond)})
	before := env.mk.Stats().LoginRequests
	for _, resp := range readConcurrently(env, "ci", 50) {
		if statusOf(resp, nil) != 400 {
			t.Fatalf("status %d %q", statusOf(resp, nil), errorText(resp, nil))
		}
	}
	if n := env.mk.Stats().LoginRequests - before; n != 1 {
		t.Fatalf("%d login attempts, want 1", n)
	}
	// Once a login succeeds again, concurrent readers log in at once, each
	// for a token of its own.
	env.mk.SetFaults(devserver.Faults{})
	env.mustWrite("verify-role/ci", map[string]any{fieldRetryNow: true})
	env.mustRead("creds/ci")
	before = env.mk.Stats().Logins
	seen := map[any]bool{}
	for _, resp := range readConcurrently(env, "ci", 20) {
		seen[resp.Data[fieldAccessToken]] = true
	}
	if n := env.mk.Stats().Logins - before; n != 20 || len(seen) != 20 {
		t.Fatalf("%d logins, %d tokens for 20 readers", n, len(seen))
	}
}

// Only 401 is remembered: transport errors and 5xx are tried again by the
// next reader. rejected_login_backoff=0 turns the memory off.
func TestRejectedLoginOnlyRejections(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
	env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 503})
	if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 502 {
		t.Fatalf("503: status %d", statusOf(resp, err))
	}
	env.mustRead("creds/ci")

	env.mustWrite("config", map[string]any{fieldRejectedLoginBackoff: 0})
	env.mk.SetFaults(devserver.Faults{FailNext: 2, FailStatus: 401})
	before := env.mk.Stats().LoginRequests
	for range 2 {
		if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
			t.Fatalf("401: status %d", statusOf(resp, err))
		}
	}
	env.mustRead("creds/ci")
	if n := env.mk.Stats().LoginRequests - before; n != 3 {
		t.Fatalf("with the memory off, 3 reads made %d attempts", n)
	}
}

// rejectLogin answers a login as MetaKraftwerk does for a wrong password.
func rejectLogin(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"name":"NotAuthenticated","message":"Invalid login","code":401,"className":"not-authenticated"}`)
}

// Outcomes count in the order logins started, whatever order MetaKraftwerk
// answers them in. Two readers log in on their own (the role logged in a
// moment ago); the first is held at MetaKraftwerk while the second's login
// is answered.
func TestLoginOutcomesInStartOrder(t *testing.T) {
	t.Run("an older rejection answered after a newer success is not remembered", func(t *testing.T) {
		env := newTestBackend(t)
		gate := env.gateLogins()
		env.createRole("ci", nil)
		env.mustRead("creds/ci")
		reached, release := gate.arm(rejectLogin)
		first, firstResult := env.doAsync(logical.ReadOperation, "creds/ci", nil)
		<-reached
		env.mustRead("creds/ci") // started later, succeeded
		release()
		<-first
		if resp, err := firstResult(); statusOf(resp, err) != 400 {
			t.Fatalf("the held reader: status %d %q", statusOf(resp, err), errorText(resp, err))
		}
		env.mustRead("creds/ci") // MetaKraftwerk's latest answer was a success
	})
	t.Run("an older success answered after a newer rejection does not end it", func(t *testing.T) {
		env := newTestBackend(t)
		gate := env.gateLogins()
		env.createRole("ci", nil)
		env.mustRead("creds/ci")
		reached, release := gate.arm(nil) // held, then answered by the stand-in: a success
		first, firstResult := env.doAsync(logical.ReadOperation, "creds/ci", nil)
		<-reached
		env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 401}) // the later login is rejected
		if resp, err := env.do(logical.ReadOperation, "creds/ci", nil); statusOf(resp, err) != 400 {
			t.Fatalf("the later reader: status %d", statusOf(resp, err))
		}
		release()
		<-first
		if resp, err := firstResult(); err != nil || resp.IsError() {
			t.Fatalf("the held reader: %q", errorText(resp, err))
		}
		before := env.mk.Stats().LoginRequests
		resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
		if statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), "last tried at") || env.mk.Stats().LoginRequests != before {
			t.Fatalf("the newer rejection was forgotten: status %d %q", statusOf(resp, err), errorText(resp, err))
		}
	})
}

// Logins reuse their connection to MetaKraftwerk: twenty reads one after
// another open one connection (over https: one TLS handshake), and 32
// concurrent readers, four times over, no more than the pool can need.
func TestLoginsReuseConnections(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []envOption
	}{{"http", nil}, {"https", []envOption{withTLS(t)}}} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t, tt.opts...)
			env.createRole("ci", nil)
			before := env.mk.Stats()
			for range 20 {
				env.mustRead("creds/ci")
			}
			after := env.mk.Stats()
			if n := after.Connections - before.Connections; n != 0 {
				t.Errorf("20 sequential fresh reads opened %d connections after the role write's", n)
			}
			if after.Logins-before.Logins != 20 {
				t.Fatalf("%d logins", after.Logins-before.Logins)
			}
			if tt.name == "https" && (after.TLSHandshakes != 1 || after.Connections != 1) {
				t.Errorf("%d connections and %d TLS handshakes for 21 logins", after.Connections, after.TLSHandshakes)
			}
			for range 4 {
				readConcurrently(env, "ci", 32)
			}
			// A reader that finds no idle connection dials one, and keeps
			// the dial going even if an idle connection frees up first (as
			// net/http does): a round can add up to 32 connections while
			// fewer than 32 are kept, none once 32 are. So 64 at most,
			// where a client that does not keep connections opens one
			// per login (129 here).
			if n := env.mk.Stats().Connections; n > 64 {
				t.Errorf("4 rounds of 32 concurrent reads opened %d connections in all", n)
			}
			t.Logf("%s: %d connections, %d TLS handshakes for %d logins", tt.name, env.mk.Stats().Connections, env.mk.Stats().TLSHandshakes, env.mk.Stats().Logins)
		})
	}
}
