package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

func TestMutate(t *testing.T) {
	t.Run("a pod is placed on the pool that allows its sysctls", func(t *testing.T) {
		env := newTestEnv(t, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{})))
		if !resp.Allowed {
			t.Fatalf("mutating response not allowed: %+v", resp.Result)
		}
		pod := applyPatch(t, postgresPod, resp)

		if got := dig(pod, "spec", "nodeSelector"); !reflect.DeepEqual(got, map[string]any{"sysctl-placement.io/pool": "ipc"}) {
			t.Errorf("nodeSelector = %v, want the ipc pool's selector", got)
		}
		wantToleration := map[string]any{"key": "dedicated", "operator": "Equal", "value": "ipc", "effect": "NoSchedule"}
		if got := dig(pod, "spec", "tolerations"); !reflect.DeepEqual(got, []any{wantToleration}) {
			t.Errorf("tolerations = %v, want exactly %v", got, wantToleration)
		}
		if got := dig(pod, "metadata", "labels"); !reflect.DeepEqual(got, map[string]any{"app": "postgres", scheduling.LabelPlaced: "true"}) {
			t.Errorf("labels = %v: the user's label must stay and the placed label be added", got)
		}
		auditJSON, _ := dig(pod, "metadata", "annotations", scheduling.AnnotationPlacement).(string)
		var audit scheduling.Audit
		if err := json.Unmarshal([]byte(auditJSON), &audit); err != nil {
			t.Fatalf("placement annotation %q is not the audit JSON: %v", auditJSON, err)
		}
		if !reflect.DeepEqual(audit.Pools, []string{"ipc"}) || audit.NodeSelector["sysctl-placement.io/pool"] != "ipc" || len(audit.Tolerations) != 1 {
			t.Errorf("audit = %+v, want pool ipc with its selector and one toleration", audit)
		}
		if len(resp.Warnings) == 0 {
			t.Fatal("a placement must be reported in an admission warning")
		}
		for _, w := range resp.Warnings {
			if !strings.HasPrefix(w, "sysctl-placement: ") || len(w) > 120 {
				t.Errorf("warning %q must start with \"sysctl-placement: \" and be at most 120 characters", w)
			}
		}
	})

	t.Run("fields this build does not know are never removed", func(t *testing.T) {
		// A pod from a newer API server: fields at the pod, spec, container and
		// securityContext level that k8s.io/api v0.37 has never heard of.
		future := `{
	  "apiVersion": "v1", "kind": "Pod",
	  "metadata": {"generateName": "future-", "futureMeta": {"a": 1}},
	  "spec": {
	    "futureSpecField": {"mode": "x", "list": [1, 2]},
	    "securityContext": {"futureSecurity": true, "sysctls": [{"name": "kernel.shmmax", "value": "1"}]},
	    "tolerations": [{"key": "k", "operator": "Exists", "futureTolerationField": "y"}],
	    "containers": [{"name": "c", "image": "i", "futureContainerField": [3]}]
	  },
	  "futureTopLevel": "z"
	}`
		env := newTestEnv(t, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, future, reviewOptions{})))
		for _, op := range patchOps(t, resp) {
			if op.Op != "add" {
				t.Errorf("patch has %s %s: only additions are expected", op.Op, op.Path)
			}
		}
		pod := applyPatch(t, future, resp)
		for _, path := range [][]any{
			{"metadata", "futureMeta", "a"},
			{"spec", "futureSpecField", "mode"},
			{"spec", "securityContext", "futureSecurity"},
			{"spec", "tolerations", 0, "futureTolerationField"},
			{"spec", "containers", 0, "futureContainerField"},
			{"futureTopLevel"},
		} {
			if dig(pod, path...) == nil {
				t.Errorf("unknown field %v was lost by the patch", path)
			}
		}
		if got := dig(pod, "spec", "nodeSelector", "sysctl-placement.io/pool"); got != "ipc" {
			t.Errorf("the pod was not placed: nodeSelector pool = %v", got)
		}
		if got := dig(pod, "spec", "tolerations", 1, "value"); got != "ipc" {
			t.Errorf("the ipc toleration must be appended after the user's: tolerations = %v", dig(pod, "spec", "tolerations"))
		}
	})

	t.Run("namespaces that have not opted in are left alone", func(t *testing.T) {
		env := newTestEnv(t, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{Namespace: "other"})))
		if len(patchOps(t, resp)) != 0 || len(resp.Warnings) != 0 {
			t.Fatalf("namespace without %s got patch %s warnings %v", scheduling.AnnotationEnabled, resp.Patch, resp.Warnings)
		}
	})

	t.Run("hostIPC is stripped from a deployment template and nothing is placed", func(t *testing.T) {
		env := newTestEnv(t, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, hostIPCDeployment, reviewOptions{
			Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		})))
		ops := patchOps(t, resp)
		want := []operation{{Op: "add", Path: "/spec/template/spec/hostIPC", Value: false}}
		if !reflect.DeepEqual(ops, want) {
			t.Fatalf("patch = %+v, want only %+v (templates are not placed)", ops, want)
		}
		if len(resp.Warnings) == 0 {
			t.Error("stripping hostIPC must be reported in a warning")
		}
	})
}

