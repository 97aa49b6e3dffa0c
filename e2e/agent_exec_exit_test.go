//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// execEvent is a line the exec test's service writes: when, its pid, what
// (start, or the signal it got) and, for start, its token.
type execEvent struct {
	at    time.Time
	pid   int
	what  string
	token string
}

func execEvents(file string) []execEvent {
	data, _ := os.ReadFile(file)
	var out []execEvent
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		pid, _ := strconv.Atoi(f[1])
		e := execEvent{at: time.Unix(0, ns), pid: pid, what: f[2]}
		if len(f) > 3 {
			e.token = f[3]
		}
		out = append(out, e)
	}
	return out
}

// procStat is a process's state, parent and process group from
// /proc/<pid>/stat; ok is false when there is no such process.
func procStat(pid int) (state string, ppid, pgid int, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	// The command name is in parentheses and may hold spaces.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 3 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgid, _ = strconv.Atoi(f[2])
	return f[0], ppid, pgid, true
}

func running(pid int) bool {
	state, _, _, ok := procStat(pid)
	return ok && state != "Z"
}

// TestAgentExecGivesUp measures what happens to the service under the
// shipped exec configuration (bootstrap/agent/exec.hcl.tmpl, with
// exit_on_retry_failure = true) when Agent gives up: MetaKraftwerk goes
// down after the service has started, with 30-second tokens (a 25 s lease)
// and a retry budget of one retry, and stays down. The service records
// each signal it gets. The test runs Agent under a plain parent process
// (this test); operations.md says what follows under systemd.
//
// Measured, and kept true here: Agent exits with an error once its retry
// fails, and sends the service no signal; the service runs on, orphaned,
// past its token's exp. So Agent's exit alone does not stop the service:
// its supervisor must (systemd's KillMode=control-group,
// bootstrap/agent/metakraftwerk-agent.service).
func TestAgentExecGivesUp(t *testing.T) {
	t.Parallel()
	const life = 30 * time.Second
	s, dir, tokenFile := newAgentStackLife(t, "agent-exec-gives-up", life, "5s")
	// A read fails at once while the stand-in is down.
	s.MustCLI("write", mount+"/config", "max_retries=0", "request_timeout=2s")
	events, service := filepath.Join(dir, "events"), filepath.Join(dir, "service.sh")
	script := fmt.Sprintf(`#!/bin/sh
ev() { printf '%%s %%s %%s %%s\n' "$(date +%%s%%N)" "$$" "$1" "$2" >>%q; }
for sig in HUP INT QUIT TERM USR1 USR2 PIPE ALRM; do trap "ev $sig; exit 0" $sig; done
ev start "$METAKRAFTWERK_TOKEN"
while :; do sleep 1 & wait $!; done
`, events)
	if err := os.WriteFile(service, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := s.agentConfig(dir, "exec.hcl.tmpl", "@STATE_DIR@", dir, "@VAULT_ADDR@", s.Addr, "@TOKEN_FILE@", tokenFile, "@COMMAND@", service)
	cfg, _ := os.ReadFile(cfgFile)
	short := strings.Replace(string(cfg), "vault {\n", "vault {\n  retry {\n    num_retries = 1\n  }\n", 1)
	if short == string(cfg) {
		t.Fatal("exec.hcl.tmpl has no `vault {` block to set the retry budget in")
	}
	if err := os.WriteFile(cfgFile, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := s.startAgent(dir, cfgFile)

	var first execEvent
	waitFor(t, 30*time.Second, "the service to start with a token", func() bool {
		for _, e := range execEvents(events) {
			if e.what == "start" {
				first = e
				return true
			}
		}
		return false
	})
	// Whatever happens, the service does not outlive the test.
	t.Cleanup(func() { _ = syscall.Kill(first.pid, syscall.SIGKILL) })
	iat, exp := tokenTimes(t, first.token)
	_, _, agentGroup, _ := procStat(first.pid)
	_ = s.MK.Close()
	down := time.Now()

	// Agent's failed reads, as the role's last_error_at records each, until
	// Agent exits.
	var failures []time.Time
	for stop := time.After(time.Until(exp.Add(60 * time.Second))); ; {
		if at, err := time.Parse(time.RFC3339Nano, fields(s.MustCLI("read", mount+"/roles/team-a-ci"))["last_error_at"]); err == nil &&
			(len(failures) == 0 || at.After(failures[len(failures)-1])) {
			failures = append(failures, at)
		}
		select {
		case <-agent.done:
		case <-stop:
			t.Fatalf("Agent did not give up within 60 s of the token's exp, %s after MetaKraftwerk went down", time.Since(down).Round(time.Second))
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}
	if len(failures) == 0 {
		t.Fatal("Agent gave up without a failed read")
	}
	var reads []string
	for _, f := range failures {
		reads = append(reads, f.Sub(iat).Round(100*time.Millisecond).String())
	}
	state, ppid, pgid, _ := procStat(first.pid)
	t.Logf("Agent's failed reads, after the token's iat: %v (the 25 s lease ends at 25s, the token's exp is at %s)", reads, exp.Sub(iat))
	t.Logf("Agent (pid %d) exited %s after iat, %s after its first failed read, %s after the token's exp: %v",
		agent.pid, agent.exitedAt.Sub(iat).Round(100*time.Millisecond), agent.exitedAt.Sub(failures[0]).Round(100*time.Millisecond),
		agent.exitedAt.Sub(exp).Round(100*time.Millisecond), agent.state)
	t.Logf("the service (pid %d, started %s after iat, process group %d; Agent's pid %d): after Agent's exit state %q, parent %d, process group %d",
		first.pid, first.at.Sub(iat).Round(100*time.Millisecond), agentGroup, agent.pid, state, ppid, pgid)
	if agent.state.Success() {
		t.Errorf("Agent exited with success after giving up: %v", agent.state)
	}

	// Watch the service until 10 s past its token's exp, and Agent's exit.
	until := exp.Add(10 * time.Second)
	if after := agent.exitedAt.Add(10 * time.Second); after.After(until) {
		until = after
	}
	for time.Now().Before(until) && running(first.pid) {
		time.Sleep(200 * time.Millisecond)
	}
	var signals []string
	for _, e := range execEvents(events) {
		if e.pid == first.pid && e.what != "start" {
			signals = append(signals, fmt.Sprintf("%s %s after Agent's exit", e.what, e.at.Sub(agent.exitedAt).Round(100*time.Millisecond)))
		}
	}
	alive := running(first.pid)
	t.Logf("the service: signals received %v; still running %s after its token's exp and %s after Agent's exit: %v (observed until then)",
		signals, time.Since(exp).Round(100*time.Millisecond), time.Since(agent.exitedAt).Round(100*time.Millisecond), alive)
	if len(signals) > 0 {
		t.Errorf("the service got %v when Agent gave up; operations.md says it gets no signal", signals)
	}
	if !alive {
		t.Error("the service stopped when Agent gave up; operations.md says it runs on with its expired token")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "[ERROR]") || strings.Contains(strings.ToLower(line), "exec") && strings.Contains(line, "[INFO]") {
			t.Logf("agent.log: %s", line)
		}
	}
}
