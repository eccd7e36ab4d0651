package chartcheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/yaml"
)

// builtImage is what `release image` writes to image.json, for a build of an untagged
// commit; the digest is made up (the chart only names it).
func builtImage() Image {
	img := Image{
		Name:           "ghcr.io/sysctl-placement/sysctl-placement",
		Tag:            "0c2b95c",
		Digest:         "sha256:" + strings.Repeat("5e", 32),
		Version:        "0c2b95c",
		ReleaseVersion: "v0.1.0-g0c2b95c",
		Created:        "2026-12-02T21:04:05Z",
	}
	img.Platforms = append(img.Platforms, struct {
		Platform string `json:"platform"`
	}{"linux/amd64"}, struct {
		Platform string `json:"platform"`
	}{"linux/arm64"})
	return img
}

func packageChart(t *testing.T, img Image) Packaged {
	t.Helper()
	p, err := Package(ChartDir(), img, t.TempDir())
	if err != nil {
		t.Fatalf("package: %v", err)
	}
	return p
}

// tgzFiles reads a .tgz: every entry's content by name, and its tar header.
func tgzFiles(t *testing.T, path string) (map[string][]byte, map[string]*tar.Header) {
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
	tr := tar.NewReader(zr)
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], headers[h.Name] = b, h
	}
}

func TestPackagingTwiceGivesTheSameBytes(t *testing.T) {
	first, second := packageChart(t, builtImage()), packageChart(t, builtImage())
	t.Logf("%s sha256:%s", filepath.Base(first.Path), first.SHA256)
	if first.SHA256 != second.SHA256 {
		t.Errorf("two packages of one chart and image: sha256 %s and %s", first.SHA256, second.SHA256)
	}
	a, _ := os.ReadFile(first.Path)
	b, _ := os.ReadFile(second.Path)
	if !bytes.Equal(a, b) {
		t.Errorf("the two .tgz differ in their bytes")
	}
	_, headers := tgzFiles(t, first.Path)
	for name, h := range headers {
		if got := h.ModTime.UTC().Format("2006-01-02T15:04:05Z"); got != builtImage().Created {
			t.Errorf("%s is stamped %s, want the commit's time %s", name, got, builtImage().Created)
		}
	}
}

