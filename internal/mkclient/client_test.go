package mkclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
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

func TestDecodeErrorBody(t *testing.T) {
	tests := []struct {
		body          string
		status        int
		name, message string
	}{
		{`{"name":"NotAuthenticated","message":"Invalid login","code":401,"className":"not-authenticated"}`, 401, "NotAuthenticated", "Invalid login"},
		{`{"message":"'email' is required"}`, 400, "", "'email' is required"},
		{`{"message":42}`, 400, "", "Bad Request"},
		{`<html>nope</html>`, 502, "", "Bad Gateway"},
		{``, 599, "", "HTTP 599"},
		{`{"message":"line1\nline2\u0000"}`, 400, "", "line1line2"},
		{`{"message":"` + strings.Repeat("é", 300) + `"}`, 400, "", strings.Repeat("é", 200) + "…"},
	}
	for _, tt := range tests {
		name, msg := DecodeErrorBody([]byte(tt.body), tt.status)
		if name != tt.name || msg != tt.message {
			t.Errorf("DecodeErrorBody(%.40q) = %q, %q; want %q, %q", tt.body, name, msg, tt.name, tt.message)
		}
	}
}

func TestDecodeLoginResponse(t *testing.T) {
	res, err := DecodeLoginResponse([]byte(`{"accessToken":"a.b.c","authentication":{"strategy":"local","payload":{"x":1}},"user":{"id":12,"email":"ci@example.com","extra":true}}`))
	if err != nil || res.AccessToken != "a.b.c" || res.UserID != "12" || res.Email != "ci@example.com" {
		t.Fatalf("got %+v, %v", res, err)
	}
	res, err = DecodeLoginResponse([]byte(`{"accessToken":"a.b.c","user":{"id":"u-12"}}`))
	if err != nil || res.UserID != "u-12" {
		t.Fatalf("string id: %+v, %v", res, err)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{}`, `{"accessToken":""}`, `{"accessToken":7}`, `{"authentication":{"accessToken":"a.b.c"}}`} {
		if _, err := DecodeLoginResponse([]byte(bad)); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%q: err = %v, want ErrMalformedResponse", bad, err)
		}
	}
}

func TestDecodeProjects(t *testing.T) {
	ps, err := DecodeProjects([]byte(`[{"id":402,"name":"DEMO_PROJECT","deleted":false,"disabled":true},{"id":1},{"name":"B"}]`))
	if err != nil || len(ps) != 2 || ps[0].ID != "402" || !ps[0].Disabled || ps[1].Name != "B" {
		t.Fatalf("got %+v, %v", ps, err)
	}
	ps, err = DecodeProjects([]byte(`{"total":1,"data":[{"id":1,"name":"P"}]}`))
	if err != nil || len(ps) != 1 || ps[0].Name != "P" {
		t.Fatalf("paged: %+v, %v", ps, err)
	}
	if _, err := DecodeProjects([]byte(`{"x":1}`)); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("err = %v", err)
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
	}
	for in, want := range good {
		if got, err := ValidateBaseURL(in); err != nil || got != want {
			t.Errorf("ValidateBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "   ", "mk.example.com", "/relative", "ftp://x.example.com", "http://example.com",
		"http://192.168.1.1", "http://[::2]", "https://user:pw@x.example.com", "https://x.example.com?q=1",
		"https://x.example.com/?", "https://x.example.com#f", "https://x.example.com:0", "https://x.example.com:abc",
		"http://localhost.example.com", "https://%zz"} {
		if got, err := ValidateBaseURL(bad); err == nil {
			t.Errorf("ValidateBaseURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestReadLimited(t *testing.T) {
	exact := strings.Repeat("x", MaxBodyBytes)
	if got, err := readLimited(strings.NewReader(exact)); err != nil || len(got) != MaxBodyBytes {
		t.Fatalf("exactly 1 MiB: %d, %v", len(got), err)
	}
	if _, err := readLimited(strings.NewReader(exact + "y")); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("1 MiB + 1: %v", err)
	}
}

func TestLoginSendsDocumentedRequest(t *testing.T) {
	var got struct {
		method, path, contentType, body string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		got.method, got.path, got.contentType, got.body = r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b[:n])
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"accessToken":"t.t.t","user":{"id":1,"email":"a@b.c"}}`))
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Login(context.Background(), "a@b.c", `p"w`)
	if err != nil || res.AccessToken != "t.t.t" || res.Attempts != 1 {
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
	ps, err := c.Projects(context.Background(), "tok")
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

func TestParsePEMCertificatesRejectsTrailingGarbage(t *testing.T) {
	if _, err := ParsePEMCertificates([]byte("")); err == nil {
		t.Error("empty bundle accepted")
	}
	if _, err := ParsePEMCertificates([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\ntrailing")); err == nil {
		t.Error("garbage accepted")
	}
}
