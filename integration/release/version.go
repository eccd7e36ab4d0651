package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// semverTag is a release tag, vMAJOR.MINOR.PATCH with an optional prerelease (and
// git describe's -N-gHASH[-dirty] after it, which reads as one).
var semverTag = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// releaseVersion is the SemVer 2 version, with its v, of what a build ships besides
// the image — the chart (without the v) and the kubectl plugin — for version (git
// describe): a tag and what git describe makes of it are used as they are; an untagged
// commit (abcdef0[-dirty]) is a prerelease of the version the chart's Chart.yaml
// names, v0.1.0-gabcdef0, so it sorts before that release. Helm and krew refuse
// versions that are not SemVer.
func releaseVersion(repo, version string) (string, error) {
	if semverTag.MatchString(version) {
		return version, nil
	}
	chartFile := filepath.Join(repo, "deploy", "charts", "sysctl-placement", "Chart.yaml")
	js, err := os.ReadFile(chartFile)
	if err != nil {
		return "", err
	}
	var chart struct{ Version string }
	if err := yaml.Unmarshal(js, &chart); err != nil {
		return "", fmt.Errorf("%s: %w", chartFile, err)
	}
	v := "v" + chart.Version + "-g" + strings.TrimPrefix(version, "v")
	if !semverTag.MatchString(v) {
		return "", fmt.Errorf("version %q makes %q, which is not SemVer 2: tag releases vMAJOR.MINOR.PATCH, and keep Chart.yaml's version MAJOR.MINOR.PATCH", version, v)
	}
	return v, nil
}
