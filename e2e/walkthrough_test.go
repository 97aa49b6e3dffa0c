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
// README and docs/ mark with `<!-- walkthrough: NAME -->`, each block run
// as written in a clean bash (-euo pipefail, nothing in the environment
// but PATH, HOME, the server's address and a root token as both
// VAULT_TOKEN and BAO_TOKEN, MOUNT, and what a block says it needs), in
// order: install v0.3.0 from a signed release and check its provenance,
// enable, install the released Terraform provider and apply the complete
// example as it is (then destroy it), set up the config, a role and both
// policies and try them, consume, and every runbook of operations.md from
// its symptom; upgrade to v0.3.1, roll back, uninstall. The server runs
// from a configuration file with file storage, is initialised and
// unsealed, and its plugin_directory does not exist until the docs create
// it (Vault). The releases are built by install.md's throwaway-key block
// (scripts/e2e.sh, RELEASE_DIR) and verified with only the key file the
// release carries.
//
// The engine is mounted at mk-prod, which MOUNT in the operator's shell
// says; the enable block keeps it.
//
// Only these declared values are substituted: the plugin directory, the
// plugin's environment for the second install (a pprof address, so that
// the test sees the variable reach the plugin process; the first install
// runs with it empty, as written), the version for the second install and
// the rollback, the platform in the zip names, MetaKraftwerk's address (a
// stand-in over TLS whose CA is the docs' ca.pem; for Terraform, `make
// up`'s stand-in), the example's password placeholders and the paths of
// files a block writes under /etc or /var; and on OpenBao `vault` meaning
// `bao`, as install.md says.
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
	pprofNew := portpair.Free(t)
	installAs := func(version string, env ...sub) {
		t.Helper()
		w.run(install, docs[install], append(env,
			sub{"PLUGIN_DIR=" + pluginDir, "PLUGIN_DIR=" + s.PluginDir},
			sub{"V=0.3.0", "V=" + version},
			w.platform())...)
	}

	// Install and enable v0.3.0 as written: no environment for the plugin.
	installAs("0.3.0")
	if _, err := os.Stat(filepath.Join(s.PluginDir, "vault-plugin-secrets-metakraftwerk-v0.3.0")); err != nil {
		t.Fatalf("the install did not put the binary into the plugin directory: %v", err)
	}
	w.provenance()
	// The enable block runs in the install block's shell, where V is set;
	// MOUNT is the operator's (mk-prod), which the block keeps.
	w.withEnv(func() { w.run(enable, docs[enable]) }, "V=0.3.0")
	s.MustCLI("read", s.mount()+"/config")

	// Terraform first, on the engine just enabled: the released provider
	// from the mirror, the complete example as it is; destroy leaves the
	// engine empty again for the README's set-up.
	w.terraform()

	// Set up as written: config (TLS with the docs' ca.pem), the role from
	// stdin, both policies.
	w.run("setup", docs["setup"], sub{"https://mk.example.com", w.mk.URL}, w.vaultIsBao())
	if got := fields(s.MustCLI("read", s.mount()+"/config"))["base_url"]; got != w.mk.URL {
		t.Fatalf("base_url %q after the set-up", got)
	}
	if w.mk.Stats().Logins != 1 {
		t.Errorf("the role write logged in %d times, want 1 (its verify)", w.mk.Stats().Logins)
	}
	w.checkPolicies()
	w.metricsPolicy()
	w.tryPolicy()
	w.withEnv(w.roleStatus, "ROLE=team-a-ci")
	w.auditTokenID()

	// Consume: the CI job's command leaves a working token in its environment.
	w.run("consume", docs["consume"]+"\nprintf %s \"$METAKRAFTWERK_TOKEN\" >consumed.token\n", w.vaultIsBao())
	tok, err := os.ReadFile(filepath.Join(w.work, "consumed.token"))
	if err != nil || !jwtRe.Match(tok) {
		t.Fatalf("METAKRAFTWERK_TOKEN is not a token (%d bytes, %v)", len(tok), err)
	}
	if code := w.tokenStatus(string(tok)); code != http.StatusOK {
		t.Fatalf("MetaKraftwerk answers the consumed token with %d", code)
	}
	w.scrapeToken()
	// The README's first lines: what a read prints.
	if out := w.run("hero", docs["hero"], w.vaultIsBao()); !jwtRe.MatchString(out) {
		t.Errorf("the README's first read printed no token: %q", w.mask(out))
	}

	// The runbooks, each from its symptom: the consumed token is found in
	// the audit log; a password changed in MetaKraftwerk; a leaked token;
	// an outage.
	w.auditRunbook(string(tok))
	password := w.changedPassword()
	w.askUpstream(password)
	w.leakedToken()
	w.outage()

	// Upgrade: the install commands with the new version, this time with an
	// environment for the plugin, then the switch. The new process runs
	// with its environment.
	installAs("0.3.1", sub{"PLUGIN_ENV= ", fmt.Sprintf("PLUGIN_ENV=METAKRAFTWERK_PLUGIN_PPROF_ADDR=127.0.0.1:%d ", pprofNew)})
	out := w.run(upgrade, docs[upgrade])
	w.expectRunning(out, "v0.3.1")
	w.waitPprof(pprofNew, "v0.3.1, registered by the documented upgrade with its environment")
	if got := fields(s.MustCLI("read", s.mount()+"/roles/team-a-ci"))["email"]; got != walkEmail {
		t.Errorf("the role after the upgrade: email %q", got)
	}

	// Rollback: the same switch with the old version.
	out = w.run("rollback", docs[upgrade], sub{"V=0.3.1", "V=0.3.0"})
	w.expectRunning(out, "v0.3.0")

	// Uninstall: the mount, then the version no longer running.
	w.uninstall("0.3.1")
}

