//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/loadgen"
)

// claimsOf is a token's claims, unverified.
func claimsOf(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return claims
}

func jwtExp(t *testing.T, token string) time.Time {
	t.Helper()
	exp, err := claimsOf(t, token).GetExpirationTime()
	if err != nil || exp == nil {
		t.Fatalf("no exp: %v", err)
	}
	return exp.Time
}

// tokenTimes is a token's iat and exp.
func tokenTimes(t *testing.T, token string) (iat, exp time.Time) {
	t.Helper()
	claims := claimsOf(t, token)
	i, _ := claims.GetIssuedAt()
	e, _ := claims.GetExpirationTime()
	if i == nil || e == nil {
		t.Fatal("the token has no iat or exp")
	}
	return i.Time, e.Time
}

func TestRegisterInfoAndPathHelp(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	info := fields(s.MustCLI("plugin", "info", "-version="+s.Version, "secret", pluginName))
	if info["version"] != s.Version || info["sha256"] != pluginSHA(t, s.PluginBin) || info["command"] != pluginCommand {
		t.Fatalf("plugin info = %v", info)
	}
	list := s.MustCLI("secrets", "list", "-detailed")
	if !strings.Contains(list, mount+"/") || !strings.Contains(list, s.Version) {
		t.Fatalf("secrets list does not show the mount at %s:\n%s", s.Version, list)
	}
	help := s.MustCLI("path-help", mount+"/creds/x")
	for _, want := range []string{"access_token", "expires_at", "token_id", "non-renewable", "Revoking the lease contacts nothing"} {
		if !strings.Contains(help, want) {
			t.Errorf("path-help creds lacks %q", want)
		}
	}
	help = s.MustCLI("path-help", mount+"/roles/x")
	for _, want := range []string{"email", "password", "ttl", "max_ttl", "projects", "verify", "reuse_tokens"} {
		if !strings.Contains(help, want) {
			t.Errorf("path-help roles lacks %q", want)
		}
	}
}

func TestConfigAndRolesRoundTrip(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.MustCLI("write", mount+"/config", "request_timeout=10s", "max_retries=2", "expiry_leeway=2m")
	cfg := fields(s.MustCLI("read", mount+"/config"))
	if cfg["base_url"] != s.MK.URL || cfg["request_timeout"] != "10" || cfg["max_retries"] != "2" || cfg["expiry_leeway"] != "120" {
		t.Fatalf("config read = %v", cfg)
	}

	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "projects=TEAM_A", "description=CI of team A", "ttl=1h")
	s.CreateRole("team-b-ci", teamBEmail, teamBPassword)
	out := s.MustCLI("read", mount+"/roles/team-a-ci")
	if strings.Contains(out, teamAPassword) {
		t.Fatal("vault read of a role prints the password")
	}
	role := fields(out)
	if role["email"] != teamAEmail || role["password_set"] != "true" || role["projects"] != "[TEAM_A]" || role["ttl"] != "1h" {
		t.Fatalf("role read = %v", role)
	}
	jsonOut := s.MustCLI("read", "-format=json", mount+"/roles/team-a-ci")
	if strings.Contains(jsonOut, teamAPassword) || strings.Contains(jsonOut, `"password"`) {
		t.Fatal("JSON role read carries the password")
	}
	list := s.MustCLI("list", mount+"/roles")
	if !strings.Contains(list, "team-a-ci") || !strings.Contains(list, "team-b-ci") {
		t.Fatalf("list = %s", list)
	}

	// Bad input: a 400 naming the field, nothing changed.
	_, errOut, err := s.CLI("write", mount+"/roles/team-a-ci", "ttl=3h", "max_ttl=2h")
	if err == nil || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, "ttl") {
		t.Fatalf("ttl > max_ttl: err %v\n%s", err, errOut)
	}
	if got := fields(s.MustCLI("read", mount+"/roles/team-a-ci"))["ttl"]; got != "1h" {
		t.Fatalf("ttl changed to %s by a rejected write", got)
	}
	// A rejected login is refused at write time.
	_, errOut, err = s.CLI("write", mount+"/roles/bad", "email="+teamAEmail, "password=wrong-password")
	if err == nil || !strings.Contains(errOut, `MetaKraftwerk rejected the login for role "bad": Invalid login`) {
		t.Fatalf("wrong password: err %v\n%s", err, errOut)
	}
	s.MustCLI("delete", mount+"/roles/team-b-ci")
	if list := s.MustCLI("list", mount+"/roles"); strings.Contains(list, "team-b-ci") {
		t.Fatal("deleted role still listed")
	}
}

