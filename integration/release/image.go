package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultImageName is the repository the deploy manifests name.
const DefaultImageName = "ghcr.io/sysctl-placement/sysctl-placement"

// Entrypoint is where the binary sits in the image.
const Entrypoint = "/usr/local/bin/sysctl-placement"

// NonRoot is the user the image runs as (distroless' nonroot), matching the
// Deployment's runAsUser.
const NonRoot = "65532:65532"

// Platforms are the platforms of the image index.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// imageOptions says what to build and where.
type imageOptions struct {
	Repo    string // the repository's root
	Out     string // output directory
	Name    string // image repository
	Version string // empty: git describe
}

// Built describes a built image; it is written to image.json beside the layout.
type Built struct {
	Name    string `json:"name"`
	Tag     string `json:"tag"`
	Digest  string `json:"digest"` // of the image index
	Version string `json:"version"`
	// ReleaseVersion is the SemVer version of the chart and kubectl plugin released
	// with the image (releaseVersion).
	ReleaseVersion string          `json:"releaseVersion"`
	Revision       string          `json:"revision"`
	Created        string          `json:"created"`
	Platforms      []BuiltPlatform `json:"platforms"`
}

// BuiltPlatform is one platform's image in the index.
type BuiltPlatform struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Binary   string `json:"binary"`   // path of the binary, relative to the output directory
	Size     int64  `json:"size"`     // compressed bytes pulled: config + layers
	Unpacked int64  `json:"unpacked"` // bytes of the binary
}

// Reference is name:tag@digest, the reference to push, load and deploy.
func (b Built) Reference() string { return b.Name + ":" + b.Tag + "@" + b.Digest }

// source is what the build is stamped with, all from git so that the same commit
// builds the same bytes.
type source struct {
	version  string
	revision string
	created  time.Time
}

func readSource(repo, version string) (source, error) {
	rev, err := git(repo, "rev-parse", "HEAD")
	if err != nil {
		return source{}, err
	}
	epoch, err := git(repo, "log", "-1", "--format=%ct")
	if err != nil {
		return source{}, err
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return source{}, fmt.Errorf("commit time %q: %w", epoch, err)
	}
	if version == "" {
		if version, err = git(repo, "describe", "--tags", "--always", "--dirty", "--match", "v*"); err != nil {
			return source{}, err
		}
	}
	return source{version: version, revision: rev, created: time.Unix(secs, 0).UTC()}, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// BuildImage builds the static binary for every platform and the OCI image index,
// and writes under o.Out: oci/ (an OCI image layout), sysctl-placement.tar (that
// layout plus a docker-archive manifest.json for linux/amd64, which docker load,
// podman load, ctr images import and kind load image-archive accept), the binaries
// and image.json. Progress goes to progress.
func BuildImage(o imageOptions, progress io.Writer) (Built, error) {
	src, err := readSource(o.Repo, o.Version)
	if err != nil {
		return Built{}, err
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return Built{}, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return Built{}, err
	}
	rv, err := releaseVersion(o.Repo, src.version)
	if err != nil {
		return Built{}, err
	}
	built := Built{Name: o.Name, Tag: tagFor(src.version), Version: src.version, ReleaseVersion: rv, Revision: src.revision, Created: src.created.Format(time.RFC3339)}
	labels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/sysctl-placement/sysctl-placement",
		"org.opencontainers.image.version":  src.version,
		"org.opencontainers.image.revision": src.revision,
		"org.opencontainers.image.created":  built.Created,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.title":    "sysctl-placement",
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		binary := filepath.Join(p.OS+"-"+p.Architecture, "sysctl-placement")
		fmt.Fprintf(progress, "building %s for %s/%s\n", src.version, p.OS, p.Architecture)
		if err := buildBinary(o.Repo, filepath.Join(o.Out, binary), p, src); err != nil {
			return Built{}, err
		}
		img, err := imageFor(filepath.Join(o.Out, binary), p, src.created, labels)
		if err != nil {
			return Built{}, err
		}
		d, err := img.Digest()
		if err != nil {
			return Built{}, err
		}
		size, err := pulledSize(img)
		if err != nil {
			return Built{}, err
		}
		st, err := os.Stat(filepath.Join(o.Out, binary))
		if err != nil {
			return Built{}, err
		}
		platform := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
		built.Platforms = append(built.Platforms, BuiltPlatform{Platform: p.OS + "/" + p.Architecture, Digest: d.String(), Binary: binary, Size: size, Unpacked: st.Size()})
	}
	idx = mutate.Annotations(idx, labels).(v1.ImageIndex)
	d, err := idx.Digest()
	if err != nil {
		return Built{}, err
	}
	built.Digest = d.String()

	lp, err := layout.Write(filepath.Join(o.Out, "oci"), empty.Index)
	if err != nil {
		return Built{}, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": built.Tag,
		"io.containerd.image.name":          built.Name + ":" + built.Tag,
	})); err != nil {
		return Built{}, err
	}
	if err := writeArchive(filepath.Join(o.Out, "sysctl-placement.tar"), filepath.Join(o.Out, "oci"), idx, built, src.created); err != nil {
		return Built{}, err
	}
	js, err := json.MarshalIndent(built, "", "  ")
	if err != nil {
		return Built{}, err
	}
	return built, os.WriteFile(filepath.Join(o.Out, "image.json"), append(js, '\n'), 0o644)
}

