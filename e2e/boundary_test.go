//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// TestUpstreamBoundary runs the real plugin in a real server at trace
// against the upstreams that aim past the error texts:
//   - an answer longer than its Content-Length and bytes on an idle
//     keep-alive connection (net/http logs them by itself): the creds read
//     succeeds, the server log shows the plugin's fixed line instead;
//   - ids spelling the password (raw, half, upper-cased, base64; 8, 129 and
//     1024 characters) with audit_non_hmac_response_keys=token_id,user_id
//     on the mount: creds, verify-role and the role read (the mkvault_role
//     data source's source for Terraform state) show fixed words;
//   - HTTP/2 GOAWAY(0) and REFUSED_STREAM: one creds read sends at most
//     max_retries+1 logins, and as many as the engine reports.
//
// The harness scans the server log and the audit log (token_id and
// user_id in clear there) for every spelling of every password at
// teardown.
func TestUpstreamBoundary(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.MustCLI("secrets", "tune", "-audit-non-hmac-response-keys=token_id", "-audit-non-hmac-response-keys=user_id", mount)
	start := func(mode hostile.Mode, retries string) *hostile.Server {
		t.Helper()
		srv, err := hostile.Start(mode)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		config := []string{"write", mount + "/config", "base_url=" + srv.URL, "max_retries=" + retries, "request_timeout=3s"}
		if srv.CAPEM != "" {
			caFile := s.Dir + "/hostile-" + string(mode) + ".pem"
			if err := os.WriteFile(caFile, []byte(srv.CAPEM), 0o600); err != nil {
				t.Fatal(err)
			}
			config = append(config, "ca_cert=@"+caFile)
		}
		s.MustCLI(config...)
		return srv
	}
	readJSON := func(args ...string) map[string]any {
		t.Helper()
		out := s.MustCLI(append([]string{args[0], "-format=json"}, args[1:]...)...)
		var v struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		return v.Data
	}

	t.Run("server log", func(t *testing.T) {
		const password = "Pw-Idle_7xQ/z=K&9-log"
		s.addSecret(password)
		for _, mode := range hostile.LogModes {
			srv := start(mode, "0")
			role := "log-" + string(mode)
			s.MustCLI("write", mount+"/roles/"+role, "email="+teamAEmail, "password="+password, "verify=false")
			creds := readJSON("read", mount+"/creds/"+role)
			for _, tok := range srv.Tokens() {
				s.addSecret(tok)
			}
			if creds["access_token"] == nil {
				t.Fatalf("%s: no token", mode)
			}
		}
		// net/http sees the bytes once the connection is idle.
		waitFor(t, 10*time.Second, "the plugin's line for a library's log", func() bool {
			return strings.Count(s.nodeLogs(), "a library wrote a log line of its own") >= len(hostile.LogModes)
		})
		if logs := s.nodeLogs(); strings.Contains(logs, "Unsolicited response") {
			t.Errorf("net/http's own line reached the server log")
		}
	})

	t.Run("ids", func(t *testing.T) {
		passwords := []string{"Pw-7xQz9", "Pw-" + strings.Repeat("7xQz9", 25) + "K", "Pw-" + strings.Repeat("7xQz9", 204) + "K"}
		for _, mode := range hostile.IDModes {
			srv := start(mode, "0")
			for _, password := range passwords {
				s.addSecret(password)
				role := "id-" + string(mode)
				// The hostile tokens live an hour: shared with a shorter
				// reuse_min_remaining than the default hour.
				s.MustCLI("write", mount+"/roles/"+role, "email="+teamAEmail, "password="+password, "projects=TEAM_A",
					"reuse_tokens=true", "reuse_min_remaining=60", "verify=false")
				// Through the API, not the CLI: the upstream's token itself
				// holds the password (in its claims), and the harness scans
				// the CLI's output for it.
				api := s.API(s.Token)
				sec, err := s.ReadCreds(api, role)
				if mode == hostile.IDRaw || mode == hostile.IDUpper {
					// The token itself holds the password whole: refused,
					// whatever its ids, and handed to nobody.
					if want := "it carries the login's password in its header or claims"; err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("%s: creds: %v, want %q", mode, err, want)
					}
					for _, tok := range srv.Tokens() {
						s.addSecret(tok)
					}
					continue
				}
				if err != nil || sec == nil {
					t.Fatalf("%s: creds: %v", mode, err)
				}
				creds := sec.Data
				sec, err = api.Logical().Write(mount+"/verify-role/"+role, map[string]any{"retry_now": true})
				if err != nil || sec == nil {
					t.Fatalf("%s: verify-role: %v", mode, err)
				}
				verify := sec.Data
				read := readJSON("read", mount+"/roles/"+role)
				for _, tok := range srv.Tokens() {
					s.addSecret(tok)
				}
				for what, v := range map[string]any{"creds user_id": creds["user_id"], "creds token_id": creds["token_id"],
					"verify-role user_id": verify["user_id"], "role shared_token_id": read["shared_token_id"]} {
					if v != mkclient.NotAnID && v != mkclient.IDEchoesPassword {
						t.Errorf("%s, %d chars: %s is %q, want a fixed word", mode, len(password), what, v)
					}
				}
			}
		}
	})

	t.Run("http2", func(t *testing.T) {
		const password = "Pw-H2_7xQ/z=K&9"
		s.addSecret(password)
		for _, mode := range []hostile.Mode{hostile.H2GoAway, hostile.H2Refused} {
			srv := start(mode, "1")
			role := "h2-" + string(mode)
			s.MustCLI("write", mount+"/roles/"+role, "email="+teamAEmail, "password="+password, "verify=false")
			_, _, err := s.CLI("read", mount+"/creds/"+role)
			for _, tok := range srv.Tokens() {
				s.addSecret(tok)
			}
			t.Logf("%s: one creds read sent %d logins (max_retries=1)", mode, srv.Requests())
			if err != nil || srv.Requests() != 1 {
				t.Errorf("%s: creds %v after %d logins; want one login over HTTP/1.1", mode, err, srv.Requests())
			}
		}
	})
}
