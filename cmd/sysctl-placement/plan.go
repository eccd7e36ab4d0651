package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
)

// planResult is one line of `plan -o json`: a stable interface other tools drive.
type planResult struct {
	Allowed  bool              `json:"allowed"`
	Message  string            `json:"message"`
	Warnings []string          `json:"warnings"`
	Patch    []json.RawMessage `json:"patch"`
	Object   json.RawMessage   `json:"object"`
	// Pod is, for a workload, the plan of the Pod its (changed) template creates: where
	// its pods will go, or why they would be denied. Absent for a Pod.
	Pod *planResult `json:"pod,omitempty"`

	// decision is the engine's answer for the summary table: for a Pod its own, for a
	// workload its pods'.
	decision scheduling.Decision
	// templateChange is what the workload's template got (clash fixes).
	templateChange scheduling.Changes
	kind, name     string
	sysctls        []string
}

// planOptions are the flags of `plan`.
type planOptions struct {
	configFile  string
	files       []string
	output      string
	annotations []string
	labels      []string
}

func newPlanCommand(_ *globalOptions, s streams) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan [--config FILE] [--namespace-annotation KEY=VALUE]... [-o table|yaml|json] -f FILE|-",
		Short: "Show offline what the webhook would do to manifests",
		Long: `Runs the webhook's own mutating and validating code on Pods and workloads, with no
cluster. For a workload it also plans the Pod its template creates: where its pods will
go (pools, added nodeSelector or node affinity and tolerations) or why they would be
denied. Exit status: 0 all allowed, 2 any document denied, 1 bad usage or input.`,
		Example: `  sysctl-placement plan -f deploy/examples/postgres-deployment.yaml
  sysctl-placement plan --config placement-config.yaml -o json -f pod.yaml
  kubectl get deploy -n team -o yaml | sysctl-placement plan -f -`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unexpected argument %q: give the manifest with -f", args[0])
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error { return runPlan(o, s) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.configFile, "config", "", "PlacementConfig file (default: the embedded example config)")
	fs.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file with one or more Pods or workloads (YAML or JSON), repeatable; - for stdin")
	fs.StringVarP(&o.output, "output", "o", "table", "output: table (a summary per document), yaml (the resulting objects; a summary on stderr) or json (one result per line)")
	fs.StringArrayVar(&o.annotations, "namespace-annotation", nil, "an annotation of the pod's namespace, KEY=VALUE (repeatable); without sysctl-placement.io/enabled the namespace counts as opted in")
	fs.StringArrayVar(&o.labels, "namespace-label", nil, "a label of the pod's namespace, KEY=VALUE (repeatable), for pools with a namespaceSelector and the Pod Security labels (pod-security.kubernetes.io/enforce=baseline)")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runPlan(o planOptions, s streams) error {
	if len(o.files) == 0 {
		return usageError("no manifest given: use -f FILE, or -f - to read standard input")
	}
	if o.output != "table" && o.output != "yaml" && o.output != "json" {
		return usageError("-o %q is not supported: use table, yaml or json", o.output)
	}
	compiled, err := loadConfig(o.configFile)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	ns := scheduling.Namespace{Name: "default", Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}
	if err := parsePairs(o.annotations, "--namespace-annotation", ns.Annotations); err != nil {
		return err
	}
	if len(o.labels) > 0 {
		ns.Labels = map[string]string{}
		if err := parsePairs(o.labels, "--namespace-label", ns.Labels); err != nil {
			return err
		}
	}

	var docs []json.RawMessage
	for _, file := range o.files {
		fileDocs, err := readManifest(file, s.in)
		if err != nil {
			return exitError{code: 1, err: err}
		}
		docs = append(docs, fileDocs...)
	}

	offline, err := webhook.NewOffline(webhook.OfflineConfig{Config: compiled, Namespace: ns})
	if err != nil {
		return err
	}
	planner := &offlinePlanner{offline: offline, namespace: ns, config: compiled}
	denied := false
	forbidden := 0 // documents the namespace's enforced Pod Security level refuses
	results := make([]planResult, 0, len(docs))
	for i, doc := range docs {
		res, err := planner.planDocument(doc)
		if err != nil {
			return exitError{code: 1, err: fmt.Errorf("document %d: %w", i+1, err)}
		}
		if !res.Allowed {
			denied = true
		}
		if slices.ContainsFunc(res.Warnings, scheduling.IsEnforcedPodSecurityWarning) ||
			(res.Pod != nil && slices.ContainsFunc(res.Pod.Warnings, scheduling.IsEnforcedPodSecurityWarning)) {
			forbidden++
		}
		results = append(results, res)
	}
	if err := writeResults(s.out, s.errOut, o.output, results); err != nil {
		return err
	}
	if level, ok := scheduling.PodSecurityOf(ns).EnforcedSysctlRestriction(); ok && forbidden > 0 {
		fmt.Fprintln(s.errOut, scheduling.PodSecuritySummary(ns.Name, level, forbidden))
	}
	if denied {
		return exitError{code: 2}
	}
	return nil
}

func parsePairs(pairs []string, flagName string, into map[string]string) error {
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return usageError("%s %q: write KEY=VALUE", flagName, p)
		}
		into[k] = v
	}
	return nil
}

// loadConfig reads and compiles a PlacementConfig file, or the embedded example.
func loadConfig(path string) (*scheduling.Compiled, error) {
	if path != "" {
		compiled, _, err := config.LoadFile(path)
		return compiled, err
	}
	// deploy's tests keep the embedded example valid.
	return config.Compile(deploy.ExampleConfig)
}

