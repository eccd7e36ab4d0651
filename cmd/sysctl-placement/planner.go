package main

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
)

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
