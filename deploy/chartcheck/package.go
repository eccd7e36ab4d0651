package chartcheck

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"sigs.k8s.io/yaml"
)

// Image is the part of bin/image/image.json (written by `release image`,
// integration/release) that the packaged chart pins: the chart module reads the file
// rather than importing that module, so Helm's dependencies and go-containerregistry's
// never meet in one module graph.
type Image struct {
	Name    string `json:"name"`    // repository, e.g. ghcr.io/sysctl-placement/sysctl-placement
	Tag     string `json:"tag"`     // the version as an image tag
	Digest  string `json:"digest"`  // of the image index, sha256:…
	Version string `json:"version"` // git describe when the image was built
	// ReleaseVersion is the SemVer version, with a v, of what is released with the
	// image: the chart's version without the v.
	ReleaseVersion string `json:"releaseVersion"`
	Created        string `json:"created"` // the commit's time, RFC 3339
	Platforms      []struct {
		Platform string `json:"platform"`
	} `json:"platforms"`
}

// ReadImage reads image.json from dir (bin/image).
func ReadImage(dir string) (Image, error) {
	var img Image
	js, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return img, fmt.Errorf("%w (run `go tool task image` first)", err)
	}
	if err := json.Unmarshal(js, &img); err != nil {
		return img, fmt.Errorf("%s: %w", filepath.Join(dir, "image.json"), err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || img.Name == "" || img.Version == "" {
		return img, fmt.Errorf("%s names no image (name %q, version %q, digest %q): run `go tool task image` again", filepath.Join(dir, "image.json"), img.Name, img.Version, img.Digest)
	}
	return img, nil
}

// Reference is name:tag@digest, how Artifact Hub and users name the image.
func (img Image) Reference() string { return img.Name + ":" + img.Tag + "@" + img.Digest }

// Packaged is what Package wrote.
type Packaged struct {
	Path    string // <out>/sysctl-placement-<version>.tgz
	Version string // the chart's version
	SHA256  string // of the .tgz, hex
}

// ChartVersion is the chart's version for img: its releaseVersion without the v
// (`release image` derives it from git describe and Chart.yaml's version), checked as
// SemVer 2 as `helm package` checks it.
func ChartVersion(img Image) (string, error) {
	v := strings.TrimPrefix(img.ReleaseVersion, "v")
	if _, err := semver.StrictNewVersion(v); err != nil {
		return "", fmt.Errorf("image.json's releaseVersion %q is no SemVer 2 chart version (run `go tool task image` again): %w", img.ReleaseVersion, err)
	}
	return v, nil
}

// Package writes the chart as `helm package --version V --app-version A` does (Helm's
// loader, which resolves the symlinks under files/ and honours .helmignore; the
// version checked as SemVer; chartutil.Save), with:
//   - values.yaml's image.repository, image.tag and image.digest set to img, so the
//     packaged chart installs the image that was built, by digest; the rest of the
//     file, comments included, is kept byte for byte;
//   - artifacthub.io/images naming that image by digest, and artifacthub.io/prerelease
//     for a prerelease version;
//   - every time stamp the commit's (helm package's SOURCE_DATE_EPOCH), so the same
//     commit and image give the same bytes.
func Package(chartDir string, img Image, out string) (Packaged, error) {
	created, err := time.Parse(time.RFC3339, img.Created)
	if err != nil {
		return Packaged{}, fmt.Errorf("image.json's created %q is not RFC 3339: %w", img.Created, err)
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return Packaged{}, fmt.Errorf("could not load the chart: %w", err)
	}
	version, err := ChartVersion(img)
	if err != nil {
		return Packaged{}, err
	}
	chrt.Metadata.Version, chrt.Metadata.AppVersion = version, img.Version
	if err := pinImage(chrt, img); err != nil {
		return Packaged{}, err
	}
	if err := annotateImages(chrt.Metadata, img); err != nil {
		return Packaged{}, err
	}
	if sv, _ := semver.StrictNewVersion(version); sv != nil && sv.Prerelease() != "" {
		chrt.Metadata.Annotations["artifacthub.io/prerelease"] = "true"
	}
	chrt.StampModTimes(created)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Packaged{}, err
	}
	path, err := chartutil.Save(chrt, out)
	if err != nil {
		return Packaged{}, fmt.Errorf("could not save the chart: %w", err)
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return Packaged{}, err
	}
	return Packaged{Path: path, Version: version, SHA256: sum}, nil
}

// pinImage sets image.repository, image.tag and image.digest in values.yaml's text,
// each on its own line, and proves the result parses to the chart's values with only
// those three changed: an edit of the text keeps the comments the chart's README and
// `helm show values` show.
func pinImage(chrt *chart.Chart, img Image) error {
	var raw *[]byte
	for _, f := range chrt.Raw {
		if f.Name == chartutil.ValuesfileName {
			raw = &f.Data
		}
	}
	if raw == nil {
		return fmt.Errorf("the chart has no %s", chartutil.ValuesfileName)
	}
	pins := map[string]string{"repository": img.Name, "tag": img.Tag, "digest": img.Digest}
	lines := strings.SplitAfter(string(*raw), "\n")
	inImage, set := false, map[string]bool{}
	for i, line := range lines {
		switch {
		case line == "image:\n":
			inImage = true
		case inImage && strings.TrimSpace(line) != "" && !strings.HasPrefix(line, " "):
			inImage = false
		case inImage:
			for key, value := range pins {
				if strings.HasPrefix(line, "  "+key+":") {
					lines[i] = fmt.Sprintf("  %s: %q\n", key, value)
					set[key] = true
				}
			}
		}
	}
	if len(set) != len(pins) {
		return fmt.Errorf("%s: want top-level image: with repository:, tag: and digest: lines (found %v) to pin the image", chartutil.ValuesfileName, set)
	}
	pinned := []byte(strings.Join(lines, ""))
	values, err := loader.LoadValues(bytes.NewReader(pinned))
	if err != nil {
		return fmt.Errorf("%s after pinning the image: %w", chartutil.ValuesfileName, err)
	}
	want, err := loader.LoadValues(bytes.NewReader(*raw))
	if err != nil {
		return err
	}
	image, _ := want["image"].(map[string]any)
	for key, value := range pins {
		image[key] = value
	}
	if a, b := jsonOf(values), jsonOf(want); a != b {
		return fmt.Errorf("pinning the image in %s changed more than image.repository, tag and digest:\n%s\nwant\n%s", chartutil.ValuesfileName, a, b)
	}
	*raw, chrt.Values = pinned, values
	return nil
}

func jsonOf(v any) string {
	js, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(js)
}

// annotateImages makes artifacthub.io/images name the built image by digest, on the
// platforms it was built for.
func annotateImages(md *chart.Metadata, img Image) error {
	type image struct {
		Name      string   `json:"name"`
		Image     string   `json:"image"`
		Platforms []string `json:"platforms,omitempty"`
	}
	entry := image{Name: md.Name, Image: img.Reference()}
	for _, p := range img.Platforms {
		entry.Platforms = append(entry.Platforms, p.Platform)
	}
	y, err := yaml.Marshal([]image{entry})
	if err != nil {
		return err
	}
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	md.Annotations["artifacthub.io/images"] = string(y)
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
