package perf

import "time"

// PodCreateResults is what perf/cmd/podcreate measured: pod creations through the
// real API server, with the webhook registered and without any webhook, in the same
// run; perf/cmd/report turns it into a section of docs/performance.md.
type PodCreateResults struct {
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Pods is how many pods each run creates, from Clients concurrent clients.
	Pods    int `json:"pods"`
	Clients int `json:"clients"`
	// QPS and Burst are the client's rate limit (QPS < 0: none).
	QPS   float32 `json:"qps"`
	Burst int     `json:"burst"`
	// Runs alternate without and with the webhook.
	Runs []PodCreateRun `json:"runs"`
	// Notes say what was left out and why.
	Notes []string `json:"notes,omitempty"`
}

// PodCreateRun is one batch of pod creations in a fresh opted-in namespace.
type PodCreateRun struct {
	Repeat int `json:"repeat"`
	// Webhook is true when the shipped webhook configurations pointed at a running
	// `serve`; false when no webhook configuration existed.
	Webhook   bool   `json:"webhook"`
	Namespace string `json:"namespace"`
	// Latencies of each Create call, measured by the client.
	Latencies
	Created int           `json:"created"`
	Errors  int           `json:"errors"`
	Took    time.Duration `json:"took"`
	// Placed counts created pods that came back with the webhook's nodeSelector.
	Placed       int     `json:"placed"`
	ErrorExample string  `json:"errorExample,omitempty"`
	LoadAverage  float64 `json:"loadAverage"`

	// WebhookCalls and WebhookCallMean are the API server's admission webhook calls
	// during the run and their mean duration as it measured them
	// (apiserver_admission_webhook_admission_duration_seconds): network, TLS and serve.
	WebhookCalls    int           `json:"webhookCalls"`
	WebhookCallMean time.Duration `json:"webhookCallMean"`
	// ServeReviews and ServeReviewMean are the reviews serve measured itself
	// (kubewebhook's review_duration_seconds, mutating and validating): decode, plan,
	// patch, encode.
	ServeReviews    int           `json:"serveReviews"`
	ServeReviewMean time.Duration `json:"serveReviewMean"`
	// ServeCPU and APIServerCPU are the CPU time (utime+stime) serve and kube-apiserver
	// used during the run; zero when the process was not found.
	ServeCPU     time.Duration `json:"serveCPU"`
	APIServerCPU time.Duration `json:"apiServerCPU"`
}
