package main

import (
	"archive/tar"
	"bytes"

	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"
)

const repo = "../.."

// buildOnce is shared by the tests: building two platforms takes a while.
func build(t *testing.T) (Built, string) {
	t.Helper()
	out := t.TempDir()
	built, err := BuildImage(imageOptions{Repo: repo, Out: out, Name: DefaultImageName}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return built, out
}

func TestImage(t *testing.T) {
	first, out := build(t)

	t.Run("the same commit builds the same digest twice", func(t *testing.T) {
		second, _ := build(t)
		if first.Digest != second.Digest {
			t.Errorf("two builds of one commit: %s and %s", first.Digest, second.Digest)
		}
		for i := range first.Platforms {
			if first.Platforms[i].Digest != second.Platforms[i].Digest {
				t.Errorf("%s: %s and %s", first.Platforms[i].Platform, first.Platforms[i].Digest, second.Platforms[i].Digest)
			}
		}
	})

	lp, err := layout.FromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the layout names one index by tag, with the digest the task printed", func(t *testing.T) {
		if len(topManifest.Manifests) != 1 {
			t.Fatalf("index.json has %d entries, want 1", len(topManifest.Manifests))
		}
		d := topManifest.Manifests[0]
		if d.Digest.String() != first.Digest {
			t.Errorf("index.json points at %s, image.json says %s", d.Digest, first.Digest)
		}
		if got := d.Annotations["org.opencontainers.image.ref.name"]; got != first.Tag {
			t.Errorf("ref.name %q, want %q", got, first.Tag)
		}
		if !strings.HasPrefix(first.Reference(), DefaultImageName+":") || !strings.Contains(first.Reference(), "@sha256:") {
			t.Errorf("reference %q is not name:tag@sha256:…", first.Reference())
		}
	})

	idx, err := top.ImageIndex(topManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the index holds linux/amd64 and linux/arm64", func(t *testing.T) {
		var got []string
		for _, m := range im.Manifests {
			got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
		}
		if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("platforms %v", got)
		}
	})

	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		platform := m.Platform.OS + "/" + m.Platform.Architecture
		t.Run(platform+" runs the binary as 65532:65532 with the OCI labels", func(t *testing.T) {
			if cf.OS != m.Platform.OS || cf.Architecture != m.Platform.Architecture {
				t.Errorf("config says %s/%s", cf.OS, cf.Architecture)
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q", cf.Config.User)
			}
			if strings.Join(cf.Config.Entrypoint, " ") != Entrypoint {
				t.Errorf("entrypoint %q", cf.Config.Entrypoint)
			}
			for _, k := range []string{"source", "version", "revision", "created", "licenses"} {
				if cf.Config.Labels["org.opencontainers.image."+k] == "" {
					t.Errorf("label org.opencontainers.image.%s missing", k)
				}
			}
			if cf.Config.Labels["org.opencontainers.image.revision"] != first.Revision {
				t.Errorf("revision label %q, want %q", cf.Config.Labels["org.opencontainers.image.revision"], first.Revision)
			}
			if cf.Created.Time.Format("2006-01-02T15:04:05Z07:00") != first.Created {
				t.Errorf("created %s, want the commit's time %s", cf.Created.Time, first.Created)
			}
			files := filesOf(t, img)
			if len(files) != 1 || files[strings.TrimPrefix(Entrypoint, "/")] == nil {
				var names []string
				for n := range files {
					names = append(names, n)
				}
				t.Errorf("the image should hold only the binary, holds %v", names)
			}
		})
	}

	t.Run("the binary from the layer for this machine (amd64 here) prints the stamped version", func(t *testing.T) {
		var img v1.Image
		for _, m := range im.Manifests {
			if m.Platform.Architecture == runtime.GOARCH {
				if img, err = idx.Image(m.Digest); err != nil {
					t.Fatal(err)
				}
			}
		}
		if img == nil {
			t.Fatalf("no image for %s", runtime.GOARCH)
		}
		bin := filepath.Join(t.TempDir(), "sysctl-placement")
		if err := os.WriteFile(bin, filesOf(t, img)[strings.TrimPrefix(Entrypoint, "/")], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"sysctl-placement " + first.Version, "commit: " + first.Revision, "built:  " + first.Created, "go:     " + strings.TrimSpace(string(goVersion))} {
			if !strings.Contains(string(out), want) {
				t.Errorf("version output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("the tarball is a docker archive of the amd64 image and an OCI layout of both", func(t *testing.T) {
		archive := filepath.Join(out, "sysctl-placement.tar")
		img, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			t.Fatalf("docker-archive read: %v", err)
		}
		// docker load rebuilds a Docker manifest, so the image is identified by its
		// config (the image ID docker shows) and layers, not by the OCI manifest.
		got, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		amd64, err := idx.Image(im.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		want, err := amd64.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("manifest.json names config %s, want the amd64 image's %s", got, want)
		}
		if files := filesOf(t, img); files[strings.TrimPrefix(Entrypoint, "/")] == nil {
			t.Errorf("the docker archive's layers do not hold the binary")
		}
		names := tarNames(t, archive)
		for _, want := range []string{"oci-layout", "index.json", "manifest.json", "blobs/sha256/" + strings.TrimPrefix(first.Digest, "sha256:")} {
			if !names[want] {
				t.Errorf("the tarball has no %s", want)
			}
		}
	})

	t.Run("release manifests name the image by digest in every container", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := WriteReleaseManifests(repo, dir, first); err != nil {
			t.Fatal(err)
		}
		want := DefaultImageName + "@" + first.Digest
		for _, overlay := range Overlays {
			body, err := os.ReadFile(filepath.Join(dir, overlay+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			images := containerImages(t, body)
			if len(images) == 0 {
				t.Fatalf("%s: no containers", overlay)
			}
			for _, got := range images {
				if got != want {
					t.Errorf("%s: image %q, want %q", overlay, got, want)
				}
			}
		}
	})
}

func filesOf(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}

// containerImages lists the image of every container and init container in a
// multi-document YAML stream.
func containerImages(t *testing.T, stream []byte) []string {
	t.Helper()
	var images []string
	for _, doc := range bytes.Split(stream, []byte("\n---\n")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		collectImages(obj, &images)
	}
	return images
}

func collectImages(v any, images *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if (k == "containers" || k == "initContainers") && child != nil {
				for _, c := range child.([]any) {
					*images = append(*images, c.(map[string]any)["image"].(string))
				}
				continue
			}
			collectImages(child, images)
		}
	case []any:
		for _, child := range v {
			collectImages(child, images)
		}
	}
}

