package policysync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// pools is n pools shaped like the example config's; the first allows extra too.
func pools(t *testing.T, n int, extra ...string) *scheduling.Compiled {
	t.Helper()
	ps := make([]scheduling.Pool, n)
	for i := range ps {
		name := fmt.Sprintf("pool-%d", i)
		ps[i] = scheduling.Pool{
			Name:                 name,
			NodeSelector:         map[string]string{"sysctl-placement.io/pool": name},
			Taints:               []corev1.Taint{{Key: "dedicated", Value: name, Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.sem", fmt.Sprintf("net.ipv4.conf.eth%d.*", i)},
		}
	}
	ps[0].AllowedUnsafeSysctls = append(ps[0].AllowedUnsafeSysctls, extra...)
	c, err := scheduling.CompilePools(scheduling.Policy{}, ps)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type harness struct {
	client   *fake.Clientset
	syncer   *Syncer
	metrics  *Metrics
	version  string
	statuses []discovery.PolicyStatus
}

func newHarness(t *testing.T, source Source) *harness {
	t.Helper()
	h := &harness{client: fake.NewClientset(), metrics: NewMetrics(prometheus.NewRegistry()), version: "v1.37.2"}
	var err error
	h.syncer, err = New(Config{
		Source: source, Client: h.client, Identity: "replica-a", Metrics: h.metrics,
		ServerVersion: func() (string, error) { return h.version, nil },
		Publish: func(_ context.Context, st discovery.PolicyStatus) error {
			h.statuses = append(h.statuses, st)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// applies counts the server-side applies the client received.
func (h *harness) applies() int {
	n := 0
	for _, a := range h.client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetPatchType() == "application/apply-patch+yaml" {
			n++
		}
	}
	return n
}

func (h *harness) mutatingExists(t *testing.T) bool {
	t.Helper()
	_, err := h.client.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(t.Context(), policy.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSyncer(t *testing.T) {
	t.Run("applies the six objects once and nothing while the rendering is unchanged", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		if got := h.applies(); got != 6 {
			t.Fatalf("%d applies; want 6 (a policy and a binding, three times)", got)
		}
		// A new discovery result with the same pools is a new Compiled, the same bytes.
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		if got := h.applies(); got != 6 {
			t.Errorf("%d applies after an unchanged rendering; want still 6", got)
		}
		if got := testutil.ToFloat64(h.metrics.active); got != 1 {
			t.Errorf("sysctl_placement_policy_backend_active = %v; want 1", got)
		}
		if len(h.statuses) != 1 || !h.statuses[0].Active || h.statuses[0].Writer != "replica-a" {
			t.Errorf("published %+v; want one active status written by replica-a", h.statuses)
		}
	})
	t.Run("a changed configuration is applied with the backend's own field manager", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		if err := h.syncer.Sync(t.Context(), pools(t, 2, "kernel.msgmax"), false); err != nil {
			t.Fatal(err)
		}
		if got := h.applies(); got <= 6 || got > 12 {
			t.Fatalf("%d applies; want 6, then some for the new pool allowlist", got)
		}
		for _, a := range h.client.Actions() {
			if p, ok := a.(k8stesting.PatchActionImpl); ok {
				if opts := p.GetPatchOptions(); opts.FieldManager != FieldManager || opts.Force == nil || !*opts.Force {
					t.Errorf("%s applied with %+v; want field manager %s, forced", p.GetName(), opts, FieldManager)
				}
			}
		}
		mp, err := h.client.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(t.Context(), policy.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(fmt.Sprint(mp.Spec.Variables), "kernel.msgmax") {
			t.Error("the MutatingAdmissionPolicy does not have the new config's kernel.msgmax")
		}
	})
	t.Run("a deleted policy is applied again at the next drift check", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		c := pools(t, 2)
		if err := h.syncer.Sync(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
		if err := h.client.AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(t.Context(), policy.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := h.syncer.Sync(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		if !h.mutatingExists(t) {
			t.Error("the MutatingAdmissionPolicy was not applied again")
		}
		if got := h.applies(); got != 7 {
			t.Errorf("%d applies; want 6 and the deleted one", got)
		}
	})
	t.Run("an API server older than 1.36 is refused, and the metric and status say so", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		h.version = "v1.35.4"
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		if got := h.applies(); got != 0 {
			t.Errorf("%d applies on a 1.35 API server; want none", got)
		}
		if got := testutil.ToFloat64(h.metrics.refused.WithLabelValues(ReasonServerVersion)); got != 1 {
			t.Errorf("sysctl_placement_policy_refused_total{reason=ServerVersion} = %v; want 1", got)
		}
		if got := testutil.ToFloat64(h.metrics.active); got != 0 {
			t.Errorf("sysctl_placement_policy_backend_active = %v; want 0", got)
		}
		if len(h.statuses) != 1 || h.statuses[0].Reason != ReasonServerVersion || !strings.Contains(h.statuses[0].Message, "1.36") {
			t.Errorf("published %+v; want the ServerVersion reason naming 1.36", h.statuses)
		}
	})
	t.Run("a configuration past the cost bound deletes the applied policies and sets the metric", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		expensive := pools(t, 40)
		if err := h.syncer.Sync(t.Context(), expensive, false); err != nil {
			t.Fatal(err)
		}
		if h.mutatingExists(t) {
			t.Error("the MutatingAdmissionPolicy of the older configuration is still in force")
		}
		if got := testutil.ToFloat64(h.metrics.refused.WithLabelValues(ReasonCost)); got != 1 {
			t.Errorf("sysctl_placement_policy_refused_total{reason=Cost} = %v; want 1", got)
		}
		if got := testutil.ToFloat64(h.metrics.active); got != 0 {
			t.Errorf("sysctl_placement_policy_backend_active = %v; want 0", got)
		}
		last := h.statuses[len(h.statuses)-1]
		if last.Active || last.Reason != ReasonCost || !strings.Contains(last.Message, "use the webhook") || !strings.Contains(last.Cost, "40 pools") {
			t.Errorf("published %+v; want the Cost reason, render's advice and the estimate", last)
		}
		// The same refusal again (a new discovery result) is not counted twice.
		if err := h.syncer.Sync(t.Context(), pools(t, 40), false); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(h.metrics.refused.WithLabelValues(ReasonCost)); got != 1 {
			t.Errorf("sysctl_placement_policy_refused_total{reason=Cost} = %v after the same refusal; want still 1", got)
		}
	})
	t.Run("the API server's type-checking warnings are published once it has checked the generation applied", func(t *testing.T) {
		h := newHarness(t, config.NewStore(nil))
		if err := h.syncer.Sync(t.Context(), pools(t, 2), false); err != nil {
			t.Fatal(err)
		}
		vaps := h.client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
		vap, err := vaps.Get(t.Context(), policy.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vap.Status = admissionregistrationv1.ValidatingAdmissionPolicyStatus{ObservedGeneration: vap.Generation, TypeChecking: &admissionregistrationv1.TypeChecking{
			ExpressionWarnings: []admissionregistrationv1.ExpressionWarning{{FieldRef: "spec.validations[0].expression", Warning: "no such key: x"}},
		}}
		if _, err := vaps.UpdateStatus(t.Context(), vap, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.syncer.CheckTypes(t.Context())
		last := h.statuses[len(h.statuses)-1]
		if want := []string{"sysctl-placement: spec.validations[0].expression: no such key: x"}; !slices.Equal(last.Warnings, want) {
			t.Errorf("published warnings %q; want %q", last.Warnings, want)
		}
		if !last.Active {
			t.Error("a type-checking warning took the policies out of force; it is only reported")
		}
	})
	t.Run("Run applies at a config reload, and at its end no longer says active", func(t *testing.T) {
		store := config.NewStore(pools(t, 2))
		h := newHarness(t, store)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.syncer.Run(ctx); close(done) }()
		waitFor(t, func() bool { return h.applies() == 6 })
		store.Set(pools(t, 2, "kernel.msgmax"))
		waitFor(t, func() bool { return h.applies() > 6 })
		cancel()
		<-done
		if got := testutil.ToFloat64(h.metrics.active); got != 0 {
			t.Errorf("sysctl_placement_policy_backend_active = %v after Run ended (leadership lost); want 0", got)
		}
	})
}

// waitFor polls cond (the fake client has no watch on its actions).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatal(err)
	}
}
