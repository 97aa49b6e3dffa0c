//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/portpair"
)

// The walkthrough's MetaKraftwerk login: the docs' example user.
const (
	walkEmail    = "ci-bot@example.com"
	walkPassword = "pw-CI-BOT-9b2c1f0e7a41d6"
)

// TestWalkthrough follows the operator docs literally: the commands the
// README (and, on OpenBao, docs/install.md) marks with `<!-- walkthrough:
// NAME -->`, each block run as written in a clean bash (-euo pipefail,
// nothing in the environment but PATH, HOME and the server's address and
// token), in order: install v0.3.0 from a signed release, enable, set up
// the config, a role and both policies, consume, upgrade to v0.3.1 and
// roll back. The server runs from a configuration file with file storage,
// is initialised and unsealed, and its plugin_directory does not exist
// until the docs create it. The releases are `make release` builds signed
// with a throwaway key (RELEASE_DIR, built by scripts/e2e.sh), verified
// with only the key file the release carries.
//
// Only these declared values are substituted: the plugin directory, the
// plugin's environment (a pprof address instead of the example proxy, so
// that the test sees the variable reach the plugin process), the version
// for the second install and the rollback, the platform in the zip names,
// MetaKraftwerk's address (a stand-in over TLS whose CA is the docs'
// ca.pem), and on OpenBao `vault` meaning `bao`, as install.md says.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	w := newWalk(t)
	s := w.s

	install, enable, upgrade := "install", "enable", "upgrade"
	docs := w.blocks("README.md")
	if s.Platform.OpenBao {
		bao := w.blocks("docs/install.md")
		for _, name := range []string{"openbao-install", "openbao-enable", "openbao-upgrade"} {
			docs[name] = bao[name]
		}
		install, enable, upgrade = "openbao-install", "openbao-enable", "openbao-upgrade"
	}
	for _, name := range []string{install, enable, "setup", "consume", upgrade} {
		if docs[name] == "" {
			t.Fatalf("no block marked <!-- walkthrough: %s --> in the docs", name)
		}
	}
	pluginDir := "/etc/vault/plugins"
	if s.Platform.OpenBao {
		pluginDir = "/etc/openbao/plugins"
	}
	const example = "PLUGIN_ENV=HTTPS_PROXY=http://proxy.example.com:3128"
	pprofOld, pprofNew := portpair.Free(t), portpair.Free(t)
	installAs := func(version string, pprofPort int) {
		t.Helper()
		w.run(install, docs[install],
			sub{"PLUGIN_DIR=" + pluginDir, "PLUGIN_DIR=" + s.PluginDir},
			sub{example, fmt.Sprintf("PLUGIN_ENV=METAKRAFTWERK_PLUGIN_PPROF_ADDR=127.0.0.1:%d", pprofPort)},
			sub{"V=0.3.0", "V=" + version},
			w.platform())
	}

	// Install and enable v0.3.0; its environment reaches the plugin.
	installAs("0.3.0", pprofOld)
	if _, err := os.Stat(filepath.Join(s.PluginDir, "vault-plugin-secrets-metakraftwerk-v0.3.0")); err != nil {
		t.Fatalf("the install did not put the binary into the plugin directory: %v", err)
	}
	w.run(enable, docs[enable])
	s.MustCLI("read", mount+"/config")
	w.waitPprof(pprofOld, "v0.3.0, registered with its environment")

	// Set up as written: config (TLS with the docs' ca.pem), the role from
	// stdin, both policies.
	w.run("setup", docs["setup"], sub{"https://mk.example.com", w.mk.URL}, w.vaultIsBao())
	if got := fields(s.MustCLI("read", mount+"/config"))["base_url"]; got != w.mk.URL {
		t.Fatalf("base_url %q after the set-up", got)
	}
	if w.mk.Stats().Logins != 1 {
		t.Errorf("the role write logged in %d times, want 1 (its verify)", w.mk.Stats().Logins)
	}
	w.checkPolicies()

	// Consume: the CI job's command leaves a working token in its environment.
	w.run("consume", docs["consume"]+"\nprintf %s \"$METAKRAFTWERK_TOKEN\" >consumed.token\n", w.vaultIsBao())
	tok, err := os.ReadFile(filepath.Join(w.work, "consumed.token"))
	if err != nil || !jwtRe.Match(tok) {
		t.Fatalf("METAKRAFTWERK_TOKEN is not a token (%d bytes, %v)", len(tok), err)
	}
	if code := w.tokenStatus(string(tok)); code != http.StatusOK {
		t.Fatalf("MetaKraftwerk answers the consumed token with %d", code)
	}

	// Upgrade: the install commands with the new version and the same
	// environment (its own pprof port, to tell the processes apart), then
	// the switch. The new process runs with its environment.
	installAs("0.3.1", pprofNew)
	out := w.run(upgrade, docs[upgrade])
	w.expectRunning(out, "v0.3.1")
	w.waitPprof(pprofNew, "v0.3.1, registered by the documented upgrade with its environment")
	if got := fields(s.MustCLI("read", mount+"/roles/team-a-ci"))["email"]; got != walkEmail {
		t.Errorf("the role after the upgrade: email %q", got)
	}

	// Rollback: the same switch with the old version.
	out = w.run("rollback", docs[upgrade], sub{"V=0.3.1", "V=0.3.0"})
	w.expectRunning(out, "v0.3.0")
	w.waitPprof(pprofOld, "v0.3.0 again after the rollback")

	if !s.Platform.OpenBao {
		w.terraform()
	}
}