// The README's commands start with `go tool task`, run by the machine's own Go: 1.26,
// with GOTOOLCHAIN=local in its go.env. A go line above 1.26 in a module Task is
// built from stops that first command with "go.mod requires go >= ..." before Task
// runs; Task then builds everything with the Taskfile's GOTOOLCHAIN, which must be the
// toolchain go.mod names.
func TestGoToolTaskRunsOnTheGoTheMachinesStartWith(t *testing.T) {
	const newestStartingGo = 26 // Go 1.26
	goLine, toolchain := "", ""
	data, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			goLine = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "toolchain "); ok {
			toolchain = strings.TrimSpace(v)
		}
	}
	parts := strings.Split(goLine, ".")
	minor := -1
	if len(parts) >= 2 {
		minor, _ = strconv.Atoi(parts[1])
	}
	if parts[0] != "1" || minor < 0 || minor > newestStartingGo {
		t.Errorf("go.mod says go %q; want at most 1.%d, or `go tool task` fails on a fresh machine (Go 1.%d, GOTOOLCHAIN=local): build-tag what needs newer Go instead", goLine, newestStartingGo, newestStartingGo)
	}
	taskfile, err := os.ReadFile(filepath.Join(repo, "Taskfile.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if toolchain == "" || !strings.Contains(string(taskfile), "GOTOOLCHAIN: "+toolchain+"\n") {
		t.Errorf("go.mod names toolchain %q; want the Taskfile to set GOTOOLCHAIN: %s for every go command it runs", toolchain, toolchain)
	}
}
