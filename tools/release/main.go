// Command release packages the plugin binaries that `make release` built
// (one per platform, with the same flags as `make build`) the way HashiCorp
// publishes plugins, and builds the OCI image OpenBao's declarative plugins
// pull. It never compiles the plugin itself, so the build flags live in one
// place, the Makefile.
//
//	release package -version vX.Y.Z -bin DIR -license FILE -out DIR [-gpg-key ID] [-provider-bin DIR]
//	release oci     -version vX.Y.Z -bin DIR -out DIR
//	release check-version -version vX.Y.Z
//	release registry -layout DIR -repo NAME -tag TAG -cert-file F -addr-file F
//
// DIR given to -bin holds <os>_<arch>/<binary> for each platform.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

const (
	plugin   = "vault-plugin-secrets-metakraftwerk"
	provider = "terraform-provider-mkvault"
)

// semver is a release version: vMAJOR.MINOR.PATCH with an optional
// pre-release (v0.3.0-rc.1); no build metadata, which Vault's catalog drops.
var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

func main() {
	log.SetFlags(0)
	log.SetPrefix("release: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: release package|oci|registry [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	version := fs.String("version", "", "the release version, vX.Y.Z")
	bin := fs.String("bin", "", "directory of <os>_<arch>/<binary>")
	out := fs.String("out", "", "output directory")
	var err error
	switch cmd {
	case "package":
		license := fs.String("license", "", "the LICENSE file each zip carries")
		gpgKey := fs.String("gpg-key", "", "sign SHA256SUMS with this GPG key (empty: no signature)")
		sbomTool := fs.String("sbom-tool", "cyclonedx-gomod", "the cyclonedx-gomod command")
		providerBin := fs.String("provider-bin", "", "directory of <os>_<arch>/terraform-provider-mkvault_vX.Y.Z (empty: no provider)")
		providerManifest := fs.String("provider-manifest", "", "the provider's terraform-registry-manifest.json (with -provider-bin)")
		commit := fs.String("source-commit", "", "the source's git commit, for the provenance")
		goVersion := fs.String("go-version", "", "the Go toolchain (go env GOVERSION), for the provenance")
		pluginBuild := fs.String("plugin-build", "", "the plugin's build command, for the provenance")
		providerBuild := fs.String("provider-build", "", "the provider's build command, for the provenance")
		_ = fs.Parse(args)
		mustVersion(*version)
		if !commitRe.MatchString(*commit) || *goVersion == "" || *pluginBuild == "" {
			log.Fatalf("the provenance needs -source-commit (40 hex digits, got %q), -go-version and -plugin-build", *commit) //nolint:gosec // G706: %q quotes it; the maintainer's own argument
		}
		err = packageRelease(releaseSpec{version: *version, binDir: *bin, license: *license, out: *out, gpgKey: *gpgKey,
			sbomTool: *sbomTool, providerBinDir: *providerBin, providerManifest: *providerManifest,
			build: buildInfo{sourceCommit: *commit, goVersion: *goVersion, pluginBuild: *pluginBuild, providerBuild: *providerBuild}})
	case "oci":
		_ = fs.Parse(args)
		mustVersion(*version)
		_, err = buildOCI(*version, *bin, *out)
	case "check-version":
		_ = fs.Parse(args)
		mustVersion(*version)
	case "registry":
		layoutDir := fs.String("layout", "", "OCI image layout to serve")
		repo := fs.String("repo", "metakraftwerk/"+plugin, "repository name in the registry")
		tag := fs.String("tag", "", "tag to push the layout's index under")
		certFile := fs.String("cert-file", "", "write the registry's TLS certificate (PEM) here")
		addrFile := fs.String("addr-file", "", "write host:port here once serving")
		_ = fs.Parse(args)
		err = serveRegistry(*layoutDir, *repo, *tag, *certFile, *addrFile)
	default:
		log.Fatalf("unknown command %q", cmd) //nolint:gosec // G706: %q quotes it
	}
	if err != nil {
		log.Fatal(err)
	}
}

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

func mustVersion(v string) {
	if !semver.MatchString(v) {
		log.Fatalf("version %q is not a semantic version such as v0.3.0", v) //nolint:gosec // G706: %q quotes it
	}
}

// platforms lists the <os>_<arch> directories of binDir, sorted.
func platforms(binDir string) ([]string, error) {
	entries, err := os.ReadDir(binDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.Count(e.Name(), "_") == 1 {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no <os>_<arch> directories in %s", binDir)
	}
	sort.Strings(out)
	return out, nil
}

// binaryName is the plugin's file name on a platform.
func binaryName(platform string) string {
	if strings.HasPrefix(platform, "windows_") {
		return plugin + ".exe"
	}
	return plugin
}

// providerBinaryName is the provider's file name on a platform, as
// Terraform's registry protocol names it: terraform-provider-<type>_vX.Y.Z.
func providerBinaryName(platform, version string) string {
	name := provider + "_v" + strings.TrimPrefix(version, "v")
	if strings.HasPrefix(platform, "windows_") {
		return name + ".exe"
	}
	return name
}

func binaryPath(binDir, platform string) string {
	return filepath.Join(binDir, platform, binaryName(platform))
}
