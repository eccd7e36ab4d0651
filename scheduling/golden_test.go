package scheduling

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Golden files: testdata/golden/NAME.input.yaml holds a namespace, a pod (or a pod
// template, with template: true) and a comment saying what it shows; NAME.golden.yaml
// holds the decision and the pod after ApplyTo, planned against testdata/config.yaml.
// Regenerate with UPDATE_GOLDEN=1 go test ./scheduling/ and review the diff.

const (
	goldenDir    = "testdata/golden"
	inputSuffix  = ".input.yaml"
	goldenSuffix = ".golden.yaml"
)

// goldenCase is the shape of an input file.
type goldenCase struct {
	Namespace struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"namespace"`
	Template bool       `json:"template,omitempty"`
	Pod      corev1.Pod `json:"pod"`
}

// goldenDecision is Decision with stable lowercase keys for review; a field added to
// Decision must be added here too, or the conversion does not compile.
type goldenDecision struct {
	Outcome  Outcome  `json:"outcome"`
	Reason   string   `json:"reason"`
	Allowed  bool     `json:"allowed"`
	Message  string   `json:"message,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Changes  Changes  `json:"changes"`
	Audit    Audit    `json:"audit"`
}

type goldenOutput struct {
	Decision goldenDecision `json:"decision"`
	Pod      corev1.Pod     `json:"pod"`
}

func readGoldenCase(tb testing.TB, path string) goldenCase {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return c
}

func (c goldenCase) input(cfg *Compiled) Input {
	return Input{
		Pod:       &c.Pod,
		Namespace: Namespace{Name: c.Namespace.Name, Labels: c.Namespace.Labels, Annotations: c.Namespace.Annotations},
		Config:    cfg,
		Template:  c.Template,
	}
}

func TestGolden(t *testing.T) {
	cfg := loadTestConfig(t)
	update := os.Getenv("UPDATE_GOLDEN") != ""
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string]bool{}
	goldens := map[string]bool{}
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasSuffix(name, inputSuffix):
			inputs[strings.TrimSuffix(name, inputSuffix)] = true
		case strings.HasSuffix(name, goldenSuffix):
			goldens[strings.TrimSuffix(name, goldenSuffix)] = true
		default:
			t.Errorf("%s/%s is neither an input nor a golden file", goldenDir, name)
		}
	}
	if len(inputs) < 20 {
		t.Errorf("only %d golden inputs; keep at least 20 realistic pods", len(inputs))
	}
	for name := range goldens {
		if !inputs[name] {
			if update {
				if err := os.Remove(filepath.Join(goldenDir, name+goldenSuffix)); err != nil {
					t.Error(err)
				}
				continue
			}
			t.Errorf("%s%s has no input %s%s; delete it or restore the input", name, goldenSuffix, name, inputSuffix)
		}
	}
	names := make([]string, 0, len(inputs))
	for name := range inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c := readGoldenCase(t, filepath.Join(goldenDir, name+inputSuffix))
			in := c.input(cfg)
			d := Plan(in)
			out := c.Pod.DeepCopy()
			ApplyTo(&out.Spec, d.Changes)
			got, err := yaml.Marshal(goldenOutput{
				Decision: goldenDecision(d),
				Pod:      *out,
			})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(goldenDir, name+goldenSuffix)
			if update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("missing golden file (run UPDATE_GOLDEN=1 go test ./scheduling/): %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s is stale (run UPDATE_GOLDEN=1 go test ./scheduling/ and review the diff); got:\n%s", path, got)
				}
			}
			assertIdempotent(t, &c.Pod, in.Namespace, cfg, c.Template, d)
		})
	}
}
