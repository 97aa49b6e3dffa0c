//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/loadgen"
)

// TestUpstreamTextNeverReachesLogsOrAudit: an upstream that echoes the
// login back, in every encoding a gateway has been seen to use, or that
// redirects to a form login carrying it in the query, never puts the
// password (in any spelling) into the creds error, the role's last_error,
// verify-role's error, a role write's error, the audit log (whose
// top-level error field Vault does not HMAC) or the server's trace log.
// The harness's leak scan checks every spelling at teardown.
func TestUpstreamTextNeverReachesLogsOrAudit(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	passwords := []string{"pw@ 1/&=<>-Zq8mT4vK", "pw-\u2028-\x7f-é-<&>-Lr5nW2"}
	type variant struct {
		name   string
		faults devserver.Faults
	}
	var variants []variant
	for _, e := range devserver.Echoes {
		variants = append(variants, variant{"echo " + string(e), devserver.Faults{Mode: devserver.ModeEcho, Echo: e}})
	}
	variants = append(variants, variant{"form-login redirect", devserver.Faults{Mode: devserver.ModeFormRedirect}})
	for _, pw := range passwords {
		s.addSecret(pw)
		body, _ := json.Marshal(map[string]string{"email": teamAEmail, "password": pw, "strategy": "local"})
		s.addSecret(string(body))
		for _, v := range variants {
			s.MK.SetFaults(v.faults)
			var answers []string
			_, errOut, err := s.CLI("write", mount+"/roles/echo", "email="+teamAEmail, "password="+pw)
			answers = append(answers, errOut)
			if err == nil {
				t.Fatalf("%s: a role write with an echoing upstream succeeded", v.name)
			}
			s.MustCLI("write", mount+"/roles/echo", "email="+teamAEmail, "password="+pw, "verify=false")
			_, errOut, _ = s.CLI("read", mount+"/creds/echo")
			answers = append(answers, errOut, fields(s.MustCLI("read", mount+"/roles/echo"))["last_error"])
			_, errOut, _ = s.CLI("write", mount+"/verify-role/echo", "retry_now=true")
			answers = append(answers, errOut)
			for i, a := range answers {
				if !strings.Contains(a, "(message withheld)") && !strings.Contains(a, "(path and query not shown)") {
					t.Errorf("%s: answer %d does not say what it withheld: %q", v.name, i, a)
				}
			}
			s.MustCLI("delete", mount+"/roles/echo")
		}
	}
	s.MK.SetFaults(devserver.Faults{})
	// The 502s' errors reached the audit log's top-level error field, which
	// is not HMAC'd: the scan looks where an echo would be.
	audit, _ := os.ReadFile(s.audit)
	if n := bytes.Count(audit, []byte(`"error":"1 error occurred:\n\t* getting a MetaKraftwerk token for role \"echo\" failed: MetaKraftwerk answered the login request with HTTP 303 and a redirect to http://127.0.0.1:`)); n < len(passwords) {
		t.Errorf("the audit log holds %d of the redirect's errors in clear", n)
	}
}

