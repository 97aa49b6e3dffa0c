//go:build e2e

// Package e2e drives a real vault binary with the real plugin process and a
// stand-in MetaKraftwerk on loopback, the way operators and CI jobs do: the
// vault CLI first, the HTTP API where the CLI cannot (concurrency).
//
// Run it with `make e2e`: it needs VAULT_BIN (a vault >= 1.15), PLUGIN_BIN
// (the built plugin) and PLUGIN_VERSION (the version stamped into it);
// without them every test fails, it never skips.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

const (
	rootToken     = "e2e-root-token"
	pluginName    = "metakraftwerk"
	pluginCommand = "vault-plugin-secrets-metakraftwerk"
	mount         = "metakraftwerk"
	teamAEmail    = "team-a-ci@example.com"
	teamAPassword = "pw-TEAM-A-5d41402abc4b2a76"
	teamBEmail    = "team-b-ci@example.com"
	teamBPassword = "pw-TEAM-B-7d793037a0760186"
)

var jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// repoRoot is the repository root (bootstrap/ files are used as users use them).
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func requiredEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set; run the suite with `make e2e`", name)
	}
	return v
}

func pluginSHA(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// freePortPair finds a loopback port p with p+1 also free (Vault's dev
// cluster listener takes the next port).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		ln.Close()
		if err == nil {
			ln2.Close()
			return port
		}
	}
	t.Fatal("no free loopback port pair")
	return 0
}

// StackOptions tune a Stack.
type StackOptions struct {
	// TokenLifetime of the stand-in's tokens (default 20h).
	TokenLifetime time.Duration
	// NoMount skips plugin registration and mounting.
	NoMount bool
}

// Stack is one Vault dev server with the plugin mounted at metakraftwerk/,
// a stand-in MetaKraftwerk, and a file audit device. Everything listens on
// loopback and is torn down when the test ends; before that, every log line,
// audit line and CLI stderr is scanned for passwords and minted tokens.
type Stack struct {
	t         *testing.T
	VaultBin  string
	PluginBin string
	Addr      string
	Dir       string
	PluginDir string
	Version   string
	MK        *devserver.Running
	mkCfg     devserver.Config

	vault    *exec.Cmd
	vaultLog string
	audit    string

	mu      sync.Mutex
	secrets []string // every password and every token the stand-in minted
	served  []string // tokens handed out through Vault (CLI stdout, API reads)
	stderr  []string
}

