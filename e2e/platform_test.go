//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenBaoNamespacesPerTeam: one namespace per team, each with its own
// mount, roles and team policy. A team-a token mints team-a tokens and gets
// 403 on team-b's creds, on its own roles and on the root namespace's
// mount; leases revoke inside the namespace. Namespaces need Vault
// Enterprise; OpenBao has them in its open-source build.
func TestOpenBaoNamespacesPerTeam(t *testing.T) {
	t.Parallel()
	if !serverPlatform(t).OpenBao {
		t.Skipf("namespaces need Vault Enterprise; %s is not, and OpenBao has them in its open-source build", serverPlatform(t).Name)
	}
	s := NewStack(t, StackOptions{NoMount: true})
	s.Version = requiredEnv(t, "PLUGIN_VERSION")
	s.RegisterPlugin(pluginCommand, s.Version) // the catalog is shared by all namespaces
	policies := filepath.Join(repoRoot(t), "bootstrap", "policies")
	mountIn := func(ns string, flags ...string) {
		s.MustCLI(append(append([]string{"secrets", "enable"}, flags...), "-path="+mount, "-plugin-version="+s.Version, pluginName)...)
		s.MustCLI(append(append([]string{"write"}, flags...), mount+"/config", "base_url="+s.MK.URL)...)
	}
	for _, team := range []struct{ name, email, password string }{{"team-a", teamAEmail, teamAPassword}, {"team-b", teamBEmail, teamBPassword}} {
		s.MustCLI("namespace", "create", team.name)
		ns := "-namespace=" + team.name
		mountIn(team.name, ns)
		s.MustCLI("write", ns, mount+"/roles/"+team.name+"-ci", "email="+team.email, "password="+team.password)
		s.MustCLI("policy", "write", ns, team.name, filepath.Join(policies, team.name+".hcl"))
	}
	// The root namespace has a mount and a team-a role of its own.
	mountIn("")
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)

	teamA := strings.TrimSpace(s.MustCLI("token", "create", "-namespace=team-a", "-policy=team-a", "-field=token"))
	out, errOut, err := s.CLIAs(teamA, "read", "-namespace=team-a", "-field=access_token", mount+"/creds/team-a-ci")
	if err != nil || !jwtRe.MatchString(out) {
		t.Fatalf("team-a in its namespace: %v\n%s", err, errOut)
	}
	if code := useToken(t, s.MK.URL, strings.TrimSpace(out)); code != 200 {
		t.Fatalf("the team-a token gets HTTP %d", code)
	}
	for _, args := range [][]string{
		{"read", "-namespace=team-b", mount + "/creds/team-b-ci"},
		{"read", "-namespace=team-a", mount + "/roles/team-a-ci"},
		{"write", "-namespace=team-a", mount + "/config", "max_retries=1"},
		{"read", mount + "/creds/team-a-ci"}, // the root namespace's mount
	} {
		if _, errOut, err := s.CLIAs(teamA, args...); err == nil || !strings.Contains(errOut, "Code: 403") {
			t.Errorf("team-a: %s: want 403, got %v\n%s", strings.Join(args, " "), err, errOut)
		}
	}

	// Leases live and revoke inside the namespace.
	s.MustCLI("read", "-namespace=team-a", "-field=token_type", mount+"/creds/team-a-ci")
	if ids := s.leaseIDs("team-a-ci", "-namespace=team-a"); len(ids) != 2 {
		t.Fatalf("%d leases in namespace team-a, want 2", len(ids))
	}
	s.MustCLI("lease", "revoke", "-namespace=team-a", "-sync", "-prefix", mount+"/creds/")
	if ids := s.leaseIDs("team-a-ci", "-namespace=team-a"); len(ids) != 0 {
		t.Errorf("%d leases left in namespace team-a after revoke -prefix", len(ids))
	}
	if s.MustCLI("read", "-field=token_type", mount+"/creds/team-a-ci"); len(s.leaseIDs("team-a-ci")) != 1 {
		t.Error("the root namespace's leases were touched")
	}
}

// TestAgentExecRestartsWithFreshToken: Agent as a process supervisor
// (bootstrap/agent/exec.hcl.tmpl): the service gets METAKRAFTWERK_TOKEN in
// its environment and is restarted with a fresh, valid token before the
// lease of the first one ends.
func TestAgentExecRestartsWithFreshToken(t *testing.T) {
	t.Parallel()
	s, dir, tokenFile := newAgentStack(t, "agent-exec")
	seen := s.startExecAgent(dir, tokenFile)
	tokens := func() []string { toks, _ := servedTokens(seen); return toks }
	waitFor(t, 30*time.Second, "the service to start with a token", func() bool { return len(tokens()) >= 1 })
	first := tokens()[0]
	if !jwtRe.MatchString(first) || useToken(t, s.MK.URL, first) != 200 {
		t.Fatal("the service did not start with a valid token")
	}
	firstExp := jwtExp(t, first)
	waitFor(t, 40*time.Second, "the service to be restarted with a new token", func() bool { return len(tokens()) >= 2 })
	restartedAt := time.Now()
	second := tokens()[1]
	if code := useToken(t, s.MK.URL, second); code != 200 {
		t.Fatalf("the restarted service's token gets HTTP %d", code)
	}
	if !restartedAt.Before(firstExp) {
		t.Errorf("the service got its new token at %s, after the old one expired at %s", restartedAt, firstExp)
	}
	t.Logf("Agent exec: the service was restarted with a new token %s before the first token's exp", firstExp.Sub(restartedAt).Round(time.Millisecond))
}

