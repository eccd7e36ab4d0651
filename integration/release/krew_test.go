package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestReleaseVersion(t *testing.T) {
	t.Run("is SemVer for tags and untagged commits", func(t *testing.T) {
		for _, tc := range []struct{ describe, want string }{
			{"v0.2.0", "v0.2.0"},
			{"v0.2.0-rc.1", "v0.2.0-rc.1"},
			{"v0.2.0-3-gabcdef0", "v0.2.0-3-gabcdef0"},
			{"v0.2.0-3-gabcdef0-dirty", "v0.2.0-3-gabcdef0-dirty"},
			// No tag yet: a prerelease of Chart.yaml's version.
			{"0c2b95c", "v0.1.0-g0c2b95c"},
			{"0123456-dirty", "v0.1.0-g0123456-dirty"},
		} {
			got, err := releaseVersion(repo, tc.describe)
			if err != nil || got != tc.want {
				t.Errorf("releaseVersion(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
			}
		}
		if _, err := releaseVersion(repo, "release/2"); err == nil || !strings.Contains(err.Error(), "SemVer") {
			t.Errorf("a version that makes no SemVer: %v, want an error saying so", err)
		}
	})
}

// fakeArchives archives made-up binaries for every platform, as BuildKrew does after
// building them.
func fakeArchives(t *testing.T, dir string, license []byte) []KrewArchive {
	t.Helper()
	created := time.Date(2026, 12, 2, 21, 4, 5, 0, time.UTC)
	var archives []KrewArchive
	for _, p := range KrewPlatforms {
		bin := filepath.Join(dir, p.OS+"-"+p.Architecture, "sysctl-placement")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("binary for "+p.OS+"/"+p.Architecture), 0o755); err != nil {
			t.Fatal(err)
		}
		a, err := writeKrewArchive(dir, archiveName("v0.1.0", p), bin, license, created)
		if err != nil {
			t.Fatal(err)
		}
		a.Platform = p
		archives = append(archives, a)
	}
	return archives
}

func archiveEntries(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
	}
}

func TestKrew(t *testing.T) {
	t.Run("archives are the same bytes twice and hold the binary and license", func(t *testing.T) {
		license := []byte("Apache License 2.0\n")
		first, second := fakeArchives(t, t.TempDir(), license), fakeArchives(t, t.TempDir(), license)
		for i, a := range first {
			if a.SHA256 != second[i].SHA256 {
				t.Errorf("%s: two archives of the same binary: %s and %s", filepath.Base(a.Path), a.SHA256, second[i].SHA256)
			}
			content, err := os.ReadFile(a.Path)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != a.SHA256 {
				t.Errorf("%s: reported sha256 %s is not the file's", a.Path, a.SHA256)
			}
			entries := archiveEntries(t, a.Path)
			if len(entries) != 2 || entries["sysctl-placement"] == nil || entries["LICENSE"] == nil {
				t.Errorf("%s holds %v, want sysctl-placement and LICENSE", filepath.Base(a.Path), entries)
			} else if entries["sysctl-placement"].Mode != 0o755 {
				t.Errorf("the binary's mode is %o, want 755", entries["sysctl-placement"].Mode)
			}
		}
		if without := fakeArchives(t, t.TempDir(), nil); len(archiveEntries(t, without[0].Path)) != 1 {
			t.Errorf("without a LICENSE the archive should hold the binary only")
		}
	})
	t.Run("the manifest names every platform's archive and checksum", func(t *testing.T) {
		archives := fakeArchives(t, t.TempDir(), nil)
		manifest, err := krewManifest("v0.1.0", "https://example.com/download/v0.1.0/", archives, false)
		if err != nil {
			t.Fatal(err)
		}
		var plugin krewPlugin
		if err := yaml.UnmarshalStrict(manifest, &plugin); err != nil {
			t.Fatalf("manifest: %v\n%s", err, manifest)
		}
		if plugin.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || plugin.Kind != "Plugin" || plugin.Metadata.Name != "sysctl-placement" {
			t.Errorf("manifest is %s %s %q, want krew.googlecontainertools.github.com/v1alpha2 Plugin sysctl-placement", plugin.APIVersion, plugin.Kind, plugin.Metadata.Name)
		}
		if plugin.Spec.Version != "v0.1.0" || plugin.Spec.ShortDescription == "" || len(plugin.Spec.ShortDescription) > 50 || plugin.Spec.Homepage == "" {
			t.Errorf("spec: version %q, shortDescription %q (krew wants at most 50 characters), homepage %q", plugin.Spec.Version, plugin.Spec.ShortDescription, plugin.Spec.Homepage)
		}
		var got []string
		for i, p := range plugin.Spec.Platforms {
			l := p.Selector.MatchLabels
			got = append(got, l["os"]+"/"+l["arch"])
			a := archives[i]
			if want := "https://example.com/download/v0.1.0/sysctl-placement_v0.1.0_" + l["os"] + "_" + l["arch"] + ".tar.gz"; p.URI != want {
				t.Errorf("%s/%s: uri %s, want %s", l["os"], l["arch"], p.URI, want)
			}
			if p.SHA256 != a.SHA256 {
				t.Errorf("%s/%s: sha256 %s, want the archive's %s", l["os"], l["arch"], p.SHA256, a.SHA256)
			}
			if p.Bin != "sysctl-placement" || len(p.Files) != 1 || p.Files[0].From != "sysctl-placement" {
				t.Errorf("%s/%s: bin %q, files %v; want the binary", l["os"], l["arch"], p.Bin, p.Files)
			}
		}
		if strings.Join(got, ",") != "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64" {
			t.Errorf("platforms %v, want linux and darwin, amd64 and arm64", got)
		}
	})
}
