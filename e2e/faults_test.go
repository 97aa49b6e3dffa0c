//go:build e2e

package e2e

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// TestUpstreamFaultMatrix: for every fault the stand-in can produce, a real
// `vault read metakraftwerk/creds/<role>` gives a clear error (or succeeds
// after retries where that is right) within request_timeout × (max_retries+1)
// plus backoff, and the next normal read succeeds.
func TestUpstreamFaultMatrix(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	const timeout, retries = 2 * time.Second, 2
	s.MustCLI("write", mount+"/config", "request_timeout=2s", "max_retries=2")
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("write", mount+"/roles/wrong-pw", "email="+teamAEmail, "password=not-the-password", "verify=false")
	s.addSecret("not-the-password")
	// Budget: every attempt times out, plus the exponential backoff between
	// them (250ms + 500ms), plus CLI and Vault overhead.
	budget := timeout*(retries+1) + 750*time.Millisecond + 3*time.Second

	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	defer other.Close()

	tests := []struct {
		name   string
		role   string
		faults devserver.Faults
		// want is "ok" or a substring of the CLI's error output.
		want    string
		code    string
		warning string
		minTime time.Duration
	}{
		{name: "hang beyond request_timeout", faults: devserver.Faults{Mode: devserver.ModeHang}, want: "no answer within request_timeout", code: "502"},
		{name: "500 then success", faults: devserver.Faults{FailNext: 2, FailStatus: 500}, want: "ok"},
		{name: "502 then success", faults: devserver.Faults{FailNext: 2, FailStatus: 502}, want: "ok"},
		{name: "503 then success", faults: devserver.Faults{FailNext: 2, FailStatus: 503, RetryAfter: 1}, want: "ok", minTime: 2 * time.Second},
		{name: "504 then success", faults: devserver.Faults{FailNext: 2, FailStatus: 504}, want: "ok"},
		{name: "503 beyond retries", faults: devserver.Faults{FailNext: 10, FailStatus: 503}, want: "HTTP 503 Unavailable: Service Unavailable (after 3 attempts)", code: "502"},
		{name: "429 with Retry-After honoured", faults: devserver.Faults{RateLimitNext: 2, RetryAfter: 1}, want: "ok", minTime: 2 * time.Second},
		{name: "401 bad credentials", role: "wrong-pw", want: `MetaKraftwerk rejected the login for role "wrong-pw": Invalid login`, code: "400"},
		{name: "400 from upstream", faults: devserver.Faults{FailNext: 1, FailStatus: 400}, want: `rejected the login for role "team-a-ci" (HTTP 400 BadRequest): Bad Request`, code: "400"},
		{name: "201 with a non-JSON body", faults: devserver.Faults{Mode: devserver.ModeGarbage}, want: "the login answer is not a JSON object", code: "502"},
		{name: "201 without accessToken", faults: devserver.Faults{Mode: devserver.ModeNoToken}, want: "the login answer has no accessToken", code: "502"},
		{name: "accessToken not a JWT", faults: devserver.Faults{Mode: devserver.ModeNotJWT}, want: "is not a JWT", code: "502"},
		{name: "JWT already expired", faults: devserver.Faults{Mode: devserver.ModeExpired}, want: "already expired", code: "502"},
		{name: "JWT without exp", faults: devserver.Faults{Mode: devserver.ModeNoExp}, want: "ok", warning: "no exp claim"},
		{name: "10 MiB body", faults: devserver.Faults{Mode: devserver.ModeHuge}, want: "exceeds the 1 MiB limit", code: "502"},
		{name: "redirect to another host", faults: devserver.Faults{Mode: devserver.ModeRedirect, RedirectTo: other.URL},
			want: `redirect to another host (path and query not shown)`, code: "502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role := tt.role
			if role == "" {
				role = "team-a-ci"
			}
			s.MK.SetFaults(tt.faults)
			start := time.Now()
			out, errOut, err := s.CLI("read", "-format=json", mount+"/creds/"+role)
			elapsed := time.Since(start)
			s.MK.SetFaults(devserver.Faults{})
			switch {
			case tt.want == "ok" && err != nil:
				t.Errorf("want success, got %v\n%s", err, errOut)
			case tt.want != "ok" && (err == nil || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "Code: "+tt.code)):
				t.Errorf("want HTTP %s with %q, got err %v\n%s", tt.code, tt.want, err, errOut)
			}
			if tt.warning != "" && !strings.Contains(out, tt.warning) {
				t.Errorf("no warning %q in the response", tt.warning)
			}
			if elapsed > budget || elapsed < tt.minTime {
				t.Errorf("took %s; want between %s and %s", elapsed, tt.minTime, budget)
			}
			t.Logf("%s: %s", tt.name, elapsed.Round(time.Millisecond))
			// The engine stays healthy.
			s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests: credentials were re-sent", n)
	}

	t.Run("connection refused", func(t *testing.T) {
		addr := strings.TrimPrefix(s.MK.URL, "http://")
		_ = s.MK.Close()
		start := time.Now()
		_, errOut, err := s.CLI("read", mount+"/creds/team-a-ci")
		if err == nil || !strings.Contains(errOut, "(3 attempts): the connection to "+addr+" was refused") {
			t.Errorf("got %v\n%s", err, errOut)
		}
		if time.Since(start) > budget {
			t.Errorf("took %s", time.Since(start))
		}
		s.StartMK(addr)
		s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	})

	t.Run("TLS", func(t *testing.T) {
		tlsSrv := httptest.NewUnstartedServer(s.MK.Handler())
		tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
		tlsSrv.StartTLS()
		defer tlsSrv.Close()
		ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
		port := tlsSrv.URL[strings.LastIndexByte(tlsSrv.URL, ':')+1:]

		s.MustCLI("write", mount+"/config", "base_url="+tlsSrv.URL)
		_, errOut, err := s.CLI("read", mount+"/creds/team-a-ci")
		if err == nil || !strings.Contains(errOut, "unknown authority") || !strings.Contains(errOut, "1 attempt)") {
			t.Errorf("unknown CA: %v\n%s", err, errOut)
		}
		s.MustCLI("write", mount+"/config", "ca_cert="+ca)
		s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")

		s.MustCLI("write", mount+"/config", "base_url=https://localhost:"+port)
		_, errOut, err = s.CLI("read", mount+"/creds/team-a-ci")
		if err == nil || !strings.Contains(errOut, "the TLS certificate presented is not valid for localhost:"+port+", the host in base_url") {
			t.Errorf("name mismatch: %v\n%s", err, errOut)
		}
		// https to the plain-HTTP stand-in: a configuration error, no retries.
		plainPort := s.MK.URL[strings.LastIndexByte(s.MK.URL, ':')+1:]
		s.MustCLI("write", mount+"/config", "base_url=https://127.0.0.1:"+plainPort, "ca_cert=")
		_, errOut, err = s.CLI("read", mount+"/creds/team-a-ci")
		if err == nil || !strings.Contains(errOut, "did not answer with TLS") || !strings.Contains(errOut, "(1 attempt)") {
			t.Errorf("https to plain http: %v\n%s", err, errOut)
		}
		s.MustCLI("write", mount+"/config", "base_url="+s.MK.URL)
		s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	})
}