// TestVerifyRoleRefusesWhileRejected: once a login of a role was rejected,
// verify-role answers 429 with Retry-After and retry_after and sends no
// login, whoever calls it and however often, and rotate-role does not
// change that. After the account is fixed upstream, verify-role with
// retry_now passes, as the 429 says.
func TestVerifyRoleRefusesWhileRejected(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	// The mount passes the plugin's Retry-After header on.
	s.MustCLI("secrets", "tune", "-allowed-response-headers=Retry-After", mount)
	s.MustCLI("policy", "write", "verifier", writePolicy(t, s, `path "`+mount+`/verify-role/*" { capabilities = ["update"] }`))
	token := strings.TrimSpace(s.MustCLI("token", "create", "-policy=verifier", "-field=token"))

	// The account is locked upstream: its next login is refused.
	s.MK.SetFaults(devserver.Faults{FailNext: 1, FailStatus: http.StatusUnauthorized})
	before := s.MK.Stats().LoginRequests
	statuses := map[int]int{}
	var retryAfter, header string
	for range 20 {
		req, _ := http.NewRequest(http.MethodPost, s.Addr+"/v1/"+mount+"/verify-role/team-a-ci", nil)
		req.Header.Set("X-Vault-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			var body struct {
				Errors []string
				Data   map[string]json.Number
			}
			_ = json.Unmarshal(b, &body)
			retryAfter, header = body.Data["retry_after"].String(), resp.Header.Get("Retry-After")
			if len(body.Errors) != 1 || !strings.Contains(body.Errors[0], "write verify-role/team-a-ci with retry_now=true to try once now") {
				t.Errorf("429 body: %s", b)
			}
		}
	}
	logins := s.MK.Stats().LoginRequests - before
	if logins != 1 || statuses[400] != 1 || statuses[429] != 19 {
		t.Fatalf("20 verify-role calls: statuses %v, %d logins upstream", statuses, logins)
	}
	if retryAfter == "" || retryAfter != header || retryAfter == "0" {
		t.Errorf("retry_after %q, Retry-After %q", retryAfter, header)
	}
	if _, errOut, err := s.CLI("write", "-f", mount+"/verify-role/team-a-ci"); err == nil || !strings.Contains(errOut, "Code: 429") {
		t.Errorf("the CLI: %v\n%s", err, errOut)
	}
	t.Logf("20 verify-role calls on a rejected role: statuses %v, %d login upstream, Retry-After %ss", statuses, logins, header)

	// Fixed upstream (the fault is spent): rotate-role still answers 429,
	// verify-role with retry_now logs in once and passes.
	s.MustCLI("write", "-f", mount+"/rotate-role/team-a-ci")
	if _, errOut, err := s.CLI("write", "-f", mount+"/verify-role/team-a-ci"); err == nil || !strings.Contains(errOut, "Code: 429") {
		t.Errorf("verify-role after rotate-role: %v\n%s", err, errOut)
	}
	if v := fields(s.MustCLI("write", mount+"/verify-role/team-a-ci", "retry_now=true")); v["verified"] != "true" {
		t.Errorf("verify-role with retry_now: %v", v)
	}
	if n := s.MK.Stats().LoginRequests - before; n != 2 {
		t.Errorf("%d logins upstream in all, want 2", n)
	}
}

// writePolicy writes an HCL policy into the stack's directory.
func writePolicy(t *testing.T, s *Stack, hcl string) string {
	t.Helper()
	f, err := os.CreateTemp(s.Dir, "policy-*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(hcl); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// TestSlowUpstreamHoldsNoLocks: while a role write waits 8 s for
// MetaKraftwerk to answer its verify login, a write of another role in the
// same lock stripe and a password change (verify=false) of the same role
// finish at once; the slow write then stores nothing and answers 409, so
// no acknowledged write is undone.
func TestSlowUpstreamHoldsNoLocks(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("slow", teamAEmail, teamAPassword)
	stripe := locksutil.LockIndexForKey("slow")
	other := ""
	for i := 0; other == ""; i++ {
		if n := fmt.Sprintf("role-%d", i); locksutil.LockIndexForKey(n) == stripe {
			other = n
		}
	}
	s.CreateRole(other, teamBEmail, teamBPassword)
	s.MK.SetFaults(devserver.Faults{Latency: devserver.Duration(8 * time.Second)})

	slowDone := make(chan error, 1)
	var slowErr string
	start := time.Now()
	go func() {
		_, errOut, err := s.CLI("write", mount+"/roles/slow", "projects=TEAM_A")
		slowErr = errOut
		slowDone <- err
	}()
	waitFor(t, 5*time.Second, "the slow write's login", func() bool { return s.MK.Stats().LoginRequests > 2 })
	timed := func(args ...string) time.Duration {
		t0 := time.Now()
		s.MustCLI(args...)
		return time.Since(t0)
	}
	otherTook := timed("write", mount+"/roles/"+other, "ttl=10m")
	pwTook := timed("write", mount+"/roles/slow", "password=rotated-"+teamAPassword, "verify=false")
	s.addSecret("rotated-" + teamAPassword)
	select {
	case <-slowDone:
		t.Fatal("the slow write finished before the competing writes")
	default:
	}
	err := <-slowDone
	slowTook := time.Since(start)
	if err == nil || !strings.Contains(slowErr, "Code: 409") || !strings.Contains(slowErr, "was changed by another request") {
		t.Errorf("the slow write: %v\n%s", err, slowErr)
	}
	s.MK.SetFaults(devserver.Faults{})
	// The password change stands (it cleared verified_at), and the slow
	// write's projects were not stored.
	if role := fields(s.MustCLI("read", mount+"/roles/slow")); role["verified_at"] != "n/a" || role["projects"] != "[]" {
		t.Errorf("the role after both writes: %v", role)
	}
	t.Logf("with an 8 s upstream login in flight: a write of %s (same lock stripe) took %s, a password change of the same role %s; the slow write answered 409 after %s",
		other, otherTook.Round(time.Millisecond), pwTook.Round(time.Millisecond), slowTook.Round(time.Millisecond))
}

// TestUpstreamBudgetAnswers504: the server cancels requests after 6 s (its
// max_request_duration) without telling the plugin; with max_upstream_time
// below that and an upstream that never answers, a creds read, a
// verify-role and a verifying role write each answer 504 naming the wait,
// instead of the server's opaque "rpc error: code = Canceled" at 6 s.
func TestUpstreamBudgetAnswers504(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{ServerConfig: "default_max_request_duration = \"6s\"\n"})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("write", mount+"/config", "request_timeout=30s", "max_retries=0", "max_upstream_time=4s")
	s.MK.SetFaults(devserver.Faults{Mode: devserver.ModeHang})
	client := s.API(s.Token) // no client retries: one request each
	for _, req := range []struct {
		name string
		do   func() error
	}{
		{"creds read", func() error { _, err := client.Logical().Read(mount + "/creds/team-a-ci"); return err }},
		{"verify-role", func() error { _, err := client.Logical().Write(mount+"/verify-role/team-a-ci", nil); return err }},
		{"role write", func() error {
			_, err := client.Logical().Write(mount+"/roles/team-a-ci", map[string]any{"projects": "TEAM_A"})
			return err
		}},
	} {
		start := time.Now()
		err := req.do()
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "Code: 504") || !strings.Contains(err.Error(), "MetaKraftwerk did not answer within 4s") {
			t.Errorf("%s: %v after %s", req.name, err, took)
		}
		t.Logf("%s with a hanging upstream and 6 s requests: answered after %s", req.name, took.Round(time.Millisecond))
	}
}

