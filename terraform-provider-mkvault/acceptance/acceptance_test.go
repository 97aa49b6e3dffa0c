//go:build acceptance

// The acceptance suite runs the provider, in-process, under a real
// Terraform (or OpenTofu) binary against a real Vault or OpenBao dev server
// with the engine mounted from bin/ and the stand-in MetaKraftwerk as its
// upstream. It needs SERVER_BIN, PLUGIN_BIN, PLUGIN_VERSION and
// TF_ACC_TERRAFORM_PATH (scripts/e2e.sh sets them); without them every
// test fails, it never skips.
//
// After every step it reads the state file and every other file Terraform
// left in its working directory, `terraform show -json` of state and plan,
// and the Terraform and provider log at trace level, and fails if any holds
// a password (in any spelling leakcheck knows) or a token the stand-in
// minted.
//
// The suite is a module of its own: it imports the engine's stand-in,
// hostile upstream and leak checker, which the provider's module must not
// require, so that the provider builds from a repository of its own
// (docs/development.md, "The provider's repository"). The mirror leaves it
// out.
package acceptance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-version"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"
	"github.com/hashicorp/vault/api"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/portpair"
	mkvault "github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/terraform-provider-mkvault/internal/provider"
)

const (
	accEmail      = "ci@example.com"
	accPassword   = "pw@ 1/&=<>-Tf8mQ4vK"
	rootToken     = "acc-root-token"
	pluginCommand = "vault-plugin-secrets-metakraftwerk"
	// defaultMount is the mount the provider uses when none is set, as
	// its docs say.
	defaultMount = "metakraftwerk"
)

func TestMain(m *testing.M) {
	// resource.Test runs only under TF_ACC; this suite is that run.
	os.Setenv("TF_ACC", "1")
	os.Exit(m.Run())
}

// accStack is a dev server with the engine mounted at metakraftwerk/ and
// configured for an in-process stand-in, for one test.
type accStack struct {
	t     *testing.T
	addr  string
	vault *api.Client
	mk    *devserver.Running
	// tfDir is TF_ACC_TEMP_DIR: Terraform's working directories, kept.
	tfDir   string
	logFile string

	// echo is set by a test that hands a token to the echo provider, whose
	// state (and whose log lines) hold it by design: tokens are then
	// looked for only in this provider's log lines.
	echo bool

	mu        sync.Mutex
	passwords []string
	tokens    []string
}

var jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

func newAccStack(t *testing.T) *accStack {
	t.Helper()
	return newAccStackWith(t, stackOptions{})
}

// stackOptions set up a stack otherwise than the tests of one resource
// need it.
type stackOptions struct {
	// mount is where the engine is mounted; default metakraftwerk.
	mount string
	// empty leaves the engine as `vault secrets enable` leaves it: no
	// config written (base_url is the SaaS default).
	empty bool
	// users are the stand-in's users beside accEmail; their passwords are
	// secrets the scans look for.
	users []devserver.User
}

