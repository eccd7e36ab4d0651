package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// The engine's golden pods (scheduling/testdata) double as the webhook's: for each,
// the JSON patch the webhook sends, applied to the raw pod the way the API server
// does, must give exactly the pod that scheduling.ApplyTo gives on the typed pod.

const goldenDir = "../scheduling/testdata/golden"

type goldenInput struct {
	Namespace struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"namespace"`
	Template bool            `json:"template,omitempty"`
	Pod      json.RawMessage `json:"pod"`
}

func goldenConfig(t testing.TB) *scheduling.Compiled {
	t.Helper()
	data, err := os.ReadFile("../scheduling/testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Compile(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readGoldenInputs(t testing.TB) map[string]goldenInput {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.input.yaml"))
	if err != nil || len(paths) < 20 {
		t.Fatalf("want the engine's golden inputs in %s, found %d (%v)", goldenDir, len(paths), err)
	}
	inputs := map[string]goldenInput{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var in goldenInput
		if err := json.Unmarshal(j, &in); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		inputs[strings.TrimSuffix(filepath.Base(p), ".input.yaml")] = in
	}
	return inputs
}

// asPodObject turns a golden pod (or pod template) into the JSON of a Pod or a
// Deployment, as the API server would send it.
func asPodObject(in goldenInput) (object string, kind metav1.GroupVersionKind) {
	if in.Template {
		return `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": ` + string(in.Pod) + `}}`,
			metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	}
	return string(in.Pod), podKind()
}

// checkPatchMatchesApplyTo sends object through the mutating handler and compares the
// patched object's pod spec with ApplyTo of the engine's own decision.
func checkPatchMatchesApplyTo(t *testing.T, compiled *scheduling.Compiled, ns scheduling.Namespace, object string, kind metav1.GroupVersionKind) {
	t.Helper()
	cfg := Config{Config: config.NewStore(compiled), Namespaces: namespaces.Static{ns.Name: ns}}
	m, err := NewMutator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := review.NewHandler(review.HandlerConfig{Webhook: m})
	if err != nil {
		t.Fatal(err)
	}
	rec := post(h, reviewJSON(t, object, reviewOptions{Namespace: ns.Name, Kind: kind}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	resp := response(t, rec)

	obj, err := review.DecodeObject([]byte(object), kind)
	if err != nil {
		if len(patchOps(t, resp)) != 0 {
			t.Fatalf("an undecodable object was patched: %s", resp.Patch)
		}
		return
	}
	want := obj.Pod.DeepCopy()
	d := scheduling.Plan(scheduling.Input{Pod: obj.Pod, Namespace: ns, Config: compiled, Template: obj.Template})
	scheduling.ApplyTo(&want.Spec, d.Changes)

	patched := []byte(object)
	if len(resp.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v", err)
		}
		if patched, err = p.Apply(patched); err != nil {
			t.Fatalf("the patch does not apply to the object: %v\npatch: %s", err, resp.Patch)
		}
	}
	got, err := review.DecodeObject(patched, kind)
	if err != nil {
		t.Fatalf("the patched object does not decode: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(normalise(got.Pod.Spec), normalise(want.Spec)) {
		gotJSON, _ := json.Marshal(got.Pod.Spec)
		wantJSON, _ := json.Marshal(want.Spec)
		t.Fatalf("patched spec differs from ApplyTo:\npatch %s\ngot  %s\nwant %s", resp.Patch, gotJSON, wantJSON)
	}
	if !obj.Template && !d.Changes.IsEmpty() {
		if got.Pod.Annotations[scheduling.AnnotationPlacement] == "" || got.Pod.Labels[scheduling.LabelPlaced] != "true" {
			t.Errorf("a changed pod must carry the placement annotation and label, got %v %v", got.Pod.Annotations, got.Pod.Labels)
		}
	}
}

// normalise treats an empty list or map like an absent one: JSON patches and typed
// code legitimately differ there and the API server does not tell them apart.
func normalise(spec corev1.PodSpec) corev1.PodSpec {
	b, _ := json.Marshal(spec)
	var out corev1.PodSpec
	_ = json.Unmarshal(b, &out)
	return out
}

// forEveryGoldenPod runs check on each of the engine's golden pods, as a subtest.
func forEveryGoldenPod(t *testing.T, check func(t *testing.T, compiled *scheduling.Compiled, ns scheduling.Namespace, object string, kind metav1.GroupVersionKind)) {
	compiled := goldenConfig(t)
	for name, in := range readGoldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			ns := scheduling.Namespace{Name: in.Namespace.Name, Labels: in.Namespace.Labels, Annotations: in.Namespace.Annotations}
			object, kind := asPodObject(in)
			check(t, compiled, ns, object, kind)
		})
	}
}

