package metakraftwerk

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// hostilePassword has upper and lower case, so that its lower-cased and
// hex spellings differ from it, and characters a URL or a header would
// escape.
const hostilePassword = "Pw-Hostile_7xQ/z=K&9"

// sinks is every text of the engine a reader, a writer or an operator can
// see after one round against an upstream: answers and errors, the role's
// status, the metrics, the plugin's log at trace.
type sinks struct {
	errors []string // error texts, each of which must be a documented one
	other  []string // everything else: role reads, metrics, log
}

// hostileRound makes every request that logs in with role "victim" against
// the upstream at srv: a verifying create, a creds read, a verify-role
// (with retry_now, so it logs in again past a remembered rejection), a
// verifying write that keeps the login, and the reads of the role, its
// list and the metrics.
func hostileRound(t *testing.T, env *testEnv, srv *hostile.Server) sinks {
	t.Helper()
	var out sinks
	config := map[string]any{fieldBaseURL: srv.URL, fieldMaxRetries: 1, fieldRequestTimeout: "2s"}
	if srv.CAPEM != "" {
		config[fieldCACert] = srv.CAPEM
	}
	env.mustWrite("config", config)
	failed := func(what string, resp *logical.Response, err error) {
		t.Helper()
		msg := errorText(resp, err)
		if msg == "" {
			t.Errorf("%s succeeded against a hostile upstream", what)
			return
		}
		out.errors = append(out.errors, msg)
	}
	role := map[string]any{fieldEmail: testEmail, fieldPassword: hostilePassword, fieldProjects: "DEMO_PROJECT"}
	resp, err := env.do(logical.UpdateOperation, "roles/victim", role)
	failed("a verifying create", resp, err)
	role[fieldVerify] = false
	env.mustWrite("roles/victim", role)
	resp, err = env.do(logical.ReadOperation, "creds/victim", nil)
	if srv.Requests() == 0 || resp == nil || resp.Secret == nil {
		failed("creds", resp, err)
	}
	resp, err = env.do(logical.UpdateOperation, "verify-role/victim", map[string]any{fieldRetryNow: true})
	failed("verify-role", resp, err)
	resp, err = env.do(logical.UpdateOperation, "roles/victim", map[string]any{fieldProjects: "CI_PROJECT"})
	failed("a verifying write that keeps the login", resp, err)
	read := env.mustRead("roles/victim").Data
	out.other = append(out.other, fmt.Sprint(read))
	if last, _ := read[fieldLastError].(string); last != "" {
		out.errors = append(out.errors, last)
	}
	list, _ := env.do(logical.ListOperation, "roles/", nil)
	out.other = append(out.other, fmt.Sprint(list.Data))
	metrics := env.mustRead("metrics").Data[logical.HTTPRawBody].([]byte)
	out.other = append(out.other, string(metrics), env.logs.String())
	return out
}

// An upstream that echoes the password (or, listing projects, the access
// token) into every place Go's error texts quote, one mode at a time: no
// spelling of either reaches any sink, and every error is a documented
// text.
func TestHostileUpstreamReachesNoSink(t *testing.T) {
	tmpls := templates(t)
	for _, mode := range hostile.Modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv, err := hostile.Start(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			env := newTestBackend(t)
			env.secrets = append(env.secrets, hostilePassword, loginBody(testEmail, hostilePassword))
			got := hostileRound(t, env, srv)
			secrets := append([]string{hostilePassword}, srv.Tokens()...)
			if mode == hostile.ProjectsEcho && len(srv.Tokens()) == 0 {
				t.Fatal("the upstream issued no token; the listing was never reached")
			}
			for i, text := range append(got.errors, got.other...) {
				for _, leak := range leakcheck.Find(text, secrets) {
					t.Errorf("text %d holds secret #%d, %s", i, leak.Secret, leak.Form)
				}
			}
			for _, msg := range got.errors {
				if !documented(tmpls, msg) {
					t.Errorf("not a documented text: %q", msg)
				}
			}
			if want := hostileCategory[mode]; want != "" && !strings.Contains(strings.Join(got.errors, "\n"), want) {
				t.Errorf("no error names the cause %q:\n%s", want, strings.Join(got.errors, "\n"))
			}
		})
	}
}

// hostileCategory is what the creds error says of each mode.
var hostileCategory = map[hostile.Mode]string{
	hostile.StatusLine:       "was not valid HTTP",
	hostile.HeaderLine:       "was not valid HTTP",
	hostile.ContentLength:    "was not valid HTTP",
	hostile.TransferEncoding: "was not valid HTTP",
	hostile.Reason401:        `MetaKraftwerk rejected the login for role "victim": Unauthorized`,
	hostile.Reason503:        "HTTP 503: Service Unavailable (after 2 attempts)",
	hostile.CertName:         "the TLS certificate presented is not valid for localhost:",
	hostile.RedirectRaw:      "a redirect to another host",
	hostile.RedirectLower:    "a redirect to another host",
	hostile.RedirectHex:      "a redirect to another host",
	hostile.Feathers:         `MetaKraftwerk rejected the login for role "victim": (message withheld)`,
	hostile.ProjectsEcho:     `listing the projects of role "victim" failed: MetaKraftwerk gave no usable answer to the list projects request`,
	hostile.BadToken:         `the accessToken in MetaKraftwerk's login answer is not a JWT (malformed`,
}

