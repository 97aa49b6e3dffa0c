//go:build e2e

// Package e2e drives a real server binary (Vault or OpenBao) with the real
// plugin process and a stand-in MetaKraftwerk on loopback, the way operators
// and CI jobs do: the CLI first, the HTTP API where the CLI cannot
// (concurrency).
//
// Run it with `make e2e`: it needs SERVER_BIN (a vault >= 1.19 or a bao),
// PLUGIN_BIN (the built plugin) and PLUGIN_VERSION (the version stamped into
// it), and for the docs walkthrough RELEASE_DIR (signed releases v0.3.0 and
// v0.3.1) and, on Vault, TERRAFORM_BIN; scripts/e2e.sh provides them all.
// Without them the tests that need them fail; none skips. The platform is read
// from `SERVER_BIN version`; a test that only makes sense on one platform
// says so in its name.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/portpair"
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

// TestMain fails the suite if it left go-plugin unix sockets in the
// machine's temp directory: every server gets a TMPDIR inside its test's
// own directory.
func TestMain(m *testing.M) {
	before := pluginSockets()
	code := checkEveryBlockRan(m.Run())
	var leaked []string
	for name := range pluginSockets() {
		if !before[name] {
			leaked = append(leaked, name)
		}
	}
	if len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the suite left %d go-plugin sockets in %s: %v\n", len(leaked), os.TempDir(), leaked)
		code = 1
	}
	os.Exit(code)
}

// pluginSockets lists the go-plugin sockets (plugin*) in the temp directory.
func pluginSockets() map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "plugin") && e.Type()&os.ModeSocket != 0 {
			out[e.Name()] = true
		}
	}
	return out
}

// Platform is the server under test.
type Platform struct {
	// Name is the product and version, e.g. "Vault v1.21.0".
	Name    string
	OpenBao bool
}

var (
	platformOnce sync.Once
	platform     Platform
	platformErr  error
)

// serverPlatform reads the platform from SERVER_BIN once.
func serverPlatform(t *testing.T) Platform {
	t.Helper()
	bin := requiredEnv(t, "SERVER_BIN")
	platformOnce.Do(func() {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			platformErr = fmt.Errorf("%s version: %w", bin, err)
			return
		}
		words := strings.Fields(strings.ReplaceAll(string(out), ",", " "))
		platform.Name = strings.Join(words[:min(2, len(words))], " ")
		switch {
		case strings.HasPrefix(platform.Name, "OpenBao "):
			platform.OpenBao = true
		case strings.HasPrefix(platform.Name, "Vault "):
		default:
			platformErr = fmt.Errorf("%s version printed %q: neither Vault nor OpenBao", bin, platform.Name)
		}
	})
	if platformErr != nil {
		t.Fatal(platformErr)
	}
	return platform
}

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

// StackOptions tune a Stack.
type StackOptions struct {
	// TokenLifetime of the stand-in's tokens (default 20h).
	TokenLifetime time.Duration
	// NoMount skips plugin registration and mounting.
	NoMount bool
	// Storage is "" for a dev server (in memory), "file" for one persistent
	// server that is initialised and unsealed, or "raft" for an HA cluster
	// of Nodes servers with integrated storage.
	Storage string
	// Nodes is the size of a raft cluster (default 3).
	Nodes int
	// PluginEnv is passed to the plugin process (vault plugin register -env).
	PluginEnv []string
	// Paginate makes the stand-in answer project lists in Feathers pages.
	Paginate *devserver.Paginate
	// TeamAProjects replaces team A's projects (default TEAM_A).
	TeamAProjects []string
	// ServerConfig is added to every node's configuration file, and
	// ServerEnv to its environment.
	ServerConfig string
	ServerEnv    []string
	// NoInstall leaves the plugin directory empty (the server fetches the
	// plugin itself); it implies NoMount.
	NoInstall bool
	// PluginDir, when set, is the servers' plugin_directory, left for the
	// test to create (with NoInstall).
	PluginDir string
	// Mount is where the engine is (or, with NoInstall, will be) mounted;
	// default metakraftwerk.
	Mount string
}

