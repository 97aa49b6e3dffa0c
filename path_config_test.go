package metakraftwerk

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

func TestConfigDefaultsWithoutStoredConfig(t *testing.T) {
	env := newTestBackend(t)
	if _, err := env.do(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	got := env.mustRead("config").Data
	want := map[string]any{
		fieldBaseURL:        "https://app.metakraftwerk.com",
		fieldCACert:         "",
		fieldRequestTimeout: int64(30),
		fieldMaxRetries:     3,
		fieldExpiryLeeway:   int64(60),

		fieldRejectedLoginBackoff: int64(300),
		fieldMaxUpstreamTime:      int64(85),
		fieldMetricsRoles:         []string{},
		fieldStored:               false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config read = %#v, want %#v", got, want)
	}
	exists, err := env.b.pathConfigExists(context.Background(), &logical.Request{Storage: env.storage}, nil)
	if err != nil || exists {
		t.Fatalf("exists = %v, %v; want false with no stored config", exists, err)
	}
}

func TestConfigWriteReadPartialUpdateDelete(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{
		fieldBaseURL: "https://mk.example.com/base/", fieldRequestTimeout: "10s",
		fieldMaxRetries: 5, fieldExpiryLeeway: "2m",
	})
	// Partial update: only max_retries changes.
	env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
	got := env.mustRead("config").Data
	if got[fieldBaseURL] != "https://mk.example.com/base" {
		t.Errorf("base_url = %v; trailing slash must be dropped", got[fieldBaseURL])
	}
	if got[fieldRequestTimeout] != int64(10) || got[fieldMaxRetries] != 0 || got[fieldExpiryLeeway] != int64(120) || got[fieldStored] != true {
		t.Errorf("config after partial update = %#v", got)
	}
	exists, err := env.b.pathConfigExists(context.Background(), &logical.Request{Storage: env.storage}, nil)
	if err != nil || !exists {
		t.Fatalf("exists = %v, %v", exists, err)
	}
	if _, err := env.do(logical.DeleteOperation, "config", nil); err != nil {
		t.Fatal(err)
	}
	if got := env.mustRead("config").Data; got[fieldBaseURL] != "https://app.metakraftwerk.com" || got[fieldStored] != false {
		t.Errorf("after delete base_url = %v, stored = %v; want the default, not stored", got[fieldBaseURL], got[fieldStored])
	}
}

