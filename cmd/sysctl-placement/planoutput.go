package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	out "github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// writeResults prints the results in the chosen output; warnings and denials go to
// stderr, and a failed write to either is returned.
func writeResults(stdout, stderr io.Writer, output string, results []planResult) error {
	errOut := out.NewPrinter(stderr)
	if output == "table" {
		for i, res := range results {
			writeExplanations(errOut, i, res)
		}
		return errors.Join(writePlanTable(stdout, results), errOut.Err())
	}
	for i, res := range results {
		if err := writeResult(stdout, errOut, output, i, res); err != nil {
			return err
		}
	}
	return errOut.Err()
}

// writeExplanations puts the warnings and the denial of one document, and of its pods,
// on stderr.
func writeExplanations(stderr *out.Printer, index int, res planResult) {
	for _, w := range res.Warnings {
		stderr.Println("warning:", w)
	}
	if !res.Allowed {
		stderr.Printf("denied (document %d): %s\n", index+1, res.Message)
	}
	if res.Pod == nil {
		return
	}
	for _, w := range res.Pod.Warnings {
		stderr.Printf("warning (document %d, its pods): %s\n", index+1, w)
	}
	if !res.Pod.Allowed {
		stderr.Printf("denied (document %d, its pods): %s\n", index+1, res.Pod.Message)
	}
}

// writePlanTable is the default output: one row per document saying where its pods go.
func writePlanTable(w io.Writer, results []planResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	pt := out.NewPrinter(tw)
	pt.Println("DOCUMENT\tSYSCTLS\tOUTCOME\tPOOLS\tADDED")
	for i, res := range results {
		outcome, added := summarize(res)
		pt.Printf("%d %s/%s\t%s\t%s\t%s\t%s\n", i+1, res.kind, res.name,
			out.OrNone(strings.Join(res.sysctls, ",")), outcome, out.OrNone(strings.Join(res.decision.Audit.Pools, ",")), out.OrNone(added))
	}
	return errors.Join(pt.Err(), tw.Flush())
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

func writeResult(stdout io.Writer, stderr *out.Printer, output string, index int, res planResult) error {
	if output == "json" {
		line, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", line)
		return err
	}
	for _, w := range res.Warnings {
		stderr.Println("warning:", w)
	}
	if !res.Allowed {
		stderr.Printf("denied (document %d): %s\n", index+1, res.Message)
		return nil
	}
	if len(res.Patch) == 0 {
		stderr.Printf("document %d: no change\n", index+1)
	}
	if res.Pod != nil {
		// The resulting objects stay on stdout (ready for kubectl apply); where the
		// workload's pods will go is said beside them.
		outcome, added := summarize(res)
		stderr.Printf("document %d (%s/%s): %s", index+1, res.kind, res.name, outcome)
		if len(res.decision.Audit.Pools) > 0 {
			stderr.Printf(" on %s", strings.Join(res.decision.Audit.Pools, ","))
		}
		if added != "" {
			stderr.Printf(": %s", added)
		}
		stderr.Println()
		if !res.Pod.Allowed {
			stderr.Printf("denied (document %d, its pods): %s\n", index+1, res.Pod.Message)
		}
	}
	y, err := yaml.JSONToYAML(res.Object)
	if err != nil {
		return fmt.Errorf("could not write the object as YAML: %w", err)
	}
	if index > 0 {
		if _, err := io.WriteString(stdout, "---\n"); err != nil {
			return err
		}
	}
	_, err = stdout.Write(y)
	return err
}
