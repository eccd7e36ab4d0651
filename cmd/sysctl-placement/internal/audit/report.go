package audit

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// Event reasons the audit counts.
const (
	// reasonSysctlForbidden is what the kubelet records when it rejects a pod whose
	// sysctls it does not allow (pod phase Failed, status.reason SysctlForbidden).
	reasonSysctlForbidden = "SysctlForbidden"
	// reasonFailedCreate is what a workload controller records when a pod create is
	// refused, e.g. by the webhook's denial.
	reasonFailedCreate = "FailedCreate"
)

// status is the verdict on a subject's pods today.
type status string

const (
	statusBroken status = "broken"
	statusPlaced status = "placed"
	statusNoPods status = "no pods"
	statusOK     status = "ok"
)

// workload is one listed workload with sysctls in its template.
type workload struct {
	kind     string
	meta     metav1.ObjectMeta
	template *corev1.PodTemplateSpec
}

// input is everything the audit decides from.
type input struct {
	namespaces map[string]*corev1.Namespace
	nodes      []*corev1.Node
	pods       []*corev1.Pod
	workloads  []workload
	events     []*corev1.Event
	config     *scheduling.Compiled
	pools      []discovery.PoolStatus
	Listed     Listed
}

// Listed counts what was read, for the report's last line.
type Listed struct {
	Pods      int     `json:"pods"`
	Workloads int     `json:"workloads"`
	Nodes     int     `json:"nodes"`
	Seconds   float64 `json:"seconds"`
}

// finding is one extra observation about a subject's pods, in the project's
// {reason, detail} shape.
type finding struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// enforced: the finding alone makes the API server refuse the pods.
	enforced bool
}

// Report is the output of `audit -o json|yaml`: a stable interface.
type Report struct {
	Workloads  []subject          `json:"workloads"`
	Namespaces []namespaceSummary `json:"namespaces"`
	Pools      []output.Pool      `json:"pools"`
	Totals     Totals             `json:"totals"`
	Listed     Listed             `json:"listed"`
}

// Totals count the subjects by verdict.
type Totals struct {
	Workloads   int `json:"workloads"`
	Broken      int `json:"broken"`
	Unplaceable int `json:"unplaceable"`
	Placed      int `json:"placed"`
	NotOptedIn  int `json:"notOptedIn"`
}

// subject is a top-level workload (a Deployment, not its ReplicaSets) or a bare
// pod that asks for sysctls.
type subject struct {
	Namespace string   `json:"namespace"`
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Sysctls   []string `json:"sysctls"`
	OptedIn   bool     `json:"optedIn"`
	// Status is broken, placed, ok or no pods; see the fields for why.
	Status status `json:"status"`
	// Broken: pods failed with SysctlForbidden, sit on nodes that refuse their
	// sysctls, or could not be created for their sysctls.
	Broken bool `json:"broken"`
	// Unplaceable: no pool allows its sysctls, so the webhook would deny its pods.
	Unplaceable bool      `json:"unplaceable"`
	Pods        podCounts `json:"pods"`
	Nodes       []string  `json:"nodes,omitempty"`
	// NodeProblems say which pod sits on a node whose kubelet refuses which sysctl.
	NodeProblems []string `json:"nodeProblems,omitempty"`
	// Events are the churn counted from Events: SysctlForbidden on its pods,
	// FailedCreate (for sysctls) on its controllers.
	Events churn `json:"events"`
	// Webhook is what the webhook does (opted in) or would do (not opted in) to its pods.
	Webhook  webhookPlan `json:"webhook"`
	Findings []finding   `json:"findings,omitempty"`
}

// podCounts counts a subject's current pods.
type podCounts struct {
	Total int `json:"total"`
	// Running pods, placed or not.
	Running int `json:"running"`
	// Forbidden pods failed with SysctlForbidden.
	Forbidden int `json:"forbidden"`
	// Placed pods carry the webhook's placement label.
	Placed int `json:"placed"`
	// OnRefusingNodes are pods bound to a node whose kubelet would refuse them.
	OnRefusingNodes int `json:"onRefusingNodes"`
}

// churn is the churn of one subject.
type churn struct {
	SysctlForbidden int `json:"sysctlForbidden"`
	FailedCreate    int `json:"failedCreate"`
}

// webhookPlan is the engine's answer for a subject's pods.
type webhookPlan struct {
	// Outcome is the decision's verdict: placed, changed, unchanged, skipped, denied or
	// admitted unplaceable (scheduling.Verdict, the words plan and the Events use).
	Outcome scheduling.Verdict `json:"outcome"`
	Reason  string             `json:"reason"`
	Pools   []string           `json:"pools,omitempty"`
	Added   string             `json:"added,omitempty"`
	// Message explains a denial: each sysctl and per pool why it was excluded.
	Message string `json:"message,omitempty"`
	// Unallowed are the sysctls no pool allows; when each alone has a pool but no pool
	// allows them all, the one entry "a+b" names the combination.
	Unallowed []string `json:"unallowed,omitempty"`
}

// namespaceSummary says what opting a namespace in would change.
type namespaceSummary struct {
	Name    string `json:"name"`
	OptedIn bool   `json:"optedIn"`
	// Placeable workloads would be placed (or are already on allowing pools).
	Placeable int `json:"placeable"`
	// BrokenPlaceable of those are broken today: opting in fixes them.
	BrokenPlaceable int `json:"brokenPlaceable"`
	// Denied workloads would have their pods denied; Unallowed says for which sysctls.
	Denied    int      `json:"denied"`
	Unallowed []string `json:"unallowed,omitempty"`
	// Refused workloads would be denied for another reason than the pools: the
	// namespace's Pod Security level, or a host-namespace clash (see the findings and
	// the webhook's message).
	Refused int `json:"refused"`
	// PodSecurity says how many workloads its enforced Pod Security level refuses
	// (scheduling.PodSecuritySummary), when any.
	PodSecurity string `json:"podSecurity,omitempty"`
	// podSecurityRefused counts them.
	podSecurityRefused int
}
