package metakraftwerk

import (
	"context"
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
	// One debug line per issuance with the non-secret facts.
	logs := env.logs.String()
	for _, s := range []string{"issued access token", "role=team-a-ci", "user_id=7", "token_id=" + claims["jti"].(string), "upstream_latency="} {
		if !strings.Contains(logs, s) {
			t.Errorf("issuance log lacks %q:\n%s", s, logs)
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

func TestCredsUpstreamFailures(t *testing.T) {
	tests := []upstreamCase{
		{"bad credentials", devserver.Faults{}, 400, `MetaKraftwerk rejected the login for role "ci": Invalid login`},
		{"400 from upstream", devserver.Faults{FailNext: 1, FailStatus: 400}, 400, `MetaKraftwerk rejected the login for role "ci" (HTTP 400): Bad Request`},
		{"403 from upstream", devserver.Faults{FailNext: 1, FailStatus: 403}, 400, `(HTTP 403)`},
		{"404: base_url points at the wrong place", devserver.Faults{FailNext: 1, FailStatus: 404}, 400, `(HTTP 404 for role "ci"): Not Found; check base_url`},
		{"503 beyond retries", devserver.Faults{FailNext: 10, FailStatus: 503}, 502, "HTTP 503: Service Unavailable (after 3 attempts)"},
		{"500 beyond retries", devserver.Faults{FailNext: 10, FailStatus: 500}, 502, "HTTP 500"},
		{"501 is not retried", devserver.Faults{FailNext: 10, FailStatus: 501}, 502, "HTTP 501: Not Implemented"},
		{"non-JSON body", devserver.Faults{Mode: devserver.ModeGarbage}, 502, "malformed response: the login answer is not a JSON object"},
		{"no accessToken", devserver.Faults{Mode: devserver.ModeNoToken}, 502, "the login answer has no accessToken"},
		{"accessToken not a JWT", devserver.Faults{Mode: devserver.ModeNotJWT}, 502, "is not a JWT"},
		{"expired JWT", devserver.Faults{Mode: devserver.ModeExpired}, 502, "already expired"},
		{"10 MiB body", devserver.Faults{Mode: devserver.ModeHuge}, 502, "exceeds the 1 MiB limit"},
		{"hang beyond request_timeout", devserver.Faults{Mode: devserver.ModeHang}, 502, "timed out (request_timeout)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.mustWrite("config", map[string]any{fieldRequestTimeout: "1s", fieldMaxRetries: 2})
			if tt.name == "bad credentials" {
				env.mustWrite("roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: "not-the-password", fieldVerify: false})
				env.secrets = append(env.secrets, "not-the-password")
			} else {
				env.createRole("ci", nil)
			}
			env.mk.SetFaults(tt.faults)
			start := time.Now()
			resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
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
			if tt.name == "bad credentials" {
				env.mustWrite("roles/ci", map[string]any{fieldPassword: testPassword})
			}
			env.mustRead("creds/ci")
		})
	}
}

func TestCredsRetriesTransientFailures(t *testing.T) {
	for _, status := range []int{429, 500, 502, 503, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
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
	for _, status := range []int{400, 401, 403} {
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
	if statusOf(resp, err) != 502 || !strings.Contains(msg, "could not reach MetaKraftwerk") || !strings.Contains(msg, "2 attempts") {
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
	if statusOf(resp, err) != 502 || !strings.Contains(msg, "redirect to \""+other.URL+"/authentication\"") {
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
	if msg := errorText(resp, err); statusOf(resp, err) != 502 || !strings.Contains(msg, "does not match the host name") {
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
	if statusOf(resp, err) != 502 || time.Since(start) > 3*time.Second {
		t.Fatalf("status %d after %s: %q", statusOf(resp, err), time.Since(start), errorText(resp, err))
	}
}

func TestRevokeAlwaysSucceedsWithoutUpstream(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp := env.mustRead("creds/ci")
	before := env.mk.Stats()
	_ = env.mk.Close() // MetaKraftwerk gone: revoke must not care.
	revoke, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage, Secret: resp.Secret,
	})
	if err != nil || (revoke != nil && revoke.IsError()) {
		t.Fatalf("revoke: %#v %v", revoke, err)
	}
	if after := env.mk.Stats(); after.LoginRequests != before.LoginRequests || after.APIRequests != before.APIRequests {
		t.Fatal("revoke contacted MetaKraftwerk")
	}
	if !strings.Contains(env.logs.String(), "lease revoked") {
		t.Error("revoke did not log at debug level")
	}
	// Even a lease with no internal data (e.g. written by an older version) revokes.
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage,
		Secret: &logical.Secret{InternalData: map[string]any{"secret_type": secretAccessTokenType}},
	}); err != nil {
		t.Fatalf("revoke without internal data: %v", err)
	}
}

func TestRenewIsNotSupported(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp := env.mustRead("creds/ci")
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation, Storage: env.storage, Secret: resp.Secret,
	})
	if err == nil {
		t.Fatal("renew succeeded on a non-renewable token lease")
	}
}

func devserverFaultsMode(m string) devserver.Faults { return devserver.Faults{Mode: devserver.Mode(m)} }