// Node is one Vault server process.
type Node struct {
	Name string
	Addr string
	port int
	dir  string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Stack is Vault (a dev server, a persistent server, or a raft cluster)
// with the plugin mounted at metakraftwerk/, a stand-in MetaKraftwerk, and a
// file audit device. Everything listens on loopback and is torn down when
// the test ends; before that, every log line, audit line and CLI stderr is
// scanned for passwords and minted tokens.
type Stack struct {
	t    *testing.T
	opts StackOptions
	// Bin is the server binary (vault or bao); it is also the CLI.
	Bin       string
	Platform  Platform
	PluginBin string
	// Addr is the node the CLI talks to by default; Token is the root token.
	Addr      string
	Token     string
	Dir       string
	PluginDir string
	Version   string
	Nodes     []*Node
	MK        *devserver.Running
	mkCfg     devserver.Config

	unsealKey string
	audit     string
	auditOn   bool

	mu      sync.Mutex
	secrets []string // every password and every token the stand-in minted
	served  []string // tokens handed out through Vault (CLI stdout, API reads)
	stderr  []string
	// stdout is what the CLI printed that a password must not be in.
	stdout []string
}

func NewStack(t *testing.T, opts StackOptions) *Stack {
	t.Helper()
	s := &Stack{
		t:         t,
		opts:      opts,
		Bin:       requiredEnv(t, "SERVER_BIN"),
		Platform:  serverPlatform(t),
		PluginBin: requiredEnv(t, "PLUGIN_BIN"),
		Dir:       t.TempDir(),
		Token:     rootToken,
		secrets:   []string{teamAPassword, teamBPassword},
	}
	s.PluginDir = filepath.Join(s.Dir, "plugins")
	dirs := []string{s.PluginDir, filepath.Join(s.Dir, "home")}
	if opts.PluginDir != "" {
		s.PluginDir, dirs = opts.PluginDir, dirs[1:]
	}
	s.audit = filepath.Join(s.Dir, "audit.log")
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	teamAProjects := opts.TeamAProjects
	if teamAProjects == nil {
		teamAProjects = []string{"TEAM_A"}
	}
	s.mkCfg = devserver.Config{
		Users: []devserver.User{
			{ID: 11, Email: teamAEmail, Password: teamAPassword, Projects: teamAProjects},
			{ID: 12, Email: teamBEmail, Password: teamBPassword, Projects: []string{"TEAM_B"}},
		},
		TokenLifetime: opts.TokenLifetime,
		OnIssue:       s.addSecret,
		Paginate:      opts.Paginate,
	}
	s.StartMK("127.0.0.1:0")
	if !opts.NoInstall {
		s.InstallPlugin(s.PluginBin, pluginCommand)
	}
	t.Cleanup(s.teardown)

	switch opts.Storage {
	case "":
		n := s.newNode("vault")
		n.args = []string{"server", "-dev", "-dev-root-token-id=" + rootToken,
			"-dev-listen-address=127.0.0.1:" + strconv.Itoa(n.port), "-config=" + s.writeConfig(n, ""), "-log-level=trace"}
		s.StartNode(n)
		s.waitHealth(n, 60*time.Second, 200)
	case "file":
		n := s.newNode("vault")
		storage := fmt.Sprintf("storage \"file\" {\n  path = %q\n}\n", filepath.Join(n.dir, "data"))
		n.args = []string{"server", "-config=" + s.writeConfig(n, storage), "-log-level=trace"}
		s.StartNode(n)
		s.initAndUnseal(n)
	case "raft":
		count := opts.Nodes
		if count == 0 {
			count = 3
		}
		for i := range count {
			s.newNode(fmt.Sprintf("node%d", i+1))
		}
		for i, n := range s.Nodes {
			// performance_multiplier = 1 is Vault's recommendation for production.
			storage := fmt.Sprintf("storage \"raft\" {\n  path = %q\n  node_id = %q\n  performance_multiplier = 1\n", filepath.Join(n.dir, "raft"), n.Name)
			if i > 0 {
				storage += fmt.Sprintf("  retry_join {\n    leader_api_addr = %q\n  }\n", s.Nodes[0].Addr)
			}
			storage += "}\n"
			if err := os.MkdirAll(filepath.Join(n.dir, "raft"), 0o700); err != nil {
				t.Fatal(err)
			}
			n.args = []string{"server", "-config=" + s.writeConfig(n, storage), "-log-level=trace"}
			s.StartNode(n)
		}
		s.initAndUnseal(s.Nodes[0])
		for _, n := range s.Nodes[1:] {
			s.unsealFollower(n)
		}
		s.waitVoters(count)
	default:
		t.Fatalf("unknown storage %q", opts.Storage)
	}
	s.Addr = s.Nodes[0].Addr

	s.MustCLI("audit", "enable", "file", "file_path="+s.audit, "log_raw=false")
	s.auditOn = true
	if !opts.NoMount && !opts.NoInstall {
		s.Version = requiredEnv(t, "PLUGIN_VERSION")
		s.RegisterPlugin(pluginCommand, s.Version, opts.PluginEnv...)
		s.MustCLI("secrets", "enable", "-path="+s.mount(), "-plugin-version="+s.Version, pluginName)
		s.MustCLI("write", s.mount()+"/config", "base_url="+s.MK.URL)
	}
	return s
}

func (s *Stack) newNode(name string) *Node {
	port := portpair.Free(s.t)
	n := &Node{Name: name, port: port, Addr: "http://127.0.0.1:" + strconv.Itoa(port), dir: filepath.Join(s.Dir, name)}
	n.log = filepath.Join(n.dir, "vault.log")
	// The server and its plugins put go-plugin's unix sockets in TMPDIR;
	// this keeps them in the test's directory.
	if err := os.MkdirAll(filepath.Join(n.dir, "tmp"), 0o700); err != nil {
		s.t.Fatal(err)
	}
	s.Nodes = append(s.Nodes, n)
	return n
}

// writeConfig writes a node's configuration: the plugin directory and, for
// non-dev servers, a loopback listener and the given storage stanza.
func (s *Stack) writeConfig(n *Node, storage string) string {
	cfg := fmt.Sprintf("plugin_directory = %q\n", s.PluginDir) + s.opts.ServerConfig
	if s.Platform.OpenBao {
		// OpenBao refuses `audit enable` over the API unless allowed here.
		cfg += "unsafe_allow_api_audit_creation = true\n"
	}
	if storage != "" {
		cfg += storage + fmt.Sprintf(`listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = %q
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
`, n.port, n.port+1, n.Addr, n.port+1)
	}
	path := filepath.Join(n.dir, "vault.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// StartNode starts (or restarts) a node's server process. Its log is
// appended to, so that the leak scan sees every run.
func (s *Stack) StartNode(n *Node) {
	s.t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.Bin, n.args...)
	// The server's level in its environment too, which its plugins inherit:
	// the leak scan reads their debug lines as well.
	cmd.Env = append(append(s.envFor(n.Addr, s.Token), "TMPDIR="+filepath.Join(n.dir, "tmp"),
		"VAULT_LOG_LEVEL=trace", "BAO_LOG_LEVEL=trace"), s.opts.ServerEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(n.done)
}

// health returns a node's /v1/sys/health status (0 when unreachable):
// 200 active, 429 standby, 501 not initialised, 503 sealed.
func health(addr string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(addr + "/v1/sys/health")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s *Stack) waitHealth(n *Node, timeout time.Duration, want ...int) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		code := health(n.Addr)
		for _, w := range want {
			if code == w {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(n.log)
	s.t.Fatalf("%s did not reach health %v (now %d):\n%s", n.Name, want, health(n.Addr), tail(string(log), 30))
}

// initAndUnseal initialises a persistent server with one unseal key.
func (s *Stack) initAndUnseal(n *Node) {
	s.t.Helper()
	s.waitHealth(n, 60*time.Second, 501)
	out, errOut, err := s.CLIAt(n, "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if err != nil {
		s.t.Fatalf("operator init: %v\n%s", err, errOut)
	}
	var init struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &init); err != nil || len(init.Keys) != 1 {
		s.t.Fatalf("operator init output: %v", err)
	}
	s.unsealKey, s.Token = init.Keys[0], init.RootToken
	s.Unseal(n)
	s.waitHealth(n, 60*time.Second, 200)
}

// Unseal unseals a node with the cluster's key.
func (s *Stack) Unseal(n *Node) {
	s.t.Helper()
	if _, errOut, err := s.CLIAt(n, "", "operator", "unseal", s.unsealKey); err != nil {
		s.t.Fatalf("unseal %s: %v\n%s", n.Name, err, errOut)
	}
}

// unsealFollower waits for a raft follower to join, then unseals it.
func (s *Stack) unsealFollower(n *Node) {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if code := health(n.Addr); code == 429 || code == 200 {
			return
		}
		_, _, _ = s.CLIAt(n, "", "operator", "unseal", s.unsealKey)
		time.Sleep(500 * time.Millisecond)
	}
	log, _ := os.ReadFile(n.log)
	var relevant []string
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "join") || strings.Contains(line, "ERROR") || strings.Contains(line, "WARN") {
			relevant = append(relevant, line)
		}
	}
	s.t.Fatalf("%s did not join and unseal:\n%s", n.Name, tail(strings.Join(relevant, "\n"), 30))
}