func TestDryRunGetsTheSameAnswerAsARealRequest(t *testing.T) {
	env := newTestEnv(t, nil)
	real := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{})))
	dry := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{DryRun: true})))
	if !bytes.Equal(real.Patch, dry.Patch) || !reflect.DeepEqual(real.Warnings, dry.Warnings) {
		t.Fatalf("dry-run answer differs:\nreal %s %v\ndry  %s %v", real.Patch, real.Warnings, dry.Patch, dry.Warnings)
	}
}

func TestValidate(t *testing.T) {
	t.Run("a pod no pool can run is denied with the reason per pool", func(t *testing.T) {
		env := newTestEnv(t, nil)
		mresp := response(t, post(env.mutate, reviewJSON(t, unplaceablePod, reviewOptions{})))
		for _, op := range patchOps(t, mresp) {
			if strings.Contains(op.Path, "nodeSelector") || strings.Contains(op.Path, "affinity") {
				t.Errorf("an unplaceable pod must not be placed: %s %s", op.Op, op.Path)
			}
		}
		vresp := response(t, post(env.validate, reviewJSON(t, unplaceablePod, reviewOptions{})))
		if vresp.Allowed {
			t.Fatal("a pod no pool can run must be denied under policy deny")
		}
		msg := vresp.Result.Message
		for _, want := range []string{"kernel.msgmax", "net.core.somaxconn", "ipc", "net", "general"} {
			if !strings.Contains(msg, want) {
				t.Errorf("denial %q does not name %q", msg, want)
			}
		}
	})

	t.Run("an unplaceable pod is admitted when the namespace says warn", func(t *testing.T) {
		env := newTestEnv(t, map[string]string{scheduling.AnnotationUnplaceable: "warn"})
		mresp := response(t, post(env.mutate, reviewJSON(t, unplaceablePod, reviewOptions{})))
		if len(mresp.Warnings) == 0 {
			t.Error("policy warn must warn about the unplaceable pod")
		}
		vresp := response(t, post(env.validate, reviewJSON(t, unplaceablePod, reviewOptions{})))
		if !vresp.Allowed {
			t.Fatalf("policy warn must admit: %+v", vresp.Result)
		}
	})
}

func TestValidateAdmitsAPlacedPod(t *testing.T) {
	env := newTestEnv(t, nil)
	mresp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{})))
	placed, _ := json.Marshal(applyPatch(t, postgresPod, mresp))
	vresp := response(t, post(env.validate, reviewJSON(t, string(placed), reviewOptions{})))
	if !vresp.Allowed {
		t.Fatalf("the placed pod was denied: %+v", vresp.Result)
	}
	again := response(t, post(env.mutate, reviewJSON(t, string(placed), reviewOptions{})))
	if len(patchOps(t, again)) != 0 {
		t.Fatalf("reinvocation on the placed pod patched again: %s", again.Patch)
	}
}

func TestMutateStripsHostIPCInEveryWorkloadKind(t *testing.T) {
	spec := `{"hostIPC": true, "securityContext": {"sysctls": [{"name": "kernel.sem", "value": "1 2 3 4"}]}, "containers": [{"name": "c", "image": "i"}]}`
	template := `{"metadata": {}, "spec": ` + spec + `}`
	cases := map[string]struct {
		kind   metav1.GroupVersionKind
		object string
		path   string
	}{
		"a StatefulSet": {metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
			`{"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": ` + template + `}}`, "/spec/template/spec/hostIPC"},
		"a DaemonSet": {metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"},
			`{"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": ` + template + `}}`, "/spec/template/spec/hostIPC"},
		"a ReplicaSet": {metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"},
			`{"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": ` + template + `}}`, "/spec/template/spec/hostIPC"},
		"a Job": {metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"},
			`{"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": ` + template + `}}`, "/spec/template/spec/hostIPC"},
		"a CronJob": {metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"},
			`{"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": ` + template + `}}}}`, "/spec/jobTemplate/spec/template/spec/hostIPC"},
		"a PodTemplate": {metav1.GroupVersionKind{Version: "v1", Kind: "PodTemplate"},
			`{"apiVersion": "v1", "kind": "PodTemplate", "template": ` + template + `}`, "/template/spec/hostIPC"},
		"a ReplicationController": {metav1.GroupVersionKind{Version: "v1", Kind: "ReplicationController"},
			`{"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": ` + template + `}}`, "/spec/template/spec/hostIPC"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			resp := response(t, post(env.mutate, reviewJSON(t, tc.object, reviewOptions{Kind: tc.kind})))
			want := []operation{{Op: "add", Path: tc.path, Value: false}}
			if ops := patchOps(t, resp); !reflect.DeepEqual(ops, want) {
				t.Fatalf("patch = %+v, want %+v", ops, want)
			}
			if got := dig(applyPatch(t, tc.object, resp)); got == nil {
				t.Fatal("patched object does not decode")
			}
		})
	}
}

