package metakraftwerk

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
)

// Test users of the stand-in. The passwords are distinctive so that a leak
// scan cannot miss them.
const (
	testEmail     = "ci@example.com"
	testPassword  = "pw-CI-9f8e7d6c5b4a"
	otherEmail    = "ops@example.com"
	otherPassword = "pw-OPS-1a2b3c4d5e6f"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// testClock is an injectable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testEnv is a backend on in-memory storage with a captured trace-level
// log, talking to a real stand-in MetaKraftwerk HTTP server on loopback.
type testEnv struct {
	t       *testing.T
	b       *backend
	storage *logical.InmemStorage
	// reqStorage is what requests see: storage, or a wrapper of it.
	reqStorage logical.Storage
	logs       *syncBuffer
	mk         *devserver.Running
	// clock is the engine's clock; mkClock the stand-in's (for skew tests).
	clock   *testClock
	mkClock *testClock
	// secrets collects every password and token the test saw, for leak checks.
	secrets []string
	// outputs collects every response and error text the test produced.
	outputs []string
	mu      sync.Mutex
}

type envOption func(*devserver.Config)

func withTokenLifetime(d time.Duration) envOption {
	return func(c *devserver.Config) { c.TokenLifetime = d }
}

// withProjects gives the CI user these projects, listed in Feathers pages
// when paginate is set.
func withProjects(projects []string, paginate *devserver.Paginate) envOption {
	return func(c *devserver.Config) {
		c.Users[0].Projects = projects
		c.Paginate = paginate
	}
}

// withTLS makes the stand-in serve HTTPS with a certificate for 127.0.0.1
// that the engine's config trusts through ca_cert.
func withTLS(t *testing.T) envOption {
	_, cfg, err := devserver.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	return func(c *devserver.Config) { c.TLS = cfg }
}

func newTestBackend(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	clock := &testClock{now: time.Now().UTC().Truncate(time.Second)}
	mkClock := &testClock{now: clock.Now()}
	cfg := devserver.Config{
		Users: []devserver.User{
			{ID: 7, Email: testEmail, Password: testPassword, Projects: []string{"DEMO_PROJECT", "CI_PROJECT"}},
			{ID: 8, Email: otherEmail, Password: otherPassword, Projects: []string{"OPS_PROJECT"}},
		},
		Now: mkClock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	mk, err := devserver.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mk.Close() })

	b, storage, logs := setupBackend(t, clock.Now)
	env := &testEnv{t: t, b: b, storage: storage, reqStorage: storage, logs: logs, mk: mk, clock: clock, mkClock: mkClock,
		secrets: []string{testPassword, otherPassword}}
	t.Cleanup(env.assertNoLeaks)
	// Retry fast in tests; the retry tests set their own values.
	config := map[string]any{fieldBaseURL: mk.URL, fieldRequestTimeout: "5s"}
	if cfg.TLS != nil {
		config[fieldCACert] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.TLS.Certificates[0].Certificate[0]}))
	}
	env.mustWrite("config", config)
	return env
}

// setupBackend is a backend on in-memory storage whose log, at trace
// level, goes to logs; it is cleaned up as Vault does on unmount, which
// also closes the client's idle connections before a stand-in the test
// started shuts down (cleanups run last first).
func setupBackend(t testing.TB, now func() time.Time) (*backend, *logical.InmemStorage, *syncBuffer) {
	t.Helper()
	return setupBackendOn(t, now, &logical.InmemStorage{})
}

// setupBackendOn is setupBackend on the given storage: a second backend on
// the storage of a first is the engine after a plugin reload, or on a new
// active node.
func setupBackendOn(t testing.TB, now func() time.Time, storage *logical.InmemStorage) (*backend, *logical.InmemStorage, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	conf := logical.TestBackendConfig()
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace})
	conf.StorageView = storage
	conf.System.(*logical.StaticSystemView).PluginEnvironment = &logical.PluginEnvironment{VaultVersion: "1.21.0"}
	b := newBackend(now)
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, storage, logs
}

