package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// errNoLinux: the binaries hold no Linux one to make an image of.
var errNoLinux = errors.New("no linux_<arch> binaries")

// buildOCI writes an OCI image layout into out: one image per Linux
// platform in binDir, each a single layer holding the plugin binary at the
// image root (where OpenBao's plugin stanza's binary_name looks for it),
// under one multi-platform index tagged with the version. Times and
// ownership are fixed, so the same binaries give the same digests. It
// returns the index's digest, what OpenBao's plugin stanza pins.
func buildOCI(version, binDir, out string) (v1.Hash, error) {
	plats, err := platforms(binDir)
	if err != nil {
		return v1.Hash{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	n := 0
	for _, p := range plats {
		goos, arch, _ := strings.Cut(p, "_")
		if goos != "linux" {
			continue // OpenBao's declarative plugins pull Linux images
		}
		bin, err := os.ReadFile(binaryPath(binDir, p))
		if err != nil {
			return v1.Hash{}, err
		}
		img, err := pluginImage(bin, arch, version)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
		n++
	}
	if n == 0 {
		return v1.Hash{}, fmt.Errorf("%w in %s", errNoLinux, binDir)
	}
	if err := os.RemoveAll(out); err != nil { //nolint:gosec // G703: the layout directory the maintainer named, rebuilt from scratch
		return v1.Hash{}, err
	}
	lp, err := layout.Write(out, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
	})); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

func pluginImage(bin []byte, arch, version string) (v1.Image, error) {
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{
		Name: plugin, Mode: 0o755, Size: int64(len(bin)), ModTime: zipTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: zipTime}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    plugin,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.source":   "https://github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk",
		"org.opencontainers.image.licenses": "MPL-2.0",
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, map[string]string{"org.opencontainers.image.version": version}).(v1.Image), nil
}

// serveRegistry serves an in-memory OCI registry over TLS on loopback and
// pushes the layout's index to repo:tag: what the e2e suite points
// OpenBao's plugin stanza at. It writes the registry's certificate (for the
// server's SSL_CERT_FILE) and its address, then serves until it is stopped.
func serveRegistry(layoutDir, repo, tag, certFile, addrFile string) error {
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")

	ii, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return err
	}
	manifest, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	if len(manifest.Manifests) != 1 {
		return fmt.Errorf("%s holds %d entries, want one index", layoutDir, len(manifest.Manifests))
	}
	idx, err := ii.ImageIndex(manifest.Manifests[0].Digest)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(srv.Client().Transport)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}

	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := writeAtomic(certFile, certPEM); err != nil {
		return err
	}
	if err := writeAtomic(addrFile, []byte(host+"\n")); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil { //nolint:gosec // G703: a path inside the layout directory this tool writes
		return err
	}
	return os.Rename(tmp, path) //nolint:gosec // G703: a path inside the layout directory this tool writes
}
