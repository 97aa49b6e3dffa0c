package mkclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http/httpproxy"
)

// Fuzz targets for every parser of data that comes from outside: login and
// error bodies, access-token claims, project lists, Retry-After, base URLs
// and CA bundles. Their seed corpora (testdata/fuzz and the f.Add calls)
// run in `make test`; `make fuzz` explores further.

func FuzzDecodeLoginResponse(f *testing.F) {
	f.Add([]byte(`{"accessToken":"a.b.c","authentication":{"strategy":"local","accessToken":"a.b.c"},"user":{"id":1,"email":"x@y.z"}}`))
	f.Add([]byte(`{"accessToken":null,"user":{"id":[1]}}`))
	f.Add([]byte(`{"accessToken":"  x  ","user":null}`))
	f.Add([]byte(`{"accessToken":"eyJhbGciOiJIUzI1NiIsInR5cCI6ImFjY2VzcyJ9.eyJleHAiOjE4MDAwMDAwMDAsInN1YiI6IjcifQ.c2ln","user":{"email":"a@b.c"}}`))
	f.Add([]byte(`{"accessToken":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln\u001b]52;c;eA==\u0007\n::warning::x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeLoginResponse(body)
		if err != nil {
			if strings.Contains(err.Error(), string(body)) && len(body) > 8 {
				t.Fatalf("error quotes the body: %v", err)
			}
			return
		}
		if res.AccessToken == "" || strings.TrimSpace(res.AccessToken) != res.AccessToken {
			t.Fatalf("accepted an empty or untrimmed token %q", res.AccessToken)
		}
		// Only three base64url segments are ever handed out.
		parts := strings.Split(res.AccessToken, ".")
		if len(parts) != 3 || !isBase64URL(parts[0]) || !isBase64URL(parts[1]) || !isBase64URL(parts[2]) {
			t.Fatalf("accepted a token that is not three base64url segments: %q", res.AccessToken)
		}
	})
}

// members reads any JSON object as encoding/json does: for the login
// answer, the accessToken and user.id it finds are those of a reflective
// decode (exact keys, the last of duplicates), for any input.
func FuzzMembersAgreeWithEncodingJSON(f *testing.F) {
	f.Add([]byte(`{"accessToken":"a.b.c","authentication":{"accessToken":"x"},"user":{"id":1,"email":"x@y.z"}}`))
	f.Add([]byte(`{"accessToken":"a\u0062c","user":{"id":"u\"1","id":2}, "x":[{"y":"}]"}]}`))
	f.Add([]byte(` { "accessToken" : [1,{"a":"b"}] , "user":null , "accessToken":"t" } `))
	f.Add([]byte(`{"acce\u0073sToken":"t","user":{"i\u0064":-1.5e3}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var gotTok, gotID string
		ok := members(body, func(key string, value []byte) {
			switch key {
			case "accessToken":
				gotTok = jsonText(value, len(value))
			case "user":
				gotID = ""
				members(value, func(key string, value []byte) {
					if key == "id" {
						gotID = idValue(value)
					}
				})
			}
		})
		var ref map[string]json.RawMessage
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		refOK := len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(body, &ref) == nil
		if ok != refOK {
			t.Fatalf("members ok=%v, encoding/json ok=%v", ok, refOK)
		}
		if !ok {
			return
		}
		var wantTok, wantID string
		_ = json.Unmarshal(ref["accessToken"], &wantTok)
		var user map[string]json.RawMessage
		if json.Unmarshal(ref["user"], &user) == nil {
			wantID = idValue(user["id"])
		}
		if raw := ref["accessToken"]; len(raw) == 0 || raw[0] != '"' {
			wantTok = ""
		}
		if gotTok != wantTok || gotID != wantID {
			t.Fatalf("members: %q %q; encoding/json: %q %q", gotTok, gotID, wantTok, wantID)
		}
	})
}

func FuzzDecodeErrorBody(f *testing.F) {
	f.Add([]byte(`{"name":"NotAuthenticated","message":"Invalid login","code":401,"className":"not-authenticated"}`), 401, "")
	f.Add([]byte(`<html>`), 502, "")
	f.Add([]byte(`{"message":"\u0000\u001b[31m"}`), 400, "")
	f.Add([]byte(`{"message":"Invalid login: {\"password\":\"p\\u003c\"}"}`), 401, "p<")
	f.Add([]byte(`{"name":"Invalid login","message":"Invalid login"}`), 401, "Invalid login")
	f.Fuzz(func(t *testing.T, body []byte, status int, secret string) {
		name, msg := decodeError(body, status, secret)
		// Only known texts come out: a known name or none, and a known
		// message, a status text, or the marker of a withheld one.
		if name != "" && feathersErrors[name] == "" {
			t.Fatalf("unknown name %q quoted", name)
		}
		statusText := http.StatusText(status)
		if statusText == "" {
			statusText = "HTTP " + strconv.Itoa(status)
		}
		if !knownMessages[msg] && msg != statusText && msg != MessageWithheld && msg != redacted && msg != withheld {
			t.Fatalf("message %q is not a known text", msg)
		}
		if len(secret) >= 4 && (strings.Contains(msg, secret) || strings.Contains(name, secret)) {
			t.Fatalf("secret %q kept in %q %q", secret, name, msg)
		}
	})
}

func FuzzDecodeProjects(f *testing.F) {
	f.Add([]byte(`[{"id":402,"name":"DEMO_PROJECT","deleted":false,"disabled":false}]`))
	f.Add([]byte(`{"data":[{"name":"P"}]}`))
	f.Add([]byte(`{"total":3,"skip":0,"data":[{"name":"P","deleted":true},{"name":7},{}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeProjects(body, nil)
		if err != nil {
			return
		}
		if page.entries < len(page.projects) {
			t.Fatalf("%d projects from %d entries", len(page.projects), page.entries)
		}
		for _, p := range page.projects {
			if p.Name == "" {
				t.Fatal("project without a name")
			}
		}
		// Keeping fewer names never changes the entry count.
		kept, err := decodeProjects(body, func(string) bool { return false })
		if err != nil || kept.entries != page.entries || len(kept.projects) != 0 {
			t.Fatalf("with nothing kept: %+v, %v", kept, err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Add("120")
	f.Add("Fri, 27 Nov 2026 12:00:30 GMT")
	f.Add("-5")
	f.Add("4294967296")
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("invalid value gave %s", d)
		}
		if d < 0 {
			t.Fatalf("negative wait %s", d)
		}
		resp := &http.Response{Header: http.Header{"Retry-After": {v}}}
		if w := backoff(time.Millisecond, time.Second, 1, resp); w < 0 || w > MaxRetryAfter {
			t.Fatalf("backoff %s outside [0, %s]", w, MaxRetryAfter)
		}
	})
}

func FuzzValidateBaseURL(f *testing.F) {
	f.Add("https://app.metakraftwerk.com/")
	f.Add("http://127.0.0.1:8787")
	f.Add("http://[::1]:1/x#y")
	f.Add("http://LOCALHOST.:8080")
	f.Add("http://127.0.0.1.:1/")
	f.Add("http://[0:0:0:0:0:0:0:1]")
	f.Add("https://u@h")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ValidateBaseURL(raw)
		if err != nil {
			return
		}
		parsed, perr := url.Parse(u)
		if perr != nil || strings.HasSuffix(u, "/") || parsed.User != nil || parsed.RawQuery != "" || parsed.Fragment != "" || parsed.Host == "" {
			t.Fatalf("accepted %q as %q", raw, u)
		}
		// The host is one that can be dialled: no bracket outside an IPv6 literal.
		if strings.ContainsAny(parsed.Hostname(), "[]") {
			t.Fatalf("accepted %q as %q, whose host %q cannot be dialled", raw, u, parsed.Hostname())
		}
		if parsed.Scheme == "http" && !IsLoopbackHost(parsed.Hostname()) {
			t.Fatalf("accepted plain http to %q", parsed.Hostname())
		}
		// Whatever the spelling, a plain-http login never goes to a proxy.
		if parsed.Scheme == "http" {
			if p, err := testProxy(parsed); err != nil || p != nil {
				t.Fatalf("%q (from %q) would be sent through HTTP_PROXY: %v %v", u, raw, p, err)
			}
		}
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			t.Fatalf("accepted scheme of %q", u)
		}
		again, err := ValidateBaseURL(u)
		if err != nil || again != u {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, u, again, err)
		}
	})
}

func FuzzParseCAPool(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, data string) {
		pool, err := ParseCAPool(data)
		if err == nil && (pool == nil || strings.TrimSpace(data) == "") {
			t.Fatal("no error and no certificate")
		}
	})
}

func FuzzParseClaims(f *testing.F) {
	signed := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["typ"] = "access"
		s, _ := tok.SignedString([]byte("k"))
		return s
	}
	f.Add(signed(jwt.MapClaims{"exp": 1800000000, "jti": "abc", "sub": "7"}))
	f.Add(signed(jwt.MapClaims{"exp": "soon"}))
	f.Add(signed(jwt.MapClaims{"exp": 1e300, "jti": 5}))
	f.Add(signed(jwt.MapClaims{"jti": strings.Repeat("é", 200)}))
	f.Add(signed(jwt.MapClaims{}))
	f.Add("a.b.c")
	f.Add("not a jwt")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := parseClaims(token)
		if err != nil {
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Fatal("error quotes the token")
			}
			return
		}
		if claims.HasExp == claims.ExpiresAt.IsZero() {
			t.Fatal("HasExp disagrees with ExpiresAt")
		}
		if claims.HasExp && (claims.ExpiresAt.Unix() < 0 || claims.ExpiresAt.After(maxExp)) {
			t.Fatalf("exp %s outside 1970..9999", claims.ExpiresAt)
		}
		// A token handed out is three base64url segments and nothing else.
		parts := strings.Split(token, ".")
		if len(parts) != 3 || !isBase64URL(parts[0]) || !isBase64URL(parts[1]) || !isBase64URL(parts[2]) {
			t.Fatalf("accepted a token that is not three base64url segments: %q", token)
		}
		for kind, c := range map[IDKind]string{TokenID: claims.ID, UserID: claims.Subject} {
			if p := ProjectID(kind, c, ""); p != "" && p != NotAnID && p != c {
				t.Fatalf("claim %q projected as %q", c, p)
			}
		}
	})
}

// An upstream id leaves whole and id-shaped, or as a fixed word: never a
// part of one, never a text with a rune UnsafeRune refuses, never one
// that holds the password.
func FuzzProjectID(f *testing.F) {
	f.Add(false, "12", "Pw-Hostile_7xQ")
	f.Add(true, "0b8f4a52-3c1d-4e7a-9b2f-6d5e4c3b2a19", "Pw-Hostile_7xQ")
	f.Add(false, "Pw-Hostile_7xQ", "Pw-Hostile_7xQ")
	f.Add(false, "20241231", "Secret20241231!")
	f.Add(true, "50772d48-6f73-7469-6c65-5f377851aaaa", "Pw-Hostile_7xQ")
	f.Add(false, strings.Repeat("1", 20), "")
	f.Add(true, "a\u202eb", "")
	f.Fuzz(func(t *testing.T, token bool, id, password string) {
		kind := UserID
		if token {
			kind = TokenID
		}
		got := ProjectID(kind, id, password)
		switch got {
		case "":
			if id != "" {
				t.Fatalf("%q projected as nothing", id)
			}
			return
		case NotAnID, IDEchoesPassword:
			return
		}
		if got != id || !idShape(kind, got) || !utf8.ValidString(got) {
			t.Fatalf("%q projected as %q", id, got)
		}
		if _, _, bad := UnsafeRune(got); bad {
			t.Fatalf("%q shown with an unsafe rune", got)
		}
		lower, pw := strings.ToLower(got), strings.ToLower(password)
		for i := 0; i+minTextRun <= len(pw); i++ {
			if strings.Contains(lower, pw[i:i+minTextRun]) {
				t.Fatalf("%q shown although it holds %q of the password %q", got, pw[i:i+minTextRun], password)
			}
		}
		if len(pw) >= 4 && strings.Contains(lower, pw) {
			t.Fatalf("%q shown although it holds the password %q", got, password)
		}
	})
}

// testProxy is Go's own proxy decision with HTTP_PROXY and HTTPS_PROXY set
// and NO_PROXY empty: the environment an operator's Vault may give the plugin.
func testProxy(u *url.URL) (*url.URL, error) {
	return (&httpproxy.Config{HTTPProxy: "http://proxy.invalid:3128", HTTPSProxy: "http://proxy.invalid:3128"}).ProxyFunc()(u)
}
