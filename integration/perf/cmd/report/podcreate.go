package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

// maxPodCreateP99Ratio is the target for the webhook's share of pod creation: the
// p99 of a Create call with the webhook at most this times the p99 without.
const maxPodCreateP99Ratio = 1.05

// readPodCreate reads perf/cmd/podcreate's JSON; no path, no section.
func readPodCreate(path string) (*perf.PodCreateResults, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not read the pod-create results: %w", err)
	}
	var r perf.PodCreateResults
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s is not the JSON of perf/cmd/podcreate: %w", path, err)
	}
	return &r, nil
}

func podCreateRuns(pc *perf.PodCreateResults, webhook bool) []perf.PodCreateRun {
	var runs []perf.PodCreateRun
	for _, r := range pc.Runs {
		if r.Webhook == webhook {
			runs = append(runs, r)
		}
	}
	return runs
}

func podCreateField(runs []perf.PodCreateRun, f func(perf.PodCreateRun) float64) perf.Summary {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return perf.Summarize(xs)
}

// podCreateRatios pairs the runs with and without the webhook of one repetition.
func podCreateRatios(pc *perf.PodCreateResults) (p50, p99 perf.Summary) {
	var a, b []float64
	for _, w := range podCreateRuns(pc, true) {
		for _, wo := range podCreateRuns(pc, false) {
			if w.Repeat == wo.Repeat && wo.P50 > 0 && wo.P99 > 0 {
				a = append(a, float64(w.P50)/float64(wo.P50))
				b = append(b, float64(w.P99)/float64(wo.P99))
			}
		}
	}
	return perf.Summarize(a), perf.Summarize(b)
}

func podCreateTarget(pc *perf.PodCreateResults) target {
	t := target{name: fmt.Sprintf("pod create through the API server: p99 with the webhook ≤ %.2f × without", maxPodCreateP99Ratio), measured: "not measured", verdict: "—"}
	if pc == nil {
		return t
	}
	t.name = fmt.Sprintf("pod create through the API server (%d pods, %d clients): p99 with the webhook ≤ %.2f × without", pc.Pods, pc.Clients, maxPodCreateP99Ratio)
	_, p99 := podCreateRatios(pc)
	if p99.N == 0 {
		return t
	}
	with := podCreateField(podCreateRuns(pc, true), func(r perf.PodCreateRun) float64 { return float64(r.P99) })
	without := podCreateField(podCreateRuns(pc, false), func(r perf.PodCreateRun) float64 { return float64(r.P99) })
	t.measured = fmt.Sprintf("%.2f× (runs: %.2f–%.2f); p99 %s with, %s without", p99.Median, p99.Min, p99.Max, fmtMs(with.Median), fmtMs(without.Median))
	t.verdict = verdict(p99.Median <= maxPodCreateP99Ratio)
	return t
}