// walkMount is the walkthrough's mount: not the default.
const walkMount = "mk-prod"

// walk is one walkthrough: the server, the docs' MetaKraftwerk, and the
// directory the operator works in (the release's files and ca.pem).
type walk struct {
	t    *testing.T
	s    *Stack
	mk   *devserver.Running
	work string
	home string
	bin  string   // the server's CLI, under its own name, and nothing else
	env  []string // more of the operator's environment, for the next block
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
	s := NewStack(t, StackOptions{Storage: "file", NoInstall: true, PluginDir: pluginDir, Mount: walkMount})
	w := newShell(t, s, dir)
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

// newShell is an operator's shell for running the docs' blocks against s:
// a work directory, a home, and the server's CLI under its own name on
// PATH, below dir.
func newShell(t *testing.T, s *Stack, dir string) *walk {
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
// without the indentation of its fence; of a shell-session or console
// block (the API reference's, as Vault's API pages write them), the
// commands after the `$ ` prompts with their continuation lines, without
// what they print.
func (w *walk) blocks(doc string) map[string]string {
	w.t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(w.t), doc))
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	name, indent, in, session, cont := "", "", false, false, false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "<!-- walkthrough: "):
			name = strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!-- walkthrough: "), " -->")
			markedBlocks.Store(name, doc)
		case name != "" && !in && (trimmed == "```sh" || trimmed == "```shell-session" || trimmed == "```console"):
			in, indent = true, line[:len(line)-len(strings.TrimLeft(line, " "))]
			session, cont = trimmed != "```sh", false
		case name != "" && !in && trimmed != "":
			w.t.Fatalf("%s: the walkthrough marker %q is not followed by a shell block", doc, name)
		case in && trimmed == "```":
			in, name = false, ""
		case in && session:
			if strings.HasPrefix(trimmed, "$ ") || cont {
				out[name] += strings.TrimPrefix(trimmed, "$ ") + "\n"
				cont = strings.HasSuffix(trimmed, "\\")
			}
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
	script = w.substitute(name, script, subs)
	start := time.Now()
	out, err := w.exec(script)
	if err != nil {
		w.t.Fatalf("the %s block failed (%v):\n%s\n--- output:\n%s", name, err, w.mask(script), w.mask(out))
	}
	ranBlocks.Store(name, true)
	w.t.Logf("the %s block ran in %s", name, time.Since(start).Round(time.Millisecond))
	return out
}