// ReadBuilt reads image.json written by BuildImage.
func ReadBuilt(dir string) (Built, error) {
	var b Built
	js, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return b, fmt.Errorf("%w (run `go tool task image` first)", err)
	}
	return b, json.Unmarshal(js, &b)
}

// tagFor makes a version a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}).
func tagFor(version string) string {
	tag := strings.Map(func(r rune) rune {
		if r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, version)
	tag = strings.TrimLeft(tag, ".-")
	return tag[:min(len(tag), 128)]
}

// buildBinary builds the static binary the way `go tool task build` does, for p.
// -trimpath and the commit's identity in -ldflags make it the same bytes for the
// same commit and toolchain.
func buildBinary(repo, out string, p v1.Platform, src source) error {
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", "main.Version=" + src.version,
		"-X", "main.Revision=" + src.revision,
		"-X", "main.BuildDate=" + src.created.Format(time.RFC3339),
	}, " ")
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", abs, "./cmd/sysctl-placement")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", p.OS, p.Architecture, err, out)
	}
	return nil
}

// imageFor is one platform's image: an empty base, one layer holding the binary at
// Entrypoint, owned by root and executable by all, every time stamp the commit's.
func imageFor(binary string, p v1.Platform, created time.Time, labels map[string]string) (v1.Image, error) {
	content, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"usr/", "usr/local/", "usr/local/bin/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(Entrypoint, "/"), Mode: 0o755, Size: int64(len(content)), ModTime: created, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: created},
		CreatedBy: "go build -trimpath ./cmd/sysctl-placement (integration/release)",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.User = NonRoot
	cf.Config.Labels = labels
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	return mutate.ConfigFile(img, cf)
}

// pulledSize is what a node downloads for the image: config and compressed layers.
func pulledSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}

// writeArchive tars the OCI layout (files in name order, the commit's time stamps)
// and adds manifest.json, the docker-archive index that `docker load` reads, pointing
// at the linux/amd64 image's blobs inside that same layout: the format `docker save`
// writes since Docker 25. Tools that read OCI archives (podman, ctr, kind) use
// index.json and see both platforms.
func writeArchive(path, layoutDir string, idx v1.ImageIndex, built Built, created time.Time) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var amd64 v1.Hash
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Architecture == "amd64" {
			amd64 = m.Digest
		}
	}
	img, err := idx.Image(amd64)
	if err != nil {
		return fmt.Errorf("the index has no linux/amd64 image: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	entry := tarball.Descriptor{Config: blobPath(m.Config.Digest), RepoTags: []string{built.Name + ":" + built.Tag}}
	for _, l := range m.Layers {
		entry.Layers = append(entry.Layers, blobPath(l.Digest))
	}
	manifest, err := json.Marshal(tarball.Manifest{entry})
	if err != nil {
		return err
	}

	var names []string
	if err := filepath.WalkDir(layoutDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == layoutDir {
			return err
		}
		rel, err := filepath.Rel(layoutDir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	}); err != nil {
		return err
	}
	slices.Sort(names)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, name := range names {
		full := filepath.Join(layoutDir, filepath.FromSlash(name))
		st, err := os.Stat(full)
		if err != nil {
			return err
		}
		if st.IsDir() {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
				return err
			}
			continue
		}
		content, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		if err := writeFile(tw, name, content, created); err != nil {
			return err
		}
	}
	if err := writeFile(tw, "manifest.json", manifest, created); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func writeFile(tw *tar.Writer, name string, content []byte, created time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: created, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(content)
	return err
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
