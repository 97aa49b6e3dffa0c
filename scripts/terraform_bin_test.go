package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stubGoForCLIs answers what terraform-bin.sh asks of go: `mod download
// -json` prints the source directory of the module asked for, `mod edit`
// is logged, and `build -o <out>` writes a CLI that reports the version
// the source's VERSION file names (or fails when the source has FAIL).
const stubGoForCLIs = `#!/usr/bin/env bash
echo "$PWD: $*" >>"$FAKE_GO_LOG"
case "$1 $2" in
"mod download")
	mod=${4%@*}
	printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n\t"Sum": "h1:x"\n}\n' "$mod" "$FAKE_SRC/$(basename "$mod")"
	exit 0 ;;
"mod edit") exit 0 ;;
esac
if [[ $1 == build ]]; then
	while [[ $# -gt 0 ]]; do [[ $1 == -o ]] && out=$2; shift; done
	if [[ -e FAIL ]]; then echo "fake compile error" >&2; exit 2; fi
	printf '#!/bin/sh\necho "%s"\n' "$(cat VERSION)" >"$out"
	chmod +x "$out"
	exit 0
fi
exit 1
`

type cliEnv struct {
	t                  *testing.T
	dir, cache, goLog  string
	terraformSrc, tofu string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	e := &cliEnv{t: t, dir: dir, cache: filepath.Join(dir, "cache"), goLog: filepath.Join(dir, "go.log"),
		terraformSrc: filepath.Join(dir, "src", "terraform"), tofu: filepath.Join(dir, "src", "opentofu")}
	write := func(path, data string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "bin", "go"), stubGoForCLIs, 0o755)
	write(filepath.Join(e.terraformSrc, "go.mod"), "module github.com/hashicorp/terraform\n\n"+
		"godebug tlskyber=0\n\n"+
		"replace github.com/hashicorp/terraform/internal/legacy => ./internal/legacy\n\n"+
		"replace github.com/hashicorp/terraform/internal/backend/remote-state/s3 => ./internal/backend/remote-state/s3\n", 0o444)
	write(filepath.Join(e.terraformSrc, "VERSION"), "Terraform v1.11.4", 0o444)
	write(filepath.Join(e.tofu, "go.mod"), "module github.com/opentofu/opentofu\n", 0o444)
	write(filepath.Join(e.tofu, "VERSION"), "OpenTofu v1.12.6", 0o444)
	return e
}

// run runs terraform-bin.sh with product, extra environment and a PATH of
// the stub go, extra directories and the system's.
func (e *cliEnv) run(product string, env []string, path ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("bash", "terraform-bin.sh", product)
	cmd.Env = append([]string{
		"PATH=" + strings.Join(append(path, filepath.Join(e.dir, "bin"), "/usr/bin", "/bin"), ":"),
		"HOME=" + e.dir, "TMPDIR=" + e.dir, "VAULT_CACHE_DIR=" + e.cache,
		"FAKE_GO_LOG=" + e.goLog, "FAKE_SRC=" + filepath.Join(e.dir, "src"),
	}, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// cli writes an executable that reports version, in its own directory.
func (e *cliEnv) cli(name, version string) string {
	dir := filepath.Join(e.dir, "path-"+strings.ReplaceAll(version, " ", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho '"+version+"'\n"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// The script takes $TERRAFORM_BIN, else a terraform of 1.11 or later on
// PATH, else builds Terraform with its nested modules from the proxy and
// a go.mod the Go of today reads, caching it.
func TestTerraformBinFindsOrBuilds(t *testing.T) {
	e := newCLIEnv(t)
	own := e.cli("terraform", "Terraform v1.9.0")
	if out, _, err := e.run("terraform", []string{"TERRAFORM_BIN=" + own}); err != nil || out != own+"\n" {
		t.Fatalf("TERRAFORM_BIN: %q %v", out, err)
	}
	recent := e.cli("terraform", "Terraform v1.11.4")
	if out, _, err := e.run("terraform", nil, filepath.Dir(recent)); err != nil || out != recent+"\n" {
		t.Fatalf("terraform 1.11 on PATH: %q %v", out, err)
	}
	old := e.cli("terraform", "Terraform v1.10.5")
	out, stderr, err := e.run("terraform", nil, filepath.Dir(old))
	built := filepath.Join(e.cache, "terraform-v1.11.4", "terraform")
	if err != nil || out != built+"\n" {
		t.Fatalf("terraform 1.10 on PATH: %q %v\n%s", out, err, stderr)
	}
	log, _ := os.ReadFile(e.goLog)
	for _, want := range []string{
		"mod edit -dropreplace=github.com/hashicorp/terraform/internal/legacy -require=github.com/hashicorp/terraform/internal/legacy@v0.0.0-20250409131005-35645b8fca68",
		"-dropreplace=github.com/hashicorp/terraform/internal/backend/remote-state/s3",
		"mod edit -dropgodebug=tlskyber",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("go was not asked %q:\n%s", want, log)
		}
	}
	// Built once: the cache serves the next run.
	before := strings.Count(string(log), "build")
	if out, _, err := e.run("terraform", nil); err != nil || out != built+"\n" {
		t.Fatalf("cached: %q %v", out, err)
	}
	if log, _ := os.ReadFile(e.goLog); strings.Count(string(log), "build") != before {
		t.Error("built again instead of using the cache")
	}
}

// When Terraform does not build, OpenTofu does the job; opentofu asks for
// it directly.
func TestTerraformBinFallsBackToOpenTofu(t *testing.T) {
	e := newCLIEnv(t)
	if err := os.Chmod(e.terraformSrc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.terraformSrc, "FAIL"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := e.run("terraform", nil)
	tofu := filepath.Join(e.cache, "tofu-v1.12.6", "tofu")
	if err != nil || out != tofu+"\n" || !strings.Contains(stderr, "did not build; trying OpenTofu") {
		t.Fatalf("fallback: %q %v\n%s", out, err, stderr)
	}
	onPath := e.cli("tofu", "OpenTofu v1.11.0")
	if out, _, err := e.run("opentofu", nil, filepath.Dir(onPath)); err != nil || out != onPath+"\n" {
		t.Fatalf("tofu on PATH: %q %v", out, err)
	}
	if _, stderr, err := e.run("opentofu", []string{"TOFU_BIN=" + filepath.Join(e.dir, "missing")}); err == nil || !strings.Contains(stderr, "TOFU_BIN=") {
		t.Fatalf("a missing TOFU_BIN: %v\n%s", err, stderr)
	}
}

// A version answer that goes on after its first line (Terraform's and
// OpenTofu's do) is read to its end. A reader that stopped at the version
// line let the CLI die of SIGPIPE, pipefail failed a good binary, and the
// script went on to build one (2 in 100 runs with the real tofu).
func TestTerraformBinReadsTheWholeVersionAnswer(t *testing.T) {
	e := newCLIEnv(t)
	p := e.cli("terraform", "Terraform v1.11.4")
	// More than a pipe's buffer after the version line, so that a reader
	// that leaves early is certain to break the pipe.
	talkative := "#!/bin/sh\necho 'Terraform v1.11.4'\ni=0\nwhile [ $i -lt 20000 ]; do echo 'on linux_amd64'; i=$((i+1)); done\n"
	if err := os.WriteFile(p, []byte(talkative), 0o755); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := e.run("terraform", nil, filepath.Dir(p))
	if err != nil || out != p+"\n" {
		t.Fatalf("terraform 1.11 on PATH with a long version answer: %q %v\n%s", out, err, stderr)
	}
}
