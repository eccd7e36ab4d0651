package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// writeResults prints the results in the chosen output.
func writeResults(stdout, stderr io.Writer, output string, results []planResult) error {
	if output == "table" {
		for i, res := range results {
			writeExplanations(stderr, i, res)
		}
		return writePlanTable(stdout, results)
	}
	for i, res := range results {
		if err := writeResult(stdout, stderr, output, i, res); err != nil {
			return err
		}
	}
	return nil
}

// writeExplanations puts the warnings and the denial of one document, and of its pods,
// on stderr.
func writeExplanations(stderr io.Writer, index int, res planResult) {
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if !res.Allowed {
		fmt.Fprintf(stderr, "denied (document %d): %s\n", index+1, res.Message)
	}
	if res.Pod == nil {
		return
	}
	for _, w := range res.Pod.Warnings {
		fmt.Fprintf(stderr, "warning (document %d, its pods): %s\n", index+1, w)
	}
	if !res.Pod.Allowed {
		fmt.Fprintf(stderr, "denied (document %d, its pods): %s\n", index+1, res.Pod.Message)
	}
}

// writePlanTable is the default output: one row per document saying where its pods go.
func writePlanTable(w io.Writer, results []planResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOCUMENT\tSYSCTLS\tOUTCOME\tPOOLS\tADDED")
	for i, res := range results {
		outcome, added := summarize(res)
		fmt.Fprintf(tw, "%d %s/%s\t%s\t%s\t%s\t%s\n", i+1, res.kind, res.name,
			output.OrNone(strings.Join(res.sysctls, ",")), outcome, output.OrNone(strings.Join(res.decision.Audit.Pools, ",")), output.OrNone(added))
	}
	return tw.Flush()
}

// summarize says in a few words what happens to a document's pods and what they get.
func summarize(res planResult) (outcome, added string) {
	d := res.decision
	allowed := res.Allowed
	if res.Pod != nil {
		allowed = res.Pod.Allowed
	}
	switch v := d.Verdict(); {
	case !allowed:
		outcome = string(scheduling.VerdictDenied)
	case d.Outcome == "":
		return "not handled: admitted unchanged", ""
	case v == scheduling.VerdictSkipped || v == scheduling.VerdictUnchanged:
		outcome = string(v) + " (" + d.Reason + ")"
	default:
		outcome = string(v)
	}
	if res.Pod != nil && outcome != string(scheduling.VerdictDenied) {
		outcome = "pods " + outcome
	}
	var parts []string
	if res.Pod != nil {
		if t := res.templateChange.String(); t != "" {
			parts = append(parts, "template ("+t+")")
		}
	}
	if t := d.Changes.String(); t != "" {
		parts = append(parts, t)
	}
	return outcome, strings.Join(parts, "; ")
}

func writeResult(stdout, stderr io.Writer, output string, index int, res planResult) error {
	if output == "json" {
		line, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", line)
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if !res.Allowed {
		fmt.Fprintf(stderr, "denied (document %d): %s\n", index+1, res.Message)
		return nil
	}
	if len(res.Patch) == 0 {
		fmt.Fprintf(stderr, "document %d: no change\n", index+1)
	}
	if res.Pod != nil {
		// The resulting objects stay on stdout (ready for kubectl apply); where the
		// workload's pods will go is said beside them.
		outcome, added := summarize(res)
		fmt.Fprintf(stderr, "document %d (%s/%s): %s", index+1, res.kind, res.name, outcome)
		if len(res.decision.Audit.Pools) > 0 {
			fmt.Fprintf(stderr, " on %s", strings.Join(res.decision.Audit.Pools, ","))
		}
		if added != "" {
			fmt.Fprintf(stderr, ": %s", added)
		}
		fmt.Fprintln(stderr)
		if !res.Pod.Allowed {
			fmt.Fprintf(stderr, "denied (document %d, its pods): %s\n", index+1, res.Pod.Message)
		}
	}
	y, err := yaml.JSONToYAML(res.Object)
	if err != nil {
		return fmt.Errorf("could not write the object as YAML: %w", err)
	}
	if index > 0 {
		fmt.Fprintln(stdout, "---")
	}
	_, err = stdout.Write(y)
	return err
}
