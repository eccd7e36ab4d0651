package audit

import (
	"slices"
	"sort"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// report plans every subject, gives it its verdict and sums the verdicts up by
// namespace and in total.
func (a *auditor) report() Report {
	r := Report{Workloads: []subject{}, Namespaces: []namespaceSummary{}, Listed: a.in.Listed}
	namespaces := map[string]*namespaceSummary{}
	sort.Strings(a.order)
	for _, key := range a.order {
		s := a.subjects[key]
		pod := a.templates[key]
		s.Webhook, s.OptedIn = a.planSubject(s, pod)
		for _, check := range checks {
			s.Findings = append(s.Findings, check(a.in.namespaces[s.Namespace], pod)...)
		}
		s.Broken = s.Pods.Forbidden > 0 || s.Pods.OnRefusingNodes > 0 || s.Events.FailedCreate > 0 ||
			(s.Events.SysctlForbidden > 0 && s.Pods.Running < s.Pods.Total)
		s.Unplaceable = (s.Webhook.Outcome == scheduling.VerdictDenied || s.Webhook.Outcome == scheduling.VerdictAdmittedUnplaceable) &&
			s.Webhook.Reason != scheduling.ReasonPodSecurityForbidden
		switch {
		case s.Broken:
			s.Status = statusBroken
		case s.Pods.Placed > 0:
			s.Status = statusPlaced
		case s.Pods.Total == 0:
			s.Status = statusNoPods
		default:
			s.Status = statusOK
		}
		r.Totals.Workloads++
		if s.Broken {
			r.Totals.Broken++
		}
		if s.Unplaceable {
			r.Totals.Unplaceable++
		}
		if s.Status == statusPlaced {
			r.Totals.Placed++
		}
		ns := namespaces[s.Namespace]
		if ns == nil {
			ns = &namespaceSummary{Name: s.Namespace, OptedIn: s.OptedIn}
			namespaces[s.Namespace] = ns
		}
		if !s.OptedIn {
			r.Totals.NotOptedIn++
		}
		if slices.ContainsFunc(s.Findings, func(f finding) bool { return f.enforced }) {
			ns.podSecurityRefused++
		}
		switch {
		case s.Unplaceable:
			ns.Denied++
			for _, u := range s.Webhook.Unallowed {
				if !slices.Contains(ns.Unallowed, u) {
					ns.Unallowed = append(ns.Unallowed, u)
				}
			}
		case s.Webhook.Outcome == scheduling.VerdictDenied:
			ns.Refused++
		case s.Webhook.Outcome != scheduling.VerdictSkipped:
			ns.Placeable++
			if s.Broken {
				ns.BrokenPlaceable++
			}
		}
		r.Workloads = append(r.Workloads, *s)
	}
	for _, ns := range namespaces {
		sort.Strings(ns.Unallowed)
		// podSecurityRefused is only counted for namespaces that were listed.
		if ns.podSecurityRefused > 0 {
			if level, ok := scheduling.PodSecurityOf(asScheduling(a.in.namespaces[ns.Name])).EnforcedSysctlRestriction(); ok {
				ns.PodSecurity = scheduling.PodSecuritySummary(ns.Name, level, ns.podSecurityRefused)
			}
		}
		r.Namespaces = append(r.Namespaces, *ns)
	}
	sort.Slice(r.Namespaces, func(i, j int) bool { return r.Namespaces[i].Name < r.Namespaces[j].Name })
	r.Pools = output.Pools(a.in.pools)
	return r
}