// do runs one request against the backend and records what it produced.
func (e *testEnv) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	req := &logical.Request{
		Operation: op,
		Path:      path,
		Data:      data,
		Storage:   e.reqStorage,
	}
	// As Vault does: a write to a path with an existence check is a create
	// or an update by what the check finds, and input the check cannot
	// parse is refused there with the SDK's message alone (a 400).
	if op == logical.UpdateOperation {
		checked, exists, err := e.b.HandleExistenceCheck(context.Background(), req)
		var userErr errutil.UserError
		if errors.As(err, &userErr) {
			resp := logical.ErrorResponse(userErr.Err)
			e.record(resp, nil)
			return resp, nil
		}
		if err == nil && checked && !exists {
			req.Operation = logical.CreateOperation
		}
	}
	resp, err := e.b.HandleRequest(context.Background(), req)
	e.record(resp, err)
	return resp, err
}

func (e *testEnv) record(resp *logical.Response, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.outputs = append(e.outputs, err.Error())
	}
	if resp == nil {
		return
	}
	// The token belongs in a creds response's access_token field; everything
	// else the response carries is scanned for it.
	rest := make(map[string]any, len(resp.Data))
	for k, v := range resp.Data {
		if raw, ok := v.([]byte); ok && k == logical.HTTPRawBody {
			rest[k] = string(raw)
			continue
		}
		if k == fieldAccessToken {
			if tok, ok := v.(string); ok && tok != "" {
				e.secrets = append(e.secrets, tok)
			}
			continue
		}
		rest[k] = v
	}
	e.outputs = append(e.outputs, fmt.Sprintf("%v %v", rest, resp.Warnings))
	if resp.Secret != nil {
		e.outputs = append(e.outputs, fmt.Sprintf("%v", resp.Secret.InternalData))
	}
}

func (e *testEnv) mustWrite(path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.do(logical.UpdateOperation, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("write %s: resp=%v err=%v", path, respErr(resp), err)
	}
	return resp
}

func (e *testEnv) mustRead(path string) *logical.Response {
	e.t.Helper()
	resp, err := e.do(logical.ReadOperation, path, nil)
	if err != nil || resp == nil || resp.IsError() {
		e.t.Fatalf("read %s: resp=%v err=%v", path, respErr(resp), err)
	}
	return resp
}

func respErr(resp *logical.Response) any {
	if resp == nil {
		return nil
	}
	if resp.IsError() {
		return resp.Error()
	}
	return resp.Data
}

// createRole stores a role for the stand-in's CI user (verified).
func (e *testEnv) createRole(name string, extra map[string]any) {
	e.t.Helper()
	data := map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}
	for k, v := range extra {
		data[k] = v
	}
	e.mustWrite("roles/"+name, data)
}

// assertNoLeaks fails the test when a password or minted token appears in a
// log line, a response other than the token field itself, or an error: a
// token as it is, a password in any spelling leakcheck knows.
func (e *testEnv) assertNoLeaks() {
	e.mu.Lock()
	defer e.mu.Unlock()
	places := map[string]string{"the plugin log": e.logs.String(), "a response or error": strings.Join(e.outputs, "\n")}
	// Failures name the secret by position and kind only, never its text.
	for where, text := range places {
		for i, s := range e.secrets {
			switch {
			case s == "":
			case isToken(s):
				if strings.Contains(text, s) {
					e.t.Errorf("secret #%d (%s) appears in %s", i, secretKind(s), where)
				}
			default:
				for _, leak := range leakcheck.Find(text, []string{s}) {
					e.t.Errorf("secret #%d (%s) appears in %s, %s", i, secretKind(s), where, leak.Form)
				}
			}
		}
	}
}