// TestListIsBoundedPerRole: 1,000 roles of 100 projects of 256 bytes each
// list in well under 1.5 MB, since LIST shows small fields only.
func TestListIsBoundedPerRole(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	projects := make([]string, 100)
	for i := range projects {
		projects[i] = fmt.Sprintf("%03d-%s", i, strings.Repeat("p", 252))
	}
	client := s.API(s.Token)
	res := loadgen.Run(8, 1000, func() func() error {
		var mu sync.Mutex
		next := 0
		return func() error {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			_, err := client.Logical().Write(fmt.Sprintf("%s/roles/fat-%04d", mount, i), map[string]any{
				"email": teamAEmail, "password": teamAPassword, "projects": projects, "verify": false,
				"description": strings.Repeat("d", 1024)})
			return err
		}
	}())
	if res.Errors != 0 {
		t.Fatalf("writing the roles: %v", res.FirstErr)
	}
	pid := s.pluginPIDs()[0]
	var sizes []int
	var took []time.Duration
	for range 2 {
		req, _ := http.NewRequest("LIST", s.Addr+"/v1/"+mount+"/roles", nil)
		req.Header.Set("X-Vault-Token", s.Token)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
		sizes = append(sizes, len(b))
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"project_count":100`)) {
			t.Fatalf("LIST: %d %.300s", resp.StatusCode, b)
		}
	}
	if sizes[0] > 1_500_000 {
		t.Errorf("LIST of 1,000 fat roles answered %d bytes", sizes[0])
	}
	t.Logf("LIST of 1,000 roles of 100 × 256-byte projects: %d bytes in %s, again in %s; plugin RSS %.1f MB",
		sizes[0], took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), float64(pluginRSS(t, pid))/1e6)
}

// TestHostileAnswersKeepMemoryBounded: 32 concurrent logins answered with
// 1 MiB of JSON shaped to blow up a generic decoder keep the plugin's peak
// RSS under 100 MiB.
func TestHostileAnswersKeepMemoryBounded(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	pid := s.pluginPIDs()[0]
	before, _ := loadgen.PeakRSS(pid)
	s.MK.SetFaults(devserver.Faults{Mode: devserver.ModeHostile})
	client := s.API(s.Token)
	res := loadgen.Run(32, 96, func() error {
		_, err := client.Logical().Read(mount + "/creds/team-a-ci")
		if err == nil || !strings.Contains(err.Error(), "the login answer has no accessToken") {
			return fmt.Errorf("want the malformed answer refused, got %w", err)
		}
		return nil
	})
	if res.Errors != 0 {
		t.Fatalf("%d reads: %v", res.Errors, res.FirstErr)
	}
	peak, _ := loadgen.PeakRSS(pid)
	if peak > 100<<20 {
		t.Errorf("plugin peak RSS %.1f MiB after 32 concurrent hostile answers", float64(peak)/(1<<20))
	}
	t.Logf("96 hostile 1 MiB answers at concurrency 32: plugin peak RSS %.1f MiB (%.1f MiB before)", float64(peak)/(1<<20), float64(before)/(1<<20))
}
