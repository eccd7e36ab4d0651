package output

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// Pool is one pool of `pools -o yaml|json` and of the audit report's pools: a stable
// interface other tools read.
type Pool struct {
	Name                 string            `json:"name"`
	NodeSelector         map[string]string `json:"nodeSelector"`
	Nodes                int               `json:"nodes"`
	Taints               []corev1.Taint    `json:"taints,omitempty"`
	KubeletVersion       string            `json:"kubeletVersion,omitempty"`
	KernelVersion        string            `json:"kernelVersion,omitempty"`
	AllowedUnsafeSysctls []string          `json:"allowedUnsafeSysctls"`
	// NamespaceSelector limits the namespaces that may use the pool (a config pool's,
	// or a discovered pool's from discovery.pools); absent: every opted-in namespace.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Source            discovery.Source      `json:"source"`
	Used              bool                  `json:"used"`
	Problems          []discovery.Problem   `json:"problems,omitempty"`
}

// Pools converts the combiner's report to the output shape.
func Pools(report []discovery.PoolStatus) []Pool {
	out := make([]Pool, 0, len(report))
	for i := range report {
		p := report[i]
		out = append(out, Pool{
			Name: p.Pool.Name, NodeSelector: p.Pool.NodeSelector, Nodes: p.Nodes, Taints: p.Pool.Taints,
			KubeletVersion: p.Pool.KubeletVersion, KernelVersion: p.Pool.KernelVersion,
			AllowedUnsafeSysctls: append([]string{}, p.Pool.AllowedUnsafeSysctls...),
			NamespaceSelector:    p.Pool.NamespaceSelector,
			Source:               p.Source, Used: p.Usable(), Problems: p.Problems,
		})
	}
	return out
}

// WritePools prints the pools as a table with their problems, or as JSON or YAML.
func WritePools(w io.Writer, report []discovery.PoolStatus, format string) error {
	out := Pools(report)
	if format != "table" {
		return WriteData(w, format, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	pt := NewPrinter(tw)
	pt.Println("NAME\tSELECTOR\tNODES\tTAINTS\tKUBELET\tKERNEL\tALLOWED UNSAFE SYSCTLS\tNAMESPACES\tSOURCE\tPROBLEMS")
	for _, p := range out {
		name := p.Name
		if !p.Used {
			name += " (unused)"
		}
		var taints []string
		for _, t := range p.Taints {
			taints = append(taints, t.ToString())
		}
		kinds := map[string]bool{}
		for _, pr := range p.Problems {
			kinds[string(pr.Kind)] = true
		}
		pt.Printf("%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, labels.FormatLabels(p.NodeSelector), p.Nodes,
			OrNone(strings.Join(taints, ",")), OrNone(p.KubeletVersion), OrNone(p.KernelVersion),
			OrNone(strings.Join(p.AllowedUnsafeSysctls, ",")), NamespacesText(p.NamespaceSelector), p.Source,
			OrNone(strings.Join(slices.Sorted(maps.Keys(kinds)), ",")))
	}
	if err := pt.Err(); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pw := NewPrinter(w)
	first := true
	for _, p := range out {
		for _, pr := range p.Problems {
			if first {
				pw.Println("\nProblems:")
				first = false
			}
			pw.Printf("  %s: %s: %s\n", p.Name, pr.Kind, pr.Detail)
		}
	}
	return pw.Err()
}

// NamespacesText is a pool's namespaceSelector as the tables show it; a pool without
// one (or with an empty one) is open to every opted-in namespace.
func NamespacesText(sel *metav1.LabelSelector) string {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return "<all>"
	}
	return metav1.FormatLabelSelector(sel)
}

// WriteSharedStatus says, in a line, how old the published discovery result is, who
// wrote it and whether that replica still leads, and which nodes it covers; or why it
// could not be read. It returns the write's error.
func WriteSharedStatus(w io.Writer, st *discovery.SharedStatus, err error, now time.Time) error {
	if err != nil {
		_, werr := fmt.Fprintf(w, "\nPublished discovery result: %v\n", err)
		return werr
	}
	holder := "nobody holds the Lease"
	if st.LeaseHolder != "" {
		holder = "the Lease is held by " + st.LeaseHolder
	}
	if !st.Published {
		if _, err := fmt.Fprintf(w, "\nPublished discovery result %s/%s: nothing published yet (a first install reads every kubelet first); %s; %d nodes not read yet.\n",
			st.Namespace, st.Name, holder, st.NotRead); err != nil {
			return err
		}
		// The policy backend writes its status whether or not discovery has published.
		return WritePolicyStatus(w, st.Policy, now)
	}
	writer := "by " + st.Writer + ", which holds the Lease"
	if st.Writer != st.LeaseHolder {
		writer = "by " + st.Writer + ", which no longer leads (" + holder + "): replicas ignore it until the holder publishes"
	}
	complete := "complete"
	if !st.Complete {
		complete = "first pass not finished"
	}
	if _, err = fmt.Fprintf(w, "\nPublished discovery result %s/%s: written %s ago %s; %s; %d nodes read, %d unreachable, %d not read yet.\n",
		st.Namespace, st.Name, now.Sub(st.PublishedAt).Round(time.Second), writer, complete, st.NodesRead, st.Unreachable, st.NotRead); err != nil {
		return err
	}
	return WritePolicyStatus(w, st.Policy, now)
}

// WritePolicyStatus says, in a line, whether the admission policies of serve
// --admission=policy are in force, and if not why; nothing in webhook mode (p nil).
func WritePolicyStatus(w io.Writer, p *discovery.PolicyStatus, now time.Time) error {
	if p == nil {
		return nil
	}
	state := "in force (the API server places pods itself)"
	if !p.Active {
		state = "NOT in force (" + p.Reason + "): " + p.Message + "; the webhook must place pods"
	}
	line := fmt.Sprintf("\nPolicy backend: %s; written %s ago by %s", state, now.Sub(p.UpdatedAt.Time).Round(time.Second), p.Writer)
	if p.Cost != "" {
		line += "; estimated cost: " + p.Cost
	}
	for _, warning := range p.Warnings {
		line += "\n  type-checking warning: " + warning
	}
	_, err := fmt.Fprintln(w, line+".")
	return err
}
