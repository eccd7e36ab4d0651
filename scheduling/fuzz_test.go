package scheduling

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// FuzzPlan builds a pod from JSON and a namespace from a byte of settings, plans it
// against testdata/config.yaml and checks the promises of docs/design.md: Plan never
// panics, its message, warnings and audit record stay within their bounds, its output
// is idempotent, it never removes a user's nodeSelector entry,
// required affinity requirement or toleration, and it never widens the set of nodes
// (by labels) the pod may land on.
func FuzzPlan(f *testing.F) {
	cfg := loadTestConfig(f)
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*"+inputSuffix))
	if err != nil {
		f.Fatal(err)
	}
	for i, path := range inputs {
		c := readGoldenCase(f, path)
		data, err := json.Marshal(&c.Pod)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint16(i*37), c.Template)
	}
	// Shapes the golden pods lack: empty and field-only terms, odd operators, many terms.
	for _, pod := range []*corev1.Pod{
		newPod(sysctls("kernel.sem", "net.core.somaxconn"), requiredTerms(corev1.NodeSelectorTerm{}, term(req(gkePool, corev1.NodeSelectorOpExists)))),
		newPod(sysctls("net.core.somaxconn"), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpDoesNotExist)), term(req("zone", corev1.NodeSelectorOpGt, "3")))),
		newPod(sysctls("kernel.sem"), requiredTerms()),
		newPod(sysctls("kernel.sem"), nodeSelector("workload", "db"), requiredTerms(term(req("disk", corev1.NodeSelectorOpIn, "nvme", "ssd")))),
		newPod(sysctls("user.max_user_namespaces", "kernel.shmmax"), hostIPC, hostNetwork, hostUsers(true)),
	} {
		data, err := json.Marshal(pod)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range []uint16{0, 0x5ff, 0x2aa, 0x2aa | 2<<11, 0x5ff | 3<<11 | 2<<13 | 1<<15} {
			f.Add(data, s, false)
		}
	}
	f.Fuzz(func(t *testing.T, podJSON []byte, settings uint16, template bool) {
		var pod corev1.Pod
		if err := json.Unmarshal(podJSON, &pod); err != nil {
			return
		}
		ns := fuzzNamespace(settings)
		before := pod.DeepCopy()
		d := Plan(Input{Pod: &pod, Namespace: ns, Config: cfg, Template: template})
		if !reflect.DeepEqual(before, &pod) {
			t.Fatalf("Plan modified its input")
		}
		for _, w := range d.Warnings {
			if len(w) > maxWarningLen || !strings.HasPrefix(w, WarningPrefix) {
				t.Errorf("bad warning %q", w)
			}
		}
		if len(d.Warnings) > maxWarnings+1 || len(d.Message) > MaxMessageLength {
			t.Errorf("%d warnings and a message of %d bytes; want at most %d and %d", len(d.Warnings), len(d.Message), maxWarnings+1, MaxMessageLength)
		}
		if audit, err := json.Marshal(d.Audit); err != nil || len(audit) > 16<<10 {
			t.Errorf("audit record of %d bytes (%v); want at most 16 KiB", len(audit), err)
		}
		if (d.Outcome == OutcomeUnplaceable || d.Outcome == OutcomeConflict || d.Outcome == OutcomeForbidden || d.Outcome == OutcomeOverLimit) != (d.Message != "") && !d.Allowed {
			t.Errorf("a denial without a message: %+v", d)
		}
		out := pod.DeepCopy()
		ApplyTo(&out.Spec, d.Changes)

		again := Plan(Input{Pod: out, Namespace: ns, Config: cfg, Template: template})
		if !again.Changes.IsEmpty() {
			t.Fatalf("not idempotent: first %s/%s %+v, then %s/%s %+v", d.Outcome, d.Reason, d.Changes, again.Outcome, again.Reason, again.Changes)
		}
		if template && (len(d.Changes.NodeSelector) > 0 || len(d.Changes.AffinityTerms) > 0 || len(d.Changes.Tolerations) > 0) {
			t.Fatalf("a template was placed: %+v", d.Changes)
		}
		assertKeepsUserConstraints(t, &pod.Spec, &out.Spec)
		assertNeverWidens(t, cfg, &pod.Spec, &out.Spec)
	})
}

