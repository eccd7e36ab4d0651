package main

// `uninstall-cleanup` deletes what sysctl-placement made at run time and no manifest
// holds, so nothing outlives an uninstall: the TLS and CA Secrets `certs` creates, the
// two Leases the replicas elect with, and the admission policies `serve
// --admission=policy` applies. The chart's post-delete hook runs it, once Helm has
// deleted the release (the Deployment first has no webhook configuration left calling
// it, see uninstall-webhooks; and no RBAC left to apply the policies again). An object
// already gone counts as deleted.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/webhook/policysync"
)

// uninstallCleanupOptions are the flags of `uninstall-cleanup`.
type uninstallCleanupOptions struct {
	namespace string
	secrets   []string
	leases    []string
	// policies deletes the policy backend's admission policies and bindings.
	policies bool
}

func newUninstallCleanupCommand(g *globalOptions, s streams) *cobra.Command {
	o := &uninstallCleanupOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall-cleanup",
		Short: "Delete the Secrets, Leases and policies the webhook made, last step of an uninstall",
		Long: `Deletes, in --namespace, the Secrets named with --secret (the TLS and CA Secrets that
certs creates) and the Leases named with --lease (the replicas' leader elections), and with
--admission-policies the MutatingAdmissionPolicy, ValidatingAdmissionPolicies and bindings
serve --admission=policy applies (those labelled app.kubernetes.io/component=admission-policy;
an object of the same name without the label is kept): objects no manifest holds, which an
uninstall would otherwise leave behind, the policies still placing pods. The Helm chart's
post-delete hook runs it. An object that does not exist counts as deleted.`,
		Args: flagsOnly,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.secrets) == 0 && len(o.leases) == 0 && !o.policies {
				return usageError("no --secret, --lease or --admission-policies: nothing to delete")
			}
			for _, name := range append([]string{o.namespace}, append(o.secrets, o.leases...)...) {
				if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
					return usageError("%q is not an object name: %s", name, strings.Join(msgs, "; "))
				}
			}
			client, err := g.client(true, "sysctl-placement-uninstall-cleanup/"+Version)
			if err != nil {
				return err
			}
			return o.deleteLeftovers(cmd.Context(), client, s.out)
		},
	}
	cmd.Flags().StringVar(&o.namespace, "namespace", "sysctl-placement", "namespace of the Secrets and Leases")
	cmd.Flags().StringArrayVar(&o.secrets, "secret", nil, "a Secret to delete (repeat for each)")
	cmd.Flags().StringArrayVar(&o.leases, "lease", nil, "a Lease to delete (repeat for each)")
	cmd.Flags().BoolVar(&o.policies, "admission-policies", false, "delete the admission policies and bindings serve --admission=policy applies")
	return cmd
}

// deleteLeftovers deletes the named Secrets and Leases and, with policies, the policy
// backend's admission policies, treating one already gone as deleted, and says what it
// did for each.
func (o *uninstallCleanupOptions) deleteLeftovers(ctx context.Context, client kubernetes.Interface, stdout io.Writer) error {
	secrets := client.CoreV1().Secrets(o.namespace)
	for _, name := range o.secrets {
		err := secrets.Delete(ctx, name, metav1.DeleteOptions{})
		if err := reportDeleted(stdout, "Secret", o.namespace+"/"+name, err); err != nil {
			return err
		}
	}
	leases := client.CoordinationV1().Leases(o.namespace)
	for _, name := range o.leases {
		err := leases.Delete(ctx, name, metav1.DeleteOptions{})
		if err := reportDeleted(stdout, "Lease", o.namespace+"/"+name, err); err != nil {
			return err
		}
	}
	if !o.policies {
		return nil
	}
	removals, err := policysync.Remove(ctx, client)
	for _, r := range removals {
		if _, err := fmt.Fprintln(stdout, r); err != nil {
			return err
		}
	}
	return err
}
