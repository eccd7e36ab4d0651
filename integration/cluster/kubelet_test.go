package cluster

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/sysctl"
)

// These tests need no control plane: they check that a pool's simulated kubelet
// decides like the kubelet it stands for.

func TestSafeSysctlsFollowTheNodeKernel(t *testing.T) {
	modern, err := safeSysctlsForKernel(t.Context(), "6.8.0-1015-gcp")
	if err != nil {
		t.Fatal(err)
	}
	if len(modern) != 14 {
		t.Errorf("a v1.37 kubelet on kernel 6.8 allows %d safe sysctls, want all 14: %v", len(modern), modern)
	}

	old, err := safeSysctlsForKernel(t.Context(), "4.4.0")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(old, "net.ipv4.tcp_keepalive_time") {
		t.Errorf("kernel 4.4 predates a namespaced net.ipv4.tcp_keepalive_time (4.5), yet it is allowed: %v", old)
	}
	if !slices.Contains(old, "kernel.shm_rmid_forced") {
		t.Errorf("kernel.shm_rmid_forced has no minimum kernel, yet kernel 4.4 does not allow it: %v", old)
	}
}

func TestPoolKubeletsAdmitExactlyWhatTheirAllowlistAllows(t *testing.T) {
	pools := map[string]PoolSpec{}
	for _, p := range DefaultPools() {
		p.defaults()
		pools[p.Name] = p
	}
	tests := []struct {
		name    string
		pool    string
		sysctls []string
		hostIPC bool
		want    string // "" when admitted, else the rejection message
	}{
		{name: "the general pool admits a pod without sysctls", pool: "general"},
		{name: "the general pool admits a safe sysctl", pool: "general", sysctls: []string{"net.ipv4.tcp_syncookies"}},
		{name: "the general pool rejects kernel.shmmax", pool: "general", sysctls: []string{"kernel.shmmax", "kernel.sem"},
			want: `forbidden sysctl: "kernel.shmmax" not allowlisted`},
		{name: "the ipc pool admits kernel.shmmax and kernel.sem", pool: "ipc", sysctls: []string{"kernel.shmmax", "kernel.sem"}},
		{name: "the ipc pool rejects kernel.shmmax with hostIPC", pool: "ipc", sysctls: []string{"kernel.shmmax"}, hostIPC: true,
			want: `forbidden sysctl: "kernel.shmmax" not allowed with host IPC enabled`},
		{name: "the ipc pool rejects net.core.somaxconn", pool: "ipc", sysctls: []string{"net.core.somaxconn"},
			want: `forbidden sysctl: "net.core.somaxconn" not allowlisted`},
		{name: "the net pool admits net.core.somaxconn and a tcp_ sysctl in slash form", pool: "net",
			sysctls: []string{"net.core.somaxconn", "net/ipv4/tcp_max_syn_backlog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := pools[tt.pool]
			safe, err := safeSysctlsForKernel(t.Context(), spec.KernelVersion)
			if err != nil {
				t.Fatal(err)
			}
			allowlist, err := sysctl.NewAllowlist(append(safe, spec.AllowedUnsafeSysctls...))
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{Spec: corev1.PodSpec{HostIPC: tt.hostIPC, SecurityContext: &corev1.PodSecurityContext{}}}
			for _, s := range tt.sysctls {
				pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: s, Value: "1"})
			}
			got := allowlist.Admit(t.Context(), &lifecycle.PodAdmitAttributes{Pod: pod, Operation: lifecycle.AddOperation})
			switch {
			case tt.want == "" && !got.Admit:
				t.Errorf("rejected: %s: %s", got.Reason, got.Message)
			case tt.want != "" && got.Admit:
				t.Errorf("admitted, want rejection %q", tt.want)
			case tt.want != "" && (got.Reason != sysctl.ForbiddenReason || got.Message != tt.want):
				t.Errorf("rejected with %s: %q, want %s: %q", got.Reason, got.Message, sysctl.ForbiddenReason, tt.want)
			}
		})
	}
}

func TestAKubeletRefusesPatternsThatAreNotNamespaced(t *testing.T) {
	_, err := startKubelet(t.Context(), nil, &Pool{Spec: PoolSpec{
		Name: "bad", Nodes: 1, KernelVersion: DefaultKernelVersion, AllowedUnsafeSysctls: []string{"kernel.panic"},
	}})
	if err == nil {
		t.Fatal("a kubelet allowing kernel.panic started; a real one refuses to")
	}
}
