package namespaces

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func TestCache(t *testing.T) {
	t.Run("the trimmed namespace keeps what Plan reads", func(t *testing.T) {
		in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name:   "team-a",
			Labels: map[string]string{"team": "a"},
			Annotations: map[string]string{
				scheduling.AnnotationEnabled:                       "true",
				scheduling.AnnotationTolerationsWhitelist:          `[{"key":"dedicated","operator":"Exists"}]`,
				"scheduler.alpha.kubernetes.io/defaultTolerations": `[]`,
				"kubectl.kubernetes.io/last-applied-configuration": `{"big":"blob"}`,
			},
		}}
		out, err := trimNamespace(in)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*metav1.PartialObjectMetadata).Annotations
		want := map[string]string{
			scheduling.AnnotationEnabled:              "true",
			scheduling.AnnotationTolerationsWhitelist: `[{"key":"dedicated","operator":"Exists"}]`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("annotations kept: %v, want %v", got, want)
		}
	})
}
