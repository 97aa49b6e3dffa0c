package scripts

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestReleaseIsReproducibleSignedAndComplete runs the README's `make
// release` for this machine's platform twice, from two copies of the source
// in different directories, and checks what an operator relies on: the
// same bytes both times, a signature gpg verifies (made with a throwaway
// key), zips in HashiCorp's layout holding the binary and LICENSE, the
// binary's published sha256, an SBOM naming every module compiled in, and
// that `make build` gives the very same static binary. CI runs it for all
// six platforms (RELEASE_TEST_PLATFORMS=all).
func TestReleaseIsReproducibleSignedAndComplete(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is needed to test release signatures (Debian package gnupg)")
	}
	repo := repoRoot(t)
	const version = "v0.0.0-reprotest"
	prefix := "vault-plugin-secrets-metakraftwerk_0.0.0-reprotest"
	// RELEASE_TEST_PLATFORMS=all leaves the platforms to the Makefile.
	host := runtime.GOOS + "/" + runtime.GOARCH
	all := os.Getenv("RELEASE_TEST_PLATFORMS") == "all"
	// The copy is not a git checkout: both builds name the repo's commit.
	commit := strings.TrimSpace(run(t, repo, nil, "git", "rev-parse", "HEAD"))
	releaseArgs := []string{"release", "VERSION=" + version, "SOURCE_COMMIT=" + commit}
	if !all {
		releaseArgs = append(releaseArgs, "RELEASE_PLATFORMS="+host)
	}
	tmp := t.TempDir()

	gnupg := filepath.Join(tmp, "gnupg")
	if err := os.Mkdir(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	gpgEnv := append(os.Environ(), "GNUPGHOME="+gnupg)
	run(t, repo, gpgEnv, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-gen-key", "Release Test <release-test@example.invalid>", "ed25519", "sign", "never")
	var fpr string
	for _, line := range strings.Split(run(t, repo, gpgEnv, "gpg", "--batch", "--with-colons", "--list-secret-keys"), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && fpr == "" {
			fpr = f[9]
		}
	}
	if fpr == "" {
		t.Fatal("no fingerprint for the throwaway key")
	}

	// The second copy lives elsewhere, so paths cannot leak into the bytes.
	copyDir := filepath.Join(tmp, "elsewhere", "src")
	copySource(t, repo, copyDir)
	distA, distB := filepath.Join(tmp, "dist-a"), filepath.Join(tmp, "dist-b")
	make := func(dir string, env []string, args ...string) {
		run(t, dir, env, "make", append([]string{"--no-print-directory"}, args...)...)
	}
	// Another version's files in dist/ stay where they are.
	if err := os.MkdirAll(distA, 0o755); err != nil {
		t.Fatal(err)
	}
	otherVersion := filepath.Join(distA, "vault-plugin-secrets-metakraftwerk_9.9.9_SHA256SUMS")
	if err := os.WriteFile(otherVersion, []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	make(repo, gpgEnv, append(releaseArgs, "DIST="+distA, "GPG_KEY_ID="+fpr)...)
	make(copyDir, os.Environ(), append(releaseArgs, "DIST="+distB)...)
	if readFile(t, otherVersion) != "kept\n" {
		t.Error("make release removed another version's file from dist/")
	}

	sumsName := prefix + "_SHA256SUMS"
	sums := readFile(t, filepath.Join(distA, sumsName))
	if got := readFile(t, filepath.Join(distB, sumsName)); got != sums {
		t.Fatalf("two builds of %s differ:\n%s\n---\n%s", version, sums, got)
	}
	var platforms []string
	for _, line := range strings.Split(strings.TrimSpace(sums), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("malformed line %q", line)
		}
		// docs/install.md: the OCI layout is outside SHA256SUMS (the
		// provenance names its index's digest).
		if strings.Contains(name, "_oci") {
			t.Errorf("SHA256SUMS names %s; install.md says the OCI layout is not in it", name)
		}
		if plat, ok := strings.CutSuffix(strings.TrimPrefix(name, prefix+"_"), ".zip"); ok {
			platforms = append(platforms, strings.Replace(plat, "_", "/", 1))
		}
		a, b := readFile(t, filepath.Join(distA, name)), readFile(t, filepath.Join(distB, name))
		if a != b {
			t.Errorf("%s differs between the two builds", name)
		}
		if h := sha256.Sum256([]byte(a)); hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: SHA256SUMS says %s", name, sum)
		}
	}
	t.Logf("SHA256SUMS of both builds:\n%s", sums)

	// The signature verifies, and not over anything else.
	sig := filepath.Join(distA, sumsName+".sig")
	run(t, repo, gpgEnv, "gpg", "--batch", "--verify", sig, filepath.Join(distA, sumsName))
	tampered := filepath.Join(tmp, "tampered")
	if err := os.WriteFile(tampered, []byte(strings.Replace(sums, "0", "1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gpg", "--batch", "--homedir", gnupg, "--verify", sig, tampered).CombinedOutput(); err == nil {
		t.Errorf("a tampered SHA256SUMS verified:\n%s", out)
	}

	// The public key beside the sums is all an operator needs: imported
	// into an empty keyring, it verifies both signatures.
	fresh := filepath.Join(tmp, "operator-gnupg")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	operatorEnv := append(os.Environ(), "GNUPGHOME="+fresh)
	run(t, repo, operatorEnv, "gpg", "--batch", "--import", filepath.Join(distA, "metakraftwerk-release-key.asc"))
	if out := run(t, repo, operatorEnv, "gpg", "--batch", "--with-colons", "--fingerprint"); !strings.Contains(out, fpr) {
		t.Errorf("the exported key is not the signing key %s", fpr)
	}
	providerPrefix := "terraform-provider-mkvault_0.0.0-reprotest"
	for _, p := range []string{prefix, providerPrefix} {
		run(t, repo, operatorEnv, "gpg", "--batch", "--verify", filepath.Join(distA, p+"_SHA256SUMS.sig"), filepath.Join(distA, p+"_SHA256SUMS"))
	}
	checkProviderRelease(t, distA, distB, providerPrefix, platforms, readFile(t, filepath.Join(repo, "LICENSE")))
	checkProvenance(t, distA, prefix, providerPrefix, commit, platforms)
	run(t, repo, operatorEnv, "gpg", "--batch", "--verify", filepath.Join(distA, prefix+"_provenance.intoto.json.sig"), filepath.Join(distA, prefix+"_provenance.intoto.json"))
	for _, p := range platforms {
		if p == host {
			binDir := filepath.Join(tmp, "make-provider")
			make(repo, os.Environ(), "provider", "VERSION="+version, "BIN="+binDir)
			name := "terraform-provider-mkvault_v0.0.0-reprotest"
			zipped := checkZip(t, filepath.Join(distA, providerPrefix+"_"+strings.Replace(p, "/", "_", 1)+".zip"), name, readFile(t, filepath.Join(repo, "LICENSE")))
			if !bytes.Equal(zipped, []byte(readFile(t, filepath.Join(binDir, "terraform-provider-mkvault")))) {
				t.Error("make provider and make release give different provider binaries")
			}
		}
	}

	binSums := readFile(t, filepath.Join(distA, prefix+"_binaries_SHA256SUMS"))
	sbom := readFile(t, filepath.Join(distA, prefix+"_sbom.cdx.json"))
	if !contains(platforms, host) || (!all && len(platforms) != 1) || len(platforms) > 6 {
		t.Fatalf("the release has zips for %v", platforms)
	}
	for _, p := range platforms {
		plat := strings.Replace(p, "/", "_", 1)
		zipName := prefix + "_" + plat + ".zip"
		binName := "vault-plugin-secrets-metakraftwerk"
		if strings.HasPrefix(plat, "windows_") {
			binName += ".exe"
		}
		bin := checkZip(t, filepath.Join(distA, zipName), binName, readFile(t, filepath.Join(repo, "LICENSE")))
		h := sha256.Sum256(bin)
		if want := hex.EncodeToString(h[:]) + "  " + plat + "/" + binName; !strings.Contains(binSums, want+"\n") {
			t.Errorf("the binary sums lack %q:\n%s", want, binSums)
		}
		binFile := filepath.Join(tmp, plat+"-"+binName)
		if err := os.WriteFile(binFile, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		checkSBOM(t, sbom, binFile, version)
		if strings.HasPrefix(plat, "linux_") {
			checkStatic(t, binFile)
		}
		if p == host {
			binDir := filepath.Join(tmp, "make-build")
			make(repo, os.Environ(), "build", "VERSION="+version, "BIN="+binDir)
			if !bytes.Equal(bin, []byte(readFile(t, filepath.Join(binDir, binName)))) {
				t.Errorf("make build and make release give different %s binaries", p)
			}
		}
	}
}

// checkProvenance checks the release's SLSA provenance statement: an
// in-toto Statement v1 of SLSA Provenance v1 whose subjects are exactly
// the plugin's and the provider's zips and the OCI image index, each with
// the digest of what dist holds, naming the source commit, the Go
// toolchain, the build commands and the Makefile's release target as the
// builder.
func checkProvenance(t *testing.T, dist, prefix, providerPrefix, commit string, platforms []string) {
	t.Helper()
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string
			Digest map[string]string
		}
		Predicate struct {
			BuildDefinition struct {
				ExternalParameters   map[string]any
				InternalParameters   map[string]string
				ResolvedDependencies []struct {
					URI    string
					Digest map[string]string
				}
			}
			RunDetails struct {
				Builder struct{ ID string }
			}
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dist, prefix+"_provenance.intoto.json"))), &st); err != nil {
		t.Fatalf("the provenance: %v", err)
	}
	if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("statement type %q, predicate type %q", st.Type, st.PredicateType)
	}
	want := map[string]string{}
	for _, p := range platforms {
		plat := strings.Replace(p, "/", "_", 1)
		for _, pre := range []string{prefix, providerPrefix} {
			name := pre + "_" + plat + ".zip"
			h := sha256.Sum256([]byte(readFile(t, filepath.Join(dist, name))))
			want[name] = hex.EncodeToString(h[:])
		}
	}
	if contains(platforms, "linux/amd64") || contains(platforms, "linux/arm64") {
		var index struct{ Manifests []struct{ Digest string } }
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dist, prefix+"_oci", "index.json"))), &index); err != nil || len(index.Manifests) != 1 {
			t.Fatalf("the OCI layout's index: %v %+v", err, index)
		}
		want[prefix+"_oci"] = strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")
	}
	got := map[string]string{}
	for _, s := range st.Subject {
		got[s.Name] = s.Digest["sha256"]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the provenance's subjects:\n%v\nwant the release's files:\n%v", got, want)
	}
	bd := st.Predicate.BuildDefinition
	if len(bd.ResolvedDependencies) != 1 || bd.ResolvedDependencies[0].Digest["gitCommit"] != commit ||
		!strings.HasSuffix(bd.ResolvedDependencies[0].URI, "@"+commit) {
		t.Errorf("the source: %+v, want commit %s", bd.ResolvedDependencies, commit)
	}
	if goVersion := strings.TrimSpace(run(t, dist, nil, "go", "env", "GOVERSION")); bd.InternalParameters["goVersion"] != goVersion {
		t.Errorf("goVersion %q, want %q", bd.InternalParameters["goVersion"], goVersion)
	}
	if !strings.Contains(bd.InternalParameters["pluginBuild"], "-trimpath") || !strings.Contains(bd.InternalParameters["providerBuild"], "-trimpath") {
		t.Errorf("build commands %v", bd.InternalParameters)
	}
	if bd.ExternalParameters["target"] != "make release" || !strings.HasSuffix(st.Predicate.RunDetails.Builder.ID, "/Makefile#release") {
		t.Errorf("target %v, builder %q", bd.ExternalParameters["target"], st.Predicate.RunDetails.Builder.ID)
	}
}

