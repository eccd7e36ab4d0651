package perf

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Targets of issue 15 for pod creation at rates below saturation: the webhook's p99
// at most maxWebhookP99Ratio times no hook's at the rates in ratioTargetRates, and
// within maxWebhookP99OverPolicy of the MutatingAdmissionPolicy's at every rate.
const (
	maxWebhookP99Ratio      = 1.10
	maxWebhookP99OverPolicy = 2 * time.Millisecond
)

var ratioTargetRates = []float64{10, 25}

// readPodCreate reads perf/cmd/podcreate's JSON; no path, no section.
func readPodCreate(path string) (*PodCreateResults, error) {
	r, err := readOptional[PodCreateResults](path, "perf/cmd/podcreate")
	if err != nil || r == nil {
		return r, err
	}
	if len(r.Arms) == 0 {
		return nil, fmt.Errorf("%s has no arms: it is from before podcreate ran at fixed rates; rerun it", path)
	}
	return r, nil
}

// readOptional reads the JSON that the command what wrote to path; no path, nil.
func readOptional[T any](path, what string) (*T, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not read the results of %s: %w", what, err)
	}
	var r T
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s is not the JSON of %s: %w", path, what, err)
	}
	return &r, nil
}

func podCreateRuns(pc *PodCreateResults, arm string, rate float64) []PodCreateRun {
	var runs []PodCreateRun
	for _, r := range pc.Runs {
		if r.Arm == arm && r.Rate == rate {
			runs = append(runs, r)
		}
	}
	return runs
}

func podCreateField(runs []PodCreateRun, f func(PodCreateRun) float64) Summary {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return Summarize(xs)
}

func p99Of(r PodCreateRun) float64 { return float64(r.P99) }

// pairedP99 pairs arm a's runs with arm b's of the same repetition at rate and
// returns f of each pair's p99s.
func pairedP99(pc *PodCreateResults, rate float64, a, b string, f func(pa, pb float64) float64) Summary {
	var xs []float64
	for _, ra := range podCreateRuns(pc, a, rate) {
		for _, rb := range podCreateRuns(pc, b, rate) {
			if ra.Repeat == rb.Repeat && rb.P99 > 0 {
				xs = append(xs, f(p99Of(ra), p99Of(rb)))
			}
		}
	}
	return Summarize(xs)
}

func podCreateTargets(pc *PodCreateResults) []target {
	if pc == nil {
		return []target{{name: "pod create at 10 and 25 pods/s: webhook p99 ≤ 1.10 × no hook, and within 2 ms of a MutatingAdmissionPolicy", measured: "not measured", verdict: "—"}}
	}
	var ts []target
	ratio := func(pa, pb float64) float64 { return pa / pb }
	diff := func(pa, pb float64) float64 { return pa - pb }
	for _, rate := range pc.Rates {
		if slices.Contains(ratioTargetRates, rate) {
			t := target{name: fmt.Sprintf("pod create at %g pods/s: webhook p99 ≤ %.2f × no hook", rate, maxWebhookP99Ratio), measured: "not measured", verdict: "—"}
			if r := pairedP99(pc, rate, ArmWebhook, ArmNone, ratio); r.N > 0 {
				// The policy's own ratio says what admission in process, with no network
				// call at all, adds on the same machine.
				policy := ""
				if rp := pairedP99(pc, rate, ArmPolicy, ArmNone, ratio); rp.N > 0 {
					policy = fmt.Sprintf("; the MutatingAdmissionPolicy: %.2f×", rp.Median)
				}
				t.measured = fmt.Sprintf("%.2f× (%s with, %s without%s)%s", r.Median,
					fmtMs(podCreateField(podCreateRuns(pc, ArmWebhook, rate), p99Of).Median),
					fmtMs(podCreateField(podCreateRuns(pc, ArmNone, rate), p99Of).Median), policy, loadNote(pc, rate))
				t.verdict = stalled(pc, rate, verdict(r.Median <= maxWebhookP99Ratio), ArmWebhook, ArmNone)
			}
			ts = append(ts, t)
		}
		t := target{name: fmt.Sprintf("pod create at %g pods/s: webhook p99 within %s of the MutatingAdmissionPolicy's", rate, maxWebhookP99OverPolicy), measured: "not measured", verdict: "—"}
		if d := pairedP99(pc, rate, ArmWebhook, ArmPolicy, diff); d.N > 0 {
			t.measured = fmt.Sprintf("%+.2f ms (%s webhook, %s policy)%s", d.Median/1e6,
				fmtMs(podCreateField(podCreateRuns(pc, ArmWebhook, rate), p99Of).Median),
				fmtMs(podCreateField(podCreateRuns(pc, ArmPolicy, rate), p99Of).Median), loadNote(pc, rate))
			t.verdict = stalled(pc, rate, verdict(d.Median <= float64(maxWebhookP99OverPolicy)), ArmWebhook, ArmPolicy)
		}
		ts = append(ts, t)
	}
	return ts
}

