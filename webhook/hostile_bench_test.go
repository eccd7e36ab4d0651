package webhook

import (
	"testing"
)

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
