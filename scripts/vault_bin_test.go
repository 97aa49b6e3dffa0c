// Package scripts tests the shell scripts beside it. vault-bin.sh is tested
// with a stub `go` on PATH that "builds" a fake vault in no time, so the
// build path runs in every `make test` without building Vault.
package scripts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// stubGo is a `go` that answers the three commands vault-bin.sh runs:
// `mod download -json <module>` (prints the source directory), `mod
// download`, and `build -o <out>` (writes the fake vault in two halves, or
// fails when FAKE_GO_FAIL is set). Every call is logged.
const stubGo = `#!/usr/bin/env bash
echo "$*" >>"$FAKE_GO_LOG"
case "$1" in
mod)
	if [[ ${3:-} == -json ]]; then printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n\t"Sum": "h1:x"\n}\n' "${4%@*}" "$FAKE_VAULT_SRC"; fi
	exit 0 ;;
build)
	while [[ $# -gt 0 ]]; do [[ $1 == -o ]] && out=$2; shift; done
	if [[ -n ${FAKE_GO_FAIL:-} ]]; then echo "fake compile error" >&2; exit 2; fi
	sleep "${FAKE_GO_SLEEP:-0}"
	head -c "$FAKE_HALF" "$FAKE_VAULT" >"$out"
	sleep 0.2
	tail -c +"$((FAKE_HALF + 1))" "$FAKE_VAULT" >>"$out"
	chmod +x "$out"
	exit 0 ;;
esac
exit 1
`

type buildEnv struct {
	t       *testing.T
	dir     string
	cache   string
	scratch string
	goLog   string
	// vault is the fake binary's exact content: a script that prints a
	// version, padded to the size of a small binary.
	vault []byte
	extra []string
}

func newBuildEnv(t *testing.T) *buildEnv {
	t.Helper()
	dir := t.TempDir()
	e := &buildEnv{t: t, dir: dir, cache: filepath.Join(dir, "cache"), scratch: filepath.Join(dir, "scratch"), goLog: filepath.Join(dir, "go.log")}
	for _, d := range []string{filepath.Join(dir, "bin"), e.scratch, filepath.Join(dir, "src")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, data []byte, mode os.FileMode) {
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "bin", "go"), []byte(stubGo), 0o755)
	// The module cache is read-only; the script must cope.
	write(filepath.Join(dir, "src", "go.mod"), []byte("module github.com/hashicorp/vault\n\nreplace github.com/hashicorp/vault/api => ./api\n"), 0o444)
	if err := os.Chmod(filepath.Join(dir, "src"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "src"), 0o755) })
	e.vault = append([]byte("#!/bin/sh\n[ \"$1\" = version ] && echo 'Vault v1.21.0 (fake), built 2025-11-28'\nexit 0\n"),
		bytes.Repeat([]byte("# padding\n"), 100_000)...)
	e.vault = append(e.vault, []byte("# end\n")...)
	write(filepath.Join(dir, "fake-vault"), e.vault, 0o644)
	return e
}

func (e *buildEnv) command() *exec.Cmd {
	cmd := exec.Command("bash", "vault-bin.sh")
	cmd.Env = append([]string{
		"PATH=" + filepath.Join(e.dir, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + e.dir,
		"TMPDIR=" + e.scratch,
		"VAULT_CACHE_DIR=" + e.cache,
		"FAKE_GO_LOG=" + e.goLog,
		"FAKE_VAULT_SRC=" + filepath.Join(e.dir, "src"),
		"FAKE_VAULT=" + filepath.Join(e.dir, "fake-vault"),
		"FAKE_HALF=" + fmt.Sprint(len(e.vault)/2),
	}, e.extra...)
	return cmd
}

func (e *buildEnv) run() (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := e.command()
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func (e *buildEnv) target() string { return filepath.Join(e.cache, "vault-v1.21.0", "vault") }

// builds counts the stub's `go build` calls.
func (e *buildEnv) builds() int {
	data, _ := os.ReadFile(e.goLog)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "build ") {
			n++
		}
	}
	return n
}

// assertClean fails if the build left anything behind: a scratch
// directory, or a half-installed binary next to the target.
func (e *buildEnv) assertClean() {
	e.t.Helper()
	if left, _ := os.ReadDir(e.scratch); len(left) > 0 {
		e.t.Errorf("scratch left in TMPDIR: %v", left)
	}
	if tmp, _ := filepath.Glob(e.target() + ".tmp.*"); len(tmp) > 0 {
		e.t.Errorf("temporary install files left: %v", tmp)
	}
}

