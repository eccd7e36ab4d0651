package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Policies are the admission policies and bindings `sysctl-placement policy render`
// prints: the webhook-free backend.
type Policies struct {
	Mutating           *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding    *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating         []*admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// RenderPolicies runs `sysctl-placement policy render` with args (e.g. --config FILE)
// and decodes what it prints. A refusal is an error carrying render's reason.
func RenderPolicies(ctx context.Context, args ...string) (*Policies, error) {
	bin, err := SysctlPlacement.Path()
	if err != nil {
		return nil, err
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"policy", "render"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("policy render %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return DecodePolicies(out.String())
}

// DecodePolicies decodes the YAML documents `policy render` prints.
func DecodePolicies(text string) (*Policies, error) {
	p := &Policies{}
	for _, doc := range strings.Split(text, "\n---\n")[1:] {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, err
		}
		var err error
		switch meta.Kind {
		case "MutatingAdmissionPolicy":
			p.Mutating = &admissionregistrationv1.MutatingAdmissionPolicy{}
			err = yaml.UnmarshalStrict([]byte(doc), p.Mutating)
		case "MutatingAdmissionPolicyBinding":
			p.MutatingBinding = &admissionregistrationv1.MutatingAdmissionPolicyBinding{}
			err = yaml.UnmarshalStrict([]byte(doc), p.MutatingBinding)
		case "ValidatingAdmissionPolicy":
			v := &admissionregistrationv1.ValidatingAdmissionPolicy{}
			err = yaml.UnmarshalStrict([]byte(doc), v)
			p.Validating = append(p.Validating, v)
		case "ValidatingAdmissionPolicyBinding":
			b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			err = yaml.UnmarshalStrict([]byte(doc), b)
			p.ValidatingBindings = append(p.ValidatingBindings, b)
		default:
			return nil, fmt.Errorf("policy render printed a %q", meta.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	if p.Mutating == nil || p.MutatingBinding == nil || len(p.Validating) != 2 || len(p.ValidatingBindings) != 2 {
		return nil, fmt.Errorf("policy render printed %d mutating policies and bindings and %d validating ones; want a mutating policy and binding, two validating policies and bindings",
			btoi(p.Mutating != nil)+btoi(p.MutatingBinding != nil), len(p.Validating)+len(p.ValidatingBindings))
	}
	return p, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ApplyPolicies creates the policies, each before its binding. The API server applies
// them a moment later; callers wait on a dry-run pod.
func (c *Cluster) ApplyPolicies(ctx context.Context, p *Policies) error {
	a := c.Client.AdmissionregistrationV1()
	if _, err := a.MutatingAdmissionPolicies().Create(ctx, p.Mutating, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("could not create the MutatingAdmissionPolicy: %w", err)
	}
	if _, err := a.MutatingAdmissionPolicyBindings().Create(ctx, p.MutatingBinding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("could not create the MutatingAdmissionPolicyBinding: %w", err)
	}
	for _, v := range p.Validating {
		if _, err := a.ValidatingAdmissionPolicies().Create(ctx, v, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("could not create the ValidatingAdmissionPolicy %s: %w", v.Name, err)
		}
	}
	for _, b := range p.ValidatingBindings {
		if _, err := a.ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("could not create the ValidatingAdmissionPolicyBinding %s: %w", b.Name, err)
		}
	}
	return nil
}

// DeletePolicies deletes the policies and bindings p names, those already gone aside.
func (c *Cluster) DeletePolicies(ctx context.Context, p *Policies) error {
	a := c.Client.AdmissionregistrationV1()
	dels := []func() error{
		func() error {
			return a.MutatingAdmissionPolicyBindings().Delete(ctx, p.MutatingBinding.Name, metav1.DeleteOptions{})
		},
		func() error {
			return a.MutatingAdmissionPolicies().Delete(ctx, p.Mutating.Name, metav1.DeleteOptions{})
		},
	}
	for _, b := range p.ValidatingBindings {
		dels = append(dels, func() error { return a.ValidatingAdmissionPolicyBindings().Delete(ctx, b.Name, metav1.DeleteOptions{}) })
	}
	for _, v := range p.Validating {
		dels = append(dels, func() error { return a.ValidatingAdmissionPolicies().Delete(ctx, v.Name, metav1.DeleteOptions{}) })
	}
	for _, del := range dels {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