func TestCredsLeaseAndToken(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)

	out := s.MustCLI("read", "-format=json", mount+"/creds/team-a-ci")
	now := time.Now()
	var sec struct {
		LeaseID       string            `json:"lease_id"`
		LeaseDuration int               `json:"lease_duration"`
		Renewable     bool              `json:"renewable"`
		Data          map[string]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &sec); err != nil {
		t.Fatalf("%v: %s", err, jwtRe.ReplaceAllString(out, "<jwt>"))
	}
	tok := sec.Data["access_token"]
	exp := jwtExp(t, tok)
	want := exp.Sub(now) - time.Minute // default leeway
	if d := time.Duration(sec.LeaseDuration)*time.Second - want; d > 2*time.Second || d < -2*time.Second {
		t.Errorf("lease_duration %ds, want exp - now - leeway = %s (±2s)", sec.LeaseDuration, want)
	}
	if sec.Renewable {
		t.Error("lease is renewable")
	}
	if sec.Data["token_type"] != "Bearer" || sec.Data["role"] != "team-a-ci" || sec.Data["email"] != teamAEmail ||
		sec.Data["user_id"] != "11" || sec.Data["token_id"] == "" || sec.Data["expires_at"] != exp.UTC().Format(time.RFC3339) {
		t.Errorf("creds data = %v", redactData(sec.Data))
	}
	if code := useToken(t, s.MK.URL, tok); code != 200 {
		t.Errorf("the minted token gets HTTP %d from the stand-in", code)
	}

	// -field=access_token prints just the token, as CI jobs use it.
	field := s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	if !jwtRe.MatchString(field) || strings.TrimSpace(field) != jwtRe.FindString(field) || strings.Contains(field, "\n") {
		t.Errorf("-field=access_token printed more than the token: %q", jwtRe.ReplaceAllString(field, "<jwt>"))
	}

	// Clients that can only POST get the same.
	if out := s.MustCLI("write", "-f", "-field=token_type", mount+"/creds/team-a-ci"); strings.TrimSpace(out) != "Bearer" {
		t.Errorf("POST creds: %q", out)
	}

	_, errOut, err := s.CLI("lease", "renew", sec.LeaseID)
	if err == nil || !strings.Contains(errOut, "lease is not renewable") {
		t.Errorf("lease renew: err %v\n%s", err, errOut)
	}
	_, errOut, err = s.CLI("read", mount+"/creds/nope")
	if err == nil || !strings.Contains(errOut, `role "nope" not found`) || !strings.Contains(errOut, "Code: 400") {
		t.Errorf("unknown role: %v\n%s", err, errOut)
	}
}

func redactData(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = jwtRe.ReplaceAllString(v, "<jwt>")
	}
	return out
}

func TestMountMaxLeaseTTLCaps(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("secrets", "tune", "-max-lease-ttl=1h", mount)
	out := s.MustCLI("read", "-format=json", mount+"/creds/team-a-ci")
	var sec struct {
		LeaseDuration int      `json:"lease_duration"`
		Warnings      []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &sec); err != nil {
		t.Fatal(err)
	}
	if sec.LeaseDuration != 3600 {
		t.Errorf("lease_duration %d, want 3600", sec.LeaseDuration)
	}
	if len(sec.Warnings) == 0 || !strings.Contains(strings.Join(sec.Warnings, " "), "exceeded the effective max_ttl") {
		t.Errorf("no capping warning: %v", sec.Warnings)
	}
}

