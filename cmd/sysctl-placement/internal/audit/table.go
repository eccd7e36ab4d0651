package audit

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Write prints the report in the chosen output.
func Write(w io.Writer, format string, r Report) error {
	if format != "table" {
		return output.WriteData(w, format, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	pt := output.NewPrinter(tw)
	pt.Println("NAMESPACE\tWORKLOAD\tSYSCTLS\tOPTED IN\tPODS RUNNING/FORBIDDEN/ALL\tNODES\tEVENTS\tSTATUS\tWEBHOOK")
	for _, s := range r.Workloads {
		optedIn := "no"
		if s.OptedIn {
			optedIn = "yes"
		}
		webhook := string(s.Webhook.Outcome)
		switch {
		case len(s.Webhook.Pools) > 0:
			webhook += " on " + scheduling.DescribePools(s.Webhook.Pools)
		case len(s.Webhook.Unallowed) > 0:
			webhook += ": no pool allows " + strings.Join(s.Webhook.Unallowed, ",")
		case s.Webhook.Reason != "":
			webhook += " (" + s.Webhook.Reason + ")"
		}
		if !s.OptedIn {
			webhook = "would be " + webhook
		}
		nodes := strings.Join(s.Nodes, ",")
		if len(s.Nodes) > 3 {
			nodes = fmt.Sprintf("%s,... (%d)", strings.Join(s.Nodes[:3], ","), len(s.Nodes))
		}
		events := "-"
		if s.Events.SysctlForbidden+s.Events.FailedCreate > 0 {
			events = fmt.Sprintf("%d SysctlForbidden, %d FailedCreate", s.Events.SysctlForbidden, s.Events.FailedCreate)
		}
		pt.Printf("%s\t%s/%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\t%s\n", s.Namespace, s.Kind, s.Name,
			strings.Join(s.Sysctls, ","), optedIn, s.Pods.Running, s.Pods.Forbidden, s.Pods.Total,
			output.OrNone(nodes), events, s.Status, webhook)
	}
	if err := pt.Err(); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pw := output.NewPrinter(w)
	var notes []string
	for _, ns := range r.Namespaces {
		if ns.OptedIn {
			continue
		}
		line := fmt.Sprintf("  opt namespace %s in → %d workload(s) placeable", ns.Name, ns.Placeable)
		if ns.BrokenPlaceable > 0 {
			line += fmt.Sprintf(" (%d broken today)", ns.BrokenPlaceable)
		}
		if ns.Denied > 0 {
			line += fmt.Sprintf(", %d would be denied because no pool allows %s", ns.Denied, strings.Join(ns.Unallowed, ", "))
		}
		if ns.Refused > 0 {
			line += fmt.Sprintf(", %d would be denied all the same (Pod Security or a host-namespace clash: see below)", ns.Refused)
		}
		notes = append(notes, line)
	}
	if len(notes) > 0 {
		pw.Println("\nNamespaces not opted in:")
		pw.Println(strings.Join(notes, "\n"))
	}
	var podSecurity []string
	for _, ns := range r.Namespaces {
		if ns.PodSecurity != "" {
			podSecurity = append(podSecurity, "  "+ns.PodSecurity)
		}
	}
	if len(podSecurity) > 0 {
		pw.Println("\nPod Security:")
		pw.Println(strings.Join(podSecurity, "\n"))
	}
	var restricted []string
	for _, p := range r.Pools {
		if ns := output.NamespacesText(p.NamespaceSelector); p.Used && ns != "<all>" {
			restricted = append(restricted, fmt.Sprintf("  pool %s: only namespaces %s", p.Name, ns))
		}
	}
	if len(restricted) > 0 {
		pw.Println("\nPools restricted to namespaces:")
		pw.Println(strings.Join(restricted, "\n"))
	}
	var problems []string
	for _, s := range r.Workloads {
		for _, p := range s.NodeProblems {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: %s", s.Namespace, s.Kind, s.Name, p))
		}
		for _, f := range s.Findings {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: %s: %s", s.Namespace, s.Kind, s.Name, f.Reason, f.Detail))
		}
		if s.Webhook.Outcome == scheduling.VerdictDenied && s.OptedIn {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: denied: %s", s.Namespace, s.Kind, s.Name, s.Webhook.Message))
		}
	}
	for _, p := range r.Pools {
		for _, pr := range p.Problems {
			problems = append(problems, fmt.Sprintf("  pool %s: %s: %s", p.Name, pr.Kind, pr.Detail))
		}
	}
	if len(problems) > 0 {
		pw.Println("\nProblems:")
		pw.Println(strings.Join(problems, "\n"))
	}
	pw.Printf("\n%d workload(s) with sysctls: %d broken, %d unplaceable, %d placed, %d not opted in (read %d pods, %d workloads, %d nodes in %.1fs)\n",
		r.Totals.Workloads, r.Totals.Broken, r.Totals.Unplaceable, r.Totals.Placed, r.Totals.NotOptedIn,
		r.Listed.Pods, r.Listed.Workloads, r.Listed.Nodes, r.Listed.Seconds)
	return pw.Err()
}