// idPasswords are logins of 8, 129 and 1024 characters (the longest a role
// takes), each of the alphabet of an id, so that only the projection's
// look at the password can keep the short one's echo out.
var idPasswords = []string{"Pw-7xQz9", "Pw-" + strings.Repeat("7xQz9", 25) + "K", "Pw-" + strings.Repeat("7xQz9", 204) + "K"}

// tokenCarriesPassword are the id modes whose token holds the password
// whole in its claims (as sent, or upper-cased): the engine refuses such a
// token, whatever its ids.
var tokenCarriesPassword = map[hostile.Mode]bool{hostile.IDRaw: true, hostile.IDUpper: true}

// An upstream that spells the password into user.id, jti and sub (as
// sent, half of it, upper-cased, base64), for passwords of 8, 129 and 1024
// characters: creds, verify-role and the role read (shared_token_id, which
// the mkvault_role data source puts into Terraform state) show each id
// only as a fixed word, and no sink (answers, errors, the log) holds the
// password in any spelling (the environment's leak check at cleanup).
func TestUpstreamIDsLeaveThroughTheProjection(t *testing.T) {
	for _, mode := range hostile.IDModes {
		for _, password := range idPasswords {
			t.Run(fmt.Sprintf("%s/%d", mode, len(password)), func(t *testing.T) {
				t.Parallel()
				srv, err := hostile.Start(mode)
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				env := newTestBackend(t)
				env.secrets = append(env.secrets, password, loginBody(testEmail, password))
				env.mustWrite("config", map[string]any{fieldBaseURL: srv.URL, fieldMaxRetries: 0})
				if tokenCarriesPassword[mode] {
					// The token itself holds the password: refused before
					// any id is looked at, and handed to nobody.
					resp, err := env.do(logical.CreateOperation, "roles/victim", map[string]any{fieldEmail: testEmail, fieldPassword: password})
					if want := "it carries the login's password in its header or claims"; !strings.Contains(errorText(resp, err), want) {
						t.Fatalf("role write: %q, want %q", errorText(resp, err), want)
					}
					return
				}
				env.mustWrite("roles/victim", map[string]any{fieldEmail: testEmail, fieldPassword: password,
					fieldProjects: "CI_PROJECT", fieldReuseTokens: true})
				shown := []any{}
				creds := env.mustRead("creds/victim").Data
				shown = append(shown, creds[fieldUserID], creds[fieldTokenID])
				verify := env.mustWrite("verify-role/victim", map[string]any{fieldRetryNow: true}).Data
				shown = append(shown, verify[fieldUserID])
				shown = append(shown, env.mustRead("roles/victim").Data[fieldSharedTokenID])
				for i, v := range shown {
					if v != mkclient.NotAnID && v != mkclient.IDEchoesPassword {
						t.Errorf("id %d is shown as %q, want a fixed word", i, v)
					}
				}
				if len(srv.Tokens()) == 0 {
					t.Fatal("no login reached the upstream")
				}
			})
		}
	}
}

// A token that is not three base64url segments (here: its signature
// carries a terminal escape, a newline, a CI command and a bidirectional
// override) is never handed out: a 502 in the engine's words, and a
// failed login in the metrics.
func TestMalformedTokenIsAFailedLogin(t *testing.T) {
	srv, err := hostile.Start(hostile.BadToken)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldBaseURL: srv.URL, fieldMaxRetries: 0})
	env.mustWrite("roles/victim", map[string]any{fieldEmail: testEmail, fieldPassword: hostilePassword, fieldVerify: false})
	env.secrets = append(env.secrets, hostilePassword)
	resp, err := env.do(logical.ReadOperation, "creds/victim", nil)
	want := `getting a MetaKraftwerk token for role "victim" failed: the accessToken in MetaKraftwerk's login answer is not a JWT (malformed: expected three base64url segments with JSON header and claims)`
	if statusOf(resp, err) != 502 || errorText(resp, err) != want {
		t.Fatalf("%d %q", statusOf(resp, err), errorText(resp, err))
	}
	metrics := string(env.mustRead("metrics").Data[logical.HTTPRawBody].([]byte))
	if !strings.Contains(metrics, `metakraftwerk_logins_total{outcome="error",purpose="creds"} 1`) {
		t.Fatalf("the login is not counted as failed:\n%s", metrics)
	}
}

