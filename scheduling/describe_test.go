package scheduling

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// describeGolden holds the wording of every decision and change: each golden pod's
// Decision.String, then changes and tolerations no golden pod gets. Regenerate with
// UPDATE_GOLDEN=1 go test ./scheduling/ and review the diff: every command, warning
// and Event reads these words.
const describeGolden = "testdata/describe.golden.txt"

func TestDescribe(t *testing.T) {
	cfg := loadTestConfig(t)
	var b bytes.Buffer
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*"+inputSuffix))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden inputs in %s: %v", goldenDir, err)
	}
	slices.Sort(paths)
	b.WriteString("# Decision.String of each golden pod\n")
	for _, path := range paths {
		c := readGoldenCase(t, path)
		name := strings.TrimSuffix(filepath.Base(path), inputSuffix)
		b.WriteString(name + ": " + Plan(c.input(cfg)).String() + "\n")
	}
	b.WriteString("\n# Changes.String\n")
	for _, c := range []struct {
		name string
		ch   Changes
	}{
		{"nothing", Changes{}},
		{"a selector of two labels, sorted", Changes{NodeSelector: map[string]string{"zone": "a", "pool": "ipc"}}},
		{"one requirement over several pools", Changes{AffinityTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"ipc", "ipc-large"}}}}}}},
		{"a term per pool, with a field and an Exists", Changes{AffinityTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}, {Key: "zone", Operator: corev1.NodeSelectorOpExists}}},
			{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}},
		}}},
		{"host namespaces turned off and sysctls dropped", Changes{HostIPC: ptr.To(false), HostUsers: ptr.To(false), DroppedSysctls: []string{"net.core.somaxconn", "net.ipv4.ip_forward"}}},
		{"everything at once", Changes{
			NodeSelector: map[string]string{"pool": "ipc"},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
			HostNetwork:  ptr.To(false),
		}},
	} {
		b.WriteString(c.name + ": " + c.ch.String() + "\n")
	}
	b.WriteString("\n# DescribeToleration\n")
	for _, c := range []struct {
		name string
		t    corev1.Toleration
	}{
		{"Equal", corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
		{"Equal by default", corev1.Toleration{Key: "dedicated", Value: "ipc"}},
		{"Exists on a key", corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		{"Exists on every key", corev1.Toleration{Operator: corev1.TolerationOpExists}},
		{"Exists on every key, one effect", corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		{"for a while", corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
	} {
		b.WriteString(c.name + ": " + DescribeToleration(c.t) + "\n")
	}
	b.WriteString("\n# Verdict of decisions no golden pod gets\n")
	for _, d := range []Decision{
		{},
		{Outcome: OutcomeUnplaceable, Reason: ReasonUnplaceable, Allowed: true},
		{Outcome: OutcomeChanged, Reason: ReasonTemplate, Allowed: true, Changes: Changes{HostIPC: ptr.To(false)}},
		{Outcome: OutcomeChanged, Reason: ReasonPlaced, Allowed: true, Audit: Audit{Pools: []string{"a", "b"}},
			Changes: Changes{AffinityTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}}}}}},
	} {
		b.WriteString(string(d.Outcome) + "/" + d.Reason + ": " + d.String() + "\n")
	}

	got := b.Bytes()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(describeGolden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(describeGolden)
	if err != nil {
		t.Fatalf("missing golden file (run UPDATE_GOLDEN=1 go test ./scheduling/): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale (run UPDATE_GOLDEN=1 go test ./scheduling/ and review the diff); got:\n%s", describeGolden, got)
	}
}
