package scheduling

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestHostNamespaces(t *testing.T) {
	for _, h := range HostNamespaces {
		t.Run(h.Field+": Set, Shared and Change agree", func(t *testing.T) {
			var spec corev1.PodSpec
			h.Set(&spec, true)
			if !h.Shared(&spec) {
				t.Errorf("Set(true) did not make the spec share the host's %s namespace", h.Kernel)
			}
			h.Set(&spec, false)
			if h.Shared(&spec) {
				t.Errorf("Set(false) left the spec sharing the host's %s namespace", h.Kernel)
			}
			f := false
			var ch Changes
			*h.Change(&ch) = &f
			spec = corev1.PodSpec{}
			h.Set(&spec, true)
			ApplyTo(&spec, ch)
			if h.Shared(&spec) || ch.IsEmpty() {
				t.Errorf("the change of %s does not apply", h.Field)
			}
		})
		t.Run(h.Field+": its default is a clash mode and its policy field defaults to it", func(t *testing.T) {
			var c PlacementConfig
			c.Default()
			if !h.DefaultMode.Valid() || *h.Mode(&c.Policy) != h.DefaultMode {
				t.Errorf("default %q, policy after Default %q", h.DefaultMode, *h.Mode(&c.Policy))
			}
		})
		t.Run(h.Field+": an invalid policy mode is refused at its path", func(t *testing.T) {
			var p Policy
			*h.Mode(&p) = "remove"
			errs := p.validate(nil)
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), h.Field) {
				t.Errorf("errors %v; want one for %s", errs, h.Field)
			}
		})
		if got, ok := HostNamespaceByField(h.Field); !ok || got.Field != h.Field {
			t.Errorf("HostNamespaceByField(%q) does not find it", h.Field)
		}
	}
}

// TestEveryClashModeIsDocumented keeps the configuration docs in step with ClashModes
// and HostNamespaces: adding one to the table and not to the docs fails here.
func TestEveryClashModeIsDocumented(t *testing.T) {
	for _, doc := range []string{"README.md", filepath.Join("docs", "design.md")} {
		data, err := os.ReadFile(filepath.Join("..", doc))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, m := range ClashModes {
			if !strings.Contains(text, "`"+string(m)+"`") && !strings.Contains(text, " "+string(m)+" ") {
				t.Errorf("%s does not mention the clash mode %s", doc, m)
			}
		}
		for _, h := range HostNamespaces {
			annotation := strings.TrimPrefix(h.Annotation, AnnotationPrefix)
			if !strings.Contains(text, h.Field) || !strings.Contains(text, annotation) {
				t.Errorf("%s does not mention %s or its annotation %s", doc, h.Field, annotation)
			}
		}
	}
}
