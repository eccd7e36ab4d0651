package scheduling

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// benchConfig builds n pools: every fourth allows all the IPC and net sysctls of the
// benchmark pod (so placement needs an affinity over several pools), the others allow
// only part of them, and every pool carries a taint.
func benchConfig(b *testing.B, n int) *Compiled {
	pools := make([]Pool, n)
	for i := range pools {
		allowed := []string{"kernel.shm*", "kernel.sem"}
		if i%4 == 0 {
			allowed = append(allowed, "kernel.msg*", "net.core.somaxconn")
		}
		pools[i] = Pool{
			Name:                 fmt.Sprintf("pool-%d", i),
			NodeSelector:         map[string]string{"pool": fmt.Sprintf("pool-%d", i)},
			Taints:               []corev1.Taint{{Key: "dedicated", Value: fmt.Sprintf("p%d", i), Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls: allowed,
			KubeletVersion:       "1.37.0",
		}
	}
	c, err := Compile(&PlacementConfig{Pools: pools})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkPlan(b *testing.B) {
	pod := newPod(sysctls("kernel.shmmax", "kernel.sem", "kernel.msgmax", "net.core.somaxconn", "net.ipv4.tcp_keepalive_time"))
	ns := enabledNS("team-a", nil)
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("pools=%d", n), func(b *testing.B) {
			in := Input{Pod: pod, Namespace: ns, Config: benchConfig(b, n)}
			if d := Plan(in); d.Outcome != OutcomeChanged {
				b.Fatalf("benchmark pod is not placed: %+v", d)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				Plan(in)
			}
		})
	}
}

// BenchmarkPlanAlreadyPlaced measures the reinvocation path: a pod whose own
// nodeSelector and tolerations already keep it on an allowing pool.
func BenchmarkPlanAlreadyPlaced(b *testing.B) {
	pod := newPod(sysctls("kernel.shmmax", "kernel.sem", "kernel.msgmax", "net.core.somaxconn", "net.ipv4.tcp_keepalive_time"),
		nodeSelector("pool", "pool-4"), tolerations(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists}))
	in := Input{Pod: pod, Namespace: enabledNS("team-a", nil), Config: benchConfig(b, 10)}
	if d := Plan(in); d.Reason != ReasonAlreadyPlaced {
		b.Fatalf("benchmark pod is not already placed: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		Plan(in)
	}
}
