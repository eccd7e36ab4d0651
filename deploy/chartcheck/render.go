// Package chartcheck renders the Helm chart the way `helm template` does, with Helm's
// own Go packages, and the kustomizations with kustomize's, so tests can hold the two
// to the same objects. It is its own module: Helm and Prometheus (the rule tests) stay
// out of the shipped binary's module graph.
package chartcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// DeployDir is the repository's deploy/ directory.
func DeployDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), ".."))
}

// ChartDir is the chart's directory.
func ChartDir() string { return filepath.Join(DeployDir(), "charts", "sysctl-placement") }

// Release names what `helm template` is told: the release name and namespace.
type Release struct {
	Name, Namespace string
}

// DefaultRelease is the installation the docs describe:
// helm install sysctl-placement deploy/charts/sysctl-placement -n sysctl-placement.
var DefaultRelease = Release{Name: "sysctl-placement", Namespace: "sysctl-placement"}

// Install renders the chart with values as `helm template` does (client only, values
// checked against values.schema.json) and returns Helm's release: Manifest holds the
// release's resources, Hooks the hooks with the events, weight and delete policies
// Helm read from their annotations.
func Install(rel Release, values map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("could not load the chart: %w", err)
	}
	return InstallChart(chrt, rel, values)
}

// InstallChart is Install of a chart already loaded, e.g. a packaged .tgz.
func InstallChart(chrt *chart.Chart, rel Release, values map[string]any) (*release.Release, error) {
	kubeVersion, err := common.ParseKubeVersion("v1.37.2")
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy, install.Replace = action.DryRunClient, true
	install.ReleaseName, install.Namespace = rel.Name, rel.Namespace
	install.KubeVersion = kubeVersion
	r, err := install.Run(chrt, values)
	if err != nil {
		return nil, err
	}
	out, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a %T, not a chart v2 release", r)
	}
	return out, nil
}

// Template renders the chart with values as `helm template` does (Install, hooks
// included) and returns the manifests as one multi-document YAML stream.
func Template(rel Release, values map[string]any) (string, error) {
	out, err := Install(rel, values)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(out.Manifest)
	for _, h := range out.Hooks {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return b.String(), nil
}

// Render is Template, decoded into objects.
func Render(rel Release, values map[string]any) ([]*unstructured.Unstructured, error) {
	manifest, err := Template(rel, values)
	if err != nil {
		return nil, err
	}
	return Decode([]byte(manifest))
}

// Lint runs `helm lint --strict` on the chart with values and returns its messages;
// an error when the chart has errors (or, strict, warnings).
func Lint(values map[string]any) ([]string, error) { return LintPath(ChartDir(), values) }

// LintPath is Lint of the chart at path: a directory or a packaged .tgz.
func LintPath(path string, values map[string]any) ([]string, error) {
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = DefaultRelease.Namespace
	result := lint.Run([]string{path}, values)
	var msgs []string
	for _, m := range result.Messages {
		msgs = append(msgs, m.Error())
	}
	if len(result.Errors) > 0 {
		return msgs, errors.Join(result.Errors...)
	}
	return msgs, nil
}

// Kustomize renders deploy/<overlay> as `kubectl kustomize` does, with the given
// components (deploy/components/<name>) added, from an in-memory copy of deploy/ so
// that nothing is written to the repository.
func Kustomize(overlay string, components ...string) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	disk := filesys.MakeFsOnDisk()
	root := DeployDir()
	err := disk.Walk(root, func(path string, info fs.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := disk.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/deploy", rel), data)
	})
	if err != nil {
		return nil, err
	}
	dir := filepath.Join("/deploy", overlay)
	if len(components) > 0 {
		k := map[string]any{
			"apiVersion": "kustomize.config.k8s.io/v1beta1",
			"kind":       "Kustomization",
			"resources":  []string{"../" + overlay},
		}
		var cs []string
		for _, c := range components {
			cs = append(cs, "../components/"+c)
		}
		k["components"] = cs
		data, err := yaml.Marshal(k)
		if err != nil {
			return nil, err
		}
		dir = "/deploy/with-components"
		if err := mem.WriteFile(filepath.Join(dir, "kustomization.yaml"), data); err != nil {
			return nil, err
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s with components %v: %w", overlay, components, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	return Decode(out)
}

// Decode splits a multi-document YAML stream into objects, skipping empty documents.
func Decode(stream []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("a rendered document is not YAML: %w\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}