// stalled replaces v when a run of the compared arms at rate sent a request later
// than the next one was due: the client itself did not get a CPU for that long, so a
// p99 difference of milliseconds says nothing about admission.
func stalled(pc *PodCreateResults, rate float64, v string, arms ...string) string {
	interval := time.Duration(float64(time.Second) / rate)
	var worst time.Duration
	for _, arm := range arms {
		for _, r := range podCreateRuns(pc, arm, rate) {
			worst = max(worst, r.MaxSendLag)
		}
	}
	if worst > interval {
		return fmt.Sprintf("cannot be judged (%s; the client sent a request %s late)", v, fmtMs(float64(worst)))
	}
	return v
}

// loadNote gives the load averages of the runs at rate, which say whether the
// machine could show a difference of a few milliseconds.
func loadNote(pc *PodCreateResults, rate float64) string {
	var loads []string
	for _, r := range pc.Runs {
		if r.Rate == rate {
			loads = append(loads, fmt.Sprintf("%.1f", r.LoadAverage))
		}
	}
	return "; load average " + strings.Join(loads, ", ")
}

// summarize summarises a field over the runs of one rate and arm.
type summarize func(func(PodCreateRun) float64) Summary

// eachCell calls f with the runs of each rate and arm that ran, in table order.
func eachCell(pc *PodCreateResults, f func(rate float64, arm string, runs []PodCreateRun, d summarize)) {
	for _, rate := range pc.Rates {
		for _, arm := range pc.Arms {
			if runs := podCreateRuns(pc, arm, rate); len(runs) > 0 {
				f(rate, arm, runs, func(g func(PodCreateRun) float64) Summary { return podCreateField(runs, g) })
			}
		}
	}
}