// TestBadInputThroughCLI: every config and role field's bad values give a
// 400 naming the field, and a read afterwards shows the previous state.
func TestBadInputThroughCLI(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "description=before", "ttl=1h", "max_ttl=2h")
	s.MustCLI("write", mount+"/config", "request_timeout=10s")
	configBefore := s.MustCLI("read", "-format=json", mount+"/config")
	roleBefore := s.MustCLI("read", "-format=json", mount+"/roles/team-a-ci")
	long := strings.Repeat("r", 200)

	tests := []struct {
		args  []string
		field string
	}{
		{[]string{"config", "base_url=not a url"}, "base_url"},
		{[]string{"config", "base_url=ftp://mk.example.com"}, "base_url"},
		{[]string{"config", "base_url=http://mk.example.com"}, "base_url"},
		{[]string{"config", "base_url=https://mk.example.com/?x=1"}, "base_url"},
		{[]string{"config", "ca_cert=-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----"}, "ca_cert"},
		{[]string{"config", "ca_cert=not pem at all"}, "ca_cert"},
		{[]string{"config", "request_timeout=-5s"}, "request_timeout"},
		{[]string{"config", "request_timeout=1000h"}, "request_timeout"},
		{[]string{"config", "request_timeout=0"}, "request_timeout"},
		{[]string{"config", "max_retries=11"}, "max_retries"},
		{[]string{"config", "max_retries=-1"}, "max_retries"},
		{[]string{"config", "expiry_leeway=-1m"}, "expiry_leeway"},
		{[]string{"config", "expiry_leeway=30h"}, "expiry_leeway"},
		{[]string{"config", "base_ulr=https://typo.example.com"}, "base_ulr"},
		{[]string{"roles/team-a-ci", "ttl=3h"}, "ttl"},
		{[]string{"roles/team-a-ci", "ttl=-1h"}, "ttl"},
		{[]string{"roles/team-a-ci", "max_ttl=forever"}, "max_ttl"},
		{[]string{"roles/team-a-ci", "email=not-an-email"}, "email"},
		{[]string{"roles/team-a-ci", "password="}, "password"},
		{[]string{"roles/team-a-ci", "reuse_min_remaining=21h"}, "reuse_min_remaining"},
		{[]string{"roles/team-a-ci", "projects=A,,B"}, "projects"},
		{[]string{"roles/team-a-ci", "passwrd=x"}, "passwrd"},
		{[]string{"roles/new", "email=" + teamAEmail}, "password"},
		{[]string{"roles/a b", "email=" + teamAEmail, "password=x"}, "name"},
		{[]string{"roles/" + long, "email=" + teamAEmail, "password=x"}, "name"},
		{[]string{"roles/-lead", "email=" + teamAEmail, "password=x"}, "name"},
	}
	for _, tt := range tests {
		args := append([]string{"write", mount + "/" + tt.args[0]}, tt.args[1:]...)
		_, errOut, err := s.CLI(args...)
		if err == nil || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, tt.field) {
			t.Errorf("vault write %s: want a 400 naming %q, got %v\n%s", redactArgs(args[1:]), tt.field, err, errOut)
		}
	}
	_, errOut, err := s.CLI("write", mount+"/roles/with/slash", "email="+teamAEmail, "password=x")
	if err == nil || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, "name") {
		t.Errorf("role name with '/': %v\n%s", err, errOut)
	}
	if after := s.MustCLI("read", "-format=json", mount+"/config"); stripRequestID(after) != stripRequestID(configBefore) {
		t.Errorf("config changed:\n%s\n%s", configBefore, after)
	}
	if after := s.MustCLI("read", "-format=json", mount+"/roles/team-a-ci"); stripRequestID(after) != stripRequestID(roleBefore) {
		t.Errorf("role changed:\n%s\n%s", roleBefore, after)
	}
	if list := s.MustCLI("list", mount+"/roles"); strings.TrimSpace(list) != "Keys\n----\nteam-a-ci" {
		t.Errorf("roles after rejected writes:\n%s", list)
	}
}

func stripRequestID(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, `"request_id"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
