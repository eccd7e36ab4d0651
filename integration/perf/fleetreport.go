package perf

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// FleetReady is the slowest time to ready of a replica that found a shared result.
func FleetReady(f *FleetResult) time.Duration {
	worst := f.RestartedReady
	for _, d := range f.FollowerReady {
		worst = max(worst, d)
	}
	return worst
}

// WriteFleetSection writes the "Discovery at scale" section of docs/performance.md.
func WriteFleetSection(w io.Writer, f *FleetResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Discovery at scale\n\n")
	p("`integration/perf/cmd/fleet` (`perf.RunFleet`): %s Node objects in %d pools on the real test API\n", thousands(f.Nodes), f.Pools)
	p("server, %s namespaces, %d `serve` replicas as the shipped ServiceAccount with the shipped RBAC,\n", thousands(f.Namespaces), f.Replicas)
	p("`--discovery-qps %g --discovery-refresh %s`. Their kubelets' `/configz` is served by one process,\n", f.QPS, f.Refresh)
	p("the test's `perf.KubeletFarm` (one HTTPS listener, each node at its own address in 127.0.0.0/8),\n")
	p("since %s real kubelets do not fit on this machine; like a kubelet it checks each caller with a\n", thousands(f.Nodes))
	p("TokenReview and a SubjectAccessReview (get nodes/configz), cached per node for the kubelet's\n")
	p("defaults (2 min, 5 min), and counts them. Setup (Nodes and namespaces) took %s.\n\n", f.SetupTime.Round(time.Second))
	p("ready after %.1f s with %s nodes (a replica joining or restarting: it reads the shared result)\n\n", FleetReady(f).Seconds(), thousands(f.Nodes))
	p("| what | measured |\n|---|---|\n")
	p("| first install: the first replica, no shared result yet, reads every kubelet | ready after %.1f s |\n", f.FirstInstallReady.Seconds())
	for i, d := range f.FollowerReady {
		p("| replica %d joins | ready after %.1f s |\n", i+2, d.Seconds())
	}
	if f.PublishedBytes > 0 {
		p("| published result (ConfigMap `sysctl-placement-discovery`) | %s bytes, %.1f a node |\n", thousands(f.PublishedBytes), float64(f.PublishedBytes)/float64(f.Nodes))
	}
	p("| a replica restarted | ready after %.1f s, %.0f kubelets read |\n", f.RestartedReady.Seconds(), f.RestartedProbes)
	for _, r := range []FleetRates{f.OneReplica, f.AllReplicas} {
		p("| %d replica(s), over %s | %.1f probes/s, %.1f TokenReviews/s, %.1f SubjectAccessReviews/s |\n",
			r.Replicas, r.Window, r.ProbesPerSecond, r.TokenReviewsPerSecond, r.SubjectAccessReviewsPerSecond)
	}
	for i := range f.RSS {
		p("| replica %d memory while the elected replica reads, before the admission load | RSS %.1f MiB, peak %.1f MiB |\n", i+1, float64(f.RSS[i])/(1<<20), float64(f.HWM[i])/(1<<20))
	}
	a := f.Admission
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	p("| admission on the elected replica while it read %d kubelets (%s req/s, load average %.1f) | p50 %s, p99 %s, max %s; %d errors of %d |\n\n",
		f.ProbesDuringLoad, strings.TrimPrefix(a.Scenario, "open-"), a.LoadAverage, ms(a.P50), ms(a.P99), ms(a.Max), a.Errors, a.Requests)
	p("Only the elected replica reads kubelets (docs/operations.md, \"Discovery topology\"), so probes/s\n")
	p("and the reviews they cost are the same with one replica and with %d, bounded by\n", f.Replicas)
	p("`--discovery-qps`. Refresh here is shorter than a pass (nodes / QPS), so the elected replica reads\n")
	p("without pause: the worst case. With the default 5 min the steady rate is nodes / 300 s.\n")
	reread := time.Duration(float64(f.Nodes) / f.QPS * float64(time.Second))
	if reread <= kubeletAuthzAllowedTTL {
		p("Each kubelet was read again every %s (nodes / QPS): past its 2-minute token cache, so each\n", reread.Round(time.Second))
		p("read cost a TokenReview, and within its 5-minute cache of allowed requests, so a\n")
		p("SubjectAccessReview only when that had expired. Read every 5 minutes (the default refresh on a\n")
		p("smaller cluster), a read can miss both: at most 2 reviews per read.\n\n")
		return
	}
	p("Each kubelet is read again every %s (nodes / QPS), past both of its caches: once the first\n", reread.Round(time.Second))
	p("pass's allowed requests have expired from the 5-minute cache, each read costs a TokenReview and a\n")
	p("SubjectAccessReview, 2 reviews per read. The windows above come within minutes of the first pass,\n")
	p("when the kubelets still held the caller as allowed: only the TokenReviews show.\n\n")
}

// thousands writes n with a comma every three digits.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
