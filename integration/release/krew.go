package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

// KrewPlatforms are the platforms the kubectl plugin is released for: where the
// people who run kubectl work, unlike the image's.
var KrewPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"},
	{OS: "darwin", Architecture: "amd64"}, {OS: "darwin", Architecture: "arm64"},
}

// DefaultDownloadURL is where a release's archives are published; %s is the version.
const DefaultDownloadURL = "https://github.com/sysctl-placement/sysctl-placement/releases/download/%s/"

// krewOptions says what to build and where.
type krewOptions struct {
	Repo        string // the repository's root
	Out         string // where the archives and sysctl-placement.yaml go
	Version     string // empty: git describe
	DownloadURL string // the archives' base URL, with %s for the version
}

// KrewArchive is one platform's archive.
type KrewArchive struct {
	Platform v1.Platform
	Path     string
	SHA256   string // hex
}

// The krew index's Plugin manifest (krew.googlecontainertools.github.com/v1alpha2),
// the fields a plugin sets.
type krewPlugin struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   krewMetadata   `json:"metadata"`
	Spec       krewPluginSpec `json:"spec"`
}

type krewMetadata struct {
	Name string `json:"name"`
}

type krewPluginSpec struct {
	Version          string         `json:"version"`
	Homepage         string         `json:"homepage"`
	ShortDescription string         `json:"shortDescription"`
	Description      string         `json:"description"`
	Caveats          string         `json:"caveats,omitempty"`
	Platforms        []krewPlatform `json:"platforms"`
}

type krewPlatform struct {
	Selector krewSelector `json:"selector"`
	URI      string       `json:"uri"`
	SHA256   string       `json:"sha256"`
	Files    []krewFile   `json:"files"`
	Bin      string       `json:"bin"`
}

type krewSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type krewFile struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// BuildKrew builds the binary for every KrewPlatform, archives each (the binary and
// LICENSE when the repository has one) and writes the krew manifest
// sysctl-placement.yaml naming each archive by URL and sha256. It returns the
// manifest's path and the archives.
func BuildKrew(o krewOptions, progress io.Writer) (string, []KrewArchive, error) {
	src, err := readSource(o.Repo, o.Version)
	if err != nil {
		return "", nil, err
	}
	version, err := releaseVersion(o.Repo, src.version)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", nil, err
	}
	license, err := os.ReadFile(filepath.Join(o.Repo, "LICENSE"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	var archives []KrewArchive
	for _, p := range KrewPlatforms {
		fmt.Fprintf(progress, "building %s for %s/%s\n", src.version, p.OS, p.Architecture)
		binary := filepath.Join(o.Out, p.OS+"-"+p.Architecture, "sysctl-placement")
		if err := buildBinary(o.Repo, binary, p, src); err != nil {
			return "", nil, err
		}
		a, err := writeKrewArchive(o.Out, archiveName(version, p), binary, license, src.created)
		if err != nil {
			return "", nil, err
		}
		a.Platform = p
		archives = append(archives, a)
	}
	manifest, err := krewManifest(version, fmt.Sprintf(o.DownloadURL, version), archives, license != nil)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(o.Out, "sysctl-placement.yaml")
	return path, archives, os.WriteFile(path, manifest, 0o644)
}

// archiveName is the archive of p for version.
func archiveName(version string, p v1.Platform) string {
	return fmt.Sprintf("sysctl-placement_%s_%s_%s.tar.gz", version, p.OS, p.Architecture)
}

// writeKrewArchive writes the tar.gz of one platform: the binary (mode 0755) and
// LICENSE when there is one, stamped with the commit's time, gzip with no name or
// time of its own, so the same commit gives the same sha256.
func writeKrewArchive(out, name, binary string, license []byte, created time.Time) (KrewArchive, error) {
	content, err := os.ReadFile(binary)
	if err != nil {
		return KrewArchive{}, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return KrewArchive{}, err
	}
	tw := tar.NewWriter(zw)
	if err := writeEntry(tw, "sysctl-placement", 0o755, content, created); err != nil {
		return KrewArchive{}, err
	}
	if license != nil {
		if err := writeEntry(tw, "LICENSE", 0o644, license, created); err != nil {
			return KrewArchive{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return KrewArchive{}, err
	}
	if err := zw.Close(); err != nil {
		return KrewArchive{}, err
	}
	path := filepath.Join(out, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return KrewArchive{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	return KrewArchive{Path: path, SHA256: hex.EncodeToString(sum[:])}, nil
}

func writeEntry(tw *tar.Writer, name string, mode int64, content []byte, created time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: created, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(content)
	return err
}

// krewManifest is the Plugin manifest for the archives, downloaded from baseURL.
// krew links the binary as kubectl-sysctl_placement, so `kubectl sysctl-placement`
// runs it.
func krewManifest(version, baseURL string, archives []KrewArchive, withLicense bool) ([]byte, error) {
	plugin := krewPlugin{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   krewMetadata{Name: "sysctl-placement"},
		Spec: krewPluginSpec{
			Version:          version,
			Homepage:         "https://github.com/sysctl-placement/sysctl-placement",
			ShortDescription: "Place pods with sysctls on nodes that allow them",
			Description: `Pods that ask for unsafe sysctls run only on nodes whose kubelets allow them.
This plugin is the sysctl-placement admission webhook's command line: "plan"
shows what the webhook would do to a manifest (offline), "audit" which workloads
of a live cluster are broken today and what opting their namespace in would
change, "pools" how a placement config's pools match the cluster's nodes.
It takes kubectl's connection flags (--context, --as, --server, ...).
`,
			Caveats: `audit and pools read Nodes, Namespaces and workloads cluster-wide:
run them as a user allowed to list those (read-only).
`,
		},
	}
	for _, a := range archives {
		files := []krewFile{{From: "sysctl-placement", To: "."}}
		if withLicense {
			files = append(files, krewFile{From: "LICENSE", To: "."})
		}
		plugin.Spec.Platforms = append(plugin.Spec.Platforms, krewPlatform{
			Selector: krewSelector{MatchLabels: map[string]string{"os": a.Platform.OS, "arch": a.Platform.Architecture}},
			URI:      baseURL + filepath.Base(a.Path),
			SHA256:   a.SHA256,
			Files:    files,
			Bin:      "sysctl-placement",
		})
	}
	y, err := yaml.Marshal(plugin)
	if err != nil {
		return nil, err
	}
	header := fmt.Sprintf("# Generated by `go tool task release` for %s: the krew index's manifest of the\n# kubectl plugin (kubectl krew install --manifest=sysctl-placement.yaml --archive=ARCHIVE).\n", version)
	return append([]byte(header), y...), nil
}
