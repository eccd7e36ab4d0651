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

	"github.com/spf13/cobra"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

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
		if _, err := fmt.Fprintln(s.errOut, scheduling.PodSecuritySummary(ns.Name, level, forbidden)); err != nil {
			return err
		}
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
		defer func() { _ = f.Close() }() // read only: nothing is lost
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
