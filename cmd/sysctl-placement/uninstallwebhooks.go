package main

// `uninstall-webhooks` deletes the webhook's two configurations, the chart's
// pre-delete hook runs it: once they are gone the API server calls no webhook, so the
// Deployment and Service can go without pods in opted-in namespaces being refused
// (failurePolicy Fail) while the release is torn down. A configuration already gone
// counts as deleted, so a retried hook or a second uninstall succeeds.

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// uninstallWebhooksOptions are the flags of `uninstall-webhooks`.
type uninstallWebhooksOptions struct {
	mutatingWebhook   string
	validatingWebhook string
}

func newUninstallWebhooksCommand(g *globalOptions, s streams) *cobra.Command {
	o := &uninstallWebhooksOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall-webhooks",
		Short: "Delete both webhook configurations, first step of an uninstall",
		Long: `Deletes the MutatingWebhookConfiguration and the ValidatingWebhookConfiguration, so that
the API server stops calling the webhook before its Deployment and Service go: the Helm
chart's pre-delete hook runs it. A configuration that does not exist counts as deleted.`,
		Args: flagsOnly,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.mutatingWebhook == "" && o.validatingWebhook == "" {
				return usageError("--mutating-webhook and --validating-webhook are both empty: nothing to delete")
			}
			client, err := g.client(false, "sysctl-placement-uninstall-webhooks/"+Version)
			if err != nil {
				return err
			}
			return o.deleteWebhookConfigurations(cmd.Context(), client, s.out)
		},
	}
	cmd.Flags().StringVar(&o.mutatingWebhook, "mutating-webhook", "sysctl-placement", "MutatingWebhookConfiguration to delete (empty: none)")
	cmd.Flags().StringVar(&o.validatingWebhook, "validating-webhook", "sysctl-placement", "ValidatingWebhookConfiguration to delete (empty: none)")
	return cmd
}

// deleteWebhookConfigurations deletes the two configurations named, treating one
// already gone as deleted, and says what it did for each. Each delete is spelled out
// so that deploy/apicalls' scan of the code sees it (its rows, the chart's
// <fullname>-uninstall ClusterRole).
func (o *uninstallWebhooksOptions) deleteWebhookConfigurations(ctx context.Context, client kubernetes.Interface, stdout io.Writer) error {
	api := client.AdmissionregistrationV1()
	if o.mutatingWebhook != "" {
		err := api.MutatingWebhookConfigurations().Delete(ctx, o.mutatingWebhook, metav1.DeleteOptions{})
		if err := reportDeleted(stdout, "MutatingWebhookConfiguration", o.mutatingWebhook, err); err != nil {
			return err
		}
	}
	if o.validatingWebhook != "" {
		err := api.ValidatingWebhookConfigurations().Delete(ctx, o.validatingWebhook, metav1.DeleteOptions{})
		if err := reportDeleted(stdout, "ValidatingWebhookConfiguration", o.validatingWebhook, err); err != nil {
			return err
		}
	}
	return nil
}

// reportDeleted says what the delete of kind name did; NotFound counts as deleted.
func reportDeleted(stdout io.Writer, kind, name string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		_, err = fmt.Fprintf(stdout, "%s %s: already gone\n", kind, name)
		return err
	case err != nil:
		return fmt.Errorf("could not delete the %s %s: %w", kind, name, err)
	default:
		_, err = fmt.Fprintf(stdout, "%s %s: deleted\n", kind, name)
		return err
	}
}
