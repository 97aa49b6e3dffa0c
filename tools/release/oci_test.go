package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The image layout holds one index with an image per Linux platform, each
// a single layer with the binary at the image root, mode 0755; the same
// binaries give the same digest.
func TestOCILayout(t *testing.T) {
	binDir := t.TempDir()
	bins := map[string][]byte{"linux_amd64": []byte("amd64 plugin"), "linux_arm64": []byte("arm64 plugin"), "windows_amd64": []byte("not in the image")}
	for p, data := range bins {
		if err := os.MkdirAll(filepath.Join(binDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(binaryPath(binDir, p), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "oci")
	if _, err := buildOCI("v1.2.3", binDir, out); err != nil {
		t.Fatal(err)
	}
	ii, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	top, err := ii.IndexManifest()
	if err != nil || len(top.Manifests) != 1 || top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1.2.3" {
		t.Fatalf("layout index %+v, %v", top, err)
	}
	idx, err := ii.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 2 {
		t.Fatalf("image index %+v, %v", m, err)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		if d.Platform == nil || d.Platform.OS != "linux" || cfg.Architecture != d.Platform.Architecture {
			t.Errorf("platform %+v, config %s/%s", d.Platform, cfg.OS, cfg.Architecture)
		}
		layers, _ := img.Layers()
		if len(layers) != 1 {
			t.Fatalf("%d layers", len(layers))
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if h.Name != plugin || h.Mode != 0o755 || !bytes.Equal(data, bins["linux_"+d.Platform.Architecture]) {
			t.Errorf("layer holds %s mode %o %q", h.Name, h.Mode, data)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("more than the binary in the layer: %v", err)
		}
		rc.Close()
	}

	again := filepath.Join(t.TempDir(), "oci")
	if _, err := buildOCI("v1.2.3", binDir, again); err != nil {
		t.Fatal(err)
	}
	ii2, _ := layout.ImageIndexFromPath(again)
	top2, _ := ii2.IndexManifest()
	if top2.Manifests[0].Digest != top.Manifests[0].Digest {
		t.Errorf("two builds of the same binaries: %s and %s", top.Manifests[0].Digest, top2.Manifests[0].Digest)
	}
}
