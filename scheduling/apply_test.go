package scheduling

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestApplyToANDsIntoEveryTerm(t *testing.T) {
	spec := corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			term(req("zone", corev1.NodeSelectorOpIn, "a")),
			term(req("zone", corev1.NodeSelectorOpIn, "b")),
		}},
	}}}
	ApplyTo(&spec, Changes{AffinityTerms: []corev1.NodeSelectorTerm{
		term(req("pool", corev1.NodeSelectorOpIn, "x")),
		term(req("pool", corev1.NodeSelectorOpIn, "y")),
	}})
	got := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	want := []corev1.NodeSelectorTerm{
		term(req("zone", corev1.NodeSelectorOpIn, "a"), req("pool", corev1.NodeSelectorOpIn, "x")),
		term(req("zone", corev1.NodeSelectorOpIn, "a"), req("pool", corev1.NodeSelectorOpIn, "y")),
		term(req("zone", corev1.NodeSelectorOpIn, "b"), req("pool", corev1.NodeSelectorOpIn, "x")),
		term(req("zone", corev1.NodeSelectorOpIn, "b"), req("pool", corev1.NodeSelectorOpIn, "y")),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
