//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
)

// TestHostileUpstreamReachesNoSink: an upstream (or a proxy in front of it)
// that echoes the login's password into a malformed status line, a header
// line, Content-Length, Transfer-Encoding, a reason phrase, the names of
// the certificate a retry meets, a redirect's host (as sent, lower-cased,
// hex) or every field of a Feathers error, or that breaks the project
// listing with the access token. For each, as an operator and a CI job
// meet it on a real server: a verifying role write, creds, verify-role with
// retry_now, a verifying write that keeps the login, a role read and the
// metrics. No spelling of the password or the token reaches the CLI's
// answers, the role's last_error, the metrics, the file audit device (its
// top-level error is not HMAC'd) or the server's trace log; the harness
// scans the last three at teardown.
func TestHostileUpstreamReachesNoSink(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	const password = "Pw-Hostile_7xQ/z=K&9"
	s.addSecret(password)
	body, _ := json.Marshal(map[string]string{"email": teamAEmail, "password": password, "strategy": "local"})
	s.addSecret(string(body))
	caFile := filepath.Join(s.Dir, "hostile-ca.pem")
	var texts []string
	for _, mode := range hostile.Modes {
		srv, err := hostile.Start(mode)
		if err != nil {
			t.Fatal(err)
		}
		config := []string{"write", mount + "/config", "base_url=" + srv.URL, "max_retries=1", "request_timeout=2s"}
		if srv.CAPEM != "" {
			if err := os.WriteFile(caFile, []byte(srv.CAPEM), 0o600); err != nil {
				t.Fatal(err)
			}
			config = append(config, "ca_cert=@"+caFile)
		}
		s.MustCLI(config...)
		role := mount + "/roles/victim-" + string(mode)
		failing := func(args ...string) {
			t.Helper()
			out, errOut, err := s.CLI(args...)
			if err == nil {
				t.Errorf("%s: %s succeeded against a hostile upstream", mode, args[1])
			}
			texts = append(texts, out, errOut)
		}
		failing("write", role, "email="+teamAEmail, "password="+password, "projects=TEAM_A")
		s.MustCLI("write", role, "email="+teamAEmail, "password="+password, "projects=TEAM_A", "verify=false")
		if out, errOut, err := s.CLI("read", strings.Replace(role, "/roles/", "/creds/", 1)); err == nil {
			if mode != hostile.ProjectsEcho {
				t.Errorf("%s: creds succeeded against a hostile upstream", mode)
			}
		} else {
			texts = append(texts, out, errOut)
		}
		failing("write", strings.Replace(role, "/roles/", "/verify-role/", 1), "retry_now=true")
		failing("write", role, "projects=TEAM_B")
		// last_error is a failed login's; projects-echo's logins succeed.
		status := s.MustCLI("read", "-format=json", role)
		if mode != hostile.ProjectsEcho && (!strings.Contains(status, `"last_error": "`) || strings.Contains(status, `"last_error": ""`)) {
			t.Errorf("%s: the role's status shows no last_error:\n%s", mode, status)
		}
		texts = append(texts, status)
		for _, tok := range srv.Tokens() {
			s.addSecret(tok)
		}
		if mode == hostile.ProjectsEcho && len(srv.Tokens()) == 0 {
			t.Errorf("the projects-echo upstream issued no token; the listing was never reached")
		}
		_ = srv.Close()
	}
	metrics, err := s.API(s.Token).Logical().ReadRaw(mount + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(metrics.Body)
	metrics.Body.Close()
	texts = append(texts, buf.String())

	s.mu.Lock()
	secrets := append([]string(nil), s.secrets...)
	s.mu.Unlock()
	for i, text := range texts {
		for _, leak := range leakcheck.Find(text, secrets) {
			t.Errorf("answer %d holds secret #%d, %s", i, leak.Secret, leak.Form)
		}
	}
	// The errors are the engine's words, in the CLI and, for the 5xx
	// answers, in the audit log's clear top-level error (a 400's error is
	// response data, which the audit device HMACs).
	all := strings.Join(texts, "\n")
	audit, _ := os.ReadFile(s.audit)
	for _, want := range []string{"was not valid HTTP", "the TLS certificate presented is not valid for localhost:",
		"a redirect to another host", "HTTP 503: Service Unavailable (after 2 attempts)",
		`listing the projects of role \"victim-projects-echo\" failed`, "(message withheld)"} {
		if !strings.Contains(all, strings.ReplaceAll(want, `\"`, `"`)) {
			t.Errorf("no answer says %q", want)
		}
		if want != "(message withheld)" && !bytes.Contains(audit, []byte(want)) {
			t.Errorf("the audit log holds no error saying %q; is the scan looking at the right place?", want)
		}
	}
}
