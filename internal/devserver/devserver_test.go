package devserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func start(t *testing.T, logs io.Writer) (*Running, *clock) {
	t.Helper()
	c := &clock{now: time.Now()}
	cfg := Config{
		Users: []User{
			{ID: 1, Email: "a@example.com", Password: "pw-a-123", Projects: []string{"P1", "P2"}},
			{ID: 2, Email: "b@example.com", Password: "pw-b-456"},
		},
		Now: c.Now,
	}
	if logs != nil {
		cfg.Logger = log.New(logs, "", 0)
	}
	r, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, c
}

func post(t *testing.T, url, body string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLoginAnswersAsDocumented(t *testing.T) {
	r, c := start(t, nil)
	code, body, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`)
	if code != http.StatusCreated {
		t.Fatalf("status %d", code)
	}
	tok, _ := body["accessToken"].(string)
	auth, _ := body["authentication"].(map[string]any)
	user, _ := body["user"].(map[string]any)
	if tok == "" || auth["strategy"] != "local" || auth["accessToken"] != tok || user["id"] != float64(1) || user["email"] != "a@example.com" {
		t.Fatalf("body %v", body)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	if parsed.Header["typ"] != "access" || parsed.Header["alg"] != "HS256" {
		t.Errorf("header %v", parsed.Header)
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if claims["sub"] != "1" || claims["aud"] != Audience || claims["iss"] != Issuer || claims["jti"] == "" ||
		!exp.Equal(c.Now().Add(20*time.Hour).Truncate(time.Second)) || !iat.Equal(c.Now().Truncate(time.Second)) {
		t.Errorf("claims %v", claims)
	}

	// The token lists the user's projects, and only its own.
	code, list := get(t, r.URL+"/api/v1/projects", tok)
	if code != 200 || !strings.Contains(list, `"name":"P1"`) || !strings.Contains(list, `"name":"P2"`) {
		t.Fatalf("projects %d %s", code, list)
	}
	code, list = get(t, r.URL+"/api/v1/projects?name=P2", tok)
	if code != 200 || strings.Contains(list, "P1") || !strings.Contains(list, "P2") {
		t.Fatalf("?name= %d %s", code, list)
	}
	if code, _ := get(t, r.URL+"/api/v1/projects/401", tok); code != 200 {
		t.Fatalf("project by id: %d", code)
	}
	if code, _ := get(t, r.URL+"/api/v1/projects/999", tok); code != 404 {
		t.Fatalf("unknown project id: %d", code)
	}
	// A user without memberships gets [].
	_, body, _ = post(t, r.URL+"/authentication", `{"strategy":"local","email":"b@example.com","password":"pw-b-456"}`)
	if code, list := get(t, r.URL+"/api/v1/projects", body["accessToken"].(string)); code != 200 || strings.TrimSpace(list) != "[]" {
		t.Fatalf("no memberships: %d %s", code, list)
	}

	// Expired, forged and missing tokens are 401 Not authenticated.
	c.Add(20*time.Hour + time.Second)
	for name, bad := range map[string]string{"expired": tok, "forged": tok[:len(tok)-4] + "AAAA", "missing": ""} {
		if code, msg := get(t, r.URL+"/api/v1/projects", bad); code != 401 || !strings.Contains(msg, "Not authenticated") {
			t.Errorf("%s token: %d %s", name, code, msg)
		}
	}
}

func TestLoginErrors(t *testing.T) {
	r, _ := start(t, nil)
	tests := []struct {
		body    string
		code    int
		message string
	}{
		{`{"strategy":"local","email":"a@example.com","password":"wrong"}`, 401, "Invalid login"},
		{`{"strategy":"local","email":"nobody@example.com","password":"pw-a-123"}`, 401, "Invalid login"},
		{`{"strategy":"local","password":"x"}`, 400, "'email' is required"},
		{`{"strategy":"local","email":"a@example.com"}`, 400, "'password' is required"},
		{`{"email":"a@example.com","password":"x"}`, 400, "'strategy' is required"},
		{`{"strategy":"jwt","email":"a@example.com","password":"pw-a-123"}`, 401, "Invalid authentication information"},
		{`not json`, 400, "Invalid JSON"},
	}
	for _, tt := range tests {
		code, body, _ := post(t, r.URL+"/authentication", tt.body)
		if code != tt.code || !strings.Contains(body["message"].(string), tt.message) || body["code"] != float64(tt.code) || body["name"] == "" {
			t.Errorf("%s: %d %v", tt.body, code, body)
		}
	}
	if s := r.Stats(); s.FailedLogins != int64(len(tests)) || s.Logins != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestFaultKnobsAndControlAPI(t *testing.T) {
	r, _ := start(t, nil)
	login := `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`
	set := func(body string) int {
		code, _, _ := post(t, r.URL+ControlPrefix+"faults", body)
		return code
	}
	if set(`{"rate_limit_next":1,"retry_after":7}`) != 200 {
		t.Fatal("set faults")
	}
	code, _, h := post(t, r.URL+"/authentication", login)
	if code != 429 || h.Get("Retry-After") != "7" {
		t.Fatalf("429: %d %v", code, h)
	}
	if code, _, _ := post(t, r.URL+"/authentication", login); code != 201 {
		t.Fatalf("after rate limit: %d", code)
	}
	if set(`{"fail_next":2,"fail_status":502}`) != 200 {
		t.Fatal("set faults")
	}
	for range 2 {
		if code, _, _ := post(t, r.URL+"/authentication", login); code != 502 {
			t.Fatalf("fail_next: %d", code)
		}
	}
	set(`{"latency":"150ms"}`)
	start := time.Now()
	post(t, r.URL+"/authentication", login)
	if time.Since(start) < 150*time.Millisecond {
		t.Fatal("latency not applied")
	}
	for _, bad := range []string{`{"mode":"nope"}`, `{"fail_rate":2}`, `{"mode":"redirect"}`, `{"unknown":1}`, `{"fail_status":200}`} {
		if set(bad) != 400 {
			t.Errorf("faults %s accepted", bad)
		}
	}
	code, stats := get(t, r.URL+ControlPrefix+"stats", "")
	if code != 200 || !strings.Contains(stats, `"a@example.com":2`) || !strings.Contains(stats, `"login_requests":5`) {
		t.Fatalf("stats %d %s", code, stats)
	}
	post(t, r.URL+ControlPrefix+"reset", "")
	if s := r.Stats(); s.LoginRequests != 0 || r.Faults() != (Faults{}) {
		t.Fatalf("reset left %+v %+v", s, r.Faults())
	}
}

func TestModes(t *testing.T) {
	r, _ := start(t, nil)
	login := `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`
	decode := func(mode Mode) (int, []byte) {
		if f := r.Faults(); f.Mode != mode {
			r.SetFaults(Faults{Mode: mode, RedirectTo: "http://127.0.0.1:1"})
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Post(r.URL+"/authentication", "application/json", strings.NewReader(login))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := decode(ModeGarbage); code != 201 || json.Valid(b) {
		t.Error("garbage is JSON")
	}
	if _, b := decode(ModeNoToken); bytes.Contains(b, []byte("accessToken")) {
		t.Error("no-token has a token")
	}
	if _, b := decode(ModeHuge); len(b) < 10<<20 {
		t.Errorf("huge is %d bytes", len(b))
	}
	if code, _ := decode(ModeRedirect); code != 307 {
		t.Errorf("redirect %d", code)
	}
	for _, m := range []Mode{ModeExpired, ModeNoExp, ModeNotJWT} {
		_, b := decode(m)
		var body struct{ AccessToken string }
		_ = json.Unmarshal(b, &body)
		claims := jwt.MapClaims{}
		_, _, err := jwt.NewParser().ParseUnverified(body.AccessToken, claims)
		exp, _ := claims.GetExpirationTime()
		switch m {
		case ModeNotJWT:
			if err == nil {
				t.Error("not-jwt parses as a JWT")
			}
		case ModeNoExp:
			if exp != nil {
				t.Error("no-exp has exp")
			}
		case ModeExpired:
			if exp == nil || exp.After(time.Now()) {
				t.Error("expired is not expired")
			}
		}
	}
	if code, b := decode(ModeHostile); code != 201 || len(b) > 1<<20 || len(b) < 1<<19 || !json.Valid(b) {
		t.Errorf("hostile: %d, %d bytes", code, len(b))
	}
	// form-redirect sends the login back in the Location's query.
	r.SetFaults(Faults{Mode: ModeFormRedirect})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Post(r.URL+"/authentication", "application/json", strings.NewReader(login))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || !strings.Contains(loc, "password=pw-a-123") {
		t.Errorf("form-redirect: %d %q", resp.StatusCode, loc)
	}
	// Each echo quotes the password in its own encoding.
	for echo, want := range map[Echo]string{
		EchoRaw: `"password":"pw-a-123"`, EchoURL: "%22password%22%3A%22pw-a-123%22", EchoHTML: "&#34;password&#34;:&#34;pw-a-123&#34;",
		EchoBase64: base64.StdEncoding.EncodeToString([]byte("pw-a-123")), EchoBase64Body: base64.StdEncoding.EncodeToString([]byte(login)),
		EchoPrefix: "password starts pw-a", EchoTruncated: `"password":"pw-a`, EchoNode: `"password":"pw-a-123"`,
	} {
		r.SetFaults(Faults{Mode: ModeEcho, Echo: echo})
		code, b := decode(ModeEcho)
		var fe struct{ Message string }
		_ = json.Unmarshal(b, &fe)
		if code != 401 || !strings.Contains(fe.Message, want) {
			t.Errorf("echo %q: %d %s, want %s", echo, code, b, want)
		}
	}
	// hang answers only when the client gives up.
	r.SetFaults(Faults{Mode: ModeHang})
	client = &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Post(r.URL+"/authentication", "application/json", strings.NewReader(login)); err == nil {
		resp.Body.Close()
		t.Error("hang answered")
	}
}

func TestRequestLogHasNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	r, _ := start(t, writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }))
	_, body, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`)
	tok := body["accessToken"].(string)
	get(t, r.URL+"/api/v1/projects?name=P1", tok)
	post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-wrong-789"}`)
	_ = r.Close()
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, "POST /authentication 201") || !strings.Contains(out, "GET /api/v1/projects 200") {
		t.Fatalf("want one line per request:\n%s", out)
	}
	for _, secret := range []string{"pw-a-123", "pw-wrong-789", tok} {
		if strings.Contains(out, secret) {
			t.Fatal("the request log contains a secret")
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestConfigValidation(t *testing.T) {
	if _, err := New(Config{Users: []User{{Email: "a@example.com"}}}); err == nil {
		t.Error("user without password accepted")
	}
	if _, err := New(Config{Users: []User{{Email: "a@x.y", Password: "p"}, {Email: "a@x.y", Password: "q"}}}); err == nil {
		t.Error("duplicate user accepted")
	}
}

func TestProjectsPaginateLikeFeathers(t *testing.T) {
	var names []string
	for i := range 23 {
		names = append(names, fmt.Sprintf("P%02d", i))
	}
	r, err := Listen("127.0.0.1:0", Config{
		Users:    []User{{ID: 1, Email: "a@example.com", Password: "pw-a-123", Projects: names}},
		Paginate: &Paginate{Default: 10, Max: 15},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	_, body, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`)
	tok := body["accessToken"].(string)
	page := func(query string) (total, limit, skip int, got []string) {
		t.Helper()
		code, raw := get(t, r.URL+"/api/v1/projects"+query, tok)
		var p struct {
			Total, Limit, Skip int
			Data               []struct{ Name string }
		}
		if err := json.Unmarshal([]byte(raw), &p); code != 200 || err != nil {
			t.Fatalf("%s: %d %v", query, code, err)
		}
		for _, d := range p.Data {
			got = append(got, d.Name)
		}
		return p.Total, p.Limit, p.Skip, got
	}
	if total, limit, skip, got := page(""); total != 23 || limit != 10 || skip != 0 || len(got) != 10 || got[0] != "P00" {
		t.Errorf("default page: %d %d %d %v", total, limit, skip, got)
	}
	if _, limit, skip, got := page("?$skip=10&$limit=100"); limit != 15 || skip != 10 || len(got) != 13 || got[0] != "P10" {
		t.Errorf("capped page: %d %d %v", limit, skip, got)
	}
	if _, _, _, got := page("?%24skip=20"); len(got) != 3 || got[2] != "P22" {
		t.Errorf("encoded $skip: %v", got)
	}
	if total, _, _, got := page("?$skip=99"); total != 23 || len(got) != 0 {
		t.Errorf("beyond the end: %d %v", total, got)
	}
	if total, _, _, got := page("?name=P12"); total != 1 || len(got) != 1 {
		t.Errorf("filtered: %d %v", total, got)
	}
	for _, bad := range []string{"0", "x", "10,0", ""} {
		if _, err := ParsePaginate(bad); err == nil {
			t.Errorf("ParsePaginate(%q) accepted", bad)
		}
	}
	if p, err := ParsePaginate("10,50"); err != nil || *p != (Paginate{Default: 10, Max: 50}) {
		t.Errorf("ParsePaginate: %+v %v", p, err)
	}
}

// The control API changes a password while the stand-in runs: the old
// password is refused from then on, the new one logs in, and a token
// issued before the change still opens the API.
func TestSetPasswordWhileRunning(t *testing.T) {
	var logs strings.Builder
	r, _ := start(t, &logs)
	code, body, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`)
	if code != 201 {
		t.Fatalf("login before the change: %d", code)
	}
	before, _ := body["accessToken"].(string)
	if code, _, _ := post(t, r.URL+ControlPrefix+"password", `{"email":"a@example.com","password":"pw-a-changed-789"}`); code != 200 {
		t.Fatalf("changing the password: %d", code)
	}
	if code, _, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-123"}`); code != 401 {
		t.Errorf("the old password after the change: %d, want 401", code)
	}
	if code, _, _ := post(t, r.URL+"/authentication", `{"strategy":"local","email":"a@example.com","password":"pw-a-changed-789"}`); code != 201 {
		t.Errorf("the new password: %d, want 201", code)
	}
	if code, _ := get(t, r.URL+"/api/v1/projects", before); code != 200 {
		t.Errorf("a token issued before the change: %d, want 200", code)
	}
	for body, want := range map[string]int{
		`{"email":"nobody@example.com","password":"x"}`:  404,
		`{"email":"a@example.com"}`:                      400,
		`{"email":"a@example.com","password":"x","x":1}`: 400,
	} {
		if code, _, _ := post(t, r.URL+ControlPrefix+"password", body); code != want {
			t.Errorf("password %s: %d, want %d", body, code, want)
		}
	}
	if strings.Contains(logs.String(), "pw-a-changed-789") {
		t.Error("the request log holds the new password")
	}
}