// fuzzNamespace maps settings bits onto the namespace annotations and labels Plan
// reads; the namespace is always opted in.
func fuzzNamespace(s uint16) Namespace {
	modes := []string{"", "strip", "drop-sysctls", "flag"}
	ann := map[string]string{AnnotationEnabled: "true"}
	set := func(key string, v string) {
		if v != "" {
			ann[key] = v
		}
	}
	set(AnnotationHostIPC, modes[s&3])
	set(AnnotationHostNetwork, modes[s>>2&3])
	set(AnnotationHostUsers, modes[s>>4&3])
	set(AnnotationUnplaceable, []string{"", "deny", "warn", "bogus"}[s>>6&3])
	set(AnnotationPools, []string{"", "db", "ipc-tuned, net-wide", "nope,"}[s>>8&3])
	labels := map[string]string{}
	if s>>10&1 == 1 {
		labels["team"] = "data"
	}
	// Pod Security: the enforce level, its version, and a warn level.
	if v := []string{"", "privileged", "baseline", "restricted"}[s>>11&3]; v != "" {
		labels[LabelPodSecurityEnforce] = v
	}
	if v := []string{"", "latest", "v1.28", "v1.0x"}[s>>13&3]; v != "" {
		labels[LabelPodSecurityEnforceVersion] = v
	}
	if s>>15&1 == 1 {
		labels[LabelPodSecurityWarn] = "restricted"
	}
	return Namespace{Name: "fuzz", Labels: labels, Annotations: ann}
}

func assertKeepsUserConstraints(t *testing.T, in, out *corev1.PodSpec) {
	t.Helper()
	for k, v := range in.NodeSelector {
		if got, ok := out.NodeSelector[k]; !ok || got != v {
			t.Fatalf("nodeSelector[%s] = %q was changed to %q", k, v, got)
		}
	}
	if len(out.Tolerations) < len(in.Tolerations) || len(in.Tolerations) > 0 && !reflect.DeepEqual(out.Tolerations[:len(in.Tolerations)], in.Tolerations) {
		t.Fatalf("tolerations were removed or rewritten: %+v -> %+v", in.Tolerations, out.Tolerations)
	}
	inTerms := requiredTermsOf(in)
	outTerms := requiredTermsOf(out)
	if len(inTerms) == 0 {
		return
	}
	// Every resulting term keeps every requirement of the input term it came from.
	for _, ot := range outTerms {
		found := false
		for _, it := range inTerms {
			if containsAll(ot.MatchExpressions, it.MatchExpressions) && containsAll(ot.MatchFields, it.MatchFields) {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("term %+v keeps no input term whole; input %+v", ot, inTerms)
		}
	}
}

func requiredTermsOf(spec *corev1.PodSpec) []corev1.NodeSelectorTerm {
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func containsAll(have, want []corev1.NodeSelectorRequirement) bool {
	for _, w := range want {
		if !hasRequirement(have, w) {
			return false
		}
	}
	return true
}

// assertNeverWidens checks synthetic nodes made from the pools' selectors, the pod's
// own nodeSelector and the values its affinity names: any node the output admits
// (by labels) the input admitted too.
func assertNeverWidens(t *testing.T, cfg *Compiled, in, out *corev1.PodSpec) {
	t.Helper()
	before := nodeaffinity.NewRequiredNodeAffinity(in.NodeSelector, in.Affinity)
	after := nodeaffinity.NewRequiredNodeAffinity(out.NodeSelector, out.Affinity)
	extras := []map[string]string{nil, in.NodeSelector}
	for _, term := range requiredTermsOf(in) {
		l := map[string]string{}
		for _, r := range term.MatchExpressions {
			switch {
			case len(r.Values) > 0:
				l[r.Key] = r.Values[0]
			case r.Operator == corev1.NodeSelectorOpExists:
				l[r.Key] = "x"
			}
		}
		extras = append(extras, l)
	}
	var bases []map[string]string
	bases = append(bases, nil)
	for _, p := range cfg.Pools() {
		bases = append(bases, p.NodeSelector)
	}
	for _, base := range bases {
		for _, extra := range extras {
			labels := map[string]string{}
			for k, v := range extra {
				labels[k] = v
			}
			for k, v := range base { // the pool's labels win: the node is in the pool
				labels[k] = v
			}
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels}}
			okAfter, _ := after.Match(node)
			okBefore, _ := before.Match(node)
			if okAfter && !okBefore {
				t.Fatalf("placement widened: node %v matches the output but not the input", labels)
			}
		}
	}
}

// TestFuzzCorpusIsReadable keeps the seed corpus in step with the golden inputs.
func TestFuzzCorpusIsReadable(t *testing.T) {
	if _, err := os.Stat(goldenDir); err != nil {
		t.Fatal(err)
	}
}