func TestPackagedChart(t *testing.T) {
	t.Run("the packaged chart installs the built image by digest", func(t *testing.T) {
		img := builtImage()
		p := packageChart(t, img)
		if filepath.Base(p.Path) != "sysctl-placement-0.1.0-g0c2b95c.tgz" {
			t.Errorf("packaged as %s, want sysctl-placement-<chart version>.tgz", filepath.Base(p.Path))
		}
		chrt, err := loader.Load(p.Path)
		if err != nil {
			t.Fatalf("helm cannot load the package: %v", err)
		}
		if chrt.Metadata.Version != "0.1.0-g0c2b95c" || chrt.Metadata.AppVersion != img.Version {
			t.Errorf("version %s, appVersion %s; want 0.1.0-g0c2b95c and %s", chrt.Metadata.Version, chrt.Metadata.AppVersion, img.Version)
		}

		t.Run("every container of the default install runs name@digest", func(t *testing.T) {
			rel, err := InstallChart(chrt, DefaultRelease, nil)
			if err != nil {
				t.Fatalf("helm template of the package: %v", err)
			}
			objs := decode(t, rel.Manifest)
			for _, h := range rel.Hooks {
				objs = append(objs, decode(t, h.Manifest)...)
			}
			n := 0
			for _, o := range objs {
				for _, got := range images(o) {
					n++
					if want := img.Name + "@" + img.Digest; got != want {
						t.Errorf("%s runs %s, want %s", key(o), got, want)
					}
				}
			}
			if n == 0 {
				t.Fatal("no containers rendered")
			}
		})

		t.Run("values.yaml keeps its comments and changes only the image's three lines", func(t *testing.T) {
			files, _ := tgzFiles(t, p.Path)
			packaged := string(files["sysctl-placement/values.yaml"])
			original, err := os.ReadFile(filepath.Join(ChartDir(), "values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var changed []string
			want := strings.Split(string(original), "\n")
			got := strings.Split(packaged, "\n")
			if len(got) != len(want) {
				t.Fatalf("values.yaml has %d lines packaged, %d in the chart", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					changed = append(changed, strings.TrimSpace(got[i]))
				}
			}
			wantChanged := []string{`repository: "` + img.Name + `"`, `tag: "` + img.Tag + `"`, `digest: "` + img.Digest + `"`}
			if strings.Join(changed, "\n") != strings.Join(wantChanged, "\n") {
				t.Errorf("changed lines:\n%s\nwant:\n%s", strings.Join(changed, "\n"), strings.Join(wantChanged, "\n"))
			}
		})

		t.Run("the symlinked files are packaged as the files they point to", func(t *testing.T) {
			files, headers := tgzFiles(t, p.Path)
			links, err := filepath.Glob(filepath.Join(ChartDir(), "files", "*"))
			if err != nil || len(links) == 0 {
				t.Fatalf("no files/ in the chart: %v", err)
			}
			for _, link := range links {
				name := "sysctl-placement/files/" + filepath.Base(link)
				target, err := os.ReadFile(link)
				if err != nil {
					t.Fatal(err)
				}
				if headers[name] == nil || headers[name].Typeflag != tar.TypeReg {
					t.Errorf("%s is not a regular file in the package", name)
					continue
				}
				if !bytes.Equal(files[name], target) {
					t.Errorf("%s differs from the file its link points to", name)
				}
			}
			if len(files["sysctl-placement/README.md"]) == 0 {
				t.Error("the package has no README.md (Artifact Hub and `helm show readme` show it)")
			}
		})

		t.Run("Artifact Hub annotations name the image by digest and the license", func(t *testing.T) {
			a := chrt.Metadata.Annotations
			var images []struct {
				Name      string
				Image     string
				Platforms []string
			}
			if err := yaml.Unmarshal([]byte(a["artifacthub.io/images"]), &images); err != nil {
				t.Fatalf("artifacthub.io/images: %v", err)
			}
			if len(images) != 1 || images[0].Image != img.Reference() || strings.Join(images[0].Platforms, ",") != "linux/amd64,linux/arm64" {
				t.Errorf("artifacthub.io/images = %+v, want %s on linux/amd64,linux/arm64", images, img.Reference())
			}
			var links []struct{ Name, URL string }
			if err := yaml.Unmarshal([]byte(a["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
				t.Errorf("artifacthub.io/links %q: %v", a["artifacthub.io/links"], err)
			}
			for _, l := range links {
				if l.Name == "" || !strings.HasPrefix(l.URL, "https://") {
					t.Errorf("link %+v needs a name and an https URL", l)
				}
			}
			if a["artifacthub.io/license"] != "Apache-2.0" {
				t.Errorf("artifacthub.io/license %q", a["artifacthub.io/license"])
			}
			if a["artifacthub.io/prerelease"] != "true" {
				t.Errorf("an untagged build is a prerelease: artifacthub.io/prerelease %q", a["artifacthub.io/prerelease"])
			}
		})

		t.Run("helm lint --strict passes on the package", func(t *testing.T) {
			if msgs, err := LintPath(p.Path, nil); err != nil {
				t.Errorf("%v\n%s", err, strings.Join(msgs, "\n"))
			}
		})
	})
}

func TestPackageRefusesAVersionHelmWouldRefuse(t *testing.T) {
	img := builtImage()
	img.ReleaseVersion = "0c2b95c"
	if _, err := Package(ChartDir(), img, t.TempDir()); err == nil || !strings.Contains(err.Error(), "SemVer") {
		t.Errorf("releaseVersion 0c2b95c: %v, want an error saying it is not SemVer", err)
	}
}

func TestPackageRefusesAnImageJSONWithoutDigest(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "image.json"), []byte(`{"name":"ghcr.io/x/y","version":"v1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadImage(dir); err == nil || !strings.Contains(err.Error(), "go tool task image") {
		t.Errorf("image.json without a digest: %v, want an error saying to build the image again", err)
	}
}

func TestChartReadmeValuesTableIsCurrent(t *testing.T) {
	readme, err := os.ReadFile(ReadmePath())
	if err != nil {
		t.Fatal(err)
	}
	values, err := os.ReadFile(filepath.Join(ChartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := WithValuesTable(readme, values)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readme, want) {
		t.Errorf("%s's values table is not values.yaml's: run `go tool task chart-readme`", ReadmePath())
	}
	var doc map[string]any
	if err := yaml.Unmarshal(values, &doc); err != nil {
		t.Fatal(err)
	}
	for top := range doc {
		if !bytes.Contains(readme, []byte("| `"+top)) {
			t.Errorf("the README's table has no row for %s", top)
		}
	}
}

func TestValuesTable(t *testing.T) {
	table, err := ValuesTable([]byte(`# File header, not a value's.

# Names <things>.
name: x   # also this
group:
  # A leaf | with a pipe.
  leaf: [1, 2]
  # An example:
  #   leaf: [3]
  other: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := "| Key | Type | Default | Description |\n|---|---|---|---|\n" +
		"| `name` | string | `\"x\"` | Names &lt;things&gt;. also this |\n" +
		"| `group.leaf` | list | `[1,2]` | A leaf \\| with a pipe. |\n" +
		"| `group.other` | object | `{}` | An example: `leaf: [3]` |\n"
	if table != want {
		t.Errorf("table:\n%s\nwant:\n%s", table, want)
	}
}