func TestTeamPolicies(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.CreateRole("team-a-deploy", teamAEmail, teamAPassword)
	s.CreateRole("team-b-ci", teamBEmail, teamBPassword)
	root := repoRoot(t)
	for _, team := range []string{"team-a", "team-b"} {
		s.MustCLI("policy", "write", team, filepath.Join(root, "bootstrap", "policies", team+".hcl"))
	}
	teamA := strings.TrimSpace(s.MustCLI("token", "create", "-policy=team-a", "-field=token"))

	for _, role := range []string{"team-a-ci", "team-a-deploy"} {
		if _, errOut, err := s.CLIAs(teamA, "read", "-field=access_token", mount+"/creds/"+role); err != nil {
			t.Errorf("team-a cannot read creds/%s: %v\n%s", role, err, errOut)
		}
	}
	denied := [][]string{
		{"read", mount + "/creds/team-b-ci"},
		{"read", mount + "/roles/team-a-ci"},
		{"list", mount + "/roles"},
		{"read", mount + "/config"},
		{"write", mount + "/config", "max_retries=1"},
		{"write", mount + "/roles/team-a-ci", "description=x"},
	}
	for _, args := range denied {
		_, errOut, err := s.CLIAs(teamA, args...)
		if err == nil || !strings.Contains(errOut, "Code: 403") || !strings.Contains(errOut, "permission denied") {
			t.Errorf("team-a: vault %s: want 403, got err %v\n%s", strings.Join(args, " "), err, errOut)
		}
	}

	// The platform team runs the engine but mints no team's tokens.
	s.MustCLI("policy", "write", "platform", filepath.Join(root, "bootstrap", "policies", "platform.hcl"))
	platform := strings.TrimSpace(s.MustCLI("token", "create", "-policy=platform", "-field=token"))
	for _, args := range [][]string{
		{"write", mount + "/config", "max_retries=2"},
		{"read", mount + "/config"},
		{"list", "-detailed", mount + "/roles"},
		{"write", mount + "/roles/team-b-ci", "description=by the platform team"},
		{"read", mount + "/roles/team-b-ci"},
		{"write", "-f", mount + "/rotate-role/team-b-ci"},
		{"write", "-f", mount + "/verify-role/team-b-ci"},
	} {
		if _, errOut, err := s.CLIAs(platform, args...); err != nil {
			t.Errorf("platform: vault %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
	}
	if code, _, _ := get(t, s.Addr+"/v1/"+mount+"/metrics", platform); code != 200 {
		t.Errorf("platform: metrics: HTTP %d", code)
	}
	if _, errOut, err := s.CLIAs(platform, "read", mount+"/creds/team-a-ci"); err == nil || !strings.Contains(errOut, "Code: 403") {
		t.Errorf("platform: read creds: want 403, got err %v\n%s", err, errOut)
	}
}

func TestRevokeAndDisable(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	leaseID := func() string {
		out := s.MustCLI("read", "-format=json", mount+"/creds/team-a-ci")
		var sec struct {
			LeaseID string `json:"lease_id"`
		}
		if err := json.Unmarshal([]byte(out), &sec); err != nil || sec.LeaseID == "" {
			t.Fatalf("no lease id: %v", err)
		}
		return sec.LeaseID
	}
	one := leaseID()
	s.MustCLI("lease", "revoke", one)
	if _, errOut, err := s.CLI("lease", "lookup", one); err == nil || !strings.Contains(errOut, "invalid lease") {
		t.Errorf("lease still there after revoke: %v %s", err, errOut)
	}
	// MetaKraftwerk gone: revocation must not care.
	leaseID()
	leaseID()
	_ = s.MK.Close()
	s.MustCLI("lease", "revoke", "-prefix", mount+"/creds/")
	// Listing a prefix without leases is a 404 (exit 2).
	if out, _, err := s.CLI("list", "-format=json", "sys/leases/lookup/"+mount+"/creds/team-a-ci"); err == nil && strings.Trim(strings.TrimSpace(out), "[]{} \n") != "" {
		t.Errorf("leases left after revoke -prefix: %s", out)
	}
	s.StartMK(strings.TrimPrefix(s.MK.URL, "http://"))
	leaseID()
	leaseID()
	_ = s.MK.Close()
	s.MustCLI("secrets", "disable", mount)
	if list := s.MustCLI("secrets", "list"); strings.Contains(list, mount+"/") {
		t.Fatal("engine still mounted after disable")
	}
}

func TestUpstreamDownAndBack(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("write", mount+"/config", "request_timeout=2s", "max_retries=1")
	addr := strings.TrimPrefix(s.MK.URL, "http://")
	_ = s.MK.Close()

	start := time.Now()
	_, errOut, err := s.CLI("read", mount+"/creds/team-a-ci")
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(errOut, "Code: 502") || !strings.Contains(errOut, "MetaKraftwerk gave no usable answer to the login request (2 attempts): the connection to "+addr+" was refused") ||
		!strings.Contains(errOut, `role "team-a-ci"`) {
		t.Fatalf("upstream down: err %v\n%s", err, errOut)
	}
	if elapsed > 10*time.Second {
		t.Errorf("the error took %s; want it within request_timeout x attempts plus backoff", elapsed)
	}
	t.Logf("upstream down: error after %s", elapsed.Round(time.Millisecond))

	s.StartMK(addr)
	s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
}

func TestUpgradeKeepsRoles(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "description=survives")
	s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")

	// Build the next version the way `make build VERSION=v0.1.1` does.
	next := filepath.Join(t.TempDir(), pluginCommand)
	build := exec.Command("go", "build", "-trimpath", "-ldflags",
		"-X github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk.Version=v0.1.1",
		"-o", next, "./cmd/"+pluginCommand)
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building v0.1.1: %v\n%s", err, out)
	}
	s.InstallPlugin(next, pluginCommand+"-v0.1.1")
	s.RegisterPlugin(pluginCommand+"-v0.1.1", "v0.1.1")
	s.MustCLI("secrets", "tune", "-plugin-version=v0.1.1", mount)
	s.ReloadPlugin()
	waitFor(t, 30*time.Second, "the mount to run v0.1.1", func() bool {
		out, _, _ := s.CLI("secrets", "list", "-detailed", "-format=json")
		return strings.Contains(out, `"running_plugin_version": "v0.1.1"`)
	})
	if got := fields(s.MustCLI("read", mount+"/roles/team-a-ci"))["description"]; got != "survives" {
		t.Fatalf("role after upgrade: description %q", got)
	}
	s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
}