// newAgentStack is a stack whose stand-in issues 20-second tokens, with a
// 5 s expiry_leeway, role team-a-ci, the team-a policy, and a team-a Vault
// token in dir/vault-token for Agent to authenticate with.
func newAgentStack(t *testing.T, dirName string) (s *Stack, dir, tokenFile string) {
	t.Helper()
	return newAgentStackLife(t, dirName, 20*time.Second, "5s")
}

// newAgentStackLife is newAgentStack with tokens of life and the
// expiry_leeway leeway.
func newAgentStackLife(t *testing.T, dirName string, life time.Duration, leeway string) (s *Stack, dir, tokenFile string) {
	t.Helper()
	s = NewStack(t, StackOptions{TokenLifetime: life})
	s.MustCLI("write", mount+"/config", "expiry_leeway="+leeway)
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.MustCLI("policy", "write", "team-a", filepath.Join(repoRoot(t), "bootstrap", "policies", "team-a.hcl"))
	teamA := strings.TrimSpace(s.MustCLI("token", "create", "-policy=team-a", "-field=token"))
	dir = s.agentDir(dirName)
	tokenFile = filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte(teamA), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, dir, tokenFile
}

// agentDir is a directory of its own for one Agent.
func (s *Stack) agentDir(name string) string {
	dir := filepath.Join(s.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	return dir
}

// startFileAgent starts Agent with bootstrap/agent/agent.hcl.tmpl as it is
// shipped, rendering into dir/metakraftwerk-token, which it returns.
func (s *Stack) startFileAgent(dir, tokenFile string) string {
	s.t.Helper()
	root := repoRoot(s.t)
	dest := filepath.Join(dir, "metakraftwerk-token")
	s.startAgentFrom(dir, "agent.hcl.tmpl", "@STATE_DIR@", dir, "@VAULT_ADDR@", s.Addr, "@TOKEN_FILE@", tokenFile,
		"@TEMPLATE@", filepath.Join(root, "bootstrap", "agent", "token.ctmpl"), "@DESTINATION@", dest)
	return dest
}

// startExecAgent starts Agent with bootstrap/agent/exec.hcl.tmpl as it is
// shipped, supervising a service that appends each token it starts with to
// dir/seen, which it returns, as "<unix nanoseconds> <token>" lines.
func (s *Stack) startExecAgent(dir, tokenFile string) string {
	s.t.Helper()
	seen, service := filepath.Join(dir, "seen"), filepath.Join(dir, "service.sh")
	script := "#!/bin/sh\nprintf '%s %s\\n' \"$(date +%s%N)\" \"$METAKRAFTWERK_TOKEN\" >>" + seen + "\nexec sleep 3600\n"
	if err := os.WriteFile(service, []byte(script), 0o700); err != nil {
		s.t.Fatal(err)
	}
	s.startAgentFrom(dir, "exec.hcl.tmpl", "@STATE_DIR@", dir, "@VAULT_ADDR@", s.Addr, "@TOKEN_FILE@", tokenFile, "@COMMAND@", service)
	return seen
}

// startAgentFrom fills in a shipped Agent configuration and starts Agent
// with it.
func (s *Stack) startAgentFrom(dir, tmplName string, placeholders ...string) *agentProc {
	s.t.Helper()
	return s.startAgent(dir, s.agentConfig(dir, tmplName, placeholders...))
}

// agentConfig writes a shipped Agent configuration, filled in, to
// dir/agent.hcl and returns its path.
func (s *Stack) agentConfig(dir, tmplName string, placeholders ...string) string {
	s.t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(repoRoot(s.t), "bootstrap", "agent", tmplName))
	if err != nil {
		s.t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgFile, []byte(strings.NewReplacer(placeholders...).Replace(string(tmpl))), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return cfgFile
}

// servedTokens reads an exec service's record: each token it started with,
// in order, with when it started, repeats dropped.
func servedTokens(seen string) (tokens []string, started []time.Time) {
	data, err := os.ReadFile(seen)
	if err != nil {
		return nil, nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		at, tok, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || tok == "" || (len(tokens) > 0 && tokens[len(tokens)-1] == tok) {
			continue
		}
		ns, _ := strconv.ParseInt(at, 10, 64)
		tokens, started = append(tokens, tok), append(started, time.Unix(0, ns))
	}
	return tokens, started
}

// agentProc is a running Agent; done is closed when it has exited, with
// its exit status in state and the time it was seen to exit in exitedAt.
type agentProc struct {
	pid      int
	done     chan struct{}
	state    *os.ProcessState
	exitedAt time.Time
}

func (s *Stack) startAgent(dir, cfgFile string) *agentProc {
	s.t.Helper()
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	agent := exec.Command(s.Bin, "agent", "-config="+cfgFile, "-log-level=debug")
	// The shipped templates take the mount from Agent's environment.
	agent.Env = append(s.env(), "MOUNT="+s.mount())
	agent.Stdout, agent.Stderr = logf, logf
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agent.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &agentProc{pid: agent.Process.Pid, done: make(chan struct{})}
	go func() {
		p.state, _ = agent.Process.Wait()
		p.exitedAt = time.Now()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		_ = syscall.Kill(-agent.Process.Pid, syscall.SIGTERM)
		<-p.done
		_ = syscall.Kill(-agent.Process.Pid, syscall.SIGKILL) // the supervised service
		logf.Close()
		log, _ := os.ReadFile(logf.Name())
		s.mu.Lock()
		s.stderr = append(s.stderr, string(log))
		s.mu.Unlock()
	})
	return p
}