// walk is one walkthrough: the server, the docs' MetaKraftwerk, and the
// directory the operator works in (the release's files and ca.pem).
type walk struct {
	t    *testing.T
	s    *Stack
	mk   *devserver.Running
	work string
	home string
	bin  string // the server's CLI, under its own name, and nothing else
}

func newWalk(t *testing.T) *walk {
	releases := requiredEnv(t, "RELEASE_DIR")
	dir := t.TempDir()
	// Vault starts without its plugin directory (the docs create it);
	// OpenBao refuses to start without it, as install.md says.
	pluginDir := filepath.Join(dir, "etc", "plugins")
	if serverPlatform(t).OpenBao {
		if err := os.MkdirAll(pluginDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := NewStack(t, StackOptions{Storage: "file", NoInstall: true, PluginDir: pluginDir})
	w := &walk{t: t, s: s, work: filepath.Join(dir, "work"), home: filepath.Join(dir, "home"), bin: filepath.Join(dir, "bin")}
	for _, d := range []string{w.work, w.home, w.bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cli := "vault"
	if s.Platform.OpenBao {
		cli = "bao"
	}
	if err := os.Symlink(s.Bin, filepath.Join(w.bin, cli)); err != nil {
		t.Fatal(err)
	}
	// What an operator downloads: the release's files, flat.
	entries, err := os.ReadDir(releases)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			copyFile(t, filepath.Join(releases, e.Name()), filepath.Join(w.work, e.Name()))
			copied++
		}
	}
	if copied == 0 {
		t.Fatalf("RELEASE_DIR %s holds no release", releases)
	}
	// gpg starts agents under HOME; stop them with the test.
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "all")
		cmd.Env = []string{"HOME=" + w.home, "PATH=/usr/bin:/bin"}
		_ = cmd.Run()
	})

	// The docs' self-hosted MetaKraftwerk, over TLS with a private CA.
	certPEM, tlsCfg, err := devserver.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.work, "ca.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s.addSecret(walkPassword)
	w.mk, err = devserver.Listen("127.0.0.1:0", devserver.Config{
		Users: []devserver.User{
			{ID: 31, Email: walkEmail, Password: walkPassword, Projects: []string{"TEAM_A"}},
			{ID: 32, Email: teamBEmail, Password: teamBPassword, Projects: []string{"TEAM_B"}},
		},
		TLS:     tlsCfg,
		OnIssue: s.addSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.mk.Close() })
	return w
}

// sub is a declared substitution: old must be in the block.
type sub struct{ old, new string }

// platform names this machine's zips where the docs say linux_amd64.
func (w *walk) platform() sub {
	return sub{"linux_amd64", runtime.GOOS + "_" + runtime.GOARCH}
}

// vaultIsBao runs the README's vault commands with bao on OpenBao, as
// docs/install.md says to.
func (w *walk) vaultIsBao() sub {
	if !w.s.Platform.OpenBao {
		return sub{}
	}
	return sub{"", "vault() { bao \"$@\"; }\n"}
}

