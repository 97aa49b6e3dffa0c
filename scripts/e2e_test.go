package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// e2eRun runs e2e.sh with fake servers and a `go` that only records which
// server the suite would have run on, so the platform-to-binary rules are
// tested without a server.
type e2eRun struct {
	t     *testing.T
	dir   string
	ranOn string
	env   []string
}

func newE2ERun(t *testing.T) *e2eRun {
	t.Helper()
	dir := t.TempDir()
	r := &e2eRun{t: t, dir: dir, ranOn: filepath.Join(dir, "ran-on")}
	// The fake go records each suite run: the e2e suite as the server it
	// ran on, the provider suite as "provider:<server>:<cli>:<host>".
	fakeGo := r.script("go", `if [[ $PWD == */terraform-provider-mkvault/acceptance ]]; then
  echo "provider:$SERVER_BIN:$TF_ACC_TERRAFORM_PATH:${TF_ACC_PROVIDER_HOST:-}" >>"$RAN_ON"
else
  echo "$SERVER_BIN" >>"$RAN_ON"
fi`)
	fakePrometheus := r.script("prometheus", `exit 0`)
	fakeTerraform := r.script("bin/terraform", `echo 'Terraform v1.11.4'`)
	r.env = []string{
		// The walkthrough's releases and Terraform, which e2e.sh would build.
		"RELEASE_DIR=" + filepath.Join(dir, "releases"),
		"TERRAFORM_BIN=" + fakeTerraform,
		"PATH=/usr/bin:/bin", // no vault or bao of the developer's
		"HOME=" + dir,
		"VAULT_CACHE_DIR=" + filepath.Join(dir, "cache"),
		"GO=" + fakeGo,
		"PROMETHEUS_BIN=" + fakePrometheus,
		"RAN_ON=" + r.ranOn,
		"PLUGIN_BIN=/nonexistent",
		"PLUGIN_VERSION=v0.0.0-test",
		"E2E_SUITES=e2e",
	}
	return r
}

// script writes an executable shell script and returns its path.
func (r *e2eRun) script(name, body string) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/usr/bin/env bash\n"+body+"\n"), 0o755); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// server writes a fake server binary whose `version` prints line.
func (r *e2eRun) server(name, line string) string {
	return r.script(name, `[[ $1 == version ]] && echo '`+line+`'`)
}

func (r *e2eRun) run(env []string, platforms ...string) (out string, ok bool, ranOn []string) {
	r.t.Helper()
	_ = os.Remove(r.ranOn)
	cmd := exec.Command("bash", append([]string{"e2e.sh"}, platforms...)...)
	cmd.Env = append(append([]string{}, r.env...), env...)
	b, err := cmd.CombinedOutput()
	if data, rerr := os.ReadFile(r.ranOn); rerr == nil {
		ranOn = strings.Fields(string(data))
	}
	return string(b), err == nil, ranOn
}

// A developer's VAULT_BIN must not stand in for the LTS line: the LTS leg
// takes VAULT_LTS_BIN or its own build, never the other Vault.
func TestE2ELTSIgnoresVaultBin(t *testing.T) {
	r := newE2ERun(t)
	current := r.server("vault-1.21", "Vault v1.21.0 ('abc'), built 2025-01-01T00:00:00Z")
	lts := r.server("cache/vault-v1.19.0/vault", "Vault v1.19.0 ('def'), built 2025-01-01T00:00:00Z")

	out, ok, ranOn := r.run([]string{"VAULT_BIN=" + current}, "vault", "vault-lts")
	if !ok || len(ranOn) != 2 || ranOn[0] != current || ranOn[1] != lts {
		t.Fatalf("ran on %q (ok=%v), want %q then %q:\n%s", ranOn, ok, current, lts, out)
	}

	own := r.server("lts-of-my-own", "Vault v1.19.3 ('fed'), built 2025-06-01T00:00:00Z")
	out, ok, ranOn = r.run([]string{"VAULT_BIN=" + current, "VAULT_LTS_BIN=" + own}, "vault-lts")
	if !ok || len(ranOn) != 1 || ranOn[0] != own {
		t.Fatalf("ran on %q (ok=%v), want VAULT_LTS_BIN %q:\n%s", ranOn, ok, own, out)
	}
}