// checkProviderRelease checks the Terraform provider's release in the
// registry protocol's layout: the same bytes from both builds, a zip per
// platform holding terraform-provider-mkvault_vX.Y.Z and LICENSE, a
// manifest declaring protocol 6.0, and SHA256SUMS over all of them.
func checkProviderRelease(t *testing.T, distA, distB, prefix string, platforms []string, license string) {
	t.Helper()
	sums := readFile(t, filepath.Join(distA, prefix+"_SHA256SUMS"))
	if got := readFile(t, filepath.Join(distB, prefix+"_SHA256SUMS")); got != sums {
		t.Fatalf("two builds of the provider differ:\n%s\n---\n%s", sums, got)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(sums), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		names = append(names, name)
		a, b := readFile(t, filepath.Join(distA, name)), readFile(t, filepath.Join(distB, name))
		if h := sha256.Sum256([]byte(a)); a != b || hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s differs between the builds or from its sum", name)
		}
	}
	want := []string{prefix + "_manifest.json"}
	for _, p := range platforms {
		plat := strings.Replace(p, "/", "_", 1)
		want = append(want, prefix+"_"+plat+".zip")
		bin := "terraform-provider-mkvault_v" + strings.TrimPrefix(prefix, "terraform-provider-mkvault_")
		if strings.HasPrefix(plat, "windows_") {
			bin += ".exe"
		}
		checkZip(t, filepath.Join(distA, prefix+"_"+plat+".zip"), bin, license)
	}
	slices.Sort(want)
	// The registries refuse a release whose SHA256SUMS leaves out the
	// manifest.
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("the provider's SHA256SUMS names %v, want %v (the manifest among them)", names, want)
	}
	// The manifest is the file the provider's own repository carries.
	if own := readFile(t, filepath.Join("..", "terraform-provider-mkvault", "terraform-registry-manifest.json")); readFile(t, filepath.Join(distA, prefix+"_manifest.json")) != own {
		t.Errorf("the release's manifest is not terraform-provider-mkvault/terraform-registry-manifest.json")
	}
	var manifest struct {
		Version  int
		Metadata struct {
			ProtocolVersions []string `json:"protocol_versions"`
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(distA, prefix+"_manifest.json"))), &manifest); err != nil ||
		manifest.Version != 1 || strings.Join(manifest.Metadata.ProtocolVersions, ",") != "6.0" {
		t.Errorf("the manifest: %+v, %v", manifest, err)
	}
	t.Logf("the provider's SHA256SUMS of both builds:\n%s", sums)
}