// errorText returns the user-visible error of a handler result.
func errorText(resp *logical.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	if resp != nil && resp.IsError() {
		return resp.Error().Error()
	}
	// A raw error answer (verify-role's 429) carries its errors in the body.
	if resp == nil {
		return ""
	}
	if code, _ := resp.Data[logical.HTTPStatusCode].(int); code >= 400 {
		var body struct{ Errors []string }
		raw, _ := resp.Data[logical.HTTPRawBody].([]byte)
		_ = json.Unmarshal(raw, &body)
		return strings.Join(body.Errors, "; ")
	}
	return ""
}

func TestFactoryAndPaths(t *testing.T) {
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	if b.Type() != logical.TypeLogical {
		t.Fatalf("type = %v", b.Type())
	}
	special := b.SpecialPaths()
	if got := strings.Join(special.SealWrapStorage, ","); got != "config,roles/" {
		t.Fatalf("SealWrapStorage = %q", got)
	}
	if v := b.(*backend).RunningVersion; v != Version || v == "" {
		t.Fatalf("RunningVersion = %q", v)
	}
}

func isToken(s string) bool { return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ") }

func secretKind(s string) string {
	if isToken(s) {
		return fmt.Sprintf("token, %d chars", len(s))
	}
	return fmt.Sprintf("password, %d chars", len(s))
}

// budgetIn reports whether a 504's text names an upstream budget from lo
// to hi: a budget taken from a request's deadline is a tenth short of
// what is left when the request starts, so a busy machine shaves a few
// milliseconds off it.
func budgetIn(msg string, lo, hi time.Duration) bool {
	m := regexp.MustCompile(`MetaKraftwerk did not answer within (\S+) for role`).FindStringSubmatch(msg)
	if m == nil {
		return false
	}
	d, err := time.ParseDuration(m[1])
	return err == nil && d >= lo && d <= hi
}

// statusOf returns the HTTP status a handler result maps to.
func statusOf(resp *logical.Response, err error) int {
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &coded):
		return coded.Code()
	case err != nil:
		return http.StatusInternalServerError
	case resp != nil && resp.IsError():
		return http.StatusBadRequest
	case resp != nil && resp.Data[logical.HTTPStatusCode] != nil:
		return resp.Data[logical.HTTPStatusCode].(int)
	}
	return http.StatusOK
}

// gatedStorage holds one Get of an armed key after it has read the entry,
// until released: the caller then holds what storage said before a
// concurrent write. Later Gets pass.
type gatedStorage struct {
	logical.Storage
	mu      sync.Mutex
	key     string
	reached chan struct{}
	release chan struct{}
}

// gateStorage puts a gatedStorage in front of the test's storage.
func (e *testEnv) gateStorage() *gatedStorage {
	g := &gatedStorage{Storage: e.storage}
	e.reqStorage = g
	return g
}

// arm makes the next Get of key wait; reached is closed when it does.
func (g *gatedStorage) arm(key string) (reached <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.key, g.reached, g.release = key, make(chan struct{}), make(chan struct{})
	return g.reached, sync.OnceFunc(func() { close(g.release) })
}

func (g *gatedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := g.Storage.Get(ctx, key)
	g.mu.Lock()
	hold := key == g.key && g.reached != nil
	var reached, release chan struct{}
	if hold {
		reached, release = g.reached, g.release
		g.key, g.reached = "", nil
	}
	g.mu.Unlock()
	if hold {
		close(reached)
		<-release
	}
	return entry, err
}

// appliedThenFailedStorage applies every Put and then reports it failed, as
// a storage backend can when the answer is lost.
type appliedThenFailedStorage struct{ logical.Storage }

func (s appliedThenFailedStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := s.Storage.Put(ctx, e); err != nil {
		return err
	}
	return errors.New("injected: the put was applied but its answer was lost")
}

// gatedMK is a server in front of the test's stand-in that, once armed,
// holds the next login until released: the caller is then inside the login
// at MetaKraftwerk.
type gatedMK struct {
	env *testEnv
	srv *httptest.Server

	mu      sync.Mutex
	reached chan struct{}
	release chan struct{}
	answer  http.HandlerFunc
}