func TestVaultBinBuilds(t *testing.T) {
	e := newBuildEnv(t)
	// Readers of the target may see no file or a whole one, never a part:
	// the target's name may only ever appear by rename.
	events := watchWrites(t, filepath.Dir(e.target()), filepath.Base(e.target()))
	stdout, stderr, err := e.run()
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr)
	}
	if stdout != e.target()+"\n" {
		t.Fatalf("stdout %q, want the path %q and nothing else", stdout, e.target())
	}
	if data, err := os.ReadFile(e.target()); err != nil || !bytes.Equal(data, e.vault) {
		t.Fatalf("installed binary differs from the built one (%v)", err)
	}
	if got := events(); got != nil && (len(got) != 1 || got[0] != "moved in") {
		t.Errorf("the target was %v; an atomic install only moves it in", got)
	}
	if !strings.Contains(stderr, "built Vault v1.21.0 (fake)") {
		t.Errorf("no build summary on stderr:\n%s", stderr)
	}
	e.assertClean()

	// A second run reuses the cached binary.
	stdout, _, err = e.run()
	if err != nil || stdout != e.target()+"\n" || e.builds() != 1 {
		t.Fatalf("second run: %v %q, %d builds", err, stdout, e.builds())
	}
}

func TestVaultBinConcurrentRunsBuildOnce(t *testing.T) {
	e := newBuildEnv(t)
	e.extra = []string{"FAKE_GO_SLEEP=1"}
	type result struct {
		stdout, stderr string
		err            error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stdout, stderr, err := e.run()
			results[i] = result{stdout, stderr, err}
		}()
	}
	wg.Wait()
	waited := 0
	for i, r := range results {
		if r.err != nil || r.stdout != e.target()+"\n" {
			t.Errorf("run %d: %v %q\n%s", i, r.err, r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, "waiting for it") {
			waited++
		}
	}
	if e.builds() != 1 || waited != 1 {
		t.Errorf("%d builds, %d runs waited; want one build and one waiter", e.builds(), waited)
	}
	e.assertClean()
}

func TestVaultBinFailedBuild(t *testing.T) {
	e := newBuildEnv(t)
	e.extra = []string{"FAKE_GO_FAIL=1"}
	stdout, stderr, err := e.run()
	if err == nil || stdout != "" || !strings.Contains(stderr, "fake compile error") {
		t.Fatalf("want a failure with the compiler's message and no path; got %v %q\n%s", err, stdout, stderr)
	}
	if _, err := os.Stat(e.target()); err == nil {
		t.Error("a failed build installed a binary")
	}
	e.assertClean()
}

// VAULT_BIN wins; a non-executable one is an error naming it.
func TestVaultBinHonoursVaultBin(t *testing.T) {
	e := newBuildEnv(t)
	exe := filepath.Join(e.dir, "fake-vault")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	e.extra = []string{"VAULT_BIN=" + exe}
	if stdout, _, err := e.run(); err != nil || stdout != exe+"\n" || e.builds() != 0 {
		t.Fatalf("VAULT_BIN: %v %q, %d builds", err, stdout, e.builds())
	}
	e.extra = []string{"VAULT_BIN=" + filepath.Join(e.dir, "missing")}
	if _, stderr, err := e.run(); err == nil || !strings.Contains(stderr, "VAULT_BIN=") {
		t.Fatalf("missing VAULT_BIN: %v\n%s", err, stderr)
	}
}

// A vault on PATH is used when it is of the line VAULT_LINE asks for, and
// passed over (the line is built) when it is not.
func TestVaultBinVaultLineOnPath(t *testing.T) {
	e := newBuildEnv(t)
	onPath := filepath.Join(e.dir, "bin", "vault")
	for _, tt := range []struct {
		reports, line string
		usesPath      bool
	}{
		{"Vault v1.20.4 (x)", "", true},
		{"Vault v1.21.3 (x)", "1.21", true},
		{"Vault v1.20.4 (x)", "1.21", false},
	} {
		if err := os.WriteFile(onPath, []byte("#!/bin/sh\necho '"+tt.reports+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		e.extra = []string{"VAULT_LINE=" + tt.line}
		stdout, stderr, err := e.run()
		if err != nil {
			t.Fatalf("%s, line %q: %v\n%s", tt.reports, tt.line, err, stderr)
		}
		if got := stdout == onPath+"\n"; got != tt.usesPath {
			t.Errorf("%s, line %q: printed %q", tt.reports, tt.line, stdout)
		}
	}
}