// runFailing runs a block that must fail, as its doc says it does, and
// returns what it printed.
func (w *walk) runFailing(name, script string, subs ...sub) string {
	w.t.Helper()
	script = w.substitute(name, script, subs)
	out, err := w.exec(script)
	if err == nil {
		w.t.Fatalf("the %s block succeeded, but must fail here:\n%s\n--- output:\n%s", name, w.mask(script), w.mask(out))
	}
	ranBlocks.Store(name, true)
	return out
}

// substitute applies a block's declared substitutions.
func (w *walk) substitute(name, script string, subs []sub) string {
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
	return script
}

// exec runs a script in the operator's shell and returns what it printed
// and how it ended.
func (w *walk) exec(script string) (string, error) {
	w.t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", script)
	cmd.Dir = w.work
	cmd.Env = []string{
		"PATH=" + w.bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + w.home,
		"LANG=C.UTF-8",
		"VAULT_ADDR=" + w.s.Addr, "BAO_ADDR=" + w.s.Addr,
		"VAULT_TOKEN=" + w.s.Token, "BAO_TOKEN=" + w.s.Token,
		"MK_PASSWORD=" + walkPassword,
		"MOUNT=" + w.s.mount(),
		// go-plugin's sockets (Terraform's providers) stay in the test's directory.
		"TMPDIR=" + w.home,
	}
	cmd.Env = append(cmd.Env, w.env...)
	outBytes, err := cmd.CombinedOutput()
	out := string(outBytes)
	w.s.mu.Lock()
	w.s.stdout = append(w.s.stdout, out)
	w.s.served = append(w.s.served, jwtRe.FindAllString(out, -1)...)
	w.s.mu.Unlock()
	return out, err
}