func renderPodCreate(w io.Writer, pc *perf.PodCreateResults) {
	if pc == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## End to end: pod creation through the API server\n\n")
	qps := "no client-side rate limit"
	if pc.QPS > 0 {
		qps = fmt.Sprintf("client QPS %.0f, burst %d", pc.QPS, pc.Burst)
	}
	p("`integration/perf/cmd/podcreate`: the integration control plane with the default pools; %d pods asking for\n", pc.Pods)
	p("kernel.shmmax and kernel.sem created by %d concurrent clients (%s) in a fresh namespace labelled\n", pc.Clients, qps)
	p("`sysctl-placement.io/enabled=true`, with the real `serve` registered through the shipped webhook configurations\n")
	p("(mutating and validating, JSON logs at info level) and with no webhook configuration at all. Latency is each\n")
	p("Create call's, measured by the client; the scheduler and the simulated kubelets run meanwhile. Runs alternate\n")
	p("which goes first, and each namespace is deleted before the next run.\n\n")
	p("| webhook | runs | pods/s | p50 | p90 | p99 | max | errors | placed by the webhook | 1-min load average |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, on := range []bool{true, false} {
		runs := podCreateRuns(pc, on)
		if len(runs) == 0 {
			continue
		}
		name := "none"
		if on {
			name = "registered"
		}
		errs, placed, created := 0, 0, 0
		for _, r := range runs {
			errs += r.Errors
			placed += r.Placed
			created += r.Created
		}
		d := func(f func(perf.PodCreateRun) float64) perf.Summary { return podCreateField(runs, f) }
		p("| %s | %d | %s | %s | %s | %s | %s | %d / %d | %d / %d | %s |\n", name, len(runs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.Created) / r.Took.Seconds() }), fmtInt),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.P50) }), fmtMs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.P90) }), fmtMs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.P99) }), fmtMs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.Max) }), fmtMs),
			errs, errs+created, placed, created,
			triple(d(func(r perf.PodCreateRun) float64 { return r.LoadAverage }), func(v float64) string { return fmt.Sprintf("%.1f", v) }))
	}
	p50, p99 := podCreateRatios(pc)
	p("\nRatios with / without the webhook, paired run by run: p50 %s, p99 %s.\n\n", triple(p50, fmt2), triple(p99, fmt2))

	p("Where the time goes: CPU time of kube-apiserver and of serve per created pod (`/proc`, around each run), and\n")
	p("the mean admission webhook call as the API server timed it (`apiserver_admission_webhook_admission_duration_seconds`:\n")
	p("connection, TLS, serve) next to the mean review inside serve (kubewebhook's `review_duration_seconds`).\n\n")
	p("| webhook | kube-apiserver CPU per pod | serve CPU per pod | webhook calls per pod | mean webhook call (API server) | mean review (inside serve) |\n|---|---|---|---|---|---|\n")
	for _, on := range []bool{true, false} {
		runs := podCreateRuns(pc, on)
		if len(runs) == 0 {
			continue
		}
		name := "none"
		if on {
			name = "registered"
		}
		d := func(f func(perf.PodCreateRun) float64) perf.Summary { return podCreateField(runs, f) }
		perPod := func(cpu func(perf.PodCreateRun) float64) perf.Summary {
			return d(func(r perf.PodCreateRun) float64 { return cpu(r) / float64(max(1, r.Created)) })
		}
		p("| %s | %s | %s | %s | %s | %s |\n", name,
			triple(perPod(func(r perf.PodCreateRun) float64 { return float64(r.APIServerCPU) }), fmtMs),
			triple(perPod(func(r perf.PodCreateRun) float64 { return float64(r.ServeCPU) }), fmtMs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.WebhookCalls) / float64(max(1, r.Created)) }), fmt2),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.WebhookCallMean) }), fmtMs),
			triple(d(func(r perf.PodCreateRun) float64 { return float64(r.ServeReviewMean) }), fmtMs))
	}
	p("\nThe clients form a closed loop, so when the machine is CPU-bound every millisecond of CPU a pod costs (in\n")
	p("kube-apiserver for the two webhook calls as much as in serve) becomes latency for all of them; a webhook call\n")
	p("much longer than serve's own review is time spent waiting for a CPU or in the API server's webhook client.\n\n")
	for _, n := range pc.Notes {
		p("- Note: %s.\n", n)
	}
}

// renderProfile says what dominated serve's CPU profile and what changed because of
// it. It is written by hand: it names the profile runs it summarises.
func renderProfile(w io.Writer) {
	fmt.Fprint(w, profileSummary)
}

const profileSummary = "## What dominates the profile\n\n" +
	"Written by hand, from two CPU profiles of `serve` under closed-32 (`perf/cmd/load -profile`, `serve-closed-32.pprof`).\n\n" +
	"- **Before** (the profile from before commit 86aa48f, with serve/floor throughput at 0.56–0.58): kubewebhook's\n" +
	"  AdmissionReview decode 21.7% of CPU (8.2% of it a whole pass of the body only to read apiVersion and kind),\n" +
	"  our full `corev1.Pod` decode in `decodeObject` 18.1%, the guard's envelope `json.Unmarshal` 5.1%, our log line\n" +
	"  per admission 5.5%, kubewebhook's per-request logger fields (for a debug line thrown away) about 4%, the patch\n" +
	"  3.3%, the response encode 2.2%, `Plan` 2%.\n" +
	"- **What changed because of it**: the guard reads `kind`, `apiVersion` and the `{` of `request` by hand in the\n" +
	"  API server's key order (a full top-level walk otherwise), case-sensitively and last-key-wins like kubewebhook's\n" +
	"  decoder (`BenchmarkGuardEnvelope` 22 µs → 0.6 µs); `decodeObject` decodes only the fields placement reads\n" +
	"  (`webhook/podfields.go`; a test plans every golden pod from both decodes and wants the same decision and patch);\n" +
	"  kubewebhook gets a logger whose `WithValues`/`WithCtxValues`/`SetValuesOnCtx` do nothing.\n" +
	"- **After** (the `-profile` run of 2026-11-27 00:21 UTC that produced the load figures above): kubewebhook's\n" +
	"  AdmissionReview decode 31.7% (13.8% the apiVersion/kind pass), `decodeObject` 10.1%, our log line 8.8%\n" +
	"  (logrus JSON), TLS reads and writes about 11%, GC about 10%, the patch 3.2%, `Plan` 1.3%, the response encode\n" +
	"  1.3%, the guard 0.8%; kubewebhook's logger no longer shows. What is left is mostly reading the same body three\n" +
	"  times: kubewebhook's kind pass and full decode, then ours of the object. Decoding the AdmissionReview once\n" +
	"  ourselves, with the object going straight into the narrow types, would remove about a quarter of serve's CPU.\n\n"
