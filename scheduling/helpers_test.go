package scheduling

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// loadTestConfig compiles testdata/config.yaml, the configuration every golden file
// and most table tests share.
func loadTestConfig(tb testing.TB) *Compiled {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Compile(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// enabledNS is an opted-in namespace with the given extra annotations (key, value
// pairs) and labels.
func enabledNS(name string, labels map[string]string, annotations ...string) Namespace {
	ann := map[string]string{AnnotationEnabled: "true"}
	for i := 0; i+1 < len(annotations); i += 2 {
		ann[annotations[i]] = annotations[i+1]
	}
	return Namespace{Name: name, Labels: labels, Annotations: ann}
}

type podOption func(*corev1.Pod)

func newPod(opts ...podOption) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team-a"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func sysctls(names ...string) podOption {
	return func(p *corev1.Pod) {
		if p.Spec.SecurityContext == nil {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{}
		}
		for _, n := range names {
			p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
		}
	}
}

func nodeSelector(kv ...string) podOption {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func tolerations(ts ...corev1.Toleration) podOption {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, ts...) }
}

func requiredTerms(terms ...corev1.NodeSelectorTerm) podOption {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

func term(reqs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: reqs}
}

func req(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func hostIPC(p *corev1.Pod)     { p.Spec.HostIPC = true }
func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }
func hostUsers(v bool) podOption {
	return func(p *corev1.Pod) { p.Spec.HostUsers = &v }
}
func podAnnotation(k, v string) podOption {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}
func nodeName(n string) podOption { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func boolPtr(b bool) *bool { return &b }

func tol(key, value string, effect corev1.TaintEffect) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpEqual, Value: value, Effect: effect}
}

// newPlanner prepares a planner the way Plan does before the step under test: the
// sysctls classified, the pod's required affinity parsed and the namespace's pool list
// read.
func newPlanner(cfg *Compiled, ns Namespace, pod *corev1.Pod) *planner {
	p := &planner{in: Input{Pod: pod, Namespace: ns, Config: cfg}, c: cfg, pod: pod}
	p.d.Allowed = true
	if pod.Spec.SecurityContext != nil {
		p.sysctls = classify(nil, pod.Spec.SecurityContext.Sysctls)
	}
	p.parseAffinity()
	p.poolList, p.hasPoolList = ns.Annotations[AnnotationPools]
	return p
}

// poolNames returns the names of the pools at the indexes.
func poolNames(cfg *Compiled, indexes []int) []string {
	names := []string{}
	for _, i := range indexes {
		names = append(names, cfg.pools[i].name)
	}
	return names
}