func TestPatch(t *testing.T) {
	t.Run("the patch of every golden pod gives the same pod as ApplyTo", func(t *testing.T) {
		forEveryGoldenPod(t, checkPatchMatchesApplyTo)
	})

	t.Run("several candidate pools are ANDed into every existing term", func(t *testing.T) {
		pod := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "zonal"},
	  "spec": {
	    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
	      {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}], "futureTermField": 1},
	      {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}]}}},
	    "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "4096"}]},
	    "containers": [{"name": "c", "image": "i"}]}}`
		env := newTestEnvWithConfig(t, goldenConfig(t), map[string]string{scheduling.AnnotationEnabled: "true"})
		resp := response(t, post(env.mutate, reviewJSON(t, pod, reviewOptions{})))
		out := applyPatch(t, pod, resp)
		terms, _ := dig(out, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
		if len(terms) != 2 {
			t.Fatalf("want the pod's two terms, each narrowed, got %d: %v", len(terms), terms)
		}
		for i, term := range terms {
			exprs, _ := dig(term, "matchExpressions").([]any)
			if len(exprs) < 2 || dig(exprs[len(exprs)-1], "key") != "cloud.google.com/gke-nodepool" {
				t.Errorf("term %d was not ANDed with the pool requirement: %v", i, term)
			}
		}
		if dig(terms[0], "futureTermField") == nil {
			t.Error("an unknown field inside a term was lost")
		}
	})
}

// FuzzMutatePatchMatchesApplyTo: for any pod JSON, the handler answers 200 and its
// patch applies cleanly and means exactly what ApplyTo means.
func FuzzMutatePatchMatchesApplyTo(f *testing.F) {
	for _, in := range readGoldenInputs(f) {
		if !in.Template {
			f.Add([]byte(in.Pod), in.Namespace.Annotations[scheduling.AnnotationHostIPC])
		}
	}
	f.Add([]byte(postgresPod), "drop-sysctls")
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"securityContext":{"sysctls":null}}}`), "")
	fuzzPods(f, checkPatchMatchesApplyTo)
}

// fuzzPods fuzzes check over pod JSON and the host-ipc mode of an opted-in namespace,
// against the golden config; the seeds are the caller's.
func fuzzPods(f *testing.F, check func(t *testing.T, compiled *scheduling.Compiled, ns scheduling.Namespace, object string, kind metav1.GroupVersionKind)) {
	compiled := goldenConfig(f)
	f.Fuzz(func(t *testing.T, pod []byte, hostIPCMode string) {
		if !json.Valid(pod) {
			return
		}
		ns := scheduling.Namespace{Name: "team", Annotations: map[string]string{
			scheduling.AnnotationEnabled: "true",
			scheduling.AnnotationHostIPC: hostIPCMode,
		}}
		check(t, compiled, ns, string(pod), podKind())
	})
}

// FuzzHandler: whatever the body, the handler answers without panicking, with a 2xx
// for AdmissionReviews and a 4xx otherwise, never a 5xx, and its answer stays within
// the bounds of issue 23 (see assertBoundedAnswer).
func FuzzHandler(f *testing.F) {
	f.Add(reviewJSON(f, postgresPod, reviewOptions{}))
	f.Add(reviewJSON(f, hostIPCDeployment, reviewOptions{Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}}))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"kind":"Pod"}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":null}}`))
	f.Add([]byte(`[]`))
	f.Add(reviewJSON(f, podWithSysctls(f, acceptLocal(scheduling.MaxSysctls)), reviewOptions{}))
	f.Add(reviewJSON(f, podWithSysctls(f, acceptLocal(2*scheduling.MaxSysctls)), reviewOptions{}))
	f.Add(reviewJSON(f, podWithSysctls(f, []string{strings.Repeat("kernel.shm", 30)}), reviewOptions{}))
	env := newTestEnv(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []http.Handler{env.mutate, env.validate} {
			rec := post(h, body)
			if rec.Code >= 500 {
				t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
			}
			assertBoundedAnswer(t, rec)
		}
	})
}

// assertBoundedAnswer checks the bounds of issue 23 on an answer: at most
// maxAnswerBytes besides the request's UID (which the answer echoes), a message of at
// most scheduling.MaxMessageLength (and the prefix of an error), and at most eleven
// warnings of at most 120 bytes.
func assertBoundedAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusOK {
		if rec.Body.Len() > maxAnswerBytes {
			t.Fatalf("status %d with %d bytes; want at most %d", rec.Code, rec.Body.Len(), maxAnswerBytes)
		}
		return
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Response == nil {
		t.Fatalf("status 200 without an AdmissionReview response (%v): %.300s", err, rec.Body.String())
	}
	resp := ar.Response
	uid, err := json.Marshal(string(resp.UID))
	if err != nil {
		t.Fatal(err)
	}
	if n := rec.Body.Len() - len(uid); n > maxAnswerBytes {
		t.Fatalf("answer of %d bytes besides the UID; want at most %d", n, maxAnswerBytes)
	}
	const errorPrefix = scheduling.WarningPrefix + "could not plan placement: "
	if resp.Result != nil && len(resp.Result.Message) > len(errorPrefix)+scheduling.MaxMessageLength {
		t.Fatalf("message of %d bytes; want at most %d", len(resp.Result.Message), scheduling.MaxMessageLength)
	}
	if len(resp.Warnings) > 11 {
		t.Fatalf("%d warnings; want at most 11", len(resp.Warnings))
	}
	for _, w := range resp.Warnings {
		if len(w) > 120 {
			t.Fatalf("warning of %d bytes; want at most 120: %.300s", len(w), w)
		}
	}
}
