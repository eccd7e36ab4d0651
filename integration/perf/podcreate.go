package perf

import "time"

// The arms of perf/cmd/podcreate: what mutates the pods on their way in.
const (
	// ArmNone: no admission webhook and no admission policy.
	ArmNone = "none"
	// ArmWebhook: sysctl-placement's mutating and validating webhooks, as shipped.
	ArmWebhook = "webhook"
	// ArmPolicy: a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1) and its
	// binding that add the same nodeSelector and toleration to the same pods, in
	// process in the API server.
	ArmPolicy = "policy"
)

// PodCreateResults is what perf/cmd/podcreate measured: pods created through the real
// API server at fixed arrival rates (open loop), in each arm, arms interleaved;
// perf/cmd/report turns it into a section of docs/performance.md.
type PodCreateResults struct {
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Rates are the arrival rates in pods per second; each (rate, arm) ran for Duration.
	Rates    []float64     `json:"rates"`
	Duration time.Duration `json:"duration"`
	Arms     []string      `json:"arms"`
	// Pools is how many pools the config had: the example's three, or with -pools the
	// example's followed by pools like them that these pods never land on.
	Pools int `json:"pools,omitempty"`
	// NodeSelector and Toleration are what the webhook added to the probe pod, and so
	// what the policy adds.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	Toleration   string            `json:"toleration,omitempty"`
	Runs         []PodCreateRun    `json:"runs"`
	// Notes say what was left out and why.
	Notes []string `json:"notes,omitempty"`
}

// PodCreateRun is one arm at one rate, in a fresh opted-in namespace.
type PodCreateRun struct {
	Repeat    int     `json:"repeat"`
	Arm       string  `json:"arm"`
	Rate      float64 `json:"rate"`
	Namespace string  `json:"namespace"`
	// Latencies of each Create call, from the time it was scheduled to be sent (so a
	// late send counts), as the client measured them.
	Latencies
	Sent    int           `json:"sent"`
	Created int           `json:"created"`
	Errors  int           `json:"errors"`
	Took    time.Duration `json:"took"`
	// MaxSendLag is how late the latest request was sent after its scheduled time.
	MaxSendLag time.Duration `json:"maxSendLag"`
	// Placed counts created pods that came back with the nodeSelector.
	Placed       int     `json:"placed"`
	ErrorExample string  `json:"errorExample,omitempty"`
	LoadAverage  float64 `json:"loadAverage"`

	// Webhook is the API server's admission webhook calls during the run
	// (apiserver_admission_webhook_admission_duration_seconds, both webhooks): network,
	// TLS and serve.
	Webhook Histogram `json:"webhook"`
	// Policy is the API server's MutatingAdmissionPolicy plugin during the run
	// (apiserver_admission_controller_admission_duration_seconds{name="MutatingAdmissionPolicy"}).
	Policy Histogram `json:"policy"`
	// ServeReviews and ServeReviewMean are the reviews serve measured itself
	// (kubewebhook's review_duration_seconds, mutating and validating).
	ServeReviews    int           `json:"serveReviews"`
	ServeReviewMean time.Duration `json:"serveReviewMean"`
	// ServeEvents are the audit Events serve recorded during the run
	// (sysctl_placement_events_recorded_total): one SysctlPlaced per placed pod.
	ServeEvents int `json:"serveEvents"`
	// ServeCPU and APIServerCPU are the CPU time (utime+stime) serve and kube-apiserver
	// used during the run; zero when the process was not found.
	ServeCPU     time.Duration `json:"serveCPU"`
	APIServerCPU time.Duration `json:"apiServerCPU"`
}
