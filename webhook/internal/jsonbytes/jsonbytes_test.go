package jsonbytes

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestValue(t *testing.T) {
	seconds := int64(30)
	for name, v := range map[string]any{
		"a toleration with every field means what encoding/json writes":           corev1.Toleration{Key: "k", Operator: corev1.TolerationOpEqual, Value: "v", Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
		"tolerations with only seconds or nothing mean what encoding/json writes": []corev1.Toleration{{TolerationSeconds: &seconds}, {}},
		"strings that need escaping mean what encoding/json writes":               map[string]string{"<a>&\"\\": "\u2028\x01", "": "", "b": "c"},
		"a map of one entry means what encoding/json writes":                      map[string]string{"k": "v"},
		"false is written":                          false,
		"a nil map is null":                         map[string]string(nil),
		"a nil list is null":                        []corev1.Toleration(nil),
		"any other type goes through encoding/json": &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Value(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			// The same JSON, but for how strings are escaped: encoding/json writes
			// < as \u003c, String as <.
			var gotValue, wantValue any
			if err := json.Unmarshal(got, &gotValue); err != nil {
				t.Fatalf("Value wrote no JSON: %v: %s", err, got)
			}
			if err := json.Unmarshal(want, &wantValue); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotValue, wantValue) {
				t.Errorf("Value wrote %s, encoding/json writes %s", got, want)
			}
		})
	}
	t.Run("invalid UTF-8 becomes U+FFFD as encoding/json writes it", func(t *testing.T) {
		want, _ := json.Marshal("a\xffb")
		if got := String(nil, "a\xffb"); string(got) != string(want) {
			t.Errorf("String wrote %s, encoding/json writes %s", got, want)
		}
	})
}