// mask hides tokens and every password the stack knows in text shown on
// a failure.
func (w *walk) mask(text string) string {
	text = jwtRe.ReplaceAllString(text, "<token>")
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, secret := range w.s.secrets {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "<password>")
		}
	}
	return text
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
	if got := fields(w.s.MustCLI("read", "sys/mounts/"+w.s.mount()))["running_plugin_version"]; got != version {
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
	if out, _, err := s.CLI("write", s.mount()+"/roles/team-b-ci", "email="+teamBEmail, "password="+teamBPassword, "projects=TEAM_B"); err != nil {
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
	if _, err := team.Logical().Write(s.mount()+"/roles/team-a-ci", map[string]any{"ttl": "1h"}); !forbidden(err) {
		w.t.Errorf("team-a's token writing a role: want 403, got %v", err)
	}
	if _, err := platform.Logical().Write(s.mount()+"/roles/team-b-ci", map[string]any{"description": "team B's CI"}); err != nil {
		w.t.Errorf("the platform token cannot write a role: %v", err)
	}
	if _, err := platform.Logical().List(s.mount() + "/roles"); err != nil {
		w.t.Errorf("the platform token cannot list roles: %v", err)
	}
	if _, err := platform.Logical().Write(s.mount()+"/rotate-role/team-a-ci", nil); err != nil {
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
// says, from a filesystem mirror with no dev overrides, and applies the
// complete example as it is, with the page's apply block, to the engine
// just enabled at mk-prod, against `make up`'s stand-in users; the
// passwords stay out of the state. Destroy leaves the engine empty.
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
	// The block as written, where TF_CLI_CONFIG_FILE names a file that
	// does not exist yet: it writes that file, not ~/.terraformrc. Run
	// again, it finds the file and leaves it as it is, saying so.
	rc := filepath.Join(w.work, "cli.tfrc")
	saved := w.env
	w.env = append(append([]string{}, saved...), "TF_CLI_CONFIG_FILE="+rc)
	defer func() { w.env = saved }()
	w.run("terraform-install", block, w.platform())
	written, err := os.ReadFile(rc)
	if err != nil || !strings.Contains(string(written), "filesystem_mirror") || strings.Contains(string(written), "dev_overrides") {
		w.t.Fatalf("TF_CLI_CONFIG_FILE after the install block: %v %q", err, written)
	}
	if _, err := os.Stat(filepath.Join(w.home, ".terraformrc")); err == nil {
		w.t.Error("the install block wrote ~/.terraformrc although TF_CLI_CONFIG_FILE is set")
	}
	if err := os.WriteFile(rc, append(written, "# the operator's own line\n"...), 0o600); err != nil {
		w.t.Fatal(err)
	}
	out := w.run("terraform-install again", block, w.platform())
	if again, _ := os.ReadFile(rc); !strings.Contains(string(again), "# the operator's own line") || !strings.Contains(out, "left as it is") {
		w.t.Errorf("a second run of the install block changed the existing CLI configuration or said nothing: %q", out)
	}

	mk, passwords := docsStandIn(w.t, w.s)
	if err := os.MkdirAll(filepath.Join(w.work, "tf"), 0o700); err != nil {
		w.t.Fatal(err)
	}
	copyFile(w.t, filepath.Join(repoRoot(w.t), "terraform-provider-mkvault", "examples", "complete", "main.tf"), filepath.Join(w.work, "tf", "main.tf"))
	example := w.blocks("docs/terraform.md")["terraform-example"]
	w.run("terraform-example", example,
		sub{"", "cd tf\n"},
		sub{"TF_VAR_team_a_password=…", "TF_VAR_team_a_password=" + passwords["team-a-ci@example.com"]},
		sub{"TF_VAR_team_b_password=…", "TF_VAR_team_b_password=" + passwords["team-b-deploy@example.com"]},
		sub{"base_url=https://mk.example.com", "base_url=" + mk.URL},
		sub{"terraform apply ", "terraform apply -input=false -auto-approve "}) // no one to say yes
	for role, email := range map[string]string{"team-a-ci": "team-a-ci@example.com", "team-b-deploy": "team-b-deploy@example.com"} {
		if got := fields(w.s.MustCLI("read", w.s.mount()+"/roles/"+role))["email"]; got != email {
			w.t.Errorf("the role %s Terraform applied: email %q", role, got)
		}
	}
	if got := fields(w.s.MustCLI("read", w.s.mount()+"/config"))["base_url"]; got != mk.URL {
		w.t.Errorf("the config Terraform applied: base_url %q", got)
	}
	lock, _ := os.ReadFile(filepath.Join(w.work, "tf", ".terraform.lock.hcl"))
	if !regexp.MustCompile(`provider "registry.terraform.io/metakraftwerk/mkvault" \{\s+version\s+= "0.3.0"`).Match(lock) {
		w.t.Errorf("the lock file does not record the released provider:\n%s", lock)
	}
	state, err := os.ReadFile(filepath.Join(w.work, "tf", "terraform.tfstate"))
	if err != nil || !strings.Contains(string(state), "team-b-deploy") {
		w.t.Fatalf("no state with the roles: %v", err)
	}
	for _, password := range passwords {
		if strings.Contains(string(state), password) {
			w.t.Error("a password is in the Terraform state")
		}
	}
	w.s.mu.Lock()
	w.s.stdout = append(w.s.stdout, string(state))
	w.s.mu.Unlock()

	w.run("terraform destroy", fmt.Sprintf("cd tf\nterraform destroy -input=false -auto-approve -no-color -var mount=%s -var base_url=%s\n", w.s.mount(), mk.URL))
	if out, _, _ := w.s.CLI("list", w.s.mount()+"/roles"); strings.Contains(out, "team-") {
		w.t.Errorf("roles are left after terraform destroy:\n%s", out)
	}
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

// changedPassword follows operations.md's runbook for a password changed
// in MetaKraftwerk, from its symptom: the password changes upstream and a
// reader is refused; the block, given the new password in NEW, shows the
// rejection, stores the new password with one verify login, and reads.
// It returns the new password.
func (w *walk) changedPassword() string {
	w.t.Helper()
	block := w.blocks("docs/operations.md")["runbook-changed-password"]
	if block == "" {
		w.t.Fatal("no block marked <!-- walkthrough: runbook-changed-password --> in docs/operations.md")
	}
	s := w.s
	const newPassword = "pw-CI-BOT-rotated-5e1d07"
	w.setUpstreamPassword(newPassword)
	// The shared token would hide the change until it runs out.
	s.MustCLI("write", "-f", s.mount()+"/rotate-role/team-a-ci")
	if _, err := s.ReadCreds(s.API(s.Token), "team-a-ci"); err == nil || !strings.Contains(err.Error(), "Invalid login") {
		w.t.Fatalf("a read after the password changed upstream: want the rejection, got %v", err)
	}
	before := w.mk.Stats().Logins
	var out string
	w.withEnv(func() {
		out = w.run("runbook-changed-password", block, w.vaultIsBao())
	}, "ROLE=team-a-ci", "NEW="+newPassword)
	for _, want := range []string{`"last_error": "MetaKraftwerk rejected the login`, `"login_refused_until": "20`} {
		if !strings.Contains(out, want) {
			w.t.Errorf("the runbook's role read does not show %s:\n%s", want, out)
		}
	}
	if got := w.mk.Stats().Logins - before; got != 2 {
		w.t.Errorf("the runbook logged in %d times, want 2 (the write's verify, the read)", got)
	}
	if _, err := s.ReadCreds(s.API(s.Token), "team-a-ci"); err != nil {
		w.t.Errorf("a read after the runbook: %v", err)
	}
	return newPassword
}

// metricsPolicy writes bootstrap/policies/metrics.hcl at the walkthrough's
// mount with the command its note gives, and scrapes with a token of it.
func (w *walk) metricsPolicy() {
	w.t.Helper()
	w.policyByNote("metrics")
	tok := strings.TrimSpace(w.s.MustCLI("token", "create", "-policy=metrics", "-ttl=10m", "-field=token"))
	if code, body, err := get(w.t, w.s.Addr+"/v1/"+w.s.mount()+"/metrics", tok); err != nil || code != http.StatusOK || !strings.Contains(string(body), "metakraftwerk_build_info") {
		w.t.Errorf("a scrape of %s/metrics with the metrics policy's token: %d %v", w.s.mount(), code, err)
	}
	// operations.md's block that names the roles with series of their own.
	block := w.blocks("docs/operations.md")["metrics-roles"]
	if block == "" {
		w.t.Fatal("no block marked <!-- walkthrough: metrics-roles --> in docs/operations.md")
	}
	if out := w.run("metrics-roles", block, w.vaultIsBao()); !strings.Contains(out, "team-a-ci") || !strings.Contains(out, "deploy-*") {
		w.t.Errorf("metrics_roles after the block:\n%s", out)
	}
}

// policyByNote writes bootstrap/policies/<name>.hcl at the shell's MOUNT
// with the command the file's note gives for another mount.
func (w *walk) policyByNote(name string) {
	w.t.Helper()
	file := filepath.Join(repoRoot(w.t), "bootstrap", "policies", name+".hcl")
	copyFile(w.t, file, filepath.Join(w.work, name+".hcl"))
	data, _ := os.ReadFile(file)
	var command string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#   sed ") {
			command = strings.TrimPrefix(line, "#   ")
		}
	}
	if command == "" {
		w.t.Fatalf("bootstrap/policies/%s.hcl gives no command for another mount", name)
	}
	w.run(name+" policy", command+"\n", w.vaultIsBao())
}