// blocks returns the marked blocks of a doc, by name; blocks of one name
// are joined in order. A block is the fenced sh block after its marker,
// without the indentation of its fence.
func (w *walk) blocks(doc string) map[string]string {
	w.t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(w.t), doc))
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	name, indent, in := "", "", false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "<!-- walkthrough: "):
			name = strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!-- walkthrough: "), " -->")
		case name != "" && !in && trimmed == "```sh":
			in, indent = true, line[:len(line)-len(strings.TrimLeft(line, " "))]
		case name != "" && !in && trimmed != "":
			w.t.Fatalf("%s: the walkthrough marker %q is not followed by a ```sh block", doc, name)
		case in && trimmed == "```":
			in, name = false, ""
		case in:
			out[name] += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	return out
}

// run runs a block in a clean bash, after its substitutions, in the work
// directory, and returns what it printed. A failing command fails the test
// with the output (tokens and the password masked).
func (w *walk) run(name, script string, subs ...sub) string {
	w.t.Helper()
	for _, s := range subs {
		switch {
		case s.old == "" && s.new == "":
		case s.old == "":
			script = s.new + script
		case !strings.Contains(script, s.old):
			w.t.Fatalf("the %s block no longer contains %q, which the walkthrough substitutes", name, s.old)
		default:
			script = strings.ReplaceAll(script, s.old, s.new)
		}
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", script)
	cmd.Dir = w.work
	cmd.Env = []string{
		"PATH=" + w.bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + w.home,
		"LANG=C.UTF-8",
		"VAULT_ADDR=" + w.s.Addr, "BAO_ADDR=" + w.s.Addr,
		"VAULT_TOKEN=" + w.s.Token, "BAO_TOKEN=" + w.s.Token,
		"MK_PASSWORD=" + walkPassword,
	}
	start := time.Now()
	outBytes, err := cmd.CombinedOutput()
	out := string(outBytes)
	w.s.mu.Lock()
	w.s.stdout = append(w.s.stdout, out)
	w.s.served = append(w.s.served, jwtRe.FindAllString(out, -1)...)
	w.s.mu.Unlock()
	shown := strings.ReplaceAll(jwtRe.ReplaceAllString(out, "<token>"), walkPassword, "<password>")
	if err != nil {
		w.t.Fatalf("the %s block failed (%v):\n%s\n--- output:\n%s", name, err, script, shown)
	}
	w.t.Logf("the %s block ran in %s", name, time.Since(start).Round(time.Millisecond))
	return out
}

// waitPprof waits for the plugin's pprof listener on port: the plugin
// process runs with the environment it was registered with.
func (w *walk) waitPprof(port int, what string) {
	w.t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// A creds read makes sure the mount's plugin process runs.
		_, _ = w.s.ReadCreds(w.s.API(w.s.Token), "team-a-ci")
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	w.t.Fatalf("no plugin answers on the pprof address of %s", what)
}

// expectRunning checks what the switch printed and what the mount runs.
func (w *walk) expectRunning(out, version string) {
	w.t.Helper()
	if got := strings.TrimSpace(out); !strings.HasSuffix(got, version) {
		w.t.Errorf("the switch printed %q, want the running version %s last", got, version)
	}
	if got := fields(w.s.MustCLI("read", "sys/mounts/"+mount))["running_plugin_version"]; got != version {
		w.t.Errorf("running_plugin_version %q, want %s", got, version)
	}
	if _, err := w.s.ReadCreds(w.s.API(w.s.Token), "team-a-ci"); err != nil {
		w.t.Errorf("a creds read on %s: %v", version, err)
	}
}

// checkPolicies gives a token to each policy the set-up wrote and checks
// it does what the policy says: the team mints its own role's tokens and
// not another team's; the platform team writes roles and mints none.
func (w *walk) checkPolicies() {
	w.t.Helper()
	s := w.s
	if out, _, err := s.CLI("write", mount+"/roles/team-b-ci", "email="+teamBEmail, "password="+teamBPassword, "projects=TEAM_B"); err != nil {
		w.t.Fatalf("writing team B's role: %v %s", err, out)
	}
	token := func(policy string) *vaultapi.Client {
		tok := strings.TrimSpace(s.MustCLI("token", "create", "-policy="+policy, "-ttl=10m", "-field=token"))
		return s.API(tok)
	}
	forbidden := func(err error) bool {
		var re *vaultapi.ResponseError
		return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
	}
	team, platform := token("team-a"), token("platform")
	if err := s.readCredsOnce(team, "team-a-ci"); err != nil {
		w.t.Errorf("team-a's token cannot read its own creds: %v", err)
	}
	if _, err := s.ReadCreds(team, "team-b-ci"); !forbidden(err) {
		w.t.Errorf("team-a's token reading team B's creds: want 403, got %v", err)
	}
	if _, err := team.Logical().Write(mount+"/roles/team-a-ci", map[string]any{"ttl": "1h"}); !forbidden(err) {
		w.t.Errorf("team-a's token writing a role: want 403, got %v", err)
	}
	if _, err := platform.Logical().Write(mount+"/roles/team-b-ci", map[string]any{"description": "team B's CI"}); err != nil {
		w.t.Errorf("the platform token cannot write a role: %v", err)
	}
	if _, err := platform.Logical().List(mount + "/roles"); err != nil {
		w.t.Errorf("the platform token cannot list roles: %v", err)
	}
	if _, err := platform.Logical().Write(mount+"/rotate-role/team-a-ci", nil); err != nil {
		w.t.Errorf("the platform token cannot rotate a role: %v", err)
	}
	if _, err := s.ReadCreds(platform, "team-a-ci"); !forbidden(err) {
		w.t.Errorf("the platform token reading creds: want 403, got %v", err)
	}
}

// tokenStatus is the stand-in's answer to a call with token.
func (w *walk) tokenStatus(token string) int {
	req := httptest.NewRequest(http.MethodGet, "/api/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	w.mk.Handler().ServeHTTP(rec, req)
	return rec.Code
}

// terraform installs the released provider the way docs/terraform.md
// says, from a filesystem mirror with no dev overrides, and applies a role
// with a write-only password, which stays out of the state.
func (w *walk) terraform() {
	w.t.Helper()
	tf := requiredEnv(w.t, "TERRAFORM_BIN")
	if err := os.Symlink(tf, filepath.Join(w.bin, "terraform")); err != nil {
		w.t.Fatal(err)
	}
	block := w.blocks("docs/terraform.md")["terraform-install"]
	if block == "" {
		w.t.Fatal("no block marked <!-- walkthrough: terraform-install --> in docs/terraform.md")
	}
	w.run("terraform-install", block, w.platform())
	if rc, err := os.ReadFile(filepath.Join(w.home, ".terraformrc")); err != nil || strings.Contains(string(rc), "dev_overrides") {
		w.t.Fatalf("~/.terraformrc: %v %q", err, rc)
	}
	config := fmt.Sprintf(`terraform {
  required_providers {
    mkvault = { source = "metakraftwerk/mkvault" }
  }
}

provider "mkvault" {}

variable "password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "mkvault_role" "team_b_tf" {
  name                = "team-b-tf"
  email               = %q
  password_wo         = var.password
  password_wo_version = 1
  projects            = ["TEAM_B"]
}
`, teamBEmail)
	if err := os.MkdirAll(filepath.Join(w.work, "tf"), 0o700); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.work, "tf", "main.tf"), []byte(config), 0o600); err != nil {
		w.t.Fatal(err)
	}
	w.run("terraform apply", fmt.Sprintf("cd tf\nexport TF_VAR_password=%q\nterraform init -input=false -no-color\nterraform apply -input=false -auto-approve -no-color\n", teamBPassword))
	if got := fields(w.s.MustCLI("read", mount+"/roles/team-b-tf"))["email"]; got != teamBEmail {
		w.t.Errorf("the role Terraform applied: email %q", got)
	}
	lock, _ := os.ReadFile(filepath.Join(w.work, "tf", ".terraform.lock.hcl"))
	if !regexp.MustCompile(`provider "registry.terraform.io/metakraftwerk/mkvault" \{\s+version\s+= "0.3.0"`).Match(lock) {
		w.t.Errorf("the lock file does not record the released provider:\n%s", lock)
	}
	state, err := os.ReadFile(filepath.Join(w.work, "tf", "terraform.tfstate"))
	if err != nil || !strings.Contains(string(state), "team-b-tf") {
		w.t.Fatalf("no state with the role: %v", err)
	}
	if strings.Contains(string(state), teamBPassword) {
		w.t.Error("the password is in the Terraform state")
	}
	w.s.mu.Lock()
	w.s.stdout = append(w.s.stdout, string(state))
	w.s.mu.Unlock()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