// checkZip returns the binary of a release zip after checking that it holds
// exactly the binary (mode 0755) and LICENSE, in that order.
func checkZip(t *testing.T, path, binName, license string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	var bin []byte
	for _, f := range zr.File {
		names = append(names, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Name {
		case binName:
			bin = data
			if f.Mode().Perm() != 0o755 {
				t.Errorf("%s: %s has mode %s", path, binName, f.Mode())
			}
		case "LICENSE":
			if string(data) != license {
				t.Errorf("%s: LICENSE is not the repository's", path)
			}
		}
	}
	if strings.Join(names, ",") != binName+",LICENSE" {
		t.Fatalf("%s holds %v, want %s and LICENSE", path, names, binName)
	}
	return bin
}

// checkSBOM fails unless every module `go version -m` finds in the binary
// is a component of the SBOM, with its version, and the main module has
// the release version.
func checkSBOM(t *testing.T, sbom, binFile, version string) {
	t.Helper()
	var doc struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct{ Name, Version string }
		}
		Components []struct{ Name, Version string }
	}
	if err := json.Unmarshal([]byte(sbom), &doc); err != nil || doc.BOMFormat != "CycloneDX" {
		t.Fatalf("the SBOM is not CycloneDX JSON: %v", err)
	}
	if doc.Metadata.Component.Version != version {
		t.Errorf("the SBOM describes version %q, want %s", doc.Metadata.Component.Version, version)
	}
	have := map[string]bool{}
	for _, c := range doc.Components {
		have[c.Name+"@"+c.Version] = true
	}
	out, err := exec.Command("go", "version", "-m", binFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "dep" {
			n++
			if !have[f[1]+"@"+f[2]] {
				t.Errorf("the SBOM lacks %s@%s, compiled into %s", f[1], f[2], filepath.Base(binFile))
			}
		}
		if len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "-ldflags=") && !strings.Contains(f[1], "Version="+version) {
			t.Errorf("%s is not stamped with %s: %s", filepath.Base(binFile), version, f[1])
		}
	}
	if n < 20 {
		t.Fatalf("go version -m found only %d modules in %s", n, binFile)
	}
}

// checkStatic fails when a Linux binary needs a dynamic loader (a musl
// image has no glibc one).
func checkStatic(t *testing.T, binFile string) {
	t.Helper()
	f, err := elf.Open(binFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", filepath.Base(binFile))
		}
	}
}

// copySource copies the files git knows of (tracked, and untracked but not
// ignored) into dst.
func copySource(t *testing.T, repo, dst string) {
	t.Helper()
	for _, name := range strings.Split(strings.TrimSpace(run(t, repo, nil, "git", "ls-files", "-co", "--exclude-standard")), "\n") {
		src := filepath.Join(repo, name)
		info, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}