// A platform whose binary reports another product or line fails before the
// suite runs, and says what it found.
func TestE2EFailsOnAServerOfAnotherPlatform(t *testing.T) {
	r := newE2ERun(t)
	vault121 := r.server("vault-1.21", "Vault v1.21.0 ('abc'), built 2025-01-01T00:00:00Z")
	bao := r.server("bao", "OpenBao v2.6.2 ('abc'), built 2025-01-01T00:00:00Z")
	for _, tt := range []struct {
		platform string
		env      string
		reported string
	}{
		{"vault-lts", "VAULT_LTS_BIN=" + vault121, "Vault v1.21.0"},
		{"openbao", "BAO_BIN=" + vault121, "Vault v1.21.0"},
		{"vault", "VAULT_BIN=" + bao, "OpenBao v2.6.2"},
		// The vault leg is the line it names, not any Vault.
		{"vault", "VAULT_BIN=" + r.server("vault-1.19", "Vault v1.19.0 ('def'), built 2025-01-01T00:00:00Z"), "Vault v1.19.0"},
	} {
		out, ok, ranOn := r.run([]string{tt.env}, tt.platform)
		if ok || len(ranOn) != 0 {
			t.Errorf("%s with %s: ok=%v, ran on %q; want a failure before the suite", tt.platform, tt.env, ok, ranOn)
		}
		if !strings.Contains(out, tt.platform+": FAILED") || !strings.Contains(out, tt.reported) {
			t.Errorf("%s: the summary does not name the platform and what the server reported:\n%s", tt.platform, out)
		}
	}
}

// The provider's suite runs after the e2e suite: on vault with Terraform
// and with OpenTofu (whose provider host it is given), on openbao with
// Terraform, on vault-lts not at all.
func TestE2ERunsTheProviderSuite(t *testing.T) {
	r := newE2ERun(t)
	vault := r.server("vault", "Vault v1.21.0 ('abc'), built 2025-01-01T00:00:00Z")
	bao := r.server("bao", "OpenBao v2.6.2 ('abc'), built 2025-01-01T00:00:00Z")
	lts := r.server("lts", "Vault v1.19.0 ('def'), built 2025-01-01T00:00:00Z")
	terraform := r.script("terraform", `echo 'Terraform v1.11.4'`)
	tofu := r.script("tofu", `echo 'OpenTofu v1.12.6'`)
	out, ok, ranOn := r.run([]string{"E2E_SUITES=e2e provider", "VAULT_BIN=" + vault, "BAO_BIN=" + bao, "VAULT_LTS_BIN=" + lts,
		"TERRAFORM_BIN=" + terraform, "TOFU_BIN=" + tofu}, "vault", "vault-lts", "openbao")
	want := []string{vault, "provider:" + vault + ":" + terraform + ":", "provider:" + vault + ":" + tofu + ":registry.opentofu.org",
		lts, bao, "provider:" + bao + ":" + terraform + ":"}
	if !ok || strings.Join(ranOn, " ") != strings.Join(want, " ") {
		t.Fatalf("ran %q (ok=%v), want %q:\n%s", ranOn, ok, want, out)
	}
	if !strings.Contains(out, "vault provider: passed on Vault v1.21.0 with OpenTofu v1.12.6") {
		t.Errorf("the summary does not name the OpenTofu leg:\n%s", out)
	}
}

// prometheus-bin.sh builds Prometheus once into the cache (with a stub
// `go` here) and reuses it; PROMETHEUS_BIN overrides it.
func TestPrometheusBinBuildsOnceAndReuses(t *testing.T) {
	r := newE2ERun(t)
	goLog := filepath.Join(r.dir, "go.log")
	r.script("bin/go", `echo "$*" >>"`+goLog+`"
[[ $1 == install ]] || exit 1
printf '#!/usr/bin/env bash\necho "prometheus, version 3.0.0-stub"\n' >"$GOBIN/prometheus"
chmod +x "$GOBIN/prometheus"`)
	env := []string{"PATH=" + filepath.Join(r.dir, "bin") + ":/usr/bin:/bin", "HOME=" + r.dir, "VAULT_CACHE_DIR=" + filepath.Join(r.dir, "cache"), "TMPDIR=" + r.dir}
	run := func(extra ...string) string {
		cmd := exec.Command("bash", "prometheus-bin.sh")
		cmd.Env = append(append([]string{}, env...), extra...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("prometheus-bin.sh: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	want := filepath.Join(r.dir, "cache", "prometheus-v0.316.0", "prometheus")
	for range 2 {
		if got := run(); got != want {
			t.Fatalf("prometheus-bin.sh printed %q, want %q", got, want)
		}
	}
	if calls, _ := os.ReadFile(goLog); strings.Count(string(calls), "install") != 1 {
		t.Errorf("go was called %q; want one install", calls)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(r.dir, "prometheus-build.*")); len(leftovers) != 0 {
		t.Errorf("scratch left behind: %v", leftovers)
	}
	if got := run("PROMETHEUS_BIN=/bin/true"); got != "/bin/true" {
		t.Errorf("PROMETHEUS_BIN ignored: %q", got)
	}
}
