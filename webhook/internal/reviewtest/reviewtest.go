// Package reviewtest holds what the webhook's packages test with: realistic pods as
// the API server sends them, an AdmissionReview around them, and a POST to a handler.
// Only tests import it.
package reviewtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const PostgresPod = `{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {"generateName": "postgres-", "labels": {"app": "postgres"}},
  "spec": {
    "securityContext": {"sysctls": [
      {"name": "kernel.shmmax", "value": "68719476736"},
      {"name": "kernel.sem", "value": "250 32000 100 128"}]},
    "containers": [{"name": "postgres", "image": "postgres:17"}]
  }
}`

const UnplaceablePod = `{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "mixed"},
  "spec": {
    "securityContext": {"sysctls": [
      {"name": "kernel.msgmax", "value": "65536"},
      {"name": "net.core.somaxconn", "value": "4096"}]},
    "containers": [{"name": "c", "image": "i"}]
  }
}`

const HostIPCDeployment = `{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "shm-cache"},
  "spec": {
    "selector": {"matchLabels": {"app": "shm"}},
    "template": {
      "metadata": {"labels": {"app": "shm"}},
      "spec": {
        "hostIPC": true,
        "securityContext": {"sysctls": [{"name": "kernel.shmmax", "value": "1"}]},
        "containers": [{"name": "c", "image": "i"}]
      }
    }
  }
}`

// DeploymentPod is a pod as the ReplicaSet controller creates it for a Deployment:
// generateName and ownerReferences, the template's labels, two IPC sysctls, and one
// container with ports, env and a volume. It is what the API server sends the
// webhooks for almost every pod that asks for sysctls.
const DeploymentPod = `{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {
    "generateName": "postgres-7d9f8c6b5-",
    "namespace": "team",
    "labels": {"app": "postgres", "pod-template-hash": "7d9f8c6b5"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "postgres-7d9f8c6b5",
      "uid": "5b1e6f3a-8c2d-4e7f-9a1b-2c3d4e5f6a7b", "controller": true, "blockOwnerDeletion": true}]
  },
  "spec": {
    "securityContext": {"sysctls": [
      {"name": "kernel.shmmax", "value": "68719476736"},
      {"name": "kernel.sem", "value": "250 32000 100 128"}]},
    "containers": [{
      "name": "postgres", "image": "postgres:17",
      "ports": [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}],
      "env": [
        {"name": "POSTGRES_DB", "value": "shop"},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "postgres", "key": "password"}}}],
      "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
      "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
      "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
      "imagePullPolicy": "IfNotPresent"
    }],
    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "10Gi"}}],
    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0
  }
}`

// ReplicaSetPod is unplaceable (kernel.msgmax and net.core.somaxconn: no pool allows
// both) and owned by a ReplicaSet.
const ReplicaSetPod = `{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {"generateName": "web-7d9f-", "ownerReferences": [
    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "5b1c7a52-0000-4000-8000-000000000001", "controller": true}]},
  "spec": {
    "securityContext": {"sysctls": [
      {"name": "kernel.msgmax", "value": "65536"},
      {"name": "net.core.somaxconn", "value": "4096"}]},
    "containers": [{"name": "c", "image": "i"}]
  }
}`

// Options vary the AdmissionReview around the object.
type Options struct {
	// Namespace is "team" when empty.
	Namespace string
	// Kind is a Pod's when empty.
	Kind metav1.GroupVersionKind
	// Operation is CREATE when empty.
	Operation admissionv1.Operation
	DryRun    bool
}

// PodKind is the GroupVersionKind of a Pod.
func PodKind() metav1.GroupVersionKind { return metav1.GroupVersionKind{Version: "v1", Kind: "Pod"} }