func TestAgentRendersAndRefreshes(t *testing.T) {
	t.Parallel()
	s, dir, tokenFile := newAgentStack(t, "agent")
	dest := s.startFileAgent(dir, tokenFile)

	read := func() string {
		data, err := os.ReadFile(dest)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(data))
	}
	waitFor(t, 30*time.Second, "Agent to render the token", func() bool { return read() != "" })
	first := read()
	st, err := os.Stat(dest)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("rendered file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if code := useToken(t, s.MK.URL, first); code != 200 {
		t.Fatalf("rendered token gets HTTP %d", code)
	}
	firstExp := jwtExp(t, first)
	waitFor(t, 30*time.Second, "Agent to render a new token", func() bool { return read() != first })
	second := read()
	renderedAt := time.Now()
	if !renderedAt.Before(firstExp) {
		t.Errorf("the new token came at %s, after the old one expired at %s", renderedAt, firstExp)
	}
	if code := useToken(t, s.MK.URL, second); code != 200 {
		t.Fatalf("re-rendered token gets HTTP %d", code)
	}
	t.Logf("Agent re-rendered %s before the first token's exp", firstExp.Sub(renderedAt).Round(time.Millisecond))
}

func TestReuseCoalescesThousandReads(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.CreateRole("reusing", teamAEmail, teamAPassword, "reuse_tokens=true")
	s.CreateRole("fresh", teamBEmail, teamBPassword)
	client := s.API(s.Token)

	run := func(role string, n, concurrency int) int64 {
		res := loadgen.Run(concurrency, n, func() error { return s.readCredsOnce(client, role) })
		if res.Errors > 0 {
			t.Logf("read %s: %v", role, res.FirstErr)
		}
		return res.Errors
	}
	before := s.MK.Stats().LoginsByUser
	if errs := run("reusing", 1000, 1000); errs != 0 {
		t.Fatalf("%d of 1000 reads of the reusing role failed", errs)
	}
	if errs := run("fresh", 1000, 32); errs != 0 {
		t.Fatalf("%d of 1000 reads of the non-reusing role failed", errs)
	}
	after := s.MK.Stats().LoginsByUser
	if got := after[teamAEmail] - before[teamAEmail]; got != 1 {
		t.Errorf("1,000 concurrent reads of a reusing role made %d logins, want exactly 1", got)
	}
	if got := after[teamBEmail] - before[teamBEmail]; got != 1000 {
		t.Errorf("1,000 reads of a non-reusing role made %d logins, want 1,000", got)
	}
	t.Logf("logins: reusing role %d, non-reusing role %d", after[teamAEmail]-before[teamAEmail], after[teamBEmail]-before[teamBEmail])
}

// TestPluginLogLevel: the plugin writes no per-login debug line unless its
// level asks for one (a line below the server's level still costs the
// server a parse): at the server's info, none; registered with
// METAKRAFTWERK_LOG_LEVEL=debug, one per fresh login.
func TestPluginLogLevel(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{ServerEnv: []string{"VAULT_LOG_LEVEL=info", "BAO_LOG_LEVEL=info"}})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("read", mount+"/creds/team-a-ci")
	if n := strings.Count(s.nodeLogs(), "issued access token"); n != 0 {
		t.Fatalf("%d debug lines at the default level", n)
	}
	s.RegisterPlugin(pluginCommand, s.Version, "METAKRAFTWERK_LOG_LEVEL=debug")
	s.ReloadPlugin()
	s.MustCLI("read", mount+"/creds/team-a-ci")
	if n := strings.Count(s.nodeLogs(), "issued access token"); n != 1 {
		t.Fatalf("%d debug lines for one fresh login at debug", n)
	}
}
