// Package bootstrap tests the local stack's scripts beside it where they
// fail: a failing demo must say which step failed and why, and leave
// nothing running or behind. The successful tour runs in CI (`make demo`
// on an empty Vault cache).
package bootstrap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// copyRepo makes a repository with this one's bootstrap/ and scripts/ but
// none of its build output.
func copyRepo(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Dir(filepath.Dir(file))
	dst := t.TempDir()
	for _, dir := range []string{"bootstrap", "scripts"} {
		if out, err := exec.Command("cp", "-R", filepath.Join(src, dir), dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	return dst
}

// runDemo runs demo.sh with a temp directory of its own and returns its
// output and the temp directory, which must be empty afterwards.
func runDemo(t *testing.T, repo string, env ...string) (string, string, error) {
	t.Helper()
	tmp := t.TempDir()
	cmd := exec.Command(filepath.Join(repo, "bootstrap", "demo.sh"))
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), tmp, err
}

func assertFailedAt(t *testing.T, out string, err error, step string, reasons ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the demo succeeded:\n%s", out)
	}
	if !strings.Contains(out, "Demo failed at step "+step) {
		t.Errorf("the output does not name step %s:\n%s", step, out)
	}
	for _, r := range reasons {
		if !strings.Contains(out, r) {
			t.Errorf("the output lacks %q:\n%s", r, out)
		}
	}
	if !strings.Contains(out, "stack stopped and") {
		t.Errorf("the stack was not torn down:\n%s", out)
	}
}

func assertNothingLeft(t *testing.T, tmp string) {
	t.Helper()
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
}

func TestDemoWithoutBuildSaysSo(t *testing.T) {
	repo := copyRepo(t)
	out, tmp, err := runDemo(t, repo)
	assertFailedAt(t, out, err, "1/6", "why: the stack did not come up: run 'make build' first")
	assertNothingLeft(t, tmp)
}

// A server that cannot start: the step, the reason and the server's own
// last words.
func TestDemoServerFailureSaysWhy(t *testing.T) {
	repo := copyRepo(t)
	bin := filepath.Join(repo, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "metakraftwerk-devserver"), "./cmd/metakraftwerk-devserver")
	build.Dir = filepath.Dir(filepath.Dir(file))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in: %v\n%s", err, out)
	}
	fake := "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Vault v1.21.0 (fake)'; exit 0; fi\necho 'fake vault: storage is on fire' >&2\nexit 1\n"
	for name, content := range map[string]string{"vault-plugin-secrets-metakraftwerk": "#!/bin/sh\nexit 1\n", "vault": fake} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, tmp, err := runDemo(t, repo, "VAULT_BIN="+filepath.Join(bin, "vault"))
	assertFailedAt(t, out, err, "1/6", "why: the stack did not come up: the vault server exited at start",
		"last lines of vault.log", "fake vault: storage is on fire")
	assertNothingLeft(t, tmp)
}
