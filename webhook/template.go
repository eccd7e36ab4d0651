package webhook

import (
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// PodOf returns the Pod an admitted document describes: the document itself for a Pod,
// or for a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
// PodTemplate, ReplicationController) a Pod made of its template's metadata and spec —
// what its controller will create, so it can be planned as the pods will be. Every field
// of the template is kept, including fields this build does not know. fromTemplate says
// which of the two it was; kinds the webhook does not handle are an error.
func PodOf(doc []byte) (pod json.RawMessage, fromTemplate bool, err error) {
	obj, err := review.DecodeObject(doc, metav1.GroupVersionKind{})
	if err != nil {
		return nil, false, err
	}
	if !obj.Template {
		return doc, false, nil
	}
	var tree map[string]any
	if err := json.Unmarshal(doc, &tree); err != nil {
		return nil, true, fmt.Errorf("could not decode the %s: %w", obj.Kind, err)
	}
	// The template sits where its metadata's parent is: "/spec/template" and so on.
	var template any = tree
	for _, key := range strings.Split(strings.TrimPrefix(strings.TrimSuffix(obj.Paths.Metadata, "/metadata"), "/"), "/") {
		m, _ := template.(map[string]any)
		template = m[key]
	}
	t, _ := template.(map[string]any)
	podDoc := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": t["metadata"], "spec": t["spec"]}
	if podDoc["metadata"] == nil {
		podDoc["metadata"] = map[string]any{}
	}
	if podDoc["spec"] == nil {
		podDoc["spec"] = map[string]any{}
	}
	out, err := json.Marshal(podDoc)
	return out, true, err
}