func TestConfigLoopbackHTTPAllowed(t *testing.T) {
	env := newTestBackend(t)
	for _, u := range []string{"http://localhost:8080", "http://127.0.0.1", "http://127.9.9.9:1/x", "http://[::1]:9000"} {
		env.mustWrite("config", map[string]any{fieldBaseURL: u})
		if got := env.mustRead("config").Data[fieldBaseURL]; got != u {
			t.Errorf("base_url %q read back as %v", u, got)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name  string
		data  map[string]any
		field string
	}{
		{"empty url", map[string]any{fieldBaseURL: ""}, fieldBaseURL},
		{"relative url", map[string]any{fieldBaseURL: "app.metakraftwerk.com"}, fieldBaseURL},
		{"ftp", map[string]any{fieldBaseURL: "ftp://mk.example.com"}, fieldBaseURL},
		{"http to a remote host", map[string]any{fieldBaseURL: "http://mk.example.com"}, fieldBaseURL},
		{"http to a private address", map[string]any{fieldBaseURL: "http://10.0.0.1"}, fieldBaseURL},
		{"http to localhost lookalike", map[string]any{fieldBaseURL: "http://localhost.evil.com"}, fieldBaseURL},
		{"query", map[string]any{fieldBaseURL: "https://mk.example.com/?a=b"}, fieldBaseURL},
		{"fragment", map[string]any{fieldBaseURL: "https://mk.example.com/#x"}, fieldBaseURL},
		{"credentials", map[string]any{fieldBaseURL: "https://u:p@mk.example.com"}, fieldBaseURL},
		{"bad port", map[string]any{fieldBaseURL: "https://mk.example.com:99999"}, fieldBaseURL},
		{"garbage pem", map[string]any{fieldCACert: "not a pem"}, fieldCACert},
		{"key instead of cert", map[string]any{fieldCACert: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, fieldCACert},
		{"broken cert", map[string]any{fieldCACert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, fieldCACert},
		{"zero timeout", map[string]any{fieldRequestTimeout: 0}, fieldRequestTimeout},
		{"negative timeout", map[string]any{fieldRequestTimeout: "-5s"}, fieldRequestTimeout},
		{"sub-second timeout", map[string]any{fieldRequestTimeout: "500ms"}, "request_timeout: must be at least 1s"},
		{"huge timeout", map[string]any{fieldRequestTimeout: "1000h"}, fieldRequestTimeout},
		{"timeout not a duration", map[string]any{fieldRequestTimeout: "soon"}, fieldRequestTimeout},
		{"negative retries", map[string]any{fieldMaxRetries: -1}, fieldMaxRetries},
		{"too many retries", map[string]any{fieldMaxRetries: 11}, fieldMaxRetries},
		{"retries not a number", map[string]any{fieldMaxRetries: "many"}, fieldMaxRetries},
		{"negative leeway", map[string]any{fieldExpiryLeeway: "-1s"}, fieldExpiryLeeway},
		{"leeway beyond token life", map[string]any{fieldExpiryLeeway: "20h"}, fieldExpiryLeeway},
		{"no upstream time", map[string]any{fieldMaxUpstreamTime: 0}, fieldMaxUpstreamTime},
		{"upstream time beyond an hour", map[string]any{fieldMaxUpstreamTime: "2h"}, fieldMaxUpstreamTime},
		{"unknown field", map[string]any{"base_ur": "https://x.example.com"}, "base_ur"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.mustWrite("config", map[string]any{fieldBaseURL: "https://before.example.com", fieldMaxRetries: 2})
			before := env.mustRead("config").Data
			resp, err := env.do(logical.UpdateOperation, "config", tt.data)
			if err != nil {
				t.Fatalf("want a 400, got error %v", err)
			}
			if resp == nil || !resp.IsError() {
				t.Fatalf("want a 400, got %#v", resp)
			}
			if msg := resp.Error().Error(); !strings.Contains(msg, tt.field) {
				t.Errorf("error %q does not name field %q", msg, tt.field)
			}
			if after := env.mustRead("config").Data; !reflect.DeepEqual(before, after) {
				t.Errorf("stored config changed by a rejected write:\nbefore %#v\nafter  %#v", before, after)
			}
		})
	}
}

// Durations are whole seconds, as api.md says: a fraction is dropped.
func TestConfigDurationsAreWholeSeconds(t *testing.T) {
	env := newTestBackend(t)
	env.mustWrite("config", map[string]any{fieldRequestTimeout: "1500ms", fieldExpiryLeeway: "90.9s"})
	data := env.mustRead("config").Data
	if data[fieldRequestTimeout] != int64(1) || data[fieldExpiryLeeway] != int64(90) {
		t.Fatalf("request_timeout %v, expiry_leeway %v; want 1 and 90", data[fieldRequestTimeout], data[fieldExpiryLeeway])
	}
}

func TestConfigCollectsEveryProblem(t *testing.T) {
	env := newTestBackend(t)
	resp, _ := env.do(logical.UpdateOperation, "config", map[string]any{
		fieldBaseURL: "http://mk.example.com", fieldMaxRetries: 99, fieldExpiryLeeway: "21h",
	})
	msg := errorText(resp, nil)
	for _, f := range []string{fieldBaseURL, fieldMaxRetries, fieldExpiryLeeway} {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not name %s", msg, f)
		}
	}
}

func TestConfigStorageFailureKeepsState(t *testing.T) {
	env := newTestBackend(t)
	before := env.mustRead("config").Data
	env.storage.Underlying().FailPut(true)
	resp, err := env.do(logical.UpdateOperation, "config", map[string]any{fieldMaxRetries: 7})
	if err == nil {
		t.Fatalf("want an error when storage fails, got %#v", resp)
	}
	env.storage.Underlying().FailPut(false)
	if after := env.mustRead("config").Data; !reflect.DeepEqual(before, after) {
		t.Errorf("config changed although the write failed: %#v", after)
	}

	env.storage.Underlying().FailGet(true)
	if _, err := env.do(logical.ReadOperation, "config", nil); err == nil {
		t.Error("want an error when storage reads fail")
	}
	env.storage.Underlying().FailGet(false)

	env.storage.Underlying().FailDelete(true)
	if _, err := env.do(logical.DeleteOperation, "config", nil); err == nil {
		t.Error("want an error when storage deletes fail")
	}
	env.storage.Underlying().FailDelete(false)
}

// newTestCA returns a self-signed CA certificate in PEM.
func newTestCA(t *testing.T) string {
	t.Helper()
	ca, _, err := devserver.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	return string(ca)
}

func TestConfigCACertRoundTripAndClear(t *testing.T) {
	env := newTestBackend(t)
	ca := newTestCA(t)
	env.mustWrite("config", map[string]any{fieldCACert: ca + ca})
	if got := env.mustRead("config").Data[fieldCACert]; got != strings.TrimSpace(ca+ca) {
		t.Errorf("ca_cert read back differently")
	}
	env.mustWrite("config", map[string]any{fieldCACert: ""})
	if got := env.mustRead("config").Data[fieldCACert]; got != "" {
		t.Errorf("ca_cert not cleared: %v", got)
	}
}

func TestConfigChangeRebuildsClient(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	first, _, _ := env.b.client(context.Background(), env.storage)
	env.mustWrite("config", map[string]any{fieldMaxRetries: 1})
	second, cfg, _ := env.b.client(context.Background(), env.storage)
	if first == second {
		t.Fatal("client was not rebuilt after a config write")
	}
	if cfg.MaxRetries != 1 {
		t.Fatalf("rebuilt client uses max_retries %d", cfg.MaxRetries)
	}
	// Invalidate (a replicated write) drops it too.
	env.b.invalidate(context.Background(), configStorageKey)
	third, _, _ := env.b.client(context.Background(), env.storage)
	if third == second {
		t.Fatal("client was not rebuilt after Invalidate(config)")
	}
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// A config write whose storage put fails after it was applied still resets
// the engine's memory: the next read goes to the stored base_url.
func TestConfigWriteResetsWhenPutFails(t *testing.T) {
	env := newTestBackend(t)
	newMK, err := devserver.Listen("127.0.0.1:0", devserver.Config{Users: []devserver.User{{ID: 7, Email: testEmail, Password: testPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	defer newMK.Close()
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustRead("creds/ci")
	env.reqStorage = appliedThenFailedStorage{env.storage}
	if _, err := env.do(logical.UpdateOperation, "config", map[string]any{fieldBaseURL: newMK.URL}); err == nil {
		t.Fatal("want the put's error")
	}
	env.reqStorage = env.storage
	before := newMK.Stats().Logins
	env.mustRead("creds/ci")
	if newMK.Stats().Logins != before+1 {
		t.Fatal("the read did not go to the stored base_url")
	}
}

// Loopback spellings Go's proxy logic does not recognise are stored in the
// form it does.
func TestConfigNormalisesLoopbackSpellings(t *testing.T) {
	env := newTestBackend(t)
	port := env.mk.URL[strings.LastIndexByte(env.mk.URL, ':')+1:]
	for in, want := range map[string]string{
		"http://LOCALHOST:" + port:        "http://localhost:" + port,
		"http://localhost.:" + port:       "http://localhost:" + port,
		"http://127.0.0.1.:" + port:       "http://127.0.0.1:" + port,
		"HTTP://LocalHost.:" + port + "/": "http://localhost:" + port,
	} {
		env.mustWrite("config", map[string]any{fieldBaseURL: in})
		if got := env.mustRead("config").Data[fieldBaseURL]; got != want {
			t.Errorf("%s stored as %v, want %s", in, got, want)
		}
	}
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
}

// A config write that completes while another one holds what it read is not
// undone when that one stores: config writes are serialised.
func TestConfigWritesNeverLoseUpdates(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateStorage()
	reached, release := gate.arm(configStorageKey) // writer A holds the config it read
	defer release()
	aDone, aResult := env.doAsync(logical.UpdateOperation, "config", map[string]any{fieldMaxRetries: 1})
	<-reached
	bDone, bResult := env.doAsync(logical.UpdateOperation, "config", map[string]any{fieldRequestTimeout: "7s"})
	waitLockedOrDone(t, bDone, "pathConfigWrite")
	release()
	<-aDone
	for w, result := range map[string]func() (*logical.Response, error){"A": aResult, "B": bResult} {
		if resp, err := result(); err != nil || (resp != nil && resp.IsError()) {
			t.Fatalf("writer %s: %v", w, errorText(resp, err))
		}
	}
	cfg := env.mustRead("config").Data
	if cfg[fieldMaxRetries] != 1 || cfg[fieldRequestTimeout] != int64(7) {
		t.Fatalf("config lost an acknowledged update: max_retries %v, request_timeout %v", cfg[fieldMaxRetries], cfg[fieldRequestTimeout])
	}
}

// childEnv marks a test run as the child process of a test that needs its
// own process environment.
const childEnv = "METAKRAFTWERK_TEST_CHILD"

// A base_url stored by an earlier version in a loopback spelling that Go's
// proxy logic does not exempt is normalised when read: in a process with
// HTTP_PROXY set (Go reads it once per process, hence the child), the role's
// verify login and a creds read go straight to the stand-in and the proxy,
// which would see the password in clear, receives nothing.
func TestStoredBaseURLSpellingNeverUsesTheProxy(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		var proxied atomic.Int64
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			proxied.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}))
		defer proxy.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1", "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if n := proxied.Load(); n != 0 {
			t.Fatalf("the proxy received %d requests", n)
		}
		return
	}

	// The environment is in effect: a remote host would go through the proxy.
	if p, err := http.ProxyFromEnvironment(httptest.NewRequest(http.MethodGet, "http://mk.example.com/", nil)); err != nil || p == nil {
		t.Fatalf("HTTP_PROXY is not in effect in the child (%v, %v); the test would prove nothing", p, err)
	}
	env := newTestBackend(t)
	stored := strings.Replace(env.mk.URL, "127.0.0.1", "LOCALHOST.", 1)
	entry, err := logical.StorageEntryJSON(configStorageKey, map[string]any{
		fieldBaseURL: stored, fieldRequestTimeout: 5 * time.Second, fieldMaxRetries: 0, fieldExpiryLeeway: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	env.b.store.reset() // as after a plugin restart: nothing in memory
	env.createRole("ci", map[string]any{fieldProjects: "DEMO_PROJECT"})
	env.mustRead("creds/ci")
	if got, want := env.mustRead("config").Data[fieldBaseURL], strings.Replace(env.mk.URL, "127.0.0.1", "localhost", 1); got != want {
		t.Fatalf("config read shows base_url %v, want %s", got, want)
	}
}

// A stored base_url that no longer validates fails the read with a message
// naming the field, instead of being used.
func TestStoredBaseURLThatNoLongerValidates(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	entry, _ := logical.StorageEntryJSON(configStorageKey, map[string]any{fieldBaseURL: "http://mk.example.com"})
	if err := env.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	env.b.store.reset()
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if msg := errorText(resp, err); statusOf(resp, err) != 500 || !strings.Contains(msg, "the stored config is unusable: base_url: must use https") {
		t.Fatalf("status %d: %q", statusOf(resp, err), msg)
	}
}