// readManifest reads the documents of one -f argument.
func readManifest(file string, stdin io.Reader) ([]json.RawMessage, error) {
	in := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("could not read the manifest: %w", err)
		}
		defer f.Close()
		in = f
	}
	docs, err := readDocuments(in)
	if err != nil {
		return nil, fmt.Errorf("could not read the manifest %s: %w", file, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("the manifest %s holds no objects", file)
	}
	return docs, nil
}

// readDocuments splits a YAML or JSON stream into JSON documents, skipping empty ones.
func readDocuments(r io.Reader) ([]json.RawMessage, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var docs []json.RawMessage
	for {
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		trimmed := bytes.TrimSpace(doc)
		if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue
		}
		if trimmed[0] != '{' {
			return nil, fmt.Errorf("document %d is not an object: give Pods or workloads", len(docs)+1)
		}
		docs = append(docs, doc)
	}
}

// offlinePlanner plans manifests with the webhook's own code (webhook.Offline) and,
// for a workload, also the Pod its template creates.
type offlinePlanner struct {
	offline   *webhook.Offline
	namespace scheduling.Namespace
	config    *scheduling.Compiled
}

// plan admits one document offline and shapes the result for output.
func (p *offlinePlanner) plan(doc json.RawMessage) (planResult, error) {
	admitted, err := p.offline.Admit(doc)
	if err != nil {
		return planResult{}, err
	}
	res := planResult{Allowed: admitted.Allowed, Message: admitted.Message, Warnings: admitted.Warnings, Patch: []json.RawMessage{}, Object: admitted.Object}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	if err := json.Unmarshal(admitted.Patch, &res.Patch); err != nil {
		return planResult{}, fmt.Errorf("could not read the webhook's patch: %w", err)
	}
	return res, nil
}

// planDocument plans one document as admission would and, for a workload, the Pod its
// changed template creates; it also keeps the engine's decisions for the summary.
func (p *offlinePlanner) planDocument(doc json.RawMessage) (planResult, error) {
	res, err := p.plan(doc)
	if err != nil {
		return planResult{}, err
	}
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name         string `json:"name"`
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(doc, &meta); err != nil {
		return planResult{}, fmt.Errorf("could not decode the object: %w", err)
	}
	res.kind, res.name = meta.Kind, meta.Metadata.Name
	if res.name == "" {
		res.name = meta.Metadata.GenerateName
	}
	before, fromTemplate, err := webhook.PodOf(doc)
	if err != nil {
		// A kind the webhook does not handle: admitted unchanged, nothing more to show.
		return res, nil // the mutator already admitted it unchanged, with a warning
	}
	pod, err := p.decodePod(before)
	if err != nil {
		return planResult{}, err
	}
	res.sysctls = scheduling.SysctlNames(pod)
	if !fromTemplate {
		res.decision = scheduling.Plan(scheduling.Input{Pod: pod, Namespace: p.namespace, Config: p.config})
		return res, nil
	}
	res.templateChange = scheduling.Plan(scheduling.Input{Pod: pod, Namespace: p.namespace, Config: p.config, Template: true}).Changes
	// The pods are created from the template as the webhook changed it.
	podDoc, _, err := webhook.PodOf(res.Object)
	if err != nil {
		return planResult{}, err
	}
	podDoc, err = withGenerateName(podDoc, res.name)
	if err != nil {
		return planResult{}, err
	}
	podRes, err := p.plan(podDoc)
	if err != nil {
		return planResult{}, fmt.Errorf("its pods: %w", err)
	}
	if pod, err = p.decodePod(podDoc); err != nil {
		return planResult{}, err
	}
	res.decision = scheduling.Plan(scheduling.Input{Pod: pod, Namespace: p.namespace, Config: p.config})
	res.Pod = &podRes
	return res, nil
}

func (p *offlinePlanner) decodePod(doc json.RawMessage) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(doc, pod); err != nil {
		return nil, fmt.Errorf("could not decode the pod: %w", err)
	}
	return pod, nil
}

// withGenerateName names a template's pod after its workload, as controllers do, so
// that warnings and denials name it.
func withGenerateName(podDoc json.RawMessage, workload string) (json.RawMessage, error) {
	var tree map[string]any
	if err := json.Unmarshal(podDoc, &tree); err != nil {
		return nil, err
	}
	meta, _ := tree["metadata"].(map[string]any)
	if meta == nil || workload == "" || meta["name"] != nil || meta["generateName"] != nil {
		return podDoc, nil
	}
	meta["generateName"] = workload + "-"
	return json.Marshal(tree)
}

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
	switch {
	case !allowed:
		outcome = "denied"
	case d.Outcome == "":
		return "not handled: admitted unchanged", ""
	case d.Outcome == scheduling.OutcomeSkipped:
		outcome = "skipped (" + d.Reason + ")"
	case d.Outcome == scheduling.OutcomeUnplaceable:
		outcome = "unplaceable, admitted"
	case d.Outcome == scheduling.OutcomeForbidden:
		outcome = "forbidden by Pod Security, admitted"
	case d.Outcome == scheduling.OutcomeChanged && len(d.Audit.Pools) > 0:
		outcome = "placed"
	case d.Outcome == scheduling.OutcomeChanged:
		outcome = "changed"
	default:
		outcome = "unchanged (" + d.Reason + ")"
	}
	if res.Pod != nil && outcome != "denied" {
		outcome = "pods " + outcome
	}
	var parts []string
	if res.Pod != nil {
		if t := output.Changes(res.templateChange); t != "" {
			parts = append(parts, "template: "+t)
		}
	}
	if t := output.Changes(d.Changes); t != "" {
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