func renderPodCreate(w io.Writer, pc *PodCreateResults) {
	if pc == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## End to end: pod creation through the API server\n\n")
	p("`integration/perf/cmd/podcreate`: the integration control plane with the default pools; pods asking for\n")
	p("kernel.shmmax and kernel.sem created in a fresh namespace labelled `sysctl-placement.io/enabled=true` at fixed\n")
	p("arrival rates (open loop: each Create is sent at its scheduled time and its latency counts from then; no\n")
	p("client-side rate limit), for %s per rate and arm, in three arms:\n\n", pc.Duration)
	p("- **none**: no admission webhook or policy;\n")
	p("- **webhook**: the real `serve` registered through the shipped webhook configurations (mutating and\n")
	p("  validating, JSON logs at info level);\n")
	p("- **policy**: what a user might pick instead, a `MutatingAdmissionPolicy` (`admissionregistration.k8s.io/v1`,\n")
	p("  CEL evaluated in the API server) and its binding, adding on CREATE of a pod in an opted-in namespace that\n")
	p("  asks for both sysctls the nodeSelector %v and the toleration %s that the webhook gave a probe pod\n", pc.NodeSelector, pc.Toleration)
	p("  (it neither validates nor labels or annotates, and knows nothing of pools or kubelets).\n\n")
	p("For each rate the arms run one after the other, in an order that rotates; each namespace is deleted before\n")
	p("the next run. The pods name a scheduler that does not run, so they stay Pending and neither kube-scheduler\n")
	p("nor the hollow kubelets work during a run: the arms differ only in what admits the pods (what the webhook\n")
	p("and the policy add is the same for any schedulerName). serve's pod informer and its audit Events still run.\n\n")
	p("| rate | arm | runs | created | p50 | p90 | p99 | max | errors | placed | send lag max | 1-min load average |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	eachCell(pc, func(rate float64, arm string, runs []PodCreateRun, d summarize) {
		errs, placed, created := 0, 0, 0
		for _, r := range runs {
			errs, placed, created = errs+r.Errors, placed+r.Placed, created+r.Created
		}
		p("| %g/s | %s | %d | %d | %s | %s | %s | %s | %d | %d | %s | %s |\n", rate, arm, len(runs), created,
			triple(d(func(r PodCreateRun) float64 { return float64(r.P50) }), fmtMs),
			triple(d(func(r PodCreateRun) float64 { return float64(r.P90) }), fmtMs),
			triple(d(p99Of), fmtMs),
			triple(d(func(r PodCreateRun) float64 { return float64(r.Max) }), fmtMs),
			errs, placed,
			triple(d(func(r PodCreateRun) float64 { return float64(r.MaxSendLag) }), fmtMs),
			triple(d(func(r PodCreateRun) float64 { return r.LoadAverage }), func(v float64) string { return fmt.Sprintf("%.1f", v) }))
	})
	p("\nWhere the time goes, per arm and rate: the API server's own timing of the admission it runs — each webhook\n")
	p("call (`apiserver_admission_webhook_admission_duration_seconds`, both webhooks: connection, TLS, serve) and the\n")
	p("`MutatingAdmissionPolicy` plugin (`apiserver_admission_controller_admission_duration_seconds{name=\"MutatingAdmissionPolicy\"}`,\n")
	p("which runs for every request the API server admits, pods or not, with or without a policy),\n")
	p("p99 interpolated in the API server's buckets (5 ms, 25 ms, 100 ms, …, so a p99 under 5 ms reads as a fraction\n")
	p("of 5 ms) and the exact mean; serve's own mean review (kubewebhook's `review_duration_seconds`); CPU time\n")
	p("(`/proc`, around each run) of kube-apiserver and serve per created pod; and the audit Events serve recorded\n")
	p("during the run per created pod (one `SysctlPlaced` per placed pod when they keep up).\n\n")
	p("| rate | arm | webhook calls per pod | webhook call | MutatingAdmissionPolicy plugin (every request) | serve review mean | kube-apiserver CPU per pod | serve CPU per pod | Events per pod |\n|---|---|---|---|---|---|---|---|---|\n")
	eachCell(pc, func(rate float64, arm string, runs []PodCreateRun, d summarize) {
		perPod := func(cpu func(PodCreateRun) float64) Summary {
			return d(func(r PodCreateRun) float64 { return cpu(r) / float64(max(1, r.Created)) })
		}
		hist := func(h func(PodCreateRun) Histogram) string {
			if d(func(r PodCreateRun) float64 { return h(r).Count }).Median == 0 {
				return "—"
			}
			return "p99 " + triple(d(func(r PodCreateRun) float64 { return h(r).Quantile(0.99) * 1e9 }), fmtMs) + "; mean " +
				triple(d(func(r PodCreateRun) float64 { return h(r).Mean() * 1e9 }), fmtMs)
		}
		p("| %g/s | %s | %s | %s | %s | %s | %s | %s | %s |\n", rate, arm,
			triple(d(func(r PodCreateRun) float64 { return r.Webhook.Count / float64(max(1, r.Created)) }), fmt2),
			hist(func(r PodCreateRun) Histogram { return r.Webhook }),
			hist(func(r PodCreateRun) Histogram { return r.Policy }),
			triple(d(func(r PodCreateRun) float64 { return float64(r.ServeReviewMean) }), fmtMs),
			triple(perPod(func(r PodCreateRun) float64 { return float64(r.APIServerCPU) }), fmtMs),
			triple(perPod(func(r PodCreateRun) float64 { return float64(r.ServeCPU) }), fmtMs),
			triple(perPod(func(r PodCreateRun) float64 { return float64(r.ServeEvents) }), fmt2))
	})
	p("\n")
	for _, n := range pc.Notes {
		p("- Note: %s.\n", n)
	}
	p("\n")
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
	"  (`webhook/review/podfields.go`; a test plans every golden pod from both decodes and wants the same decision and patch);\n" +
	"  kubewebhook gets a logger whose `WithValues`/`WithCtxValues`/`SetValuesOnCtx` do nothing.\n" +
	"- **After** (the `-profile` run of 2026-11-27 00:21 UTC that produced the load figures above): kubewebhook's\n" +
	"  AdmissionReview decode 31.7% (13.8% the apiVersion/kind pass), `decodeObject` 10.1%, our log line 8.8%\n" +
	"  (logrus JSON), TLS reads and writes about 11%, GC about 10%, the patch 3.2%, `Plan` 1.3%, the response encode\n" +
	"  1.3%, the guard 0.8%; kubewebhook's logger no longer shows. What is left is mostly reading the same body three\n" +
	"  times: kubewebhook's kind pass and full decode, then ours of the object. Decoding the AdmissionReview once\n" +
	"  ourselves, with the object going straight into the narrow types, would remove about a quarter of serve's CPU.\n" +
	"- **Then** (issue 15): the handler decodes each AdmissionReview once with `encoding/json/v2` (one streaming\n" +
	"  pass; the object straight into the narrow types; kubewebhook's own handler only for bodies it might read\n" +
	"  otherwise), and writes the patch and the response without reflection. `BenchmarkMutateHandler` went from 214\n" +
	"  to 78 allocations. In the `-profile` run of 2026-12-02 00:30 UTC (load average about 20, so the shares matter,\n" +
	"  not the times): the per-admission log line 18.1% (logrus's JSON formatter and `WithFields`), the single decode\n" +
	"  13.5%, TLS reads and writes about 11%, GC 9.3%, the patch 6.2%, kubewebhook's Prometheus recorder 5.7%,\n" +
	"  `Plan` 4.2%, the response 1%. The log line, which the floor does not write, is now the largest cost.\n" +
	"- **Then** (the quiet-machine session of 2026-12-02): the log line is written by `logging.JSONFormatter`\n" +
	"  (the same JSON object as logrus's formatter, without a second map or reflection; `BenchmarkJSONFormatter`\n" +
	"  6.7 µs and 55 allocations → 3.3 µs and 15), and the served mutate handler went from 147 to 109 allocations.\n" +
	"- **Pod creation** (`perf/cmd/podcreate -profile`, profiles of serve and kube-apiserver, 25 pods/s): serve\n" +
	"  spends about 0.1 ms in each review (kubewebhook's `review_duration_seconds`) while the API server's own\n" +
	"  timing of each call is 1.2–1.7 ms on average: building and encoding the AdmissionReview, the HTTPS round\n" +
	"  trip between two processes on two shared cores, decoding the answer and, for `/mutate`, applying the patch\n" +
	"  and decoding the pod again. Two calls per pod (mutate, then validate on the final object) cost the API\n" +
	"  server 2–3 ms of CPU per pod that a `MutatingAdmissionPolicy` does not spend. Serving `/mutate` over\n" +
	"  HTTP/1.1 only, tried, changed nothing (1.34–1.39 ms per call against 1.35–1.5 ms). The profile also\n" +
	"  showed the audit Events held to 5 a second by client-go's default client rate limit (110 Events for 500\n" +
	"  placed pods in 20 s); `serve --kube-api-qps`/`--kube-api-burst` (50/100) let them keep up, and the Events\n" +
	"  column above shows one per placed pod — their writes are part of the webhook arm's API server CPU.\n" +
	"- **Discovery memory** (`perf/cmd/fleet -heap-profiles`, heap profiles of the three replicas, 2026-12-03):\n" +
	"  at 10,000 nodes (load average 12 to 17.5: other builds shared the cores), 78% of the bytes a reading\n" +
	"  replica allocated (1.48 GB of a follower's, 4.4 GB of the elected replica's 8.6 GB) came from\n" +
	"  `lowestVersion` parsing every node's kubelet and kernel version twice on each regroup, and most of the\n" +
	"  rest from validating every node's allowlist again; the live heap after a collection was 35–44 MB, 12–16 MB\n" +
	"  of it the 10,000 trimmed Nodes (1.5 kB each). A regroup now parses each distinct version and allowlist\n" +
	"  once (`BenchmarkGroup`, 5,000 nodes: 10.8 MB and 251,372 allocations → 0.80 MB and 13,768). At 5,000 nodes\n" +
	"  after the change (the section above): a live heap of 16.7–17.6 MB, RSS 89.5 / 74.1 / 75.4 MiB, peaks 89.8\n" +
	"  / 80.4 / 82.2 MiB (the run before it here, on an older commit: 97.6 / 82.8 / 83.0, peaks 101.1 / 88.4 /\n" +
	"  86.0), with GOMEMLIMIT left at 95% of the container's 256 MiB limit, the second line. The same bench at\n" +
	"  10,000 nodes, before the change: first install ready after 201.8 s (50 s of reads at 200/s; the cores were\n" +
	"  busy), joining replicas after 3.5 and 4.2 s, a restarted one after 2.6 s, RSS 125.9 / 106.4 / 102.3 MiB,\n" +
	"  peaks 148.3 / 108.8 / 113.1. At 20,000 nodes (2026-12-03 07:43 UTC, commit 8339ec7: the kubelet farm now\n" +
	"  serves every node from one listener; load average 6.4 before, 13.8 at the end): setup 2 min 37 s; first\n" +
	"  install ready after 194.2 s, 190 s of it the first pass, about 105 reads/s where 200 were allowed (each first\n" +
	"  read costs a TLS handshake on both sides, a TokenReview and a SubjectAccessReview, so about 210 reviews/s, on\n" +
	"  two cores shared with the API server and three replicas); joining replicas after 2.1 and 4.3 s, a restarted\n" +
	"  one after 2.6 s having read no kubelet; 20.0 probes/s and 20.0 TokenReviews/s with one replica and with three\n" +
	"  (no SubjectAccessReview yet: the first pass's were still cached); RSS 188.6 / 143.9 / 138.9 MiB, peaks 212.1\n" +
	"  / 148.3 / 142.3 (heap in use 110 / 106 / 93 MiB), over the 96 MiB target; published result 40,229 bytes (2.0\n" +
	"  a node); admission on the elected replica while it read 400 kubelets at 100 req/s: p50 2.89 ms, p99 94.18 ms,\n" +
	"  max 196.26 ms, no errors. The published result takes 1.8 bytes a node with\n" +
	"  the bench's sequential node names and 9.5 with cloud names (`TestSharedResultFormat`: 615 kB for 65,000\n" +
	"  nodes; 1 MiB near 110,000).\n\n"
