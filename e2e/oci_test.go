//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/portpair"
)

// TestOpenBaoInstallsFromOCIImage is OpenBao's declarative plugin path: the
// image `make oci` builds, served by a registry on loopback over TLS with a
// test CA the server trusts, and a server whose configuration holds only
// the plugin stanza with plugin_auto_download and plugin_auto_register. The
// engine mounts and mints a token with no `plugin register` at all; a
// stanza with a wrong sha256sum keeps the server from starting.
func TestOpenBaoInstallsFromOCIImage(t *testing.T) {
	t.Parallel()
	if !serverPlatform(t).OpenBao {
		t.Skipf("declarative plugins from OCI images are OpenBao's (since 2.5); %s has none", serverPlatform(t).Name)
	}
	version := requiredEnv(t, "PLUGIN_VERSION")
	dir := t.TempDir()
	registry, certFile := serveImage(t, dir, version)
	image := registry + "/metakraftwerk/" + pluginCommand
	stanza := func(sha string) string {
		return fmt.Sprintf(`plugin_auto_download = true
plugin_auto_register = true
plugin "secret" %q {
  image       = %q
  version     = %q
  binary_name = %q
  sha256sum   = %q
}
`, pluginName, image, version, pluginCommand, sha)
	}
	sha := pluginSHA(t, requiredEnv(t, "PLUGIN_BIN"))

	s := NewStack(t, StackOptions{NoInstall: true, ServerConfig: stanza(sha), ServerEnv: []string{"SSL_CERT_FILE=" + certFile}})
	info := fields(s.MustCLI("plugin", "info", "-version="+version, "secret", pluginName))
	if info["sha256"] != sha || info["version"] != version {
		t.Fatalf("the catalog entry from the stanza: %v", info)
	}
	s.MustCLI("secrets", "enable", "-path="+mount, "-plugin-version="+version, pluginName)
	s.MustCLI("write", mount+"/config", "base_url="+s.MK.URL)
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	out := s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	if code := useToken(t, s.MK.URL, strings.TrimSpace(out)); code != 200 {
		t.Fatalf("the token from the OCI-installed engine gets HTTP %d", code)
	}
	if running := fields(s.MustCLI("read", "sys/mounts/"+mount))["running_plugin_version"]; running != version {
		t.Errorf("running_plugin_version %q, want %s", running, version)
	}

	// A wrong sha256sum: the download is refused and the server does not start.
	wrong := strings.Repeat("0", 64)
	errOut := startExpectingFailure(t, s.Bin, filepath.Join(dir, "wrong-sha"), stanza(wrong), "SSL_CERT_FILE="+certFile)
	if !strings.Contains(errOut, "plugin hash mismatch: expected "+wrong) {
		t.Errorf("the server with a wrong sha256sum did not say so:\n%s", tail(errOut, 20))
	}
}

// serveImage builds the OCI layout of PLUGIN_BIN with the release tool (as
// `make oci` does, for this machine's architecture) and serves it from an
// in-memory registry over TLS; it returns the registry's host:port and the
// PEM file of its certificate.
func serveImage(t *testing.T, dir, version string) (string, string) {
	t.Helper()
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	tool := filepath.Join(dir, "release")
	build := exec.Command(goBin, "build", "-o", tool, "./release")
	build.Dir = filepath.Join(repoRoot(t), "tools")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the release tool: %v\n%s", err, out)
	}
	binDir := filepath.Join(dir, "bin", "linux_"+runtime.GOARCH)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(requiredEnv(t, "PLUGIN_BIN"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, pluginCommand), data, 0o755); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "oci")
	if out, err := exec.Command(tool, "oci", "-version", version, "-bin", filepath.Join(dir, "bin"), "-out", layout).CombinedOutput(); err != nil {
		t.Fatalf("release oci: %v\n%s", err, out)
	}

	certFile, addrFile := filepath.Join(dir, "registry.pem"), filepath.Join(dir, "registry.addr")
	reg := exec.Command(tool, "registry", "-layout", layout, "-tag", version, "-cert-file", certFile, "-addr-file", addrFile)
	var regOut bytes.Buffer
	reg.Stdout, reg.Stderr = &regOut, &regOut
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = reg.Process.Signal(syscall.SIGTERM)
		_ = reg.Wait()
	})
	var addr string
	waitFor(t, 30*time.Second, "the registry", func() bool {
		b, err := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != ""
	})
	return addr, certFile
}

// startExpectingFailure runs a dev server with extra configuration and
// returns its output once it exits; it fails the test if the server is
// still running after a minute.
func startExpectingFailure(t *testing.T, bin, dir, config string, env ...string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("plugin_directory = %q\n", filepath.Join(dir, "plugins"))+config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := portpair.Free(t)
	cmd := exec.CommandContext(ctx, bin, "server", "-dev", "-dev-root-token-id="+rootToken,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-config="+cfg)
	cmd.Env = append([]string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the server kept running:\n%s", tail(string(out), 20))
	}
	if err == nil {
		t.Fatalf("the server exited cleanly:\n%s", tail(string(out), 20))
	}
	return string(out)
}
