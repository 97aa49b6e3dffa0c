package mkclient

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for every parser of data that comes from outside: login and
// error bodies, project lists, Retry-After, base URLs and CA bundles. Their
// seed corpora (testdata/fuzz and the f.Add calls) run in `make test`;
// `make fuzz` explores further.

func FuzzDecodeLoginResponse(f *testing.F) {
	f.Add([]byte(`{"accessToken":"a.b.c","authentication":{"strategy":"local","accessToken":"a.b.c"},"user":{"id":1,"email":"x@y.z"}}`))
	f.Add([]byte(`{"accessToken":null,"user":{"id":[1]}}`))
	f.Add([]byte(`{"accessToken":"  x  ","user":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := DecodeLoginResponse(body)
		if err != nil {
			if strings.Contains(err.Error(), string(body)) && len(body) > 8 {
				t.Fatalf("error quotes the body: %v", err)
			}
			return
		}
		if res.AccessToken == "" || strings.TrimSpace(res.AccessToken) != res.AccessToken {
			t.Fatalf("accepted an empty or untrimmed token %q", res.AccessToken)
		}
	})
}

func FuzzDecodeErrorBody(f *testing.F) {
	f.Add([]byte(`{"name":"NotAuthenticated","message":"Invalid login","code":401,"className":"not-authenticated"}`), 401)
	f.Add([]byte(`<html>`), 502)
	f.Add([]byte(`{"message":"\u0000\u001b[31m"}`), 400)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		_, msg := DecodeErrorBody(body, status)
		if msg == "" {
			t.Fatal("empty message")
		}
		if utf8.RuneCountInString(msg) > maxMessageLen+1 {
			t.Fatalf("message of %d runes not bounded", utf8.RuneCountInString(msg))
		}
		for _, r := range msg {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character %U in message", r)
			}
		}
	})
}

func FuzzDecodeProjects(f *testing.F) {
	f.Add([]byte(`[{"id":402,"name":"DEMO_PROJECT","deleted":false,"disabled":false}]`))
	f.Add([]byte(`{"data":[{"name":"P"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := DecodeProjects(body)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.Name == "" {
				t.Fatal("project without a name")
			}
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
		d, ok := ParseRetryAfter(v, now)
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
		if parsed.Scheme == "http" && !IsLoopbackHost(parsed.Hostname()) {
			t.Fatalf("accepted plain http to %q", parsed.Hostname())
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

func FuzzParsePEMCertificates(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParsePEMCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}
