package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

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
}

func runPlan(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "PlacementConfig file (default: the embedded example config)")
	var files stringList
	fs.Var(&files, "f", "manifest file with one or more Pods or workloads (YAML or JSON), repeatable; - for stdin")
	output := fs.String("o", "yaml", "output: yaml (the resulting objects; a summary on stderr) or json (one result per line)")
	var annotations stringList
	fs.Var(&annotations, "namespace-annotation", "an annotation of the pod's namespace, KEY=VALUE (repeatable); without sysctl-placement.io/enabled the namespace counts as opted in")
	var labels stringList
	fs.Var(&labels, "namespace-label", "a label of the pod's namespace, KEY=VALUE (repeatable), for pools with a namespaceSelector and the Pod Security labels (pod-security.kubernetes.io/enforce=baseline)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sysctl-placement plan [--config FILE] [--namespace-annotation KEY=VALUE]... [-o yaml|json] -f FILE|-...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: 1}
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q: give the manifest with -f", fs.Arg(0))
	}
	if len(files) == 0 {
		return usageError("no manifest given: use -f FILE, or -f - to read standard input")
	}
	if *output != "yaml" && *output != "json" {
		return usageError("-o %q is not supported: use yaml or json", *output)
	}
	compiled, err := loadConfig(*configFile)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	ns := scheduling.Namespace{Name: "default", Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}
	if err := parsePairs(annotations, "--namespace-annotation", ns.Annotations); err != nil {
		return err
	}
	if len(labels) > 0 {
		ns.Labels = map[string]string{}
		if err := parsePairs(labels, "--namespace-label", ns.Labels); err != nil {
			return err
		}
	}

	var docs []json.RawMessage
	for _, file := range files {
		fileDocs, err := readManifest(file, stdin)
		if err != nil {
			return exitError{code: 1, err: err}
		}
		docs = append(docs, fileDocs...)
	}

	offline, err := webhook.NewOffline(webhook.OfflineConfig{Config: compiled, Namespace: ns})
	if err != nil {
		return err
	}
	denied := false
	forbidden := 0 // documents the namespace's enforced Pod Security level refuses
	for i, doc := range docs {
		res, err := planDocument(offline, doc)
		if err != nil {
			return exitError{code: 1, err: fmt.Errorf("document %d: %w", i+1, err)}
		}
		if !res.Allowed {
			denied = true
		}
		if slices.ContainsFunc(res.Warnings, scheduling.IsEnforcedPodSecurityWarning) {
			forbidden++
		}
		if err := writeResult(stdout, stderr, *output, i, res); err != nil {
			return err
		}
	}
	if level, ok := scheduling.PodSecurityOf(ns).EnforcedSysctlRestriction(); ok && forbidden > 0 {
		fmt.Fprintln(stderr, scheduling.PodSecuritySummary(ns.Name, level, forbidden))
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

// planDocument admits one document offline and shapes the result for output.
func planDocument(offline *webhook.Offline, doc json.RawMessage) (planResult, error) {
	admitted, err := offline.Admit(doc)
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