// fuzzLogin is a good login answer's body of 132 bytes, ids and all.
const fuzzLogin = `{"accessToken":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3IiwianRpIjoiaiJ9.c2ln","user":{"id":"u-7"},"pad":"` + "0123456789012345678901234567890" + `"}`

// fuzzPassword is the login the fuzzed upstream is sent; mixed case, so
// that its lower-cased and hex spellings are their own.
const fuzzPassword = "Fz-Pw_Secret9Q"

// FuzzUpstreamAnswer: the upstream's answer is any bytes, with the
// login's password spliced in at three places (the status line, a header,
// the body, wherever the positions fall) and, when tls is set, in the
// names of the certificate the retry meets. Whatever comes back, the creds
// error, the role's last_error and the plugin's log hold no spelling of the
// password, and the error is a documented text.
func FuzzUpstreamAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 2",
		"HTTP/1.1 201 Created\r\n\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 201 Created\r\nContent-Length: \r\n\r\n",
		"HTTP/1.1 201 Created\r\nTransfer-Encoding: \r\n\r\n{}",
		"HTTP/1.1 401 \r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 302 Found\r\nLocation: https://.example/\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"name\":\"\",\"message\":\"\",\"className\":\"\"}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.0 503 Service Unavailable\r\n\r\n",
		// A good login answer followed, past its Content-Length, by
		// another answer (net/http logs such bytes by itself).
		"HTTP/1.1 201 Created\r\nContent-Length: 132\r\n\r\n" + fuzzLogin + "HTTP/1.1 200 \r\nX-Echo: \r\n\r\n",
		// A token whose signature carries more than base64url.
		"HTTP/1.1 201 Created\r\nContent-Length: 71\r\n\r\n{\"accessToken\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2ln\\u001b]52;c;\"}",
	} {
		at := uint16(strings.IndexAny(seed, " :{.") + 1)
		f.Add([]byte(seed), at, at+5, uint16(len(seed)), false)
	}
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), uint16(0), uint16(0), uint16(0), true)
	tmpls := templates(f)
	f.Fuzz(func(t *testing.T, answer []byte, at1, at2, at3 uint16, tls bool) {
		if len(answer) > 4<<10 {
			return
		}
		spliced := func(r hostile.Request) []byte {
			out := append([]byte(nil), answer...)
			for _, at := range []uint16{at1, at2, at3} {
				i := int(at) % (len(out) + 1)
				out = append(out[:i], append([]byte(r.Password), out[i:]...)...)
			}
			return out
		}
		cfg := hostile.Config{Answer: spliced}
		if tls {
			cfg.CertNames = func(r hostile.Request) []string { return hostile.Spellings(r.Password) }
		}
		srv, err := hostile.StartWith(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		env := fuzzBackend(t)
		config := map[string]any{fieldBaseURL: srv.URL, fieldMaxRetries: 0, fieldRequestTimeout: "1s", fieldMaxUpstreamTime: "2s"}
		if srv.CAPEM != "" {
			// The retry is where the certificate names the password.
			config[fieldCACert], config[fieldMaxRetries] = srv.CAPEM, 1
		}
		env.write(logical.UpdateOperation, "config", config)
		env.write(logical.CreateOperation, "roles/fz", map[string]any{fieldEmail: testEmail, fieldPassword: fuzzPassword, fieldVerify: false})
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/fz", Storage: env.storage})
		msg := errorText(resp, err)
		status := env.read("roles/fz")[fieldLastError].(string)
		for _, text := range []string{msg, status, env.logs.String()} {
			if leaks := leakcheck.Find(text, []string{fuzzPassword}); len(leaks) > 0 {
				t.Fatalf("the password leaks (%s) into %q", leaks[0].Form, text)
			}
		}
		for _, text := range []string{msg, status} {
			if text != "" && !documented(tmpls, text) {
				t.Fatalf("not a documented text: %q", text)
			}
		}
	})
}

// fuzzEnv is a bare backend for a fuzz iteration: no stand-in, no leak
// bookkeeping, a log at trace.
type fuzzEnv struct {
	t       *testing.T
	b       *backend
	storage logical.Storage
	logs    *syncBuffer
}

func fuzzBackend(t *testing.T) *fuzzEnv {
	b, storage, logs := setupBackend(t, time.Now)
	return &fuzzEnv{t: t, b: b, storage: storage, logs: logs}
}

func (e *fuzzEnv) write(op logical.Operation, path string, data map[string]any) {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Storage: e.storage, Data: data})
	if err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("write %s: %v %v", path, err, respErr(resp))
	}
}

func (e *fuzzEnv) read(path string) map[string]any {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: path, Storage: e.storage})
	if err != nil || resp == nil || resp.IsError() {
		e.t.Fatalf("read %s: %v %v", path, err, respErr(resp))
	}
	return resp.Data
}
