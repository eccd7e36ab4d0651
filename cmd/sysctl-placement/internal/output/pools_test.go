package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

func sampleReport() []discovery.PoolStatus {
	return []discovery.PoolStatus{
		{Pool: scheduling.Pool{Name: "big", NodeSelector: map[string]string{"pool": "big"}, AllowedUnsafeSysctls: []string{"kernel.msg*"}},
			Source: discovery.SourceConfig, Problems: []discovery.Problem{{Kind: discovery.ProblemNoMatchingNodes, Detail: "nodeSelector pool=big matches no node"}}},
		{Pool: scheduling.Pool{Name: "ipc", NodeSelector: map[string]string{"pool": "ipc"}, AllowedUnsafeSysctls: []string{"kernel.sem"},
			Taints: []corev1.Taint{{Key: "dedicated", Value: "ipc", Effect: corev1.TaintEffectNoSchedule}}, KubeletVersion: "v1.37.2", KernelVersion: "6.8.0",
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "db"}}},
			Nodes: 3, Source: discovery.SourceConfigz, Problems: []discovery.Problem{{Kind: discovery.ProblemNodesDisagree, Detail: "ipc-2 differs"}}},
	}
}

func TestPoolsTableShowsEveryColumnAndTheProblems(t *testing.T) {
	var out bytes.Buffer
	if err := WritePools(&out, sampleReport(), "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "SOURCE", "ipc", "pool=ipc", "dedicated=ipc:NoSchedule", "v1.37.2", "kernel.sem", "configz", "NodesDisagree",
		"big", "<none>", "NAMESPACES", "team=db", "<all>", "Problems:", "ipc: NodesDisagree: ipc-2 differs", "big: NoMatchingNodes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPoolsJSONIsAStableList(t *testing.T) {
	var out bytes.Buffer
	if err := WritePools(&out, sampleReport(), "json"); err != nil {
		t.Fatal(err)
	}
	var got []Pool
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Name != "ipc" || got[1].Nodes != 3 || !got[1].Used || got[1].Source != "configz" || got[1].Problems[0].Kind != "NodesDisagree" ||
		got[1].NamespaceSelector.MatchLabels["team"] != "db" || got[0].NamespaceSelector != nil {
		t.Errorf("json = %+v", got)
	}
}
