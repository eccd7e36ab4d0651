package webhook

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPodOf(t *testing.T) {
	cases := map[string]struct {
		doc          string
		fromTemplate bool
		wantInPod    string
	}{
		"a Pod is its own pod": {
			`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}`, false, `"name":"p"`},
		"a CronJob's pod comes from its job template and keeps unknown fields": {
			`{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"a":"b"}},"spec":{"futureField":1}}}}}}`,
			true, `"futureField":1`},
		"a PodTemplate's pod comes from its top-level template": {
			`{"apiVersion":"v1","kind":"PodTemplate","metadata":{"name":"t"},"template":{"metadata":{"labels":{"x":"y"}},"spec":{}}}`, true, `"labels":{"x":"y"}`},
		"a ReplicationController without a template makes an empty pod": {
			`{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"r"},"spec":{}}`, true, `"spec":{}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod, fromTemplate, err := PodOf([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			var tm struct{ APIVersion, Kind string }
			if err := json.Unmarshal(pod, &tm); err != nil || tm.Kind != "Pod" || tm.APIVersion != "v1" {
				t.Errorf("PodOf = %s; want a v1 Pod", pod)
			}
			if fromTemplate != tc.fromTemplate || !strings.Contains(string(pod), tc.wantInPod) {
				t.Errorf("PodOf = %s, fromTemplate %v; want %q in it and fromTemplate %v", pod, fromTemplate, tc.wantInPod, tc.fromTemplate)
			}
		})
	}
	if _, _, err := PodOf([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)); err == nil {
		t.Error("a kind the webhook does not handle must be an error")
	}
}
