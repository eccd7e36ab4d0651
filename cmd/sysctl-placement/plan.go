package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/slok/kubewebhook/v2/pkg/model"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
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
	fs.Var(&labels, "namespace-label", "a label of the pod's namespace, KEY=VALUE (repeatable), for pools with a namespaceSelector")
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

	planner, err := newOfflinePlanner(compiled, ns)
	if err != nil {
		return err
	}
	denied := false
	for i, doc := range docs {
		res, err := planner.plan(doc)
		if err != nil {
			return exitError{code: 1, err: fmt.Errorf("document %d: %w", i+1, err)}
		}
		if !res.Allowed {
			denied = true
		}
		if err := writeResult(stdout, stderr, *output, i, res); err != nil {
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
	data := deploy.ExampleConfig
	source := "the embedded example config"
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("could not read the config: %w", err)
		}
		source = path
	}
	cfg, err := scheduling.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("invalid config %s: %w", source, err)
	}
	compiled, err := scheduling.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid config %s: %w", source, err)
	}
	return compiled, nil
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

// offlinePlanner runs the webhook's own Mutator and Validator on manifests, so `plan`
// answers exactly what admission would.
type offlinePlanner struct {
	mutator   *webhook.Mutator
	validator *webhook.Validator
	namespace string
}

func newOfflinePlanner(compiled *scheduling.Compiled, ns scheduling.Namespace) (*offlinePlanner, error) {
	cfg := webhook.Config{
		Config:     webhook.NewConfigStore(compiled),
		Namespaces: webhook.StaticNamespaces{ns.Name: ns},
	}
	m, err := webhook.NewMutator(cfg)
	if err != nil {
		return nil, err
	}
	v, err := webhook.NewValidator(cfg)
	if err != nil {
		return nil, err
	}
	return &offlinePlanner{mutator: m, validator: v, namespace: ns.Name}, nil
}

func (p *offlinePlanner) plan(doc json.RawMessage) (planResult, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(doc, &tm); err != nil {
		return planResult{}, fmt.Errorf("could not decode the object: %w", err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return planResult{}, errors.New("the object has no apiVersion or kind")
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return planResult{}, fmt.Errorf("the object's apiVersion: %w", err)
	}
	gvk := gv.WithKind(tm.Kind)
	review := model.AdmissionReview{
		ID:           "plan",
		Namespace:    p.namespace,
		Operation:    model.OperationCreate,
		Version:      model.AdmissionReviewVersionV1,
		RequestGVK:   &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		NewObjectRaw: doc,
		DryRun:       true,
	}
	ctx := context.Background()
	resp, err := p.mutator.Review(ctx, review)
	if err != nil {
		return planResult{}, err
	}
	mutated, ok := resp.(*model.MutatingAdmissionResponse)
	if !ok {
		return planResult{}, fmt.Errorf("unexpected mutating response %T", resp)
	}
	res := planResult{Allowed: true, Warnings: mutated.Warnings, Patch: []json.RawMessage{}, Object: doc}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	if len(mutated.JSONPatchPatch) > 0 {
		if err := json.Unmarshal(mutated.JSONPatchPatch, &res.Patch); err != nil {
			return planResult{}, fmt.Errorf("could not read the webhook's patch: %w", err)
		}
		patch, err := jsonpatch.DecodePatch(mutated.JSONPatchPatch)
		if err != nil {
			return planResult{}, fmt.Errorf("could not read the webhook's patch: %w", err)
		}
		if res.Object, err = patch.Apply(doc); err != nil {
			return planResult{}, fmt.Errorf("could not apply the webhook's patch: %w", err)
		}
	}
	// The validating webhook sees the object after every mutation, as in the API server.
	review.NewObjectRaw = res.Object
	vresp, err := p.validator.Review(ctx, review)
	if err != nil {
		return planResult{}, err
	}
	validated, ok := vresp.(*model.ValidatingAdmissionResponse)
	if !ok {
		return planResult{}, fmt.Errorf("unexpected validating response %T", vresp)
	}
	res.Allowed, res.Message = validated.Allowed, validated.Message
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