func newAccStackWith(t *testing.T, opts stackOptions) *accStack {
	t.Helper()
	if opts.mount == "" {
		opts.mount = defaultMount
	}
	env := func(name string) string {
		v := os.Getenv(name)
		if v == "" {
			t.Fatalf("%s is not set; run the suite with scripts/e2e.sh (make e2e)", name)
		}
		return v
	}
	serverBin, pluginBin, pluginVersion := env("SERVER_BIN"), env("PLUGIN_BIN"), env("PLUGIN_VERSION")
	env("TF_ACC_TERRAFORM_PATH")
	dir := t.TempDir()
	s := &accStack{t: t, tfDir: filepath.Join(dir, "terraform"), logFile: filepath.Join(dir, "terraform.log"), passwords: []string{accPassword}}
	for _, u := range opts.users {
		s.passwords = append(s.passwords, u.Password)
	}
	for _, d := range []string{s.tfDir, filepath.Join(dir, "plugins"), filepath.Join(dir, "tmp"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	mk, err := devserver.Listen("127.0.0.1:0", devserver.Config{
		Users:   append([]devserver.User{{ID: 7, Email: accEmail, Password: accPassword, Projects: []string{"CI_PROJECT"}}}, opts.users...),
		OnIssue: func(tok string) { s.mu.Lock(); s.tokens = append(s.tokens, tok); s.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mk = mk
	t.Cleanup(func() { _ = mk.Close() })

	plugin, err := os.ReadFile(pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins", pluginCommand), plugin, 0o755); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf("plugin_directory = %q\n", filepath.Join(dir, "plugins"))
	if err := os.WriteFile(filepath.Join(dir, "server.hcl"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	port := portpair.Free(t)
	s.addr = "http://127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(serverBin, "server", "-dev", "-dev-root-token-id="+rootToken,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-config="+filepath.Join(dir, "server.hcl"))
	cmd.Env = []string{"HOME=" + filepath.Join(dir, "home"), "TMPDIR=" + filepath.Join(dir, "tmp"), "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})

	cfg := api.DefaultConfig()
	cfg.Address, cfg.MaxRetries = s.addr, 0
	s.vault, err = api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.vault.SetToken(rootToken)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if h, err := s.vault.Sys().Health(); err == nil && h.Initialized && !h.Sealed {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("the server did not start:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sum := sha256.Sum256(plugin)
	s.mustWrite("sys/plugins/catalog/secret/metakraftwerk", map[string]any{
		"sha256": hex.EncodeToString(sum[:]), "command": pluginCommand, "version": pluginVersion})
	if err := s.vault.Sys().Mount(opts.mount, &api.MountInput{Type: "metakraftwerk", Config: api.MountConfigInput{PluginVersion: pluginVersion}}); err != nil {
		t.Fatal(err)
	}
	if !opts.empty {
		s.mustWrite(opts.mount+"/config", map[string]any{"base_url": mk.URL})
	}

	// The provider falls back to the CLI's variables, as an operator's
	// shell has them; Terraform's artifacts and logs stay for the scan.
	t.Setenv("VAULT_ADDR", s.addr)
	t.Setenv("VAULT_TOKEN", rootToken)
	t.Setenv("TF_ACC_TEMP_DIR", s.tfDir)
	t.Setenv("TF_ACC_PERSIST_WORKING_DIR", "1")
	t.Setenv("TF_ACC_LOG", "TRACE")
	t.Setenv("TF_ACC_LOG_PATH", s.logFile)
	t.Setenv("TF_VAR_password", accPassword)
	// A CLI configuration of the test's own: none of the machine's.
	cliConfig := filepath.Join(dir, "terraformrc")
	if err := os.WriteFile(cliConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_CLI_CONFIG_FILE", cliConfig)
	t.Cleanup(s.scanAll)
	return s
}

func (s *accStack) mustWrite(path string, data map[string]any) {
	s.t.Helper()
	if _, err := s.vault.Logical().Write(path, data); err != nil {
		s.t.Fatalf("write %s: %v", path, err)
	}
}

// usePassword makes pw the user's password at the stand-in and the one the
// configuration's var.password gives.
func (s *accStack) usePassword(pw string) {
	s.mu.Lock()
	s.passwords = append(s.passwords, pw)
	s.mu.Unlock()
	s.mk.SetPassword(accEmail, pw)
	os.Setenv("TF_VAR_password", pw)
}

// logins is how many login requests the stand-in has had.
func (s *accStack) logins() int64 { return s.mk.Stats().LoginRequests }

// expectLogins returns a PreConfig and a Check that assert the step sent
// exactly n logins upstream.
func (s *accStack) expectLogins(n int64) (func(), resource.TestCheckFunc) {
	var before int64
	return func() { before = s.logins() }, func(*terraform.State) error {
		if got := s.logins() - before; got != n {
			return fmt.Errorf("the step sent %d logins to MetaKraftwerk, want %d", got, n)
		}
		return nil
	}
}

// secrets returns every password and minted token, as of now.
func (s *accStack) secrets() (passwords, tokens []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.passwords...), append([]string(nil), s.tokens...)
}

// leaks describes every secret found in text, by kind and position only.
func (s *accStack) leaks(text string, allowTokens bool) []string {
	passwords, tokens := s.secrets()
	var out []string
	for _, l := range leakcheck.Find(text, passwords) {
		out = append(out, fmt.Sprintf("password #%d, %s", l.Secret, l.Form))
	}
	if allowTokens {
		return out
	}
	for i, tok := range tokens {
		if strings.Contains(text, tok) {
			out = append(out, fmt.Sprintf("token #%d", i))
		}
	}
	if len(out) == 0 && jwtRe.MatchString(text) {
		out = append(out, "a JWT-shaped string")
	}
	return out
}

// scanFiles scans every file Terraform wrote (state, backups, configs,
// lock files) and the trace log.
func (s *accStack) scanFiles() error {
	var found []string
	_ = filepath.WalkDir(s.tfDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, string(filepath.Separator)+".terraform"+string(filepath.Separator)) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil {
			for _, l := range s.leaks(string(data), s.echo) {
				found = append(found, fmt.Sprintf("%s in %s", l, strings.TrimPrefix(p, s.tfDir)))
			}
		}
		return nil
	})
	if data, err := os.ReadFile(s.logFile); err == nil {
		log := string(data)
		for _, l := range s.leaks(log, s.echo) {
			found = append(found, l+" in the Terraform and provider trace log")
		}
		if s.echo {
			var own []string
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "/mkvault") {
					own = append(own, line)
				}
			}
			for _, l := range s.leaks(strings.Join(own, "\n"), false) {
				found = append(found, l+" in the provider's log lines")
			}
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("secrets in Terraform's files: %s", strings.Join(found, "; "))
	}
	return nil
}

// scanAll runs the file scan once more when the test ends.
func (s *accStack) scanAll() {
	if err := s.scanFiles(); err != nil {
		s.t.Error(err)
	}
}

// noSecrets is a state check and a plan check: `terraform show -json` of
// the state or plan, and every file Terraform left, hold no secret.
type noSecrets struct {
	s *accStack
	// allowTokensIn names the resource whose state may hold a token (the
	// echo provider's, in the ephemeral test).
	allowTokensIn string
}

func (c noSecrets) CheckState(_ context.Context, req statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	resp.Error = c.check("state", req.State)
}

func (c noSecrets) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	resp.Error = c.check("plan", req.Plan)
}

func (c noSecrets) check(what string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	text := string(data)
	if c.allowTokensIn != "" {
		// The echo resource carries the token by design; the rest may not.
		text = jwtRe.ReplaceAllString(text, "")
	}
	if l := c.s.leaks(text, false); len(l) > 0 {
		return fmt.Errorf("secrets in `terraform show -json` of the %s: %s", what, strings.Join(l, "; "))
	}
	if c.allowTokensIn != "" {
		return nil
	}
	return c.s.scanFiles()
}

// checks are the leak checks of every step.
func (s *accStack) checks() ([]statecheck.StateCheck, resource.ConfigPlanChecks) {
	c := noSecrets{s: s}
	return []statecheck.StateCheck{c}, resource.ConfigPlanChecks{
		PreApply: []plancheck.PlanCheck{c}, PostApplyPostRefresh: []plancheck.PlanCheck{c},
	}
}

// providers are the provider under test, served in-process.
func providers() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"mkvault": providerserver.NewProtocol6WithError(mkvault.New("acc")()),
	}
}

// requireWriteOnly fails the test on a Terraform without write-only
// arguments (before 1.11) instead of skipping it.
var requireWriteOnly = []tfversion.TerraformVersionCheck{tfversion.RequireAbove(version.Must(version.NewVersion("1.11.0")))}

// tokenAccepted is whether the stand-in accepts token.
func (s *accStack) tokenAccepted(token string) bool {
	return devserverStatus(s.mk.URL, token) == http.StatusOK
}

func devserverStatus(baseURL, token string) int {
	code, err := devserver.TokenStatus(baseURL, token)
	if err != nil {
		return 0
	}
	return code
}

// The server's JSON arrives as any.

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, item := range list {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
