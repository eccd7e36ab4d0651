package webhook

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// checkPatchIsTheJSONOfItsOperations wants b's hand-written patch to mean what
// encoding/json makes of b.ops.
func checkPatchIsTheJSONOfItsOperations(t *testing.T, b *patchBuilder) {
	t.Helper()
	got, err := b.marshal()
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(b.ops)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ops) == 0 {
		want = emptyPatch
	}
	var gotValue, wantValue any
	if err := json.Unmarshal(got, &gotValue); err != nil {
		t.Fatalf("the patch is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal(want, &wantValue); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotValue, wantValue) {
		t.Fatalf("the patch says\n%s\nencoding/json says\n%s", got, want)
	}
}

func TestThePatchIsTheJSONOfItsOperations(t *testing.T) {
	compiled := goldenConfig(t)
	for name, in := range readGoldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			ns := scheduling.Namespace{Name: in.Namespace.Name, Labels: in.Namespace.Labels, Annotations: in.Namespace.Annotations}
			object, kind := asPodObject(in)
			obj, err := review.DecodeObject([]byte(object), kind)
			if err != nil {
				t.Fatal(err)
			}
			d := scheduling.Plan(scheduling.Input{Pod: obj.Pod, Namespace: ns, Config: compiled, Template: obj.Template})
			var b patchBuilder
			b.addSpecChanges(obj.Paths, &obj.Pod.Spec, &d.Changes)
			b.addMetadataEntry(obj.Paths.Metadata, "annotations", nil, scheduling.AnnotationPlacement, `{"pools":["a"]}`)
			b.addMetadataEntry(obj.Paths.Metadata, "labels", map[string]string{"x": "y"}, scheduling.LabelPlaced, "true")
			b.addMetadataEntry(obj.Paths.Metadata, "labels", map[string]string{"x": "y"}, "b/c~d", "e")
			checkPatchIsTheJSONOfItsOperations(t, &b)
		})
	}
	seconds := int64(30)
	for name, value := range map[string]any{
		"a toleration with every field":  corev1.Toleration{Key: "k", Operator: corev1.TolerationOpEqual, Value: "v", Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
		"a toleration with only seconds": []corev1.Toleration{{TolerationSeconds: &seconds}, {}},
		"strings that need escaping":     map[string]string{"<a>&\"\\": "\u2028\x01\xff", "": ""},
		"false":                          false,
		"a nil map":                      map[string]string(nil),
		"a nil list":                     []corev1.Toleration(nil),
		"another type":                   &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			var b patchBuilder
			b.add("/spec/x", value)
			b.remove("/spec/y")
			checkPatchIsTheJSONOfItsOperations(t, &b)
		})
	}
}