func TestMutateAdmitsObjectsOfOtherKindsUnchanged(t *testing.T) {
	env := newTestEnv(t, nil)
	cm := `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}`
	resp := response(t, post(env.mutate, reviewJSON(t, cm, reviewOptions{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}})))
	if !resp.Allowed || len(patchOps(t, resp)) != 0 {
		t.Fatalf("a ConfigMap must be admitted unchanged, got allowed=%v patch=%s", resp.Allowed, resp.Patch)
	}
}

func TestMutateAdmitsPodUpdatesUnchanged(t *testing.T) {
	env := newTestEnv(t, nil)
	resp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{Operation: admissionv1.Update})))
	if len(patchOps(t, resp)) != 0 {
		t.Fatalf("pod placement fields are immutable after creation; got patch %s", resp.Patch)
	}
}

func TestBadRequestsGetAClearClientError(t *testing.T) {
	env := newTestEnv(t, nil)
	noRequest := `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}`
	cases := map[string]struct {
		method      string
		contentType string
		body        []byte
		status      int
		mentions    string
	}{
		"an empty body":                      {http.MethodPost, "application/json", nil, http.StatusBadRequest, "empty"},
		"a body that is not JSON":            {http.MethodPost, "application/json", []byte("not json"), http.StatusBadRequest, "not a JSON AdmissionReview"},
		"a body over the limit":              {http.MethodPost, "application/json", bytes.Repeat([]byte(" "), int(review.MaxRequestBodyBytes)+1), http.StatusRequestEntityTooLarge, "larger than"},
		"a wrong content type":               {http.MethodPost, "text/plain", []byte(noRequest), http.StatusUnsupportedMediaType, "application/json"},
		"an AdmissionReview with no request": {http.MethodPost, "application/json", []byte(noRequest), http.StatusBadRequest, "no request"},
		"another kind of document":           {http.MethodPost, "application/json", []byte(`{"apiVersion": "v1", "kind": "Pod"}`), http.StatusBadRequest, "AdmissionReview"},
		"a GET":                              {http.MethodGet, "application/json", nil, http.StatusMethodNotAllowed, "POST"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, h := range []http.Handler{env.mutate, env.validate} {
				req := httptest.NewRequest(tc.method, "/mutate", bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", tc.contentType)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.mentions) {
					t.Errorf("got %d %q, want %d mentioning %q", rec.Code, rec.Body.String(), tc.status, tc.mentions)
				}
			}
		})
	}
}

func TestMalformedObject(t *testing.T) {
	t.Run("a malformed object is denied by the validator and never crashes", func(t *testing.T) {
		env := newTestEnv(t, nil)
		broken := `{"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"sysctls": "not-a-list"}}}`
		mresp := response(t, post(env.mutate, reviewJSON(t, broken, reviewOptions{})))
		if len(patchOps(t, mresp)) != 0 || len(mresp.Warnings) == 0 {
			t.Errorf("mutator: want no patch and a warning, got patch %s warnings %v", mresp.Patch, mresp.Warnings)
		}
		vresp := response(t, post(env.validate, reviewJSON(t, broken, reviewOptions{})))
		if vresp.Allowed || !strings.Contains(vresp.Result.Message, "could not decode") {
			t.Errorf("validator: want a denial explaining the decode error, got %+v", vresp.Result)
		}
	})
}

func TestEmptyPatch(t *testing.T) {
	t.Run("a response without changes carries an empty patch not a missing one", func(t *testing.T) {
		// The API server refuses "response.patchType but not response.patch", and
		// kubewebhook always sets patchType on a mutating response.
		env := newTestEnv(t, nil)
		for name, body := range map[string][]byte{
			"a namespace that has not opted in": reviewJSON(t, postgresPod, reviewOptions{Namespace: "other"}),
			"an unplaceable pod":                reviewJSON(t, unplaceablePod, reviewOptions{}),
			"a pod update":                      reviewJSON(t, postgresPod, reviewOptions{Operation: admissionv1.Update}),
			"a malformed pod":                   reviewJSON(t, `{"apiVersion": "v1", "kind": "Pod", "spec": 1}`, reviewOptions{}),
		} {
			resp := response(t, post(env.mutate, body))
			if resp.PatchType != nil && string(resp.Patch) != "[]" {
				t.Errorf("%s: patchType %v with patch %q, want the empty patch []", name, *resp.PatchType, resp.Patch)
			}
		}
	})
}
