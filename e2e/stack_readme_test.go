//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README says that after `make up` and `source .stack/env` its blocks
// paste as written, at the operator's MOUNT, on OpenBao too. This runs
// bootstrap/stack.sh as `make up` does, with MOUNT=team-prod exported and
// neither vault nor bao on PATH, then the README's enable (at a second
// mount, with the V the stack set), role, policy, try and consume blocks
// in that shell.
func TestStackPastesTheReadme(t *testing.T) {
	t.Parallel()
	p := serverPlatform(t)
	server, plugin, version := requiredEnv(t, "SERVER_BIN"), requiredEnv(t, "PLUGIN_BIN"), requiredEnv(t, "PLUGIN_VERSION")
	repo := t.TempDir()
	for _, dir := range []string{"bootstrap", "scripts"} {
		if out, err := exec.Command("cp", "-R", filepath.Join(repoRoot(t), dir), repo).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	bin := filepath.Join(repo, "bin")
	if out, err := exec.Command("mkdir", "-p", bin).CombinedOutput(); err != nil {
		t.Fatalf("mkdir: %v %s", err, out)
	}
	if out, err := exec.Command("cp", plugin, filepath.Join(bin, "vault-plugin-secrets-metakraftwerk")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	build := exec.Command(goBin, "build", "-o", filepath.Join(bin, "metakraftwerk-devserver"), "./cmd/metakraftwerk-devserver")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in: %v\n%s", err, out)
	}

	readme := (&walk{t: t}).blocks("README.md")
	// The stand-in is the stack's base_url: the set-up's optional config
	// block (a self-hosted MetaKraftwerk with a private CA) is the one the
	// README says to skip.
	configRe := regexp.MustCompile(`(?m)^vault write "\$MOUNT/config" base_url=.*\n`)
	if n := len(configRe.FindAllString(readme["setup"], -1)); n != 1 {
		t.Fatalf("found %d config writes in the README's set-up, want 1:\n%s", n, readme["setup"])
	}
	setup := configRe.ReplaceAllString(readme["setup"], "")
	for _, name := range []string{"enable", "try-policy", "consume"} {
		if readme[name] == "" {
			t.Fatalf("the README has no block marked <!-- walkthrough: %s -->", name)
		}
	}

	platform, binVar := "vault", "VAULT_BIN"
	if p.OpenBao {
		platform, binVar = "openbao", "BAO_BIN"
	}
	home := filepath.Join(repo, "home")
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", // no vault, no bao: the stack's env file must give them
		"HOME=" + home, "TMPDIR=" + t.TempDir(),
		"PLATFORM=" + platform, binVar + "=" + server, "VERSION=" + version,
		"MOUNT=team-prod",
	}
	stack := func(arg string) (string, error) {
		cmd := exec.Command(filepath.Join(repo, "bootstrap", "stack.sh"), arg)
		cmd.Dir, cmd.Env = repo, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := stack("down"); err != nil {
			t.Errorf("stack.sh down: %v\n%s", err, out)
		}
	})
	if out, err := stack("up"); err != nil {
		t.Fatalf("stack.sh up: %v\n%s", err, out)
	} else if !strings.Contains(out, `vault read "$MOUNT/creds/team-a-ci"`) || strings.Contains(out, "metakraftwerk/creds") {
		t.Errorf("stack.sh up's hint is not the README's command at $MOUNT:\n%s", out)
	}

	script := `set -euo pipefail
source .stack/env
if command -v bao >/dev/null && [ "$(command -v vault)" != "$PWD/.stack/bin/vault" ]; then echo "vault is not the stack's wrapper: $(command -v vault)"; exit 1; fi
echo "MOUNT=$MOUNT V=$V"
vault secrets list -format=json | jq -r 'keys[]' >mounts.txt
# The README's enable block, at a second mount, in the stack's shell.
(MOUNT=team-stage
` + readme["enable"] + `)
vault read -field=running_plugin_version sys/mounts/team-stage
echo
# The set-up's role and policies.
` + setup + `
# Try the policy: the first read works, the second is refused.
set +e
(set -e
` + readme["try-policy"] + `) >try.txt 2>&1
echo "try-policy exited $?"
set -e
` + readme["consume"] + `
printf 'consumed %d bytes\n' "${#METAKRAFTWERK_TOKEN}"
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = repo
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's blocks failed after `make up` (%v):\n%s", err, regexp.MustCompile(`eyJ[A-Za-z0-9_.-]*`).ReplaceAllString(out.String(), "<token>"))
	}
	got := out.String()
	if strings.Contains(got, "eyJ") {
		t.Error("the blocks printed a token")
	}
	jwtRe := regexp.MustCompile(`eyJ[A-Za-z0-9_.-]*`)
	got = jwtRe.ReplaceAllString(got, "<token>")
	t.Logf("after `make up` on %s at MOUNT=team-prod:\n%s", p.Name, got)
	for _, want := range []string{"MOUNT=team-prod V=" + strings.TrimPrefix(version, "v"), "\n" + version + "\n", "consumed "} {
		if !strings.Contains(got, want) {
			t.Errorf("the run lacks %q", want)
		}
	}
	if strings.Contains(got, "try-policy exited 0") {
		t.Error("the try-policy block succeeded, but its second read must be refused")
	}
	if strings.Contains(got, "consumed 0 bytes") {
		t.Error("the consume block got no token")
	}
	mounts, err := os.ReadFile(filepath.Join(repo, "mounts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), "team-prod/") || strings.Contains(string(mounts), "metakraftwerk/") {
		t.Errorf("the stack's mounts are not team-prod/ alone:\n%s", mounts)
	}
	try, err := os.ReadFile(filepath.Join(repo, "try.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(try), "access_token") || !strings.Contains(string(try), "permission denied") {
		t.Errorf("the try-policy block did not mint team A's token and then get refused:\n%s", jwtRe.ReplaceAll(try, []byte("<token>")))
	}
}