func NewStack(t *testing.T, opts StackOptions) *Stack {
	t.Helper()
	s := &Stack{
		t:         t,
		VaultBin:  requiredEnv(t, "VAULT_BIN"),
		PluginBin: requiredEnv(t, "PLUGIN_BIN"),
		Dir:       t.TempDir(),
		secrets:   []string{teamAPassword, teamBPassword},
	}
	s.PluginDir = filepath.Join(s.Dir, "plugins")
	s.vaultLog = filepath.Join(s.Dir, "vault.log")
	s.audit = filepath.Join(s.Dir, "audit.log")
	for _, d := range []string{s.PluginDir, filepath.Join(s.Dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	s.mkCfg = devserver.Config{
		Users: []devserver.User{
			{ID: 11, Email: teamAEmail, Password: teamAPassword, Projects: []string{"TEAM_A"}},
			{ID: 12, Email: teamBEmail, Password: teamBPassword, Projects: []string{"TEAM_B"}},
		},
		TokenLifetime: opts.TokenLifetime,
		OnIssue:       s.addSecret,
	}
	s.StartMK("127.0.0.1:0")

	s.InstallPlugin(s.PluginBin, pluginCommand)
	s.startVault()
	t.Cleanup(s.teardown)
	s.MustCLI("audit", "enable", "file", "file_path="+s.audit, "log_raw=false")
	if !opts.NoMount {
		s.Version = requiredEnv(t, "PLUGIN_VERSION")
		s.RegisterPlugin(pluginCommand, s.Version)
		s.MustCLI("secrets", "enable", "-path="+mount, "-plugin-version="+s.Version, pluginName)
		s.MustCLI("write", mount+"/config", "base_url="+s.MK.URL)
	}
	return s
}

func (s *Stack) addSecret(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, v)
}

// StartMK (re)starts the stand-in on addr.
func (s *Stack) StartMK(addr string) {
	s.t.Helper()
	var err error
	for range 50 { // the old listener may take a moment to go away
		s.MK, err = devserver.Listen(addr, s.mkCfg)
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("starting the stand-in on %s: %v", addr, err)
}

// InstallPlugin copies a plugin binary into the plugin directory as command.
func (s *Stack) InstallPlugin(src, command string) {
	s.t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.PluginDir, command), data, 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// RegisterPlugin registers command by sha256 with version.
func (s *Stack) RegisterPlugin(command, version string) {
	s.t.Helper()
	s.MustCLI("plugin", "register", "-sha256="+pluginSHA(s.t, filepath.Join(s.PluginDir, command)),
		"-version="+version, "-command="+command, "secret", pluginName)
}

func (s *Stack) startVault() {
	s.t.Helper()
	port := freePortPair(s.t)
	s.Addr = "http://127.0.0.1:" + strconv.Itoa(port)
	hcl := filepath.Join(s.Dir, "vault.hcl")
	if err := os.WriteFile(hcl, []byte(fmt.Sprintf("plugin_directory = %q\n", s.PluginDir)), 0o600); err != nil {
		s.t.Fatal(err)
	}
	logf, err := os.Create(s.vaultLog)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.VaultBin, "server", "-dev", "-dev-root-token-id="+rootToken,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-config="+hcl, "-log-level=trace")
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.vault = cmd
	go func() { _ = cmd.Wait(); logf.Close() }()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(s.vaultLog)
	s.t.Fatalf("vault did not become healthy:\n%s", tail(string(log), 40))
}

// StopVault stops Vault and its plugin processes.
func (s *Stack) StopVault() {
	if s.vault == nil || s.vault.Process == nil {
		return
	}
	pgid := s.vault.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for syscall.Kill(s.vault.Process.Pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	s.vault = nil
}

func (s *Stack) env() []string {
	env := []string{
		"HOME=" + filepath.Join(s.Dir, "home"),
		"PATH=" + os.Getenv("PATH"),
		"VAULT_ADDR=" + s.Addr,
		"VAULT_TOKEN=" + rootToken,
		"VAULT_FORMAT=table",
	}
	return env
}

// CLI runs the vault CLI as root; stderr is kept for the leak scan.
func (s *Stack) CLI(args ...string) (string, string, error) {
	return s.CLIAs(rootToken, args...)
}

// CLIAs runs the vault CLI with token.
func (s *Stack) CLIAs(token string, args ...string) (string, string, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.VaultBin, args...)
	cmd.Env = append(s.env(), "VAULT_TOKEN="+token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	s.mu.Lock()
	s.stderr = append(s.stderr, stderr.String())
	s.served = append(s.served, jwtRe.FindAllString(stdout.String(), -1)...)
	s.mu.Unlock()
	return stdout.String(), stderr.String(), err
}

// MustCLI runs the vault CLI and fails the test on a non-zero exit.
func (s *Stack) MustCLI(args ...string) string {
	s.t.Helper()
	out, errOut, err := s.CLI(args...)
	if err != nil {
		s.t.Fatalf("vault %s: %v\n%s%s", redactArgs(args), err, out, errOut)
	}
	return out
}

func redactArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "password=") {
			a = "password=<redacted>"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// API returns a Vault API client with token.
func (s *Stack) API(token string) *vaultapi.Client {
	s.t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// CreateRole writes a role for one of the stand-in's users.
func (s *Stack) CreateRole(name, email, password string, extra ...string) {
	s.t.Helper()
	args := append([]string{"write", mount + "/roles/" + name, "email=" + email, "password=" + password}, extra...)
	s.MustCLI(args...)
}

// fields parses `vault read` table output into key -> value.
func fields(out string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Key") || strings.HasPrefix(line, "---") {
			continue
		}
		parts := strings.Fields(line)
		if len(parts) >= 2 {
			m[parts[0]] = strings.Join(parts[1:], " ")
		} else if len(parts) == 1 {
			m[parts[0]] = ""
		}
	}
	return m
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// teardown scans for leaks, then stops everything.
func (s *Stack) teardown() {
	s.checkNoLeaks()
	s.StopVault()
	if s.MK != nil {
		_ = s.MK.Close()
	}
}

// checkNoLeaks asserts that no password and no token the stand-in ever
// minted appears in clear in Vault's trace log (which carries the plugin's
// log), the audit log, or any CLI stderr. It also proves the scan looks at
// the right place: the audit log holds the HMAC of a minted token.
func (s *Stack) checkNoLeaks() {
	s.t.Helper()
	if s.vault == nil {
		return
	}
	s.mu.Lock()
	secrets := append([]string(nil), s.secrets...)
	stderr := strings.Join(s.stderr, "\n")
	s.mu.Unlock()
	vaultLog, _ := os.ReadFile(s.vaultLog)
	audit, _ := os.ReadFile(s.audit)
	places := map[string]string{"vault/plugin log": string(vaultLog), "audit log": string(audit), "CLI stderr": stderr}
	// Failures name the secret by position and kind only, never its text.
	for i, secret := range secrets {
		kind := "password"
		if jwtRe.MatchString(secret) {
			kind = "token"
		}
		for where, text := range places {
			if strings.Contains(text, secret) {
				s.t.Errorf("secret #%d (a %s of %d chars) appears in clear in the %s", i, kind, len(secret), where)
			}
		}
	}
	if len(audit) == 0 {
		s.t.Errorf("the audit log is empty; the leak scan would prove nothing")
		return
	}
	// A token handed out through Vault must be in the audit log as its HMAC.
	s.mu.Lock()
	served := append([]string(nil), s.served...)
	s.mu.Unlock()
	if len(served) > 0 {
		token := served[len(served)-1]
		out, _, err := s.CLI("write", "-field=hash", "sys/audit-hash/file", "input="+token)
		hash := strings.TrimSpace(out)
		if err != nil || !strings.HasPrefix(hash, "hmac-sha256:") {
			s.t.Errorf("sys/audit-hash: %q %v", out, err)
		} else if !bytes.Contains(audit, []byte(hash)) {
			s.t.Errorf("the audit log does not contain the HMAC of a served token; is the scan looking at the right file?")
		}
	}
}

// ReadCreds reads creds through the HTTP API and records the token.
func (s *Stack) ReadCreds(c *vaultapi.Client, role string) (*vaultapi.Secret, error) {
	sec, err := c.Logical().Read(mount + "/creds/" + role)
	if err == nil && sec != nil {
		if tok, ok := sec.Data["access_token"].(string); ok {
			s.mu.Lock()
			s.served = append(s.served, tok)
			s.mu.Unlock()
		}
	}
	return sec, err
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// useToken calls the stand-in's project list with token and returns the status.
func useToken(t *testing.T, baseURL, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/api/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
