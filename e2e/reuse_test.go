//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReuseSurvivesChurningCIJobs: a CI fleet where every job has its own
// short-lived Vault token. Each job's lease is revoked when its token
// expires; that must not retire the role's shared token. Over more than a
// minute the whole fleet costs at most 2 logins.
func TestReuseSurvivesChurningCIJobs(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "reuse_tokens=true")
	s.MustCLI("policy", "write", "team-a", filepath.Join(repoRoot(t), "bootstrap", "policies", "team-a.hcl"))
	before := s.MK.Stats().LoginsByUser[teamAEmail]

	const jobs, every = 45, 1500 * time.Millisecond
	start := time.Now()
	distinct := map[string]bool{}
	for i := range jobs {
		job := strings.TrimSpace(s.MustCLI("token", "create", "-policy=team-a", "-ttl=3s", "-field=token"))
		out, errOut, err := s.CLIAs(job, "read", "-field=access_token", mount+"/creds/team-a-ci")
		if err != nil || !jwtRe.MatchString(out) {
			t.Fatalf("job %d: %v\n%s", i, err, errOut)
		}
		distinct[strings.TrimSpace(out)] = true
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * every)))
	}
	// The last jobs' tokens expire; their leases are revoked.
	waitFor(t, 30*time.Second, "every job's lease to be revoked", func() bool { return len(s.leaseIDs("team-a-ci")) == 0 })
	elapsed := time.Since(start)

	logins := s.MK.Stats().LoginsByUser[teamAEmail] - before
	revoked := strings.Count(s.nodeLogs(), "lease revoked; MetaKraftwerk cannot invalidate the token")
	if revoked < jobs {
		t.Errorf("only %d of %d leases were revoked; the test did not exercise revocation", revoked, jobs)
	}
	if logins > 2 {
		t.Errorf("%d CI jobs over %s cost %d logins; want at most 2", jobs, elapsed.Round(time.Second), logins)
	}
	t.Logf("reuse under churn: %d jobs with 3-second Vault tokens over %s: %d upstream logins, %d distinct tokens, %d leases revoked",
		jobs, elapsed.Round(time.Second), logins, len(distinct), revoked)
}

// TestRotateRoleRetiresSharedToken: lease revocation (even -prefix) leaves
// the shared token; rotate-role retires it, and the next reader logs in.
func TestRotateRoleRetiresSharedToken(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "reuse_tokens=true")
	first := strings.TrimSpace(s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci"))
	s.MustCLI("lease", "revoke", "-sync", "-prefix", mount+"/creds/team-a-ci")
	logins := s.MK.Stats().Logins
	if again := strings.TrimSpace(s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")); again != first || s.MK.Stats().Logins != logins {
		t.Fatal("revoking the role's leases retired the shared token")
	}

	_ = s.MK.Close() // retiring contacts nothing
	out := fields(s.MustCLI("write", "-f", mount+"/rotate-role/team-a-ci"))
	if out["retired"] != "true" || out["token_id"] == "" {
		t.Fatalf("rotate-role answered %v", out)
	}
	s.StartMK(strings.TrimPrefix(s.MK.URL, "http://"))
	next := strings.TrimSpace(s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci"))
	if next == first || s.MK.Stats().Logins != 1 {
		t.Fatalf("after rotate-role: same token %v, %d logins at the restarted stand-in", next == first, s.MK.Stats().Logins)
	}
	// Team policies grant creds only: rotating is the platform team's.
	s.MustCLI("policy", "write", "team-a", filepath.Join(repoRoot(t), "bootstrap", "policies", "team-a.hcl"))
	teamA := strings.TrimSpace(s.MustCLI("token", "create", "-policy=team-a", "-field=token"))
	if _, errOut, err := s.CLIAs(teamA, "write", "-f", mount+"/rotate-role/team-a-ci"); err == nil || !strings.Contains(errOut, "Code: 403") {
		t.Errorf("team-a rotated its role: %v\n%s", err, errOut)
	}
}

// TestRejectedLoginBurst: the password was changed in MetaKraftwerk but not
// in Vault. 200 CI jobs starting together cause at most 2 failed logins,
// not 200; after the role is fixed, the next read works at once.
func TestRejectedLoginBurst(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	const stale = "pw-changed-upstream-3f9a"
	s.addSecret(stale)
	s.MustCLI("write", mount+"/roles/team-a-ci", "email="+teamAEmail, "password="+stale, "verify=false")
	before := s.MK.Stats().LoginRequests

	const n = 200
	client := s.API(s.Token)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.ReadCreds(client, "team-a-ci")
		}()
	}
	wg.Wait()
	attempts := s.MK.Stats().LoginRequests - before
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "Code: 400") || !strings.Contains(err.Error(), `MetaKraftwerk rejected the login for role "team-a-ci": Invalid login`) {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
	if attempts > 2 {
		t.Errorf("%d concurrent readers made %d login attempts; want at most 2", n, attempts)
	}
	// A later reader is told when it was tried, without an attempt.
	_, errOut, err := s.CLI("read", mount+"/creds/team-a-ci")
	if err == nil || !strings.Contains(errOut, "last tried at") || s.MK.Stats().LoginRequests-before != attempts {
		t.Errorf("remembered rejection: %v\n%s", err, errOut)
	}
	// The operator fixes the role; the next read succeeds at once.
	s.MustCLI("write", mount+"/roles/team-a-ci", "password="+teamAPassword)
	s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	t.Logf("wrong password: %d concurrent reads made %d upstream login attempts; fixed by one role write", n, attempts)
}