// JSON wraps object (JSON) in an admission.k8s.io/v1 AdmissionReview.
func JSON(tb testing.TB, object string, o Options) []byte {
	tb.Helper()
	if o.Namespace == "" {
		o.Namespace = "team"
	}
	if o.Kind.Kind == "" {
		o.Kind = PodKind()
	}
	if o.Operation == "" {
		o.Operation = admissionv1.Create
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "0d2c6b5e-6b58-4f5c-9a4e-3b1f0a7e1c11",
			Kind:      o.Kind,
			Resource:  metav1.GroupVersionResource{Version: o.Kind.Version, Resource: "pods"},
			Namespace: o.Namespace,
			Operation: o.Operation,
			DryRun:    &o.DryRun,
			Object:    runtime.RawExtension{Raw: []byte(object)},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Post sends body to h as the API server does and returns the recorder.
func Post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// PodWithSysctls is a pod (JSON) asking for the named sysctls.
func PodWithSysctls(tb testing.TB, names []string) string {
	tb.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hostile-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	for _, n := range names {
		pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
	}
	b, err := json.Marshal(&pod)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// AcceptLocal is n made-up net.ipv4.conf.<name>.accept_local sysctls, which no pool
// of the example configuration allows.
func AcceptLocal(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "net.ipv4.conf.if" + strconv.Itoa(i) + ".accept_local"
	}
	return names
}

// EquivalenceCases are AdmissionReviews, by what they show, that the review
// package's single decode must answer exactly as kubewebhook's own handler does:
// the API server's reviews and the odd ones a hand-written client may send.
func EquivalenceCases(tb testing.TB) map[string][]byte {
	tb.Helper()
	deployment := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	withUID := strings.Replace(HostIPCDeployment, `"name": "shm-cache"`, `"name": "shm-cache", "uid": "6f1c0d3e-0000-4000-8000-000000000002"`, 1)
	return map[string][]byte{
		"a Deployment's pod":                  JSON(tb, DeploymentPod, Options{}),
		"a dry run":                           JSON(tb, DeploymentPod, Options{DryRun: true}),
		"an unplaceable pod (denied)":         JSON(tb, UnplaceablePod, Options{}),
		"a controller's unplaceable pod":      JSON(tb, ReplicaSetPod, Options{}),
		"a namespace that has not opted in":   JSON(tb, PostgresPod, Options{Namespace: "other"}),
		"a pod update":                        JSON(tb, PostgresPod, Options{Operation: admissionv1.Update}),
		"a delete":                            JSON(tb, PostgresPod, Options{Operation: admissionv1.Delete}),
		"a Deployment created with hostIPC":   JSON(tb, HostIPCDeployment, Options{Kind: deployment}),
		"a Deployment updated with hostIPC":   JSON(tb, withUID, Options{Kind: deployment, Operation: admissionv1.Update}),
		"a ConfigMap":                         JSON(tb, `{"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}`, Options{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}}),
		"a pod whose sysctls are not a list":  JSON(tb, `{"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"sysctls": "x"}}}`, Options{}),
		"a pod whose apiVersion is malformed": JSON(tb, `{"apiVersion": "a/b/c", "kind": "Pod"}`, Options{}),
		"a request with no object":            []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"team"}}`),
		"a v1beta1 review":                    bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1),
		"a v1beta1 review that is denied":     bytes.Replace(JSON(tb, UnplaceablePod, Options{}), []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1),
		"a second Kind key (kubewebhook reads it case-insensitively)": bytes.Replace(JSON(tb, DeploymentPod, Options{}),
			[]byte(`"request":`), []byte(`"Kind":"Other","request":`), 1),
		"a second object key":           bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"object":`), []byte(`"object":{"metadata":{"labels":{"x":"y"}}},"object":`), 1),
		"a Kind with a Kelvin sign":     bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"request":`), []byte(`"\u212aind":"Other","request":`), 1),
		"invalid UTF-8 in a label":      bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"postgres"`), []byte("\"post\xffgres\""), 1),
		"a sysctl name with <, > and &": JSON(tb, strings.Replace(UnplaceablePod, "kernel.msgmax", "kernel.<msg>&max", 1), Options{}),
		"a repeated uid":                bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"operation":`), []byte(`"uid":"second","operation":`), 1),
		"a key spelled with an escape":  bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"namespace":"team"`), []byte(`"n\u0061mespace":"team"`), 1),
		"a response that is malformed":  bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"request":`), []byte(`"response":{"allowed":"yes"},"request":`), 1),
		"a userInfo that is malformed":  bytes.Replace(JSON(tb, DeploymentPod, Options{}), []byte(`"operation":`), []byte(`"userInfo":{"groups":"g"},"operation":`), 1),
	}
}

// CheckSameAnswers sends body to ours and theirs (the mutating webhook's handler,
// then the validating one's) and wants the same status, content type and
// AdmissionReview (the same bytes, but for how JSON escapes strings: encoding/json
// writes < as \u003c, the response writer as <).
func CheckSameAnswers(t *testing.T, ours, theirs [2]http.Handler, body []byte) {
	t.Helper()
	for i, name := range []string{"mutating", "validating"} {
		o, th := Post(ours[i], body), Post(theirs[i], body)
		same := o.Code == th.Code && o.Header().Get("Content-Type") == th.Header().Get("Content-Type")
		if same && !bytes.Equal(o.Body.Bytes(), th.Body.Bytes()) {
			var or, tr admissionv1.AdmissionReview
			same = json.Unmarshal(o.Body.Bytes(), &or) == nil && json.Unmarshal(th.Body.Bytes(), &tr) == nil && reflect.DeepEqual(or, tr)
		}
		if !same {
			t.Fatalf("%s webhook: the single decode answers\n%d %s\nkubewebhook's handler answers\n%d %s",
				name, o.Code, o.Body.String(), th.Code, th.Body.String())
		}
	}
}
