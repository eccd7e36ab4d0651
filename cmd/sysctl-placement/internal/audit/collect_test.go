package audit

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestAuditPaging(t *testing.T) {
	const total, pageSize = 4500, 500
	client := fake.NewClientset()
	var limits []int64
	client.PrependReactor("list", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		opts := action.(k8stesting.ListActionImpl).ListOptions
		limits = append(limits, opts.Limit)
		start := 0
		if opts.Continue != "" {
			start, _ = strconv.Atoi(opts.Continue)
		}
		list := &corev1.PodList{}
		for i := start; i < min(start+int(opts.Limit), total); i++ {
			list.Items = append(list.Items, corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d", i)},
				Spec:       corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}}},
			})
		}
		if next := start + int(opts.Limit); next < total {
			list.Continue = strconv.Itoa(next)
		}
		return true, list, nil
	})
	var progress bytes.Buffer
	c := collector{client: client, pageSize: pageSize, progress: &progress}
	in, err := c.collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if in.Listed.Pods != total || len(in.pods) != total {
		t.Errorf("listed %d pods, kept %d; want %d", in.Listed.Pods, len(in.pods), total)
	}
	if len(limits) != total/pageSize {
		t.Errorf("pods were listed in %d requests, want %d pages", len(limits), total/pageSize)
	}
	for _, l := range limits {
		if l != pageSize {
			t.Errorf("a list asked for Limit %d, want %d", l, pageSize)
		}
	}
	if got := progress.String(); got != "audit: listed 2000 pods\naudit: listed 4000 pods\n" {
		t.Errorf("progress on stderr = %q", got)
	}
	if strings.Contains(progress.String(), "namespaces") {
		t.Error("small lists must not print progress")
	}
}
