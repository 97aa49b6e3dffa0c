package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// zipTime is the modification time of every file in every zip: the same
// bytes whenever and wherever a release is built.
var zipTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type releaseSpec struct {
	version, binDir, license, out, gpgKey, sbomTool string
	// providerBinDir, when set, holds the Terraform provider's binaries;
	// providerManifest is then its terraform-registry-manifest.json, the
	// file the provider's own repository carries.
	providerBinDir, providerManifest string
	// build is what the provenance says of the build.
	build buildInfo
}

// artifactPrefix is vault-plugin-secrets-metakraftwerk_X.Y.Z, HashiCorp's
// file name prefix (the version without its v).
func artifactPrefix(version string) string {
	return plugin + "_" + strings.TrimPrefix(version, "v")
}

// packageRelease writes, into out: a zip per platform (the binary and
// LICENSE), the sha256 of each binary, an SBOM, the provider's release, an
// OCI image layout of the Linux binaries, a SLSA provenance statement over
// the zips and the image, SHA256SUMS over all of the plugin's files, and
// detached signatures of the sums and the statement when a key is named.
func packageRelease(r releaseSpec) error {
	plats, err := platforms(r.binDir)
	if err != nil {
		return err
	}
	license, err := os.ReadFile(r.license)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.out, 0o750); err != nil {
		return err
	}
	prefix := artifactPrefix(r.version)
	sums := map[string]string{}

	var binSums strings.Builder
	for _, p := range plats {
		bin, err := os.ReadFile(binaryPath(r.binDir, p))
		if err != nil {
			return err
		}
		fmt.Fprintf(&binSums, "%s  %s/%s\n", sha256Hex(bin), p, binaryName(p))
		name := prefix + "_" + p + ".zip"
		data, err := zipFiles([]zipEntry{{binaryName(p), bin, 0o755}, {"LICENSE", license, 0o644}})
		if err != nil {
			return err
		}
		if err := writeArtifact(r.out, name, data, sums); err != nil {
			return err
		}
	}
	if err := writeArtifact(r.out, prefix+"_binaries_SHA256SUMS", []byte(binSums.String()), sums); err != nil {
		return err
	}

	sbom, err := makeSBOM(r, plats)
	if err != nil {
		return err
	}
	if err := writeArtifact(r.out, prefix+"_sbom.cdx.json", sbom, sums); err != nil {
		return err
	}

	subjects := map[string]string{}
	for name, sum := range sums {
		if strings.HasSuffix(name, ".zip") {
			subjects[name] = sum
		}
	}
	if r.providerBinDir != "" {
		providerSums, err := packageProvider(r, license)
		if err != nil {
			return err
		}
		for name, sum := range providerSums {
			if strings.HasSuffix(name, ".zip") {
				subjects[name] = sum
			}
		}
	}
	digest, err := buildOCI(r.version, r.binDir, filepath.Join(r.out, prefix+"_oci"))
	switch {
	case err == nil:
		subjects[prefix+"_oci"] = digest.Hex
	case !errors.Is(err, errNoLinux):
		return err
	}
	r.build.platforms = plats
	statement, err := makeProvenance(r.version, r.build, subjects)
	if err != nil {
		return err
	}
	if err := writeArtifact(r.out, prefix+"_provenance.intoto.json", statement, sums); err != nil {
		return err
	}
	if err := sign(filepath.Join(r.out, prefix+"_provenance.intoto.json"), r.gpgKey); err != nil {
		return err
	}
	if err := writeSums(r.out, prefix, sums, r.gpgKey); err != nil {
		return err
	}
	return exportKey(r.out, r.gpgKey)
}