// gateLogins points the engine's config at a gatedMK.
func (e *testEnv) gateLogins() *gatedMK {
	e.t.Helper()
	g := &gatedMK{env: e}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	e.t.Cleanup(g.srv.Close)
	e.mustWrite("config", map[string]any{fieldBaseURL: g.srv.URL})
	return g
}

// arm holds the next login; when released it is answered by answer, or by
// the stand-in when answer is nil. The test's cleanup releases it too.
func (g *gatedMK) arm(answer http.HandlerFunc) (reached <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reached, g.release, g.answer = make(chan struct{}), make(chan struct{}), answer
	release = sync.OnceFunc(func() { close(g.release) })
	g.env.t.Cleanup(release)
	return g.reached, release
}

func (g *gatedMK) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	held := r.URL.Path == "/authentication" && g.reached != nil
	var reached, release chan struct{}
	var answer http.HandlerFunc
	if held {
		reached, release, answer = g.reached, g.release, g.answer
		g.reached = nil
	}
	g.mu.Unlock()
	if held {
		close(reached)
		<-release
		if answer != nil {
			answer(w, r)
			return
		}
	}
	g.env.mk.Handler().ServeHTTP(w, r)
}

// waitLockedOrDone returns once done is closed, or once a goroutine is
// blocked taking a write lock inside fn (a handler's name, as in a stack
// trace). A competing write that does not wait for the lock finishes; one
// that does is seen waiting; neither depends on timing.
func waitLockedOrDone(t *testing.T, done <-chan struct{}, fn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4<<20)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return
		default:
		}
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if (strings.Contains(g, "sync.(*RWMutex).Lock") || strings.Contains(g, "sync.(*Mutex).Lock")) &&
				strings.Contains(g, fn) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the competing write neither finished nor waited for a lock in %s", fn)
}

// doAsync runs one request in a goroutine; done is closed when it returns.
func (e *testEnv) doAsync(op logical.Operation, path string, data map[string]any) (done <-chan struct{}, result func() (*logical.Response, error)) {
	ch := make(chan struct{})
	var resp *logical.Response
	var err error
	go func() {
		defer close(ch)
		resp, err = e.do(op, path, data)
	}()
	return ch, func() (*logical.Response, error) { <-ch; return resp, err }
}

// countingSystemView counts ReplicationState calls and answers state.
type countingSystemView struct {
	logical.StaticSystemView
	calls atomic.Int64
	state consts.ReplicationState
}

func (c *countingSystemView) ReplicationState() consts.ReplicationState {
	c.calls.Add(1)
	return c.state
}

// The server's replication state is asked once per TTL, not once per
// request, and a change shows after the TTL.
func TestReplicationStateCache(t *testing.T) {
	clock := &testClock{now: time.Now()}
	sys := &countingSystemView{}
	cache := newReplicationStateCache(sys, clock.Now)
	for range 100 {
		if cache.ReplicationState() != 0 {
			t.Fatal("state")
		}
	}
	if n := sys.calls.Load(); n != 1 {
		t.Fatalf("%d calls for 100 asks within the TTL", n)
	}
	sys.state = consts.ReplicationPerformanceStandby
	clock.Advance(replicationStateTTL)
	if !cache.ReplicationState().HasState(consts.ReplicationPerformanceStandby) || sys.calls.Load() != 2 {
		t.Fatalf("after the TTL: %v, %d calls", cache.ReplicationState(), sys.calls.Load())
	}
}

// Factory serves requests through the cache: 50 reads of a role ask the
// server once.
func TestFactoryCachesReplicationState(t *testing.T) {
	conf := logical.TestBackendConfig()
	storage := &logical.InmemStorage{}
	conf.StorageView = storage
	sys := &countingSystemView{StaticSystemView: *conf.System.(*logical.StaticSystemView)}
	conf.System = sys
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "config", Storage: storage}); err != nil {
			t.Fatal(err)
		}
	}
	if n := sys.calls.Load(); n != 1 {
		t.Fatalf("%d ReplicationState calls for 50 requests", n)
	}
}