// waitVoters waits until autopilot has promoted every node to a voter
// (new nodes join as non-voters until they are stable); only then does the
// cluster survive losing a node.
func (s *Stack) waitVoters(want int) {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, _, err := s.CLIAt(s.Nodes[0], s.Token, "operator", "raft", "list-peers", "-format=json")
		var peers struct {
			Data struct {
				Config struct {
					Servers []struct {
						Voter bool `json:"voter"`
					} `json:"servers"`
				} `json:"config"`
			} `json:"data"`
		}
		if err == nil && json.Unmarshal([]byte(out), &peers) == nil {
			voters := 0
			for _, srv := range peers.Data.Config.Servers {
				if srv.Voter {
					voters++
				}
			}
			if voters == want {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.t.Fatalf("the raft cluster did not reach %d voters", want)
}

// StopNode stops a node and its plugin processes: gracefully (SIGTERM) or,
// with kill, as a crash (SIGKILL to the whole process group).
func (s *Stack) StopNode(n *Node, kill bool) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	pgid := n.cmd.Process.Pid
	if kill {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	} else {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-n.done
	}
	// Plugin processes are in the group too; make sure none survives.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	n.cmd = nil
}

func (s *Stack) envFor(addr, token string) []string {
	env := []string{
		"HOME=" + filepath.Join(s.Dir, "home"),
		"PATH=" + os.Getenv("PATH"),
		"VAULT_ADDR=" + addr, "BAO_ADDR=" + addr,
		"VAULT_FORMAT=table", "BAO_FORMAT=table",
	}
	if token != "" {
		env = append(env, "VAULT_TOKEN="+token, "BAO_TOKEN="+token)
	}
	return env
}

// env is the CLI environment for the default node and the root token.
func (s *Stack) env() []string { return s.envFor(s.Addr, s.Token) }

// CLI runs the vault CLI as root; stderr is kept for the leak scan.
func (s *Stack) CLI(args ...string) (string, string, error) {
	return s.CLIAs(s.Token, args...)
}

// CLIAs runs the vault CLI against the default node with token.
func (s *Stack) CLIAs(token string, args ...string) (string, string, error) {
	return s.cli(s.Addr, token, args...)
}

// CLIAt runs the vault CLI against node n with token ("" for none).
func (s *Stack) CLIAt(n *Node, token string, args ...string) (string, string, error) {
	return s.cli(n.Addr, token, args...)
}

func (s *Stack) cli(addr, token string, args ...string) (string, string, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Env = s.envFor(addr, token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	s.mu.Lock()
	s.stderr = append(s.stderr, stderr.String())
	s.stdout = append(s.stdout, stdout.String())
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

// API returns a Vault API client for the default node with token.
func (s *Stack) API(token string) *vaultapi.Client {
	return s.APIAt(s.Addr, token)
}

// APIAt returns a Vault API client for addr with token.
func (s *Stack) APIAt(addr, token string) *vaultapi.Client {
	s.t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// mount is where the engine is mounted.
func (s *Stack) mount() string {
	if s.opts.Mount != "" {
		return s.opts.Mount
	}
	return mount
}

// CreateRole writes a role for one of the stand-in's users.
func (s *Stack) CreateRole(name, email, password string, extra ...string) {
	s.t.Helper()
	args := append([]string{"write", s.mount() + "/roles/" + name, "email=" + email, "password=" + password}, extra...)
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
	for _, n := range s.Nodes {
		s.StopNode(n, false)
	}
	if s.MK != nil {
		_ = s.MK.Close()
	}
}

// checkNoLeaks asserts that no password and no token the stand-in ever
// minted appears in Vault's trace log (which carries the plugin's log), the
// audit log, or any CLI stderr, and no password in any CLI stdout: a token
// in clear, a password in any spelling leakcheck knows (URL-encoded,
// base64, …). It also proves the scan looks at the right place: the audit
// log holds the HMAC of a minted token.
func (s *Stack) checkNoLeaks() {
	s.t.Helper()
	s.mu.Lock()
	secrets := append([]string(nil), s.secrets...)
	stderr := strings.Join(s.stderr, "\n")
	stdout := strings.Join(s.stdout, "\n")
	s.mu.Unlock()
	audit, _ := os.ReadFile(s.audit)
	places := map[string]string{"audit log": string(audit), "CLI stderr": stderr}
	for _, n := range s.Nodes {
		vaultLog, _ := os.ReadFile(n.log)
		places["vault/plugin log of "+n.Name] = string(vaultLog)
	}
	// Failures name the secret by position and kind only, never its text.
	// Tokens are found by their signature segment, so that scanning stays
	// linear however many tokens a test minted (the load test mints 10,000).
	bySignature := map[string]int{}
	var passwords []int
	for i, secret := range secrets {
		if parts := strings.Split(secret, "."); len(parts) == 3 && jwtRe.MatchString(secret) {
			bySignature[parts[2]] = i
		} else {
			passwords = append(passwords, i)
		}
	}
	for where, text := range places {
		reported := map[int]bool{}
		for _, m := range jwtRe.FindAllString(text, -1) {
			sig := strings.Split(m, ".")[2]
			for _, candidate := range []string{sig, sig[:min(len(sig), 43)]} {
				if i, ok := bySignature[candidate]; ok && !reported[i] && strings.Contains(m, secrets[i]) {
					reported[i] = true
					s.t.Errorf("secret #%d (a token of %d chars) appears in clear in the %s", i, len(secrets[i]), where)
				}
			}
		}
		for _, i := range passwords {
			for _, leak := range leakcheck.Find(text, secrets[i:i+1]) {
				s.t.Errorf("secret #%d (a password of %d chars) appears in the %s, %s", i, len(secrets[i]), where, leak.Form)
			}
		}
	}
	for _, i := range passwords {
		for _, leak := range leakcheck.Find(stdout, secrets[i:i+1]) {
			s.t.Errorf("secret #%d (a password of %d chars) appears in the CLI stdout, %s", i, len(secrets[i]), leak.Form)
		}
	}
	if !s.auditOn {
		return
	}
	if len(audit) == 0 {
		s.t.Errorf("the audit log is empty; the leak scan would prove nothing")
		return
	}
	// A token handed out through Vault must be in the audit log as its HMAC.
	s.mu.Lock()
	served := append([]string(nil), s.served...)
	s.mu.Unlock()
	if len(served) > 0 && health(s.Addr) == 200 {
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

// readCredsOnce reads creds and fails unless a token came back.
func (s *Stack) readCredsOnce(c *vaultapi.Client, role string) error {
	sec, err := s.ReadCreds(c, role)
	if err == nil && (sec == nil || sec.Data["access_token"] == nil) {
		err = fmt.Errorf("no token in the creds response")
	}
	return err
}

// ReadCreds reads creds through the HTTP API and records the token.
func (s *Stack) ReadCreds(c *vaultapi.Client, role string) (*vaultapi.Secret, error) {
	sec, err := c.Logical().Read(s.mount() + "/creds/" + role)
	if err == nil && sec != nil {
		if tok, ok := sec.Data["access_token"].(string); ok {
			s.mu.Lock()
			s.served = append(s.served, tok)
			s.mu.Unlock()
		}
	}
	return sec, err
}

// nodeLogs returns every node's log so far.
func (s *Stack) nodeLogs() string {
	var b strings.Builder
	for _, n := range s.Nodes {
		data, _ := os.ReadFile(n.log)
		b.Write(data)
	}
	return b.String()
}

// leaseIDs lists the leases under the role's creds path, given -namespace
// flags if any.
func (s *Stack) leaseIDs(role string, flags ...string) []string {
	s.t.Helper()
	args := append([]string{"list", "-format=json"}, flags...)
	out, _, err := s.CLI(append(args, "sys/leases/lookup/"+s.mount()+"/creds/"+role)...)
	if err != nil { // a prefix without leases is a 404
		return nil
	}
	var ids []string
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		s.t.Fatalf("lease list: %v", err)
	}
	return ids
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
	code, err := devserver.TokenStatus(baseURL, token)
	if err != nil {
		t.Fatal(err)
	}
	return code
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

// RegisterPlugin registers command by sha256 with version and environment,
// as an operator does: `plugin register`, or on OpenBao, whose CLI has no
// -env, a write of the catalog entry.
func (s *Stack) RegisterPlugin(command, version string, env ...string) {
	s.t.Helper()
	sha := pluginSHA(s.t, filepath.Join(s.PluginDir, command))
	if s.Platform.OpenBao && len(env) > 0 {
		args := []string{"write", "sys/plugins/catalog/secret/" + pluginName, "sha256=" + sha, "version=" + version, "command=" + command}
		for _, e := range env {
			args = append(args, "env="+e)
		}
		s.MustCLI(args...)
		return
	}
	args := []string{"plugin", "register", "-sha256=" + sha, "-version=" + version, "-command=" + command}
	for _, e := range env {
		args = append(args, "-env="+e)
	}
	s.MustCLI(append(args, "secret", pluginName)...)
}

// ReloadPlugin restarts the plugin's processes (OpenBao's CLI has no -type).
func (s *Stack) ReloadPlugin() {
	s.t.Helper()
	if s.Platform.OpenBao {
		s.MustCLI("plugin", "reload", "-plugin="+pluginName)
		return
	}
	s.MustCLI("plugin", "reload", "-type=secret", "-plugin="+pluginName)
}