// packageProvider writes the Terraform provider's release in the layout of
// the registry protocol, which a filesystem_mirror also takes: a zip per
// platform holding terraform-provider-mkvault_vX.Y.Z (and LICENSE), the
// manifest, and SHA256SUMS over them with its signature. It returns the
// sums.
func packageProvider(r releaseSpec, license []byte) (map[string]string, error) {
	plats, err := platforms(r.providerBinDir)
	if err != nil {
		return nil, err
	}
	prefix := provider + "_" + strings.TrimPrefix(r.version, "v")
	// The manifest: the plugin protocol the provider serves.
	manifest, err := os.ReadFile(r.providerManifest)
	if err != nil {
		return nil, fmt.Errorf("the provider's manifest (-provider-manifest): %w", err)
	}
	sums := map[string]string{}
	for _, p := range plats {
		name := providerBinaryName(p, r.version)
		bin, err := os.ReadFile(filepath.Join(r.providerBinDir, p, name)) //nolint:gosec // G304: the maintainer's own build directory
		if err != nil {
			return nil, err
		}
		data, err := zipFiles([]zipEntry{{name, bin, 0o755}, {"LICENSE", license, 0o644}})
		if err != nil {
			return nil, err
		}
		if err := writeArtifact(r.out, prefix+"_"+p+".zip", data, sums); err != nil {
			return nil, err
		}
	}
	if err := writeArtifact(r.out, prefix+"_manifest.json", manifest, sums); err != nil {
		return nil, err
	}
	return sums, writeSums(r.out, prefix, sums, r.gpgKey)
}

// writeSums writes <prefix>_SHA256SUMS over sums and, when gpgKey names a
// key, its detached signature <prefix>_SHA256SUMS.sig.
func writeSums(out, prefix string, sums map[string]string, gpgKey string) error {
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var all strings.Builder
	for _, n := range names {
		fmt.Fprintf(&all, "%s  %s\n", sums[n], n)
	}
	sumsFile := filepath.Join(out, prefix+"_SHA256SUMS")
	if err := os.WriteFile(sumsFile, []byte(all.String()), 0o600); err != nil {
		return err
	}
	return sign(sumsFile, gpgKey)
}

// sign writes file's detached signature, file.sig, when gpgKey names a key.
func sign(file, gpgKey string) error {
	if gpgKey == "" {
		return nil
	}
	sig := file + ".sig"
	_ = os.Remove(sig)
	cmd := exec.CommandContext(context.Background(), "gpg", "--batch", "--yes", "--local-user", gpgKey, "--detach-sign", "--output", sig, file) //nolint:gosec // G204: gpg, with the maintainer's own key id; no shell
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("signing %s with GPG key %s: %w", filepath.Base(file), gpgKey, err)
	}
	return nil
}

// releaseKeyFile is the armored public key of the signing key, written
// beside the sums so that a signature can be checked with nothing else.
const releaseKeyFile = "metakraftwerk-release-key.asc"

// exportKey writes the signing key's armored public key, when there is one.
func exportKey(out, gpgKey string) error {
	if gpgKey == "" {
		return nil
	}
	cmd := exec.CommandContext(context.Background(), "gpg", "--batch", "--armor", "--export", gpgKey) //nolint:gosec // G204: gpg, with the maintainer's own key id; no shell
	var key bytes.Buffer
	cmd.Stdout, cmd.Stderr = &key, os.Stderr
	if err := cmd.Run(); err != nil || key.Len() == 0 {
		return fmt.Errorf("exporting the public key of %s: %w", gpgKey, err)
	}
	return os.WriteFile(filepath.Join(out, releaseKeyFile), key.Bytes(), 0o600)
}

type zipEntry struct {
	name string
	data []byte
	mode os.FileMode
}

// zipFiles zips entries in the order given, with fixed times and modes.
func zipFiles(entries []zipEntry) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: zipTime}
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeArtifact(dir, name string, data []byte, sums map[string]string) error {
	sums[name] = sha256Hex(data)
	return os.WriteFile(filepath.Join(dir, name), data, 0o600) //nolint:gosec // G703: dir is the maintainer's -out and name one the release makes; the manifest read from -provider-manifest is data, not a path
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// makeSBOM describes, in CycloneDX, every module compiled into the release's
// binaries with its version: cyclonedx-gomod reads each binary's build
// information, and the components of all platforms are merged (they differ
// only in operating-system support modules). Serial number and timestamp
// are left out so the same release gives the same bytes.
func makeSBOM(r releaseSpec, plats []string) ([]byte, error) {
	var boms [][]byte
	for _, p := range plats {
		cmd := exec.CommandContext(context.Background(), r.sbomTool, "bin", "-json", "-noserial", "-notimestamp", "-short-purls", "-version", r.version, binaryPath(r.binDir, p)) //nolint:gosec // G204: the SBOM tool make release built; no shell
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("SBOM of %s: %w", p, err)
		}
		boms = append(boms, out.Bytes())
	}
	return mergeBOMs(boms)
}
