package webhook

import (
	"encoding/json"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podWithSysctls is a pod (JSON) asking for the named sysctls.
func podWithSysctls(tb testing.TB, names []string) string {
	tb.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hostile-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	for _, n := range names {
		pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
	}
	b, err := json.Marshal(&pod)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// acceptLocal is n made-up net.ipv4.conf.<name>.accept_local sysctls, which no pool
// of the example configuration allows.
func acceptLocal(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "net.ipv4.conf.if" + strconv.Itoa(i) + ".accept_local"
	}
	return names
}

// BenchmarkHostilePod reviews, on both webhooks, the pod of issue 23: 55,000 made-up
// sysctls (3 MiB) no pool allows. Its -memprofile shows where such a pod's memory goes.
func BenchmarkHostilePod(b *testing.B) {
	env := newTestEnv(b, nil)
	body := reviewJSON(b, podWithSysctls(b, acceptLocal(55_000)), reviewOptions{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		post(env.mutate, body)
		post(env.validate, body)
	}
}
